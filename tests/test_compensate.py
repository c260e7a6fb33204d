"""Issue 13: bias compensation (``compress --compensate``): pruned links replaced by their mean."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune.cli import main
from edgeprune.compress import CompressOptions, compress
from edgeprune.data import load_dataset
from edgeprune.network import Layer, Network
from edgeprune.prune import baseline_scores, prune_network
from edgeprune.prune.compensate import compensate_biases
from tests.factories import make_network, pre_activations

ACTS = ["relu", "relu", "relu", "sigmoid"]
DIMS = [12, 8, 4, 8, 12]


def test_one_identity_layer_gets_each_pruned_links_mean_contribution():
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 5)), rng.normal(size=3)
    net = Network([Layer(w, b, "identity")])
    x = rng.uniform(size=(40, 5))
    mask = np.ones((3, 5), dtype=bool)
    mask[0, [1, 3]] = False
    mask[2, 4] = False
    pruned = Network([Layer(w, b, "identity", mask=mask)])
    got = compensate_biases(net, pruned, x)
    w32, mean = net.layers[0].weight.astype(np.float64), x.mean(axis=0)
    want = net.layers[0].bias.astype(np.float64) + np.array([
        w32[0, 1] * mean[1] + w32[0, 3] * mean[3], 0.0, w32[2, 4] * mean[4]])
    np.testing.assert_allclose(got.layers[0].bias, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(got.layers[0].mask, mask)  # only biases change
    np.testing.assert_array_equal(pruned.layers[0].bias, net.layers[0].bias)  # not in place
    # identity: the mean output is then exactly the unpruned one
    np.testing.assert_allclose(got.forward(x).mean(0), net.forward(x).mean(0), atol=1e-5)


def test_every_live_unit_keeps_its_mean_pre_activation_and_dead_units_are_untouched():
    net = make_network(ACTS, DIMS, latent=2, seed=3)
    x = np.random.default_rng(1).uniform(size=(200, DIMS[0])).astype(np.float32)
    res = prune_network(net, baseline_scores("magnitude", net), sparsity=0.7)
    got = compensate_biases(net, res.network, x)
    for k, (zo, zg, before, after) in enumerate(zip(
            pre_activations(net, x), pre_activations(got, x), res.network.layers,
            got.layers, strict=True)):
        live = after.mask.any(axis=1)
        np.testing.assert_allclose(zg.mean(0)[live], zo.mean(0)[live], atol=1e-4,
                                   err_msg=f"layer {k + 1}")
        np.testing.assert_array_equal(after.bias[~live], before.bias[~live])
    # with nothing pruned there is nothing to compensate
    same = compensate_biases(net, net, x)
    for a, b in zip(same.layers, net.layers, strict=True):
        np.testing.assert_allclose(a.bias, b.bias, atol=1e-6)
    with pytest.raises(ValueError, match="shapes"):
        compensate_biases(net, make_network(ACTS, [12, 6, 4, 8, 12],
                                            latent=2), x)


def test_compress_compensate_api_and_cli(tmp_path, small_model, npy_data):
    from edgeprune.checkpoint import load_network

    net = load_network(small_model)
    ds = load_dataset(npy_data)
    kw = {"sparsity": 0.7, "method": "magnitude", "export": "npz", "quiet": True}
    plain = compress(net, ds, tmp_path / "p", CompressOptions(**kw))
    comp = compress(net, ds, tmp_path / "c", CompressOptions(compensate=True, **kw))
    for a, b in zip(plain.network.layers, comp.network.layers, strict=True):
        np.testing.assert_array_equal(a.mask, b.mask)  # the same links
    want = compensate_biases(net.without_zero_links(), plain.network, ds.x_train)
    for a, b in zip(want.layers, comp.network.layers, strict=True):
        np.testing.assert_allclose(b.bias, a.bias, rtol=1e-6, atol=1e-6)
    assert any("--compensate" in n for n in comp.report.notes)
    # the first layer's live units keep their mean pre-activation; without --compensate not
    zo = pre_activations(net, ds.x_train)[0].mean(0)
    live = comp.network.layers[0].mask.any(axis=1)
    np.testing.assert_allclose(pre_activations(comp.network, ds.x_train)[0].mean(0)[live],
                               zo[live], atol=1e-4)
    assert np.abs(pre_activations(plain.network, ds.x_train)[0].mean(0)[live]
                  - zo[live]).max() > 1e-2
    out = tmp_path / "cli"
    r = CliRunner().invoke(main, ["compress", str(small_model), "--data", npy_data,
                                  "--sparsity", "0.7", "--score-rule", "hybrid", "--reference",
                                  "mean", "--compensate", "--samples", "32", "--export", "npz",
                                  "-q", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["scoring"]["reference"] == "mean" and rep["scoring"]["score_rule"] == "hybrid"
    assert any("--compensate" in n for n in rep["notes"])


def test_compensate_without_link_pruning_is_refused():
    from edgeprune.errors import EdgepruneError

    with pytest.raises(EdgepruneError, match="--compensate"):
        CompressOptions(granularity="neuron", strategy="svbottom:1", threshold=0.1,
                        compensate=True).validate()
    CompressOptions(sparsity=0.5, compensate=True).validate()  # links: fine


def test_gradual_steps_compensate_every_step(tmp_path, npy_data):
    net = make_network(ACTS, DIMS, latent=2)
    ds = load_dataset(npy_data)
    res = compress(net, ds, tmp_path / "g", CompressOptions(
        sparsity=0.8, steps=2, method="magnitude", compensate=True, export="npz", quiet=True))
    assert len(res.report.steps) == 2 and any("--compensate" in n for n in res.report.notes)
    zo, zg = pre_activations(net, ds.x_train), pre_activations(res.network, ds.x_train)
    live = res.network.layers[0].mask.any(axis=1)  # first layer: nothing below it changed
    np.testing.assert_allclose(zg[0].mean(0)[live], zo[0].mean(0)[live], atol=1e-4)
