"""compress --reconstruct: layer-wise least-squares refit of the kept weights after pruning."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune.cli import main
from edgeprune.compress import CompressOptions, compress
from edgeprune.data import load_dataset
from edgeprune.errors import EdgepruneError
from edgeprune.network import Layer, Network
from edgeprune.prune import baseline_scores, is_fixed_point, prune_network
from edgeprune.prune.compensate import compensate_biases
from edgeprune.prune.reconstruct import reconstruct_weights
from tests.factories import make_network, pre_activations

ACTS = ["relu", "relu", "relu", "sigmoid"]
DIMS = [12, 8, 4, 8, 12]


def _unchanged_masks(a: Network, b: Network) -> None:
    for la, lb in zip(a.layers, b.layers, strict=True):
        np.testing.assert_array_equal(la.mask, lb.mask)
        assert not lb.masked_weight[~lb.mask].any()  # pruned links stay exactly zero


def test_exact_recovery_when_the_kept_links_can_reproduce_the_target():
    """Two layers whose targets use only links the mask keeps: the refit finds the original
    weights and biases from scrambled starting values, layer after layer."""
    rng = np.random.default_rng(0)
    masks = [rng.uniform(size=(6, 10)) < 0.5, rng.uniform(size=(4, 6)) < 0.6]
    masks[0][:, 0] = True  # every unit keeps a link
    masks[1][:, 0] = True
    weights = [np.where(m, rng.normal(size=m.shape), 0.0) for m in masks]
    biases = [rng.normal(size=6), rng.normal(size=4)]
    original = Network([Layer(weights[0], biases[0], "leaky_relu"),
                        Layer(weights[1], biases[1], "identity")])
    scrambled = Network([Layer(w + rng.normal(size=w.shape), 0 * b, act, mask=m)
                         for w, b, m, act in zip(weights, biases, masks,
                                                 ("leaky_relu", "identity"), strict=True)])
    x = rng.normal(size=(300, 10))
    got, record = reconstruct_weights(original, scrambled, x, ridge=0.0)
    for lo, lg in zip(original.layers, got.layers, strict=True):
        np.testing.assert_allclose(lg.masked_weight, lo.masked_weight, atol=1e-5)
        np.testing.assert_allclose(lg.bias, lo.bias, atol=1e-5)
    assert all(lay["error_reconstructed"] < 1e-9 < lay["error_pruned"]
               for lay in record["layers"])
    _unchanged_masks(scrambled, got)
    # not in place
    np.testing.assert_array_equal(scrambled.layers[0].bias, np.zeros(6, dtype=np.float32))


def test_one_layer_is_the_least_squares_solution_of_its_kept_inputs():
    """With a ridge the refit is exactly the regularised normal equations of each row."""
    rng = np.random.default_rng(1)
    w, b = rng.normal(size=(3, 7)), rng.normal(size=3)
    x = rng.uniform(size=(80, 7))
    mask = rng.uniform(size=(3, 7)) < 0.5
    mask[:, 2] = True
    pruned = Network([Layer(w, b, "identity", mask=mask)])
    ridge = 0.1
    got, _ = reconstruct_weights(Network([Layer(w, b, "identity")]), pruned, x, ridge=ridge)
    design = np.hstack([x, np.ones((80, 1))])
    gram = design.T @ design / 80
    damping = ridge * np.mean(np.diag(gram)[:-1])
    z = x @ w.T + b
    for i in range(3):
        s = [*np.flatnonzero(mask[i]), 7]
        reg = damping * np.diag([1.0] * (len(s) - 1) + [0.0])
        w0 = np.append(pruned.layers[0].weight[i, mask[i]], pruned.layers[0].bias[i])
        want = np.linalg.solve(gram[np.ix_(s, s)] + reg, design[:, s].T @ z[:, i] / 80
                               + reg @ w0)
        np.testing.assert_allclose(got.layers[0].weight[i, mask[i]], want[:-1], atol=1e-5)
        np.testing.assert_allclose(got.layers[0].bias[i], want[-1], atol=1e-5)


def test_refit_beats_pruned_and_compensated_keeps_masks_and_cascade():
    net = make_network(ACTS, DIMS, latent=2, seed=3)
    x = np.random.default_rng(1).uniform(size=(300, DIMS[0])).astype(np.float32)
    res = prune_network(net, baseline_scores("magnitude", net), sparsity=0.6)
    got, record = reconstruct_weights(net, res.network, x)
    _unchanged_masks(res.network, got)
    assert is_fixed_point(got)  # dead units stay dead, live ones live: the cascade holds
    for before, after in zip(res.network.layers, got.layers, strict=True):
        dead = ~after.mask.any(axis=1)
        np.testing.assert_array_equal(after.bias[dead], before.bias[dead])
    zo = pre_activations(net, x)
    comp = compensate_biases(net, res.network, x)
    for k, lay in enumerate(record["layers"]):
        live = got.layers[k].mask.any(axis=1)
        err_rec = ((pre_activations(got, x)[k] - zo[k])[:, live] ** 2).mean()
        err_comp = ((pre_activations(comp, x)[k] - zo[k])[:, live] ** 2).mean()
        assert err_rec <= err_comp + 1e-9, f"layer {k + 1}"
        assert lay["error_reconstructed"] <= lay["error_pruned"] + 1e-9
    # the first layer is a plain least-squares problem: its error can only go down
    assert record["layers"][0]["error_reconstructed"] < record["layers"][0]["error_pruned"]
    # nothing pruned: the refit is the network itself
    same, _ = reconstruct_weights(net, net, x)
    for a, b in zip(same.layers, net.layers, strict=True):
        np.testing.assert_allclose(a.weight, b.weight, atol=1e-4)
    with pytest.raises(ValueError, match="shapes"):
        reconstruct_weights(net, make_network(ACTS, [12, 6, 4, 8, 12], latent=2), x)
    with pytest.raises(ValueError, match="ridge"):
        reconstruct_weights(net, res.network, x, ridge=-1.0)


def test_an_input_the_data_never_lights_keeps_its_weight():
    """The ridge pulls towards the pruned weights, so a link whose input is always 0 on the
    calibration data keeps its value (it is not zeroed, and the mask is unchanged)."""
    rng = np.random.default_rng(2)
    w, b = rng.normal(size=(2, 5)), rng.normal(size=2)
    x = rng.uniform(size=(50, 5))
    x[:, 4] = 0.0
    mask = np.ones((2, 5), dtype=bool)
    mask[:, 1] = False
    got, _ = reconstruct_weights(Network([Layer(w, b, "relu")]),
                                 Network([Layer(w, b, "relu", mask=mask)]), x)
    np.testing.assert_allclose(got.layers[0].weight[:, 4], w[:, 4], rtol=1e-6)


def test_compress_reconstruct_api_and_report(tmp_path, small_model, npy_data):
    from edgeprune.checkpoint import load_network

    net = load_network(small_model)
    ds = load_dataset(npy_data)
    kw = {"sparsity": 0.6, "method": "magnitude", "export": "npz", "quiet": True}
    plain = compress(net, ds, tmp_path / "p", CompressOptions(**kw))
    rec = compress(net, ds, tmp_path / "r", CompressOptions(reconstruct=True,
                                                            reconstruct_ridge=0.01, **kw))
    _unchanged_masks(plain.network, rec.network)
    want, _ = reconstruct_weights(net.without_zero_links(), plain.network, ds.x_train,
                                  ridge=0.01)
    for a, b in zip(want.layers, rec.network.layers, strict=True):
        np.testing.assert_allclose(b.masked_weight, a.masked_weight, rtol=1e-5, atol=1e-6)
    # closer to the unpruned model on unseen data (an untrained model: not to the data)
    dense_out = net.forward(ds.x_test)
    assert (np.mean((rec.network.forward(ds.x_test) - dense_out) ** 2)
            < np.mean((plain.network.forward(ds.x_test) - dense_out) ** 2))
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["reconstruction"]["ridge"] == 0.01
    assert len(report["reconstruction"]["layers"]) == len(net.layers)
    assert "reconstruction" not in json.loads((tmp_path / "p" / "report.json").read_text())
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Reconstruction (--reconstruct)" in md and "| 1 |" in md
    assert "reconstruct: kept weights refit" in str(rec.report)


def test_cli_reconstruct_with_steps_and_target(tmp_path, small_model, npy_data):
    runner = CliRunner()
    base = ["compress", str(small_model), "--data", npy_data, "--samples", "32", "--export",
            "npz", "-q", "--reconstruct"]
    r = runner.invoke(main, [*base, "--sparsity", "0.7", "--steps", "2", "--finetune-epochs",
                             "2", "-o", str(tmp_path / "g")])
    assert r.exit_code == 0, r.output
    assert "reconstruct: kept weights refit" in r.output
    rep = json.loads((tmp_path / "g" / "report.json").read_text())
    assert len(rep["steps"]) == 2 and rep["reconstruction"]["ridge"] == 1e-3
    r = runner.invoke(main, [*base, "--method", "lap", "--target-macs", "60",
                             "--reconstruct-ridge", "0", "-o", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "t" / "report.json").read_text())
    assert rep["scoring"]["target"]["value"] <= 60 and rep["reconstruction"]["ridge"] == 0


@pytest.mark.parametrize(("extra", "message"), [
    (["--reconstruct-ridge", "0.1", "--method", "magnitude"], "add --reconstruct"),
    (["--reconstruct-ridge", "0.1", "--no-reconstruct"], "add --reconstruct"),
    (["--reconstruct", "--compensate"], "drop --compensate"),
    (["--reconstruct-ridge", "-1", "--reconstruct"], "--reconstruct-ridge"),
])
def test_cli_refuses_bad_reconstruct_options(tmp_path, small_model, npy_data, extra, message):
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["compress", str(small_model), "--data", npy_data,
                                  "--sparsity", "0.5", "-q", "-o", str(out), *extra])
    assert r.exit_code != 0 and message in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_reconstruct_refusals_in_the_api():
    with pytest.raises(EdgepruneError, match="--reconstruct refits the weights kept by link"):
        CompressOptions(granularity="neuron", strategy="svbottom:1", threshold=0.1,
                        reconstruct=True).validate()
    with pytest.raises(EdgepruneError, match="must be a number >= 0"):
        CompressOptions(sparsity=0.5, reconstruct=True, reconstruct_ridge=float("nan")).validate()
    CompressOptions(sparsity=0.5, reconstruct=True, granularity="neuron,link",
                    strategy="svbottom:1", threshold=0.1).validate()



def test_reconstruct_is_the_default_of_shap_sae_only(tmp_path, small_model, npy_data):
    """On for --method shap-sae link pruning; off for the baselines, with --compensate, for
    VAEs and with --no-reconstruct (the paper's exact pipeline: --score-rule paper
    --no-reconstruct)."""
    assert CompressOptions(sparsity=0.5).reconstructs()
    assert not CompressOptions(sparsity=0.5, reconstruct=False).reconstructs()
    assert not CompressOptions(sparsity=0.5, method="magnitude").reconstructs()
    assert CompressOptions(sparsity=0.5, method="magnitude", reconstruct=True).reconstructs()
    assert not CompressOptions(sparsity=0.5, compensate=True).reconstructs()
    assert not CompressOptions(sparsity=0.5).reconstructs("vae")
    with pytest.raises(EdgepruneError, match="add --reconstruct"):
        CompressOptions(sparsity=0.5, method="lap", reconstruct_ridge=0.1).validate()
    CompressOptions(sparsity=0.5, reconstruct_ridge=0.1).validate()  # shap-sae: on anyway
    runner = CliRunner()
    base = ["compress", str(small_model), "--data", npy_data, "--sparsity", "0.6", "--samples",
            "32", "--export", "npz", "-q"]
    got = {}
    for name, extra in (("default", []), ("off", ["--no-reconstruct"]),
                        ("paper", ["--score-rule", "paper", "--no-reconstruct"])):
        r = runner.invoke(main, [*base, *extra, "-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        got[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert got["default"]["reconstruction"]["ridge"] == 1e-3
    assert "reconstruction" not in got["off"] and "reconstruction" not in got["paper"]
    assert got["paper"]["scoring"]["score_rule"] == "paper"
