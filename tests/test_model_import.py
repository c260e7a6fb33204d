"""Real users' models (issue 12): BatchNorm folding, Dropout/Identity/Flatten, nested chains,
state_dicts, TorchScript, ONNX graphs (torch's exporter and a hand-built MatMul + Add graph of a
scikit-learn MLPRegressor autoencoder), the latent layer chosen, refusals that say what to do."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from byo_models import EncoderDecoder, mlperf_tiny_ae, with_running_stats
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from edgeprune.checkpoint import load_network
from edgeprune.cli import main
from edgeprune.layer_chain import import_notes
from edgeprune.network import ModelError

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")]


def _ref(module, x):
    with torch.no_grad():
        return module.eval()(torch.from_numpy(x)).double().numpy()


def _x(dim, n=32, seed=1):
    return np.random.default_rng(seed).random((n, dim), dtype=np.float32) * 2


CHAINS = {
    "bn_before_act": lambda: nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6), nn.ReLU(),
                                           nn.Linear(6, 8), nn.Sigmoid()),
    "bn_after_act": lambda: nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.BatchNorm1d(6),
                                          nn.Linear(6, 8), nn.Sigmoid()),
    "bn_not_affine": lambda: nn.Sequential(nn.Linear(8, 6), nn.BatchNorm1d(6, affine=False),
                                           nn.Tanh(), nn.Linear(6, 8)),
    "bn_at_input": lambda: nn.Sequential(nn.BatchNorm1d(8), nn.Linear(8, 6), nn.ReLU(),
                                         nn.Linear(6, 8)),
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_batchnorm_folding_is_exact_for_every_supported_placement(tmp_path, name):
    module = with_running_stats(CHAINS[name](), 8)
    x = _x(8)
    torch.save(module, tmp_path / "m.pt")
    torch.jit.save(torch.jit.script(module), str(tmp_path / "ts.pt"))
    for path in ("m.pt", "ts.pt"):
        net = load_network(tmp_path / path, trust_code=True)
        np.testing.assert_allclose(net.forward(x), _ref(module, x), atol=2e-6)
        assert "BatchNorm1d into Linear" in import_notes(net)[0]
        assert net.meta["import"]["max_abs_diff_vs_original"] <= 1e-5
    state = module.state_dict()
    torch.save(state, tmp_path / "sd.pt")
    acts = ",".join("relu" if isinstance(m, nn.ReLU) else "tanh" if isinstance(m, nn.Tanh)
                    else "sigmoid" if isinstance(m, nn.Sigmoid) else "identity"
                    for m in _activation_per_linear(module))
    placement = "after-activation" if name == "bn_after_act" else "before-activation"
    net = load_network(tmp_path / "sd.pt", activations=acts, batchnorm=placement)
    np.testing.assert_allclose(net.forward(x), _ref(module, x), atol=2e-6)


def _activation_per_linear(module):
    mods = list(module)
    out = []
    for i, m in enumerate(mods):
        if isinstance(m, nn.Linear):
            nxt = [n for n in mods[i + 1:] if not isinstance(n, nn.BatchNorm1d)]
            out.append(nxt[0] if nxt and not isinstance(nxt[0], nn.Linear) else None)
    return out


def test_nested_modules_with_dropout_identity_flatten(tmp_path):
    module = with_running_stats(EncoderDecoder(), 10)
    torch.save(module, tmp_path / "ed.pt")
    net = load_network(tmp_path / "ed.pt", trust_code=True)
    np.testing.assert_allclose(net.forward(_x(10)), _ref(module, _x(10)), atol=2e-6)
    assert net.latent == 2 and net.activations == ["leaky_relu", "tanh", "relu", "sigmoid"]
    assert import_notes(net) == ["folded 2 BatchNorm1d into Linear"]  # latent from .encoder


def test_mlperf_tiny_autoencoder_from_state_dict_torchscript_and_onnx(tmp_path):
    module = with_running_stats(mlperf_tiny_ae(), 640)
    x = _x(640, n=16)
    ref = _ref(module, x)
    torch.save(module.state_dict(), tmp_path / "sd.pt")
    torch.jit.save(torch.jit.trace(module, torch.from_numpy(x)), str(tmp_path / "traced.pt"))
    torch.onnx.export(module, torch.from_numpy(x[:1]), str(tmp_path / "ae.onnx"), dynamo=False,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}})
    nets = {
        "state_dict": load_network(tmp_path / "sd.pt", activations="relu," * 9 + "identity"),
        "torchscript": load_network(tmp_path / "traced.pt", trust_code=True),
        "onnx": load_network(tmp_path / "ae.onnx"),
    }
    for how, net in nets.items():
        assert net.describe().startswith("autoencoder 640-128-128-128-128-8-128"), how
        assert net.latent == 5, how  # the narrowest layer, and the user is told so
        notes = import_notes(net)
        bn_type = "BatchNormalization" if how == "onnx" else "BatchNorm1d"  # the source's name
        assert notes[0] == f"folded 9 {bn_type} into Linear", (how, notes)
        assert any("latent layer 5 (8 units, the narrowest)" in n for n in notes), how
        scale = max(1.0, float(np.abs(ref).max()))
        assert np.abs(net.forward(x) - ref).max() <= 1e-5 * scale, how


def _sklearn_mlp_onnx(path, with_bn=False):
    """A scikit-learn MLPRegressor autoencoder written as the MatMul + Add + Relu graph that
    converters emit (optionally with an inference BatchNormalization)."""
    from sklearn.neural_network import MLPRegressor

    x = np.random.default_rng(0).random((200, 6))
    mlp = MLPRegressor(hidden_layer_sizes=(4, 2, 4), activation="relu", max_iter=50,
                       random_state=0).fit(x, x)
    nodes, inits, cur = [], [], "X"
    for k, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{k}"),
                  numpy_helper.from_array(b.astype(np.float32), f"B{k}")]
        nodes += [helper.make_node("MatMul", [cur, f"W{k}"], [f"mm{k}"], name=f"mm{k}"),
                  helper.make_node("Add", [f"mm{k}", f"B{k}"], [f"lin{k}"], name=f"add{k}")]
        cur = f"lin{k}"
        if k < len(mlp.coefs_) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"h{k}"], name=f"relu{k}"))
            cur = f"h{k}"
        if with_bn and k == 0:
            n = w.shape[1]
            for nm, v in (("g", 1.5), ("be", 0.1), ("mu", 0.2), ("var", 0.7)):
                inits.append(numpy_helper.from_array(np.full(n, v, np.float32), f"{nm}{k}"))
            nodes.append(helper.make_node("BatchNormalization", [cur, f"g{k}", f"be{k}",
                                          f"mu{k}", f"var{k}"], [f"bn{k}"], name="bn0"))
            cur = f"bn{k}"
    nodes.append(helper.make_node("Identity", [cur], ["Y"], name="out"))
    graph = helper.make_graph(nodes, "sk", [helper.make_tensor_value_info(
        "X", TensorProto.FLOAT, ["n", 6])], [helper.make_tensor_value_info(
            "Y", TensorProto.FLOAT, ["n", 6])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return mlp


@pytest.mark.parametrize("with_bn", [False, True])
def test_sklearn_mlp_autoencoder_as_onnx(tmp_path, with_bn):
    mlp = _sklearn_mlp_onnx(tmp_path / "sk.onnx", with_bn)
    net = load_network(tmp_path / "sk.onnx")
    assert net.describe() == "autoencoder 6-4-2-4-6 [relu,relu,relu,identity], latent layer 2"
    x = _x(6)
    if not with_bn:
        np.testing.assert_allclose(net.forward(x), mlp.predict(x), atol=1e-5)
    assert net.meta["import"]["max_abs_diff_vs_original"] <= 1e-5  # against ONNX Runtime


def _graph_with(path, node, extra_inits=()):
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "W")
    nodes = [helper.make_node("Gemm", ["X", "W"], ["h"], name="fc", transB=1), node]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(
        "X", TensorProto.FLOAT, ["n", 4])], [helper.make_tensor_value_info(
            node.output[0], TensorProto.FLOAT, None)], [w, *extra_inits])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_refusals_name_the_node_or_module_and_what_to_do(tmp_path):
    _graph_with(tmp_path / "softmax.onnx", helper.make_node("Softmax", ["h"], ["y"],
                                                            name="probs"))
    with pytest.raises(ModelError, match="unsupported node 'probs' \\(Softmax\\).*simplify"):
        load_network(tmp_path / "softmax.onnx")
    late_bn = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4))
    torch.save(with_running_stats(late_bn, 4), tmp_path / "late.pt")
    with pytest.raises(ModelError, match="'2' \\(BatchNorm1d\\) comes after the last activation"):
        load_network(tmp_path / "late.pt", trust_code=True)
    no_stats = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4, track_running_stats=False))
    torch.save(no_stats, tmp_path / "nostats.pt")
    with pytest.raises(ModelError, match="keeps no running statistics.*retrain"):
        load_network(tmp_path / "nostats.pt", trust_code=True)
    conv = {"0.weight": torch.ones(4, 1, 3), "1.weight": torch.ones(4, 4)}
    torch.save(conv, tmp_path / "conv.pt")
    with pytest.raises(ModelError, match="'0.weight' has shape \\(4, 1, 3\\).*neither a Linear"):
        load_network(tmp_path / "conv.pt", activations="relu,identity")


def test_compress_and_info_say_what_was_folded(tmp_path, npy_data):
    module = with_running_stats(nn.Sequential(
        nn.Linear(12, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3), nn.BatchNorm1d(3),
        nn.ReLU(), nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 12), nn.Sigmoid()), 12)
    torch.save(module.state_dict(), tmp_path / "bn.pt")
    runner = CliRunner()
    args = ["--activations", "relu,relu,relu,sigmoid"]
    result = runner.invoke(main, ["compress", str(tmp_path / "bn.pt"), "--data", npy_data,
                                  "--sparsity", "0.5", "--method", "magnitude", "--export",
                                  "npz", "-q", "-o", str(tmp_path / "c"), *args])
    assert result.exit_code == 0, result.output
    assert "model: folded 2 BatchNorm1d into Linear" in result.output
    assert "latent layer 2 (3 units, the narrowest) chosen" in result.output
    rep = json.loads((tmp_path / "c" / "report.json").read_text())
    assert rep["import"]["notes"][0] == "folded 2 BatchNorm1d into Linear"
    info = runner.invoke(main, ["info", str(tmp_path / "c" / "pruned.pt")])
    assert "model: folded 2 BatchNorm1d into Linear" in info.output
