"""Interventional SHAP for the link game (``--reference background --background K``)."""

import json

import numpy as np
import pytest
import shap
from click.testing import CliRunner

from edgeprune.cli import main
from edgeprune.errors import EdgepruneError
from edgeprune.scoring import score_network
from edgeprune.shapley import shapley_values
from edgeprune.shapley.background import background_rows, score_layer_background
from tests.factories import make_network


def _layer(seed=0, n_in=6, out=4, n=25):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(out, n_in)), rng.normal(size=out), rng.uniform(size=(n, n_in)))


def test_values_are_the_average_game_and_efficiency_holds():
    w, b, x = _layer()
    bg = x[[3, 7, 11]]
    s = score_layer_background(w, b, x, "tanh", bg, estimator="exact", memory_budget=2**30)
    phi = np.mean([shapley_values(w, b, x, "tanh", reference=r, estimator="exact")
                   for r in bg], axis=0)  # (N, out, in)
    np.testing.assert_allclose(s.li, np.abs(phi).mean(0), atol=1e-12)
    np.testing.assert_allclose(s.signed, phi.mean(0), atol=1e-12)
    np.testing.assert_allclose(s.var, phi.var(0), atol=1e-12)

    def f(a):
        return np.tanh(a @ w.T + b)

    # efficiency against the background's mean output: sum_j phi_ij(x) = f_i(x) - E_b f_i(b)
    np.testing.assert_allclose(phi.sum(2), f(x) - f(bg).mean(0), atol=1e-12)
    assert s.info["background"] == 3 and s.stderr is None
    # slicing the units to a tiny budget changes nothing
    tiny = score_layer_background(w, b, x, "tanh", bg, estimator="exact",
                                  memory_budget=2 * 2 * 8 * len(x) * w.shape[1])
    np.testing.assert_allclose(tiny.li, s.li, atol=1e-12)


def test_matches_shap_independent_masker_on_one_unit():
    """shap's ExactExplainer with an Independent masker is interventional SHAP: for one unit
    the players are the unit's inputs (the links' sources), so phi agrees exactly."""
    w, b, x = _layer(seed=1, n_in=5, out=1, n=6)
    bg = x[:4]
    mine = score_layer_background(w, b, x, "relu", bg, estimator="exact", memory_budget=2**30)

    def unit(a):
        return np.maximum(a @ w[0] + b[0], 0.0)

    explainer = shap.explainers.Exact(unit, shap.maskers.Independent(bg, max_samples=len(bg)))
    ref = explainer(x).values  # (N, in)
    np.testing.assert_allclose(mine.li[0], np.abs(ref).mean(0), atol=1e-9)


def test_score_network_background_rows_and_errors():
    net = make_network(["relu", "relu", "relu", "sigmoid"], [12, 8, 4, 8, 12], latent=2)
    x = np.random.default_rng(3).uniform(size=(40, 12)).astype(np.float32)
    sc = score_network(net, x, reference="background", background=5, estimator="exact",
                       quiet=True)
    assert sc.summary()["background"] == 5 and sc.summary()["reference"] == "background"
    rows = background_rows(40, 5, 0)
    a = net.layer_inputs(x)[1]  # the second layer plays against the rows' own activations
    want = score_layer_background(net.layers[1].masked_weight, net.layers[1].bias, a, "relu",
                                  a[rows], estimator="exact", memory_budget=2**30, seed=2)
    np.testing.assert_allclose(sc.layers[1].li, want.li, atol=1e-12)
    with pytest.raises(EdgepruneError, match="--background 50"):
        score_network(net, x, reference="background", background=50, quiet=True)


def test_cli_score_and_compress_with_background(tmp_path, small_model, npy_data):
    out = tmp_path / "s.npz"
    r = CliRunner().invoke(main, ["score", str(small_model), "--data", npy_data, "--reference",
                                  "background", "--background", "4", "--samples", "16", "-q",
                                  "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["background"] == 4 and out.stat().st_size > 0
    r = CliRunner().invoke(main, ["compress", str(small_model), "--data", npy_data,
                                  "--sparsity", "0.6", "--reference", "background",
                                  "--background", "4", "--samples", "16", "--compensate",
                                  "--export", "npz", "-q", "-o", str(tmp_path / "c"), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["scoring"]["background"] == 4
    r = CliRunner().invoke(main, ["compress", str(small_model), "--data", npy_data,
                                  "--sparsity", "0.6", "--reference", "background",
                                  "--background", "40", "--samples", "16", "-o",
                                  str(tmp_path / "bad")])
    assert r.exit_code != 0 and "--background 40" in r.output and "Traceback" not in r.output
