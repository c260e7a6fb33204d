"""ONNX exporter: parity with the NumPy and PyTorch references, structure, checker, failures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgeprune.exporters.contract import ExportError
from edgeprune.exporters.onnx import export_onnx, onnxruntime_available, run_onnx
from edgeprune.network import Layer, Network
from edgeprune.prune import cascade_dead_units, compact_network
from tests.conftest import make_network
from tests.export_cases import (
    ACTIVATION_SETS,
    batch,
    max_diff,
    pruned_network,
    pruned_torch_sequential,
)

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", list(ACTIVATION_SETS))
def test_parity_structure_and_checker(tmp_path, name, sparse):
    pytest.importorskip("onnxruntime")
    from edgeprune.torch_network import torch_forward

    pruned, small = pruned_network(ACTIVATION_SETS[name])
    x = batch(64, small.input_dim)
    path = export_onnx(small, tmp_path / "m.onnx", sparse_initializers=sparse, verify_inputs=x,
                       verify_reference=torch_forward(pruned, x))
    for n in (1, 64):
        got = run_onnx(path, x[:n])
        assert got.shape == (n, small.output_dim)
        assert max_diff(got, small.forward(x[:n])) <= 1e-5
        assert max_diff(got, torch_forward(pruned, x[:n])) <= 1e-5
        dead = np.setdiff1d(np.arange(small.output_dim), small.output_index)
        assert np.array_equal(got[:, dead], np.broadcast_to(small.output_const[dead],
                                                            (n, dead.size)))  # bit-exact

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == small.input_dim
    ops = [node.op_type for node in model.graph.node]
    assert ops[0] == "Gather" and ops.count("Gemm") == len(small.layers)
    assert ops[-3:] == ["Pad", "Gather", "Add"]  # constant outputs reassembled
    for act, op in (("relu", "Relu"), ("leaky_relu", "LeakyRelu"), ("sigmoid", "Sigmoid"),
                    ("tanh", "Tanh")):
        assert ops.count(op) == sum(layer.activation == act for layer in small.layers)
    alphas = [a.f for node in model.graph.node if node.op_type == "LeakyRelu"
              for a in node.attribute]
    assert all(abs(a - 0.2) < 1e-7 for a in alphas)
    initializers = {init.name for init in model.graph.initializer}
    constants = [node for node in model.graph.node if node.op_type == "Constant"]
    if sparse:
        assert len(constants) == len(small.layers) and "layer1.weight" not in initializers
        values = constants[0].attribute[0].sparse_tensor
        assert values.indices.data_type == onnx.TensorProto.INT64
        assert values.values.dims[0] == small.layers[0].nnz
    else:
        assert not constants and "layer1.weight" in initializers


def test_torch_sequential_model(tmp_path):
    pytest.importorskip("onnxruntime")
    small, x, ref = pruned_torch_sequential()
    for sparse in (False, True):
        path = export_onnx(small, tmp_path / f"seq{sparse}.onnx", sparse_initializers=sparse,
                           verify_inputs=x, verify_reference=ref)
        assert max_diff(run_onnx(path, x[:1]), ref[:1]) <= 1e-5
        assert max_diff(run_onnx(path, x), ref) <= 1e-5


def test_sparse_initializers_are_smaller_at_90_percent(tmp_path):
    net = make_network(["relu", "relu", "sigmoid"], [128, 64, 32, 128], seed=2)
    for layer in net.layers:
        layer.mask = np.abs(layer.weight) >= np.quantile(np.abs(layer.weight), 0.9)
    small = compact_network(cascade_dead_units(net).network)
    verify = onnxruntime_available()
    dense = export_onnx(small, tmp_path / "dense.onnx", verify=verify)
    sparse = export_onnx(small, tmp_path / "sparse.onnx", sparse_initializers=True,
                         verify=verify)
    assert sparse.stat().st_size < 0.5 * dense.stat().st_size


def test_wrong_reference_raises_and_writes_nothing(tmp_path):
    pytest.importorskip("onnxruntime")
    _, small = pruned_network(ACTIVATION_SETS["mixed"])
    x = batch(8, small.input_dim)
    wrong = small.forward(x)
    wrong[3, 4] += 1e-3
    target = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match="differs from the reference"):
        export_onnx(small, target, verify_inputs=x, verify_reference=wrong)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"previous")  # a failed export leaves an existing file alone
    with pytest.raises(ExportError):
        export_onnx(small, target, sparse_initializers=True, verify_inputs=x,
                    verify_reference=wrong)
    assert target.read_bytes() == b"previous" and len(list(tmp_path.iterdir())) == 1


def test_unsupported_activation_raises_before_writing(tmp_path, monkeypatch):
    _, small = pruned_network(ACTIVATION_SETS["relu"])
    small.layers[1].activation = "gelu"
    import edgeprune.exporters.onnx as module

    def no_build(*args, **kwargs):
        raise AssertionError("the model must not be built")

    monkeypatch.setattr(module, "build_onnx_model", no_build)
    with pytest.raises(ExportError) as info:
        export_onnx(small, tmp_path / "m.onnx", verify=False)
    message = str(info.value)
    assert "\n" not in message and "layer 2" in message and "'gelu'" in message
    assert "ONNX" in message
    assert list(tmp_path.iterdir()) == []


def test_all_constant_network(tmp_path):
    pytest.importorskip("onnxruntime")
    from edgeprune.torch_network import torch_forward

    net = make_network(["relu", "tanh", "sigmoid"], [9, 5, 4, 7], seed=4)
    net.layers[1].mask[:] = False  # nothing reaches the last layers: every output is constant
    pruned = cascade_dead_units(net).network
    small = compact_network(pruned)
    assert small.layers == []
    x = batch(64, 9)
    path = export_onnx(small, tmp_path / "const.onnx", verify_inputs=x,
                       verify_reference=torch_forward(net, x))
    onnx.checker.check_model(onnx.load(path), full_check=True)
    for n in (1, 64):
        got = run_onnx(path, x[:n])
        assert got.shape == (n, 7)
        assert max_diff(got, np.broadcast_to(small.output_const, (n, 7))) == 0.0
        assert max_diff(got, torch_forward(net, x[:n])) <= 1e-5
    assert onnx.load(path).graph.input[0].name == "input"


def test_metadata_props(tmp_path):
    net = Network([Layer(np.eye(3, dtype=np.float32), np.zeros(3, np.float32), "relu")])
    small = compact_network(net)
    small.meta["provenance"] = {"source_fingerprint": net.fingerprint()}
    path = export_onnx(small, tmp_path / "m.onnx", metadata={"dataset": "digits", "n": 3},
                       verify=onnxruntime_available())
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    from edgeprune import __version__

    assert props["edgeprune_version"] == __version__
    assert float(props["eta"]) == pytest.approx(0.0)
    assert props["source_fingerprint"] == net.fingerprint()
    assert props["dataset"] == "digits" and props["n"] == "3"
    ops = [node.op_type for node in onnx.load(path).graph.node]
    assert ops == ["Gemm", "Relu"]  # every input used and every output live: no gather/pad


def test_bad_opset_and_shapes(tmp_path):
    _, small = pruned_network(ACTIVATION_SETS["tanh"])
    with pytest.raises(ExportError, match="opset 13"):
        export_onnx(small, tmp_path / "m.onnx", opset=13, verify=False)
    with pytest.raises(ExportError, match="verify_inputs must have shape"):
        export_onnx(small, tmp_path / "m.onnx", verify_inputs=np.zeros((2, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_modules_stay_import_light():
    code = ("import sys, edgeprune.exporters, edgeprune.exporters.onnx, "
            "edgeprune.exporters.tflite; "
            "bad = [m for m in ('onnx', 'onnxruntime', 'tflite', 'flatbuffers', 'torch', "
            "'ai_edge_litert') if m in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)
