"""ShapNets end to end: training with explanation regularisers, checkpoints (round trip, old
files, hostile fields) and ``edgeprune train``/``explain`` through click's CliRunner."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from edgeprune.checkpoint import load_network, save_checkpoint
from edgeprune.cli import main
from edgeprune.network import ModelError
from edgeprune.shapnet import DeepShapNet, ShallowShapNet, covering_active_sets
from edgeprune.shapnet.checkpoint import load_shapnet, save_shapnet, shapnet_state
from edgeprune.shapnet.training import Regularisation, train_shapnet
from tests.factories import make_network
from tests.test_cli import _fails, _ok


@pytest.fixture
def runner():
    return CliRunner()


def _deep(seed=0):
    torch.manual_seed(seed)
    return DeepShapNet(6, 2, np.linspace(0, 1, 6), channels=3, hidden=[5])


def test_checkpoint_round_trip_both_kinds(tmp_path):
    x = torch.rand(9, 6)
    torch.manual_seed(1)
    shallow = ShallowShapNet(6, 1, covering_active_sets(6, 3, 4), np.full(6, 0.5), channels=2,
                             hidden=[4, 3], activation="tanh")
    for model, task in ((_deep(), "classification"), (shallow, "regression")):
        save_shapnet(model, tmp_path / "m.pt", task, {"trained_on": "x"})
        loaded, got_task, info = load_shapnet(tmp_path / "m.pt")
        assert type(loaded) is type(model) and got_task == task and info["trained_on"] == "x"
        with torch.no_grad():
            for a, b in zip(model.eval()(x), loaded(x)):
                assert torch.equal(a, b)
    with pytest.raises(ModelError, match="is a ShapNet .shapnet-shallow.*explain"):
        load_network(tmp_path / "m.pt")


def test_old_mlp_checkpoints_still_load(tmp_path):
    net = make_network(["relu", "sigmoid"], [6, 3, 6], latent=1)
    save_checkpoint(net, tmp_path / "ae.pt")
    assert load_network(tmp_path / "ae.pt").in_dim == 6


@pytest.mark.parametrize("edit,needle", [
    (lambda o: o.update(version=3), "'version'"),
    (lambda o: o["meta"]["shapnet"].update(task="ranking"), "meta.shapnet.task"),
    (lambda o: o["meta"]["shapnet"]["config"].update(k=9), "meta.shapnet.config.k"),
    (lambda o: o["meta"]["shapnet"]["config"].update(channels=10 ** 9), "config.channels"),
    (lambda o: o["meta"]["shapnet"]["config"].update(channels=4096, hidden=[4096] * 8),
     "declares a larger model than the"),
    (lambda o: o["meta"]["shapnet"]["config"].update(hidden="32"), "config.hidden"),
    (lambda o: o["meta"]["shapnet"]["config"].update(activation="exec"), "config.activation"),
    (lambda o: o["meta"]["shapnet"]["config"].update(n_transforms=True), "n_transforms"),
    (lambda o: o["state_dict"].pop("bias"), "declares a larger model than the"),
    (lambda o: o["state_dict"].update(bias=[0.0, 0.0], extra=torch.zeros(2)),
     "state_dict['bias'] must be a tensor"),
    (lambda o: o["state_dict"].update(bias=torch.zeros(7)), "state_dict['bias'] is (7,)"),
    (lambda o: o["state_dict"].update(extra=torch.zeros(1)), "unexpected entry 'extra'"),
    (lambda o: o["state_dict"]["bias"].fill_(float("nan")), "non-finite"),
    (lambda o: o["state_dict"]["transforms.0.0.active"].copy_(torch.tensor([0, 3])),
     "differs from the active set"),
])
def test_hostile_checkpoint_fields_are_one_line_errors(tmp_path, edit, needle):
    obj = shapnet_state(_deep(), "classification")
    edit(obj)
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match=None) as info:
        load_shapnet(tmp_path / "bad.pt")
    msg = str(info.value)
    assert needle in msg and "\n" not in msg, msg


def test_shallow_active_sets_are_validated_from_the_file(tmp_path):
    torch.manual_seed(0)
    model = ShallowShapNet(4, 1, [[0, 1], [2, 3]])
    obj = shapnet_state(model, "regression")
    obj["meta"]["shapnet"]["config"]["active_sets"] = [[0, 1], [2, 9]]
    torch.save(obj, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match="active_sets"):
        load_shapnet(tmp_path / "bad.pt")
    (tmp_path / "text.pt").write_text("not a model")
    with pytest.raises(ModelError, match="not a PyTorch model file"):
        load_shapnet(tmp_path / "text.pt")


def test_l1_regularisation_makes_attributions_sparser():
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.5, 0.5, size=(256, 6)).astype(np.float32)
    t = (x[:, :2].sum(axis=1, keepdims=True) + 0.1 * x[:, 2:].sum(axis=1, keepdims=True))
    mags = []
    for reg in (Regularisation(), Regularisation(l1=0.3, l1_layers="all")):
        model = DeepShapNet(6, 1, np.zeros(6), channels=3, hidden=[8])
        train_shapnet(model, x, t, task="regression", reg=reg, epochs=15, lr=3e-3,
                      batch_size=32, quiet=True)
        with torch.no_grad():
            mags.append(model(torch.from_numpy(x))[1].abs()[:, 2:].mean().item())
    assert mags[1] < 0.5 * mags[0]


def test_cli_train_and_explain_shapnets(runner, tmp_path):
    model = tmp_path / "deep.pt"
    out = _ok(runner.invoke(main, [
        "train", "--data", "breast-cancer", "--task", "shapnet-deep", "--epochs", "1",
        "--channels", "3", "--hidden", "8", "--explanation-l1", "0.01", "--l1-layers", "all",
        "--explanation-smooth", "0.01", "-q", "-o", str(model)]))
    assert "shapnet-deep" in out and "test_accuracy=" in out
    loaded, task, info = load_shapnet(model)
    assert task == "classification" and info["regularisation"]["l1_layers"] == "all"
    out = _ok(runner.invoke(main, ["explain", str(model), "--samples", "40", "-q",
                                   "-o", str(tmp_path / "ex")]))
    assert "local accuracy within" in out
    doc = json.loads((tmp_path / "ex" / "explain.json").read_text())
    assert doc["samples"] == 40 and doc["input_dim"] == 30
    assert doc["local_accuracy_max_error"] < 1e-4
    phi = np.load(tmp_path / "ex" / "shapley_values.npy")
    xs = np.load(tmp_path / "ex" / "explained_inputs.npy")
    with torch.no_grad():
        pred, expect = loaded(torch.from_numpy(xs))
    assert phi.shape == (40, 30, 2) and np.allclose(phi, expect.numpy(), atol=1e-6)
    for png in ("input_importance.png", "shapley_values.png", "layer_importance.png"):
        assert Image.open(tmp_path / "ex" / png).size == (640, 480)

    shallow = tmp_path / "shallow.pt"
    out = _ok(runner.invoke(main, [
        "train", "--data", "synthetic16", "--task", "shapnet-shallow", "--epochs", "1",
        "--active-size", "3", "--modules", "8", "-q", "-o", str(shallow)]))
    assert "regression" in out and "test_mse=" in out
    _ok(runner.invoke(main, ["explain", str(shallow), "--samples", "10", "-q",
                             "-o", str(tmp_path / "ex2")]))
    assert not (tmp_path / "ex2" / "layer_importance.png").exists()


def test_cli_shapnet_errors(runner, tmp_path):
    _fails(runner.invoke(main, ["train", "--data", "digits", "--explanation-l1", "0.1",
                                "-o", str(tmp_path / "m.pt")]), "--explanation-l1", "shapnet")
    _fails(runner.invoke(main, ["train", "--data", "synthetic6", "--task", "shapnet-deep",
                                "--target", "regression", "-o", str(tmp_path / "m.pt")]),
           "regression targets")
    _fails(runner.invoke(main, ["train", "--data", "digits", "--task", "shapnet-deep",
                                "--explanation-l1", "-1", "-o", str(tmp_path / "m.pt")]),
           "--explanation-l1 -1")
    _fails(runner.invoke(main, ["train", "--data", "synthetic6", "--task", "shapnet-shallow",
                                "--modules", "1", "-o", str(tmp_path / "m.pt")]), "--modules 1")
    assert not (tmp_path / "m.pt").exists()
    model = tmp_path / "d.pt"
    save_shapnet(_deep(), model, "classification", {"trained_on": "synthetic6"})
    _fails(runner.invoke(main, ["explain", str(model), "--scores", str(model),
                                "-o", str(tmp_path / "ex")]), "--scores does not apply")
    _fails(runner.invoke(main, ["explain", str(model), "--data", "digits",
                                "-o", str(tmp_path / "ex")]), "reads 6 inputs")
    _fails(runner.invoke(main, ["info", str(model)]), "is a ShapNet")
