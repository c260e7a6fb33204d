"""Neuron-level Shapley pruning: the game's estimators, the strategies, the walk, compress, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeprune import runtime
from edgeprune.checkpoint import load_network, save_checkpoint
from edgeprune.cli import main
from edgeprune.compress import CompressOptions, compress
from edgeprune.data import load_dataset
from edgeprune.network import ModelError
from edgeprune.prune.neuron_strategies import incoming_norms, parse_strategy, select_units
from edgeprune.prune.neuron_walk import meets, neuron_walk, remove_units
from edgeprune.shapley.neuron_game import NeuronGame
from edgeprune.torch_network import torch_forward
from edgeprune.train import accuracy, build_classifier, reconstruction_mse, train_classifier
from tests.factories import make_network

# Monte Carlo estimates must agree with exact values within this fraction of |v(all)| ...
MC_TOLERANCE = 0.06
# ... and within this many of their own standard errors (plus a float floor).
MC_SIGMAS = 5.0


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def classifier(digits):
    """A 64-10-10 digits classifier (about 0.95 test accuracy), with its training epochs."""
    net = build_classifier(64, [10], 10, seed=0)
    net, _ = train_classifier(net, digits.x_train, digits.y_train, epochs=15, lr=0.01,
                              quiet=True)
    net.meta = {"epochs": 15}
    return net


@pytest.fixture(scope="module")
def autoencoder():
    """A 12-8-3-8-12 random autoencoder (the game does not need it trained)."""
    return make_network(["relu", "tanh", "relu", "sigmoid"], [12, 8, 3, 8, 12], seed=4,
                        latent=2)


def _games(classifier, digits, autoencoder):
    x = np.random.default_rng(0).random((150, 12), dtype=np.float32)
    return [NeuronGame(classifier, 1, digits.x_val, digits.y_val),
            NeuronGame(classifier, 1, digits.x_val, digits.y_val, silence="mean"),
            NeuronGame(autoencoder, 1, x), NeuronGame(autoencoder, 3, x, silence="mean")]


# -- the game and its estimators ---------------------------------------------------------------
def test_game_values_match_physical_removal(classifier, digits, autoencoder):
    """v(S) of the game equals the metric of the network with the other units removed."""
    keep = np.array([0, 2, 3, 7, 9])
    drop = np.setdiff1d(np.arange(10), keep)
    mask = np.zeros(10, dtype=np.float32)
    mask[keep] = 1
    for silence in ("zero", "mean"):
        game = NeuronGame(classifier, 1, digits.x_val, digits.y_val, silence=silence)
        fill = game.reference.numpy() if silence == "mean" else None
        small = remove_units(classifier, 1, drop, fill)
        assert small.dims == [64, 5, 10]
        got = float(game.scores(torch.from_numpy(mask[None]))[0])
        assert got == pytest.approx(accuracy(small, digits.x_val, digits.y_val), abs=1e-12)
    x = np.random.default_rng(1).random((64, 12), dtype=np.float32)
    game = NeuronGame(autoencoder, 3, x, silence="mean")
    small = remove_units(autoencoder, 3, [1, 4, 6], game.reference.numpy())
    mask = np.ones(8, dtype=np.float32)
    mask[[1, 4, 6]] = 0
    got = -float(game.scores(torch.from_numpy(mask[None]))[0])
    assert got == pytest.approx(reconstruction_mse(small, x), rel=1e-5)
    assert small.latent == 2 and small.dims == [12, 8, 3, 5, 12]


def test_estimators_agree_with_exact_and_are_efficient(classifier, digits, autoencoder):
    for game in _games(classifier, digits, autoencoder):
        exact = game.shapley("exact")
        # efficiency; v(N) inside the enumeration and game.total come from float32 forward
        # passes over different batches, whose kernels may round differently (measured 5e-11)
        assert exact.phi.sum() == pytest.approx(game.total, abs=1e-9)
        for est, samples in (("permutation", 300), ("subset", 600)):
            res = game.shapley(est, samples, seed=1)
            assert res.phi.sum() == pytest.approx(game.total, abs=1e-9), est  # efficiency
            err = np.abs(res.phi - exact.phi)
            scale = abs(game.total)
            assert err.max() <= MC_TOLERANCE * scale, (est, game.metric, err.max(), scale)
            assert np.all(err <= MC_SIGMAS * res.stderr + 0.01 * scale), est
        tmc = game.shapley("permutation", 100, seed=2, truncation=0.05)
        assert tmc.phi.sum() == pytest.approx(game.total, abs=1e-9)


def test_estimator_defaults_and_errors(classifier, digits):
    game = NeuronGame(classifier, 1, digits.x_val, digits.y_val)
    assert game.shapley("auto").estimator == "exact"  # 10 units <= 12
    perm = game.shapley("permutation")
    assert perm.samples == 100 and perm.evaluations == 100 * 9
    with pytest.raises(ModelError, match="--neuron-estimator"):
        game.shapley("kernel")
    with pytest.raises(ModelError, match="--neuron-samples"):
        game.shapley("subset", 1)
    with pytest.raises(ModelError, match="--neuron-layers"):
        NeuronGame(classifier, 2, digits.x_val, digits.y_val)


# -- strategies --------------------------------------------------------------------------------
PHI = np.array([0.30, -0.02, 0.05, 0.01, 0.20, 0.05, 0.41])  # sums to 1.0


@pytest.mark.parametrize("spec, expected", [
    ("svbottom:1", [1]),
    ("svbottom:3", [1, 2, 3]),            # tie 0.05 (units 2 and 5): the lower index
    ("svbottom:99", list(range(7))),
    ("svbottom-p:0.5", [1, 2, 3, 5]),     # phi < 0.5 / 7 = 0.0714
    ("svbucket:0.1", [1, 2, 3, 5]),       # -0.02 + 0.01 + 0.05 + 0.05 = 0.09 < 0.1
    ("svbucket:0.05", [1, 2, 3]),         # -0.02 + 0.01 + 0.05 = 0.04 < 0.05
    ("svbucket:0.001", [1, 3]),           # -0.02 < 0.001, -0.01 < 0.001
    ("svbucket:2", list(range(7))),
])
def test_shapley_strategies(spec, expected):
    assert select_units(spec, PHI).tolist() == expected


def test_strategies_pick_at_least_one():
    phi = np.array([0.5, 0.3, 0.2])
    assert select_units("svbottom-p:0.1", phi).tolist() == [2]  # nothing below 0.1/3
    assert select_units("svbucket:0.1", phi).tolist() == [2]  # 0.2 does not fit in 0.1
    # scale: p is a fraction of |v(all)|; bucket 0.1 * 10 = 1: 0.2 + 0.3 < 1, + 0.5 is not
    assert select_units("svbucket:0.1", phi, scale=10.0).tolist() == [1, 2]
    assert select_units("svbottom-p:0.9", phi, scale=1.0).tolist() == [2]  # < 0.3
    assert select_units("svbottom-p:0.9", phi, scale=2.0).tolist() == [0, 1, 2]  # < 0.6


def test_random_and_wbottom():
    rng = np.random.default_rng(0)
    picks = [tuple(select_units("random:2", n=6, rng=rng)) for _ in range(200)]
    assert all(len(set(p)) == 2 and max(p) < 6 for p in picks)
    counts = np.bincount(np.array(picks).ravel(), minlength=6)
    assert counts.min() > 40  # every unit gets drawn (about 67 times each)
    w = np.array([[3.0, 4.0], [0.1, 0.1], [1.0, 0.0], [0.0, 0.5]])
    mask = np.array([[True, True], [True, True], [True, True], [True, False]])
    norms = incoming_norms(w, mask)
    np.testing.assert_allclose(norms, [5.0, np.sqrt(0.02), 1.0, 0.0])
    assert select_units("wbottom:1", norms=norms).tolist() == [3]
    assert select_units("wbottom:2", norms=norms).tolist() == [1, 3]


@pytest.mark.parametrize("bad", ["svbucket", "svbucket:x", "svbucket:-1", "svbottom:0",
                                 "random:1.5", "magic:3"])
def test_bad_strategy_names_the_option(bad):
    with pytest.raises(ModelError, match="--strategy"):
        parse_strategy(bad)


# -- the walk ----------------------------------------------------------------------------------
def test_walk_stops_at_threshold(classifier, digits):
    walk = neuron_walk(classifier, digits, "svbottom:2", "0.97x", retrain_epochs=1,
                       estimator="permutation", samples=20, quiet=True)
    assert walk.metric == "accuracy" and walk.stop_reason == "below threshold"
    steps = walk.steps
    assert [s.units_left[0] for s in steps] == [10 - 2 * s.step for s in steps]
    assert all(s.meets for s in steps[:-1]) and not steps[-1].meets
    assert walk.best_step == len(steps) - 2
    assert walk.network.dims[1] == steps[walk.best_step].units_left[0]
    got = accuracy(walk.network, digits.x_val, digits.y_val)
    assert got == pytest.approx(steps[walk.best_step].metric)
    assert meets("accuracy", got, walk.threshold)
    assert [s.epochs for s in steps] == [15 + s.step for s in steps]
    for s in steps[1:]:
        phi = np.array(s.shapley[0]["phi"])
        assert s.removed_shapley == pytest.approx(np.sort(phi)[:2].sum(), abs=1e-5)
        assert len(s.removed[0]) == 2
    removed = [u for s in steps[1:] for u in s.removed[0]]
    assert len(set(removed)) == len(removed)  # original ids, never twice


def test_walk_until_empty_records_every_step(classifier, digits):
    walk = neuron_walk(classifier, digits, "random:4", 0.5, until="empty", retrain_epochs=0,
                       estimator="permutation", samples=10, seed=3, quiet=True)
    assert [s.units_left[0] for s in walk.steps] == [10, 6, 2, 0]
    assert walk.stop_reason == "no unit left"
    last = walk.steps[-1]
    assert last.metric == pytest.approx(walk.steps[-1].shapley[0]["metric_empty"])
    assert walk.network.dims[1] == walk.units_found[0] > 0


def test_walk_threshold_errors(classifier, digits):
    with pytest.raises(ModelError, match="--threshold"):
        neuron_walk(classifier, digits, "svbottom:1", 0.999, quiet=True)
    with pytest.raises(ModelError, match="--threshold"):
        neuron_walk(classifier, digits, "svbottom:1", "high", quiet=True)


# -- compress and the bundle -------------------------------------------------------------------
def _check_artifacts(outdir, rep, x):
    pruned = load_network(outdir / "pruned.pt")
    ref = torch_forward(pruned, x)
    model = runtime.load(outdir / "model.npz")
    assert np.max(np.abs(model(x) - ref)) <= 1e-5
    assert rep["sparsity"] == pytest.approx(1 - model.nnz / pruned.n_links, abs=1e-12)
    assert rep["sparsity_vs_original"] == pytest.approx(1 - model.nnz / rep["links_original"],
                                                        abs=1e-12)
    if "onnx" in rep.get("artifacts", {}):
        from edgeprune.exporters.onnx import run_onnx

        assert np.max(np.abs(run_onnx(outdir / "model.onnx", x) - ref)) <= 1e-5
    if "tflite" in rep.get("artifacts", {}):
        from edgeprune.exporters.tflite import run_tflite

        assert np.max(np.abs(run_tflite(outdir / "model.tflite", x) - ref)) <= 1e-5
    return pruned


def test_compress_neuron_classifier(tmp_path, classifier, digits):
    opts = CompressOptions(granularity="neuron", strategy="svbottom:2", threshold="0.95x",
                           retrain_epochs=1, neuron_samples=20, quiet=True)
    res = compress(classifier, digits, tmp_path / "o", opts)
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    walk = rep["neuron_walk"]
    kept = walk["units_after"][0]
    assert kept < 10 and rep["network_pruned"].startswith(f"classifier 64-{kept}-10")
    assert rep["links_original"] == 64 * 10 + 10 * 10 and rep["sparsity"] == 0.0
    assert rep["links_total"] == 64 * kept + kept * 10
    assert "test_accuracy" in rep["metrics"]["after"] and rep["method"] == "neuron:svbottom:2"
    assert "## Neuron walk" in (tmp_path / "o" / "report.md").read_text()
    pruned = _check_artifacts(tmp_path / "o", rep, digits.x_test[:64])
    assert pruned.kind == "classifier" and res.network.dims == pruned.dims
    from edgeprune.artifacts import format_available

    for fmt in ("onnx", "tflite"):  # exported and checked against PyTorch when installed
        assert (fmt in rep["artifacts"]) == format_available(fmt)[0]


def test_compress_neuron_then_link_autoencoder(tmp_path, autoencoder, npy_data):
    ds = load_dataset(npy_data)
    opts = CompressOptions(granularity="neuron,link", strategy="wbottom:1", threshold="3x",
                           sparsity=0.5, retrain_epochs=1, quiet=True)
    compress(autoencoder, ds, tmp_path / "o", opts)
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["neuron_walk"]["metric"] == "mse" and rep["granularity"] == "neuron,link"
    assert rep["neuron_walk"]["layers"] == [1, 2, 3]
    assert rep["sparsity"] == pytest.approx(0.5, abs=0.06)
    assert rep["sparsity_vs_original"] > rep["sparsity"]
    _check_artifacts(tmp_path / "o", rep, ds.x_test[:64])


def test_link_pruning_of_a_classifier_finetunes_with_cross_entropy(tmp_path, classifier,
                                                                   digits):
    opts = CompressOptions(sparsity=0.5, method="magnitude", finetune_epochs=1, export="npz",
                           quiet=True)
    res = compress(classifier, digits, tmp_path / "o", opts)
    assert "train_loss" in res.report["finetune_history"][0]
    assert res.report["metrics"]["after"]["test_accuracy"] > 0.5
    assert res.report["sparsity_vs_original"] == pytest.approx(res.report["sparsity"])
    _check_artifacts(tmp_path / "o", res.report, digits.x_test[:32])


def test_options_validation_keeps_link_behaviour():
    with pytest.raises(ModelError, match="exactly one of --importance-level"):
        CompressOptions().validate()
    CompressOptions(sparsity=0.5).validate()
    CompressOptions(granularity="neuron", strategy="random:1", threshold=0.9).validate()
    for kwargs, needle in [
        ({"granularity": "neuron", "threshold": 0.9}, "--strategy"),
        ({"granularity": "neuron", "strategy": "svbucket:0.2"}, "--threshold"),
        ({"granularity": "neuron", "strategy": "svbucket:0.2", "threshold": 0.9,
          "sparsity": 0.5}, "--granularity"),
        ({"granularity": "neurons", "sparsity": 0.5}, "--granularity"),
        ({"granularity": "neuron", "strategy": "svbucket:0.2", "threshold": 0.9,
          "silence": "loud"}, "--silence"),
    ]:
        with pytest.raises(ModelError, match=needle):
            CompressOptions(**kwargs).validate()


# -- the CLI -----------------------------------------------------------------------------------
def test_cli_train_classify_and_compress_neuron(tmp_path):
    runner = CliRunner()
    model = tmp_path / "clf.pt"
    res = runner.invoke(main, ["train", "--task", "classify", "--data", "digits", "--hidden", "8",
                               "--epochs", "3", "--lr", "0.01", "-q", "-o", str(model)])
    assert res.exit_code == 0, res.output
    assert "test_accuracy" in res.output
    net = load_network(model)
    assert net.kind == "classifier" and net.latent is None and net.dims == [64, 8, 10]
    assert net.activations == ["relu", "identity"]
    out = tmp_path / "c"
    res = runner.invoke(main, ["compress", str(model), "--data", "digits", "--granularity",
                               "neuron", "--strategy", "svbottom:3", "--threshold", "0.5x",
                               "--retrain-epochs", "1", "--export", "npz", "-q",
                               "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "neuron walk svbottom:3" in res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["neuron_walk"]["units_after"][0] < 8
    _check_artifacts(out, rep, load_dataset("digits").x_test[:32])
    bad = runner.invoke(main, ["compress", str(model), "--granularity", "neuron", "--strategy",
                               "svbucket", "--threshold", "0.9", "-o", str(tmp_path / "x")])
    assert bad.exit_code != 0
    line = bad.output.strip()
    assert line.startswith("Error:") and "--strategy" in line and len(line.splitlines()) == 1


def test_checkpoint_round_trip_of_neuron_pruned(tmp_path, classifier):
    small = remove_units(classifier, 1, [0, 5])
    save_checkpoint(small, tmp_path / "s.pt")
    back = load_network(tmp_path / "s.pt")
    assert back.dims == [64, 8, 10] and back.kind == "classifier"
    x = np.random.default_rng(0).random((5, 64), dtype=np.float32)
    np.testing.assert_array_equal(back.forward(x), small.forward(x))
