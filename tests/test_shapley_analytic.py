"""The analytic (DASP) estimator, the |phi| bias statistics and memory-budget slicing."""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from edgeprune.shapley import gaussian_marginal, score_layer, shapley_values
from edgeprune.shapley.analytic import size_nodes
from tests.test_shapley import make_layer

SLOPE = 0.1
#: Measured relative L1 error of analytic against enumeration on these layers (fan-in 8 and 12,
#: seeds 0-2): at most 0.031 (leaky_relu), 0.025 (relu), 0.021 (tanh), 0.011 (sigmoid). Asserted
#: with head room; a regression in the size quadrature or the closed forms breaks it.
TOLERANCE = {"relu": 0.04, "leaky_relu": 0.045, "tanh": 0.035, "sigmoid": 0.02}


def rel_l1(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(x - ref).sum() / np.abs(ref).sum())


@pytest.mark.parametrize("act", sorted(TOLERANCE))
@pytest.mark.parametrize("n_in", [8, 12])
def test_analytic_is_close_to_enumeration(act, n_in):
    for seed in range(3):
        w, b, a = make_layer(n_in, 6, 25, seed=seed)
        exact = shapley_values(w, b, a, act, estimator="exact", negative_slope=SLOPE)
        ours = shapley_values(w, b, a, act, estimator="analytic", negative_slope=SLOPE)
        err = rel_l1(ours, exact)
        assert 0 < err < TOLERANCE[act], f"{act} n={n_in} seed={seed}: {err:.4f}"


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "sigmoid", "tanh", "identity"])
def test_analytic_is_exact_with_two_live_links_and_for_linear_units(act):
    # Two players: both coalition sizes are exact ends, no normal approximation is involved.
    w, b, a = make_layer(2, 5, 30, seed=4, masked=0)
    exact = shapley_values(w, b, a, act, estimator="exact", negative_slope=SLOPE)
    ours = shapley_values(w, b, a, act, estimator="analytic", negative_slope=SLOPE)
    np.testing.assert_allclose(ours, exact, atol=1e-12)
    w, b, a = make_layer(40, 4, 10, seed=5)
    np.testing.assert_allclose(shapley_values(w, b, a, "identity", estimator="analytic"),
                               shapley_values(w, b, a, "identity", estimator="linear"),
                               atol=1e-12)


def test_analytic_axioms_efficiency_symmetry_dummy():
    w, b, a = make_layer(30, 7, 20, seed=6)
    w[:, 1] = w[:, 0]          # players 0 and 1 are interchangeable in every game
    a[:, 1] = a[:, 0]
    w[2, 5] = 0.0              # a masked link: a dummy player of unit 2
    a[:, 9] = 0.0              # an input that is always at the zero reference
    phi = shapley_values(w, b, a, "tanh", estimator="analytic")
    pre = a.astype(np.float64) @ w.T.astype(np.float64) + b
    np.testing.assert_allclose(phi.sum(axis=2), np.tanh(pre) - np.tanh(b.astype(np.float64)),
                               atol=1e-12)
    np.testing.assert_allclose(phi[:, :, 0], phi[:, :, 1], rtol=1e-12, atol=1e-15)
    assert np.all(phi[:, 2, 5] == 0.0) and np.all(phi[:, :, 9] == 0.0)


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_gaussian_marginal_matches_numerical_integration(act):
    """E[g(z + c + S)] - E[g(z + S)] for S ~ N(0, var), the closed form the estimator uses."""
    import torch

    marginal = gaussian_marginal(act, SLOPE)

    def g(s: float) -> float:
        return max(s, 0.0) if act == "relu" else (s if s > 0 else SLOPE * s)

    def expect(z: float, var: float) -> float:
        if var == 0.0:
            return g(z)
        sd = math.sqrt(var)
        return integrate.quad(lambda s: g(z + s) * stats.norm.pdf(s, scale=sd),
                              -12 * sd, 12 * sd, points=[-z])[0]

    for z, c, var in [(0.3, 0.2, 0.5), (-1.0, 1.5, 2.0), (0.0, -0.4, 1e-3), (2.0, -3.0, 0.0),
                      (-0.5, 0.25, 0.0)]:
        want = expect(z + c, var) - expect(z, var)
        t = [torch.tensor([v], dtype=torch.float64) for v in (z, c, var)]
        assert float(marginal(*t)[0]) == pytest.approx(want, abs=1e-9)


def test_size_nodes_cover_every_coalition_size_once():
    import torch

    for m in [1, 2, 3, 10, 18, 19, 400]:
        k, w = size_nodes(torch.tensor([m]), 16)
        ends = 2.0 / m if m > 1 else 1.0
        assert float(w.sum()) + ends == pytest.approx(1.0, abs=1e-12)
        live = k[w > 0]
        assert live.numel() == 0 or (float(live.min()) >= 1 and float(live.max()) <= m - 2)


@pytest.mark.parametrize("estimator", ["analytic", "exact", "kernel", "permutation", "auto"])
def test_memory_budget_slicing_gives_identical_results(estimator):
    w, b, a = make_layer(13, 9, 40, seed=7)
    kw = {"estimator": estimator, "seed": 3}
    if estimator == "exact":
        w, a = w[:, :10], a[:, :10]
    if estimator == "permutation":
        kw["n_permutations"] = 16
    one = score_layer(w, b, a, "sigmoid", **kw)
    tiny = score_layer(w, b, a, "sigmoid", memory_budget=1, **kw)
    assert tiny.info.get("slices") == 9 and "slices" not in one.info
    # identical up to summation order (numpy's AVX-512 reductions depend on array length)
    same = {"rtol": 1e-12, "atol": 1e-15}
    np.testing.assert_allclose(one.li, tiny.li, **same)
    np.testing.assert_allclose(one.var, tiny.var, **same)
    if one.stderr is not None:
        np.testing.assert_allclose(one.stderr, tiny.stderr, **same)


def test_analytic_is_deterministic_and_reports_its_sizes():
    w, b, a = make_layer(50, 4, 12, seed=8)
    s1 = score_layer(w, b, a, "relu", estimator="analytic", seed=1)
    s2 = score_layer(w, b, a, "relu", estimator="analytic", seed=2, analytic_sizes=8)
    np.testing.assert_array_equal(s1.li, s2.li)
    assert s1.stderr is None and s1.li_bias is None and s1.info["sizes"] == 8
    coarse = score_layer(w, b, a, "relu", estimator="analytic", analytic_sizes=2)
    assert not np.array_equal(coarse.li, s1.li)


def test_noise_bias_of_li_is_within_its_reported_bound():
    """Sampling noise can inflate mean |phi| by at most li_bias; measured against enumeration
    the inflation stays inside that bound (with antithetic pairs it is small: see README)."""
    for act in ["tanh", "relu"]:
        w, b, a = make_layer(12, 8, 60, seed=9)
        exact = score_layer(w, b, a, act, estimator="exact").li
        noisy = score_layer(w, b, a, act, estimator="permutation", n_permutations=4, seed=0)
        assert noisy.li_bias is not None and noisy.li_debiased is not None
        # sqrt(2/pi) x the mean standard error, which the RMS standard error bounds from above.
        assert np.all(noisy.li_bias <= math.sqrt(2 / math.pi) * noisy.stderr + 1e-15)
        assert np.all(noisy.li_debiased <= noisy.li + 1e-15)
        assert 0 < float(noisy.li_bias.mean())
        assert abs(float((noisy.li - exact).mean())) <= float(noisy.li_bias.mean())
