"""Issue 13: SHAP-SAE score rules (paper / rms / hybrid) and gradual pruning (--steps)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune.cli import main
from edgeprune.compress import CompressOptions, compress
from edgeprune.data import explanation_set, load_dataset
from edgeprune.errors import EdgepruneError
from edgeprune.network import ModelError
from edgeprune.prune.rules import hybrid_scores, polynomial_schedule, rms_scores
from edgeprune.scoring import rule_scores, score_network
from tests.factories import make_network

ACTS = ["relu", "relu", "relu", "sigmoid"]
DIMS = [12, 8, 4, 8, 12]


def test_hybrid_interpolates_between_magnitude_and_paper():
    li = [np.array([[4.0, 0.0, 1.0]])]
    w = [np.array([[1.0, 3.0, -4.0]])]
    np.testing.assert_allclose(hybrid_scores(li, w, 1.0)[0], li[0])
    np.testing.assert_allclose(hybrid_scores(li, w, 0.0)[0], [[1.0, 3.0, 4.0]])  # magnitude
    np.testing.assert_allclose(hybrid_scores(li, w, 0.5)[0], [[2.0, 0.0, 2.0]])


def test_rms_is_root_mean_square_of_phi():
    phi = np.random.default_rng(0).normal(size=(50, 3, 4))
    got = rms_scores([phi.mean(0)], [phi.var(0)])[0]
    np.testing.assert_allclose(got, np.sqrt((phi ** 2).mean(0)))


def test_polynomial_schedule_is_tf_mot_cubic():
    assert polynomial_schedule(0.9, 1) == [0.9]
    s = polynomial_schedule(0.9, 3)
    assert s[-1] == pytest.approx(0.9) and s == sorted(s)
    assert s[0] == pytest.approx(0.9 * (1 - (2 / 3) ** 3))
    with pytest.raises(EdgepruneError):
        polynomial_schedule(0.9, 0)


def test_rule_scores_use_the_networks_scores(npy_data):
    net = make_network(ACTS, DIMS, latent=2)
    ds = load_dataset(npy_data)
    sc = score_network(net, explanation_set(ds, 32, 0), quiet=True)
    paper = rule_scores(sc, net, "paper")
    hyb = rule_scores(sc, net, "hybrid", 0.5)
    rms = rule_scores(sc, net, "rms")
    for p, h, r, layer in zip(paper, hyb, rms, net.layers, strict=True):
        np.testing.assert_allclose(h, np.sqrt(p * np.abs(layer.masked_weight)))
        assert np.all(r >= p - 1e-12)  # RMS >= mean |phi|
    with pytest.raises(ModelError, match="rms"):
        rule_scores(paper, net, "rms")
    with pytest.raises(EdgepruneError, match="alpha"):
        rule_scores(sc, net, "hybrid", 1.5)


@pytest.mark.parametrize("rule", ["paper", "rms", "hybrid"])
def test_compress_api_applies_the_rule(tmp_path, npy_data, rule):
    net = make_network(ACTS, DIMS, latent=2)
    ds = load_dataset(npy_data)
    res = compress(net, ds, tmp_path / rule, CompressOptions(
        sparsity=0.6, samples=32, score_rule=rule, alpha=0.25, export="npz", quiet=True))
    assert res.report.scoring["score_rule"] == rule
    assert ("alpha" in res.report.scoring) == (rule == "hybrid")
    assert res.report.sparsity == pytest.approx(0.6, abs=0.05)
    masks = {rule: [layer.mask.copy() for layer in res.network.layers]}
    # the masks are those of the rule's scores through the same solver
    from edgeprune.prune import prune_network

    sc = score_network(net, explanation_set(ds, 32, 0), quiet=True)
    want = prune_network(net, rule_scores(sc, net, rule, 0.25), sparsity=0.6)
    for got, exp in zip(masks[rule], want.network.layers, strict=True):
        np.testing.assert_array_equal(got, exp.mask)


def test_hybrid_differs_from_paper_and_alpha_zero_is_magnitude(tmp_path, npy_data):
    net = make_network(ACTS, DIMS, latent=2, weak_inputs=(1, 7))
    ds = load_dataset(npy_data)

    def masks(**kw):
        r = compress(net, ds, tmp_path / str(len(kw)) / str(sorted(kw.items())),
                     CompressOptions(sparsity=0.7, samples=32, export="npz", quiet=True, **kw))
        return np.concatenate([layer.mask.ravel() for layer in r.network.layers])

    mag = masks(method="magnitude")
    np.testing.assert_array_equal(masks(score_rule="hybrid", alpha=0.0), mag)
    assert not np.array_equal(masks(score_rule="hybrid", alpha=0.5), masks(score_rule="paper"))


def test_gradual_steps_share_the_finetune_budget_and_are_reported(tmp_path, npy_data):
    net = make_network(ACTS, DIMS, latent=2)
    ds = load_dataset(npy_data)
    res = compress(net, ds, tmp_path / "g", CompressOptions(
        sparsity=0.8, steps=3, finetune_epochs=5, score_rule="hybrid", samples=32,
        export="npz", quiet=True))
    steps = res.report.steps
    assert [s["step"] for s in steps] == [1, 2, 3]
    assert [s["finetune_epochs"] for s in steps] == [1, 1, 0]
    assert len(res.report.finetune_history) == 3  # 5 - 1 - 1 epochs after the last step
    assert steps[0]["sparsity"] < steps[1]["sparsity"] < steps[2]["sparsity"]
    assert steps[-1]["target_sparsity"] == pytest.approx(0.8)
    assert res.report.sparsity == pytest.approx(0.8, abs=0.05)
    for layer in res.network.layers:
        assert np.all(layer.weight[~layer.mask] == 0.0)
    rep = json.loads((tmp_path / "g" / "report.json").read_text())
    assert len(rep["steps"]) == 3 and "test_mse" in rep["steps"][0]["metrics"]
    assert "Gradual pruning steps" in (tmp_path / "g" / "report.md").read_text()
    one = compress(net, ds, tmp_path / "one", CompressOptions(sparsity=0.8, samples=32,
                                                              export="npz", quiet=True))
    assert "steps" not in one.report.to_dict()


@pytest.mark.parametrize("kw, msg", [
    ({"steps": 3, "importance_level": 0.8}, "--sparsity"),
    ({"steps": 3, "sparsity": 0.8, "scores_path": "x.npz"}, "--scores"),
    ({"sparsity": 0.8, "score_rule": "median"}, "--score-rule"),
    ({"sparsity": 0.8, "alpha": -0.1}, "--alpha"),
])
def test_bad_rule_and_step_options_fail_before_work(kw, msg):
    with pytest.raises(EdgepruneError, match=msg):
        CompressOptions(**kw).validate()


def test_cli_score_rule_alpha_and_steps(tmp_path, small_model, npy_data):
    out = tmp_path / "o"
    r = CliRunner().invoke(main, ["compress", str(small_model), "--data", npy_data,
                                  "--sparsity", "0.6", "--score-rule", "hybrid", "--alpha",
                                  "0.3", "--steps", "2", "--finetune-epochs", "2",
                                  "--samples", "32", "--export", "npz", "-q", "-o", str(out),
                                  "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["scoring"]["score_rule"] == "hybrid" and rep["scoring"]["alpha"] == 0.3
    assert [s["finetune_epochs"] for s in rep["steps"]] == [1, 0]
    bad = CliRunner().invoke(main, ["compress", str(small_model), "--data", npy_data,
                                    "--sparsity", "0.6", "--score-rule", "nope", "-o",
                                    str(tmp_path / "b")])
    assert bad.exit_code != 0 and "nope" in bad.output


def test_choose_alpha_picks_the_lowest_loss_and_reports_every_candidate():
    from edgeprune.prune.rules import ALPHA_GRID, choose_alpha

    li, w = [np.ones((2, 2))], [np.ones((2, 2))]
    losses = iter([3.0, 1.0, 0.5, 0.5, 2.0])
    alpha, tried = choose_alpha(li, w, lambda s: s, lambda _: next(losses))
    assert alpha == 0.5 and [t["alpha"] for t in tried] == list(ALPHA_GRID)


def test_alpha_auto_end_to_end_api_and_cli(tmp_path, small_model, npy_data):
    from edgeprune.checkpoint import load_network
    from edgeprune.prune import prune_network
    from edgeprune.prune.rules import ALPHA_GRID

    net = load_network(small_model)
    ds = load_dataset(npy_data)
    res = compress(net, ds, tmp_path / "a", CompressOptions(
        sparsity=0.6, score_rule="hybrid", alpha="auto", samples=32, export="npz", quiet=True))
    sc = res.report.scoring
    assert sc["alpha"] in ALPHA_GRID and len(sc["alpha_search"]) == len(ALPHA_GRID)
    best = min(t["val_loss"] for t in sc["alpha_search"])
    assert [t["val_loss"] for t in sc["alpha_search"] if t["alpha"] == sc["alpha"]] == [best]
    # the chosen alpha's masks are what was applied
    work = net.without_zero_links()
    shap = score_network(work, explanation_set(ds, 32, 0), quiet=True)
    want = prune_network(work, rule_scores(shap, work, "hybrid", sc["alpha"]), sparsity=0.6)
    for got, exp in zip(res.network.layers, want.network.layers, strict=True):
        np.testing.assert_array_equal(got.mask, exp.mask)
    out = tmp_path / "c"
    r = CliRunner().invoke(main, ["compress", str(small_model), "--data", npy_data,
                                  "--sparsity", "0.6", "--score-rule", "hybrid", "--alpha",
                                  "auto", "--samples", "32", "--export", "npz", "-q", "-o",
                                  str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "report.json").read_text())["scoring"]["alpha"] == sc["alpha"]
    bad = CliRunner().invoke(main, ["compress", str(small_model), "--data", npy_data,
                                    "--sparsity", "0.6", "--alpha", "2", "-o",
                                    str(tmp_path / "b")])
    assert bad.exit_code != 0 and "auto" in bad.output
