"""compress end to end (Python API): runtime == masked PyTorch for every activation, eta on disk."""

import json

import numpy as np
import pytest

from edgeprune import runtime
from edgeprune.artifacts import format_available
from edgeprune.checkpoint import load_network
from edgeprune.compress import CompressOptions, compress
from edgeprune.data import load_dataset
from edgeprune.runtime.activations import ACTIVATIONS
from edgeprune.torch_network import torch_forward
from tests.factories import make_network

ACTS = list(ACTIVATIONS)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("method", ["shap-sae", "magnitude"])
def test_bundle_matches_masked_torch(tmp_path, npy_data, act, method):
    acts = [act, act, "relu" if act == "identity" else act, act]
    net = make_network(acts, [12, 8, 4, 8, 12], latent=2, weak_inputs=(1, 7),
                       weak_outputs=(2, 9), seed=ACTS.index(act))
    ds = load_dataset(npy_data)
    opts = CompressOptions(sparsity=0.6, method=method, samples=32, quiet=True)
    res = compress(net, ds, tmp_path / "out", opts)
    rep = json.loads((tmp_path / "out" / "report.json").read_text())
    assert 1 in rep["unused_inputs"] and 7 in rep["unused_inputs"]
    assert "2" in rep["constant_outputs"] and "9" in rep["constant_outputs"]
    model = runtime.load(tmp_path / "out" / "model.npz")
    pruned = load_network(tmp_path / "out" / "pruned.pt")
    for x in (ds.x_test[:1], ds.x_test[:64]):
        ref = torch_forward(pruned, x)
        for kernel in ("dense", "csr", "auto"):
            got = runtime.load(tmp_path / "out" / "model.npz", kernel=kernel)(x)
            assert np.max(np.abs(got - ref)) <= 1e-5
    # single 1-D sample
    assert np.max(np.abs(model(ds.x_test[0]) - torch_forward(pruned, ds.x_test[:1])[0])) <= 1e-5
    # eta in the report equals the zero count of the bundle
    assert rep["sparsity"] == pytest.approx(1 - model.nnz / net.n_links, abs=1e-12)
    assert res.report["sparsity"] == pytest.approx(0.6, abs=0.05)
    # encode/decode agree with PyTorch's latent code
    z = model.encode(ds.x_test[:8])
    np.testing.assert_allclose(z, pruned.encode(ds.x_test[:8]), atol=1e-5)


def test_importance_level_and_reports(tmp_path, npy_data):
    net = make_network(["relu", "relu", "relu", "sigmoid"], [12, 8, 4, 8, 12], latent=2)
    ds = load_dataset(npy_data)
    res = compress(net, ds, tmp_path / "o", CompressOptions(importance_level=0.8, samples=32,
                                                            quiet=True))
    rep = res.report
    assert rep["importance_level"] == 0.8
    assert 0 < rep["sparsity"] < 1
    assert {"before", "after"} <= set(rep["metrics"])
    md = (tmp_path / "o" / "report.md").read_text()
    assert "| layer |" in md and "η" in md
    extra = [f"model.{f}" for f in ("onnx", "tflite") if format_available(f)[0]]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted([
        "manifest.json", "model.npz", "pruned.pt", "report.json", "report.md", *extra])
    for fmt, art in rep["artifacts"].items():
        assert art["max_abs_diff_vs_pytorch"] <= 1e-5, fmt


def test_finetune_keeps_pruned_weights_zero(tmp_path, npy_data):
    net = make_network(["relu", "relu", "relu", "sigmoid"], [12, 8, 4, 8, 12], latent=2)
    ds = load_dataset(npy_data)
    res = compress(net, ds, tmp_path / "o", CompressOptions(sparsity=0.7, method="magnitude",
                                                            finetune_epochs=3, quiet=True))
    pruned = load_network(tmp_path / "o" / "pruned.pt")
    for layer in pruned.layers:
        assert np.all(layer.weight[~layer.mask] == 0.0)
    assert res.report["metrics"]["after"]["test_mse"] <= res.report["metrics"]["before"][
        "test_mse"] * 10
    assert len(res.report["finetune_history"]) == 3


@pytest.mark.slow
def test_make_demo_runs_end_to_end(tmp_path, capsys):
    """`make demo`'s job: train, compress at m = 0.8 with every artifact, run the bundle."""
    from edgeprune.demo import main as demo_main

    assert demo_main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "achieved sparsity eta" in out and "max |runtime - PyTorch|" in out
    written = {p.name for p in (tmp_path / "compressed").iterdir()}
    assert {"model.npz", "pruned.pt", "report.json", "report.md"} <= written
    assert f"artifacts in {tmp_path}/compressed: " + " ".join(sorted(written)) in out


def test_compress_report_is_typed_and_renders_itself(tmp_path, small_model, npy_data):
    from edgeprune.checkpoint import load_network
    from edgeprune.compress import CompressOptions, compress
    from edgeprune.data import load_dataset
    from edgeprune.report import CompressReport

    res = compress(load_network(small_model), load_dataset(npy_data), tmp_path / "o",
                   CompressOptions(sparsity=0.5, method="magnitude", export="npz", quiet=True))
    rep = res.report
    assert isinstance(rep, CompressReport) and isinstance(rep.links_kept, int)
    assert rep.to_dict() == json.loads((tmp_path / "o" / "report.json").read_text()) | {
        "constant_outputs": rep.constant_outputs}  # JSON turns int keys into strings
    assert rep["sparsity"] == rep.sparsity and "neuron_walk" not in rep
    assert str(rep).startswith("layer") and "links kept" in str(rep)
    assert rep.markdown() == (tmp_path / "o" / "report.md").read_text()
