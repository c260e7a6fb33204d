"""Shapley link scores (edgeprune.shapley): estimators against brute force, each other and shap."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from edgeprune.shapley import (
    AUTO_TARGET_REL_ERROR,
    ESTIMATORS,
    score_layer,
    shapley_values,
)

ACTS = {
    "identity": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.2 * z),
    "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "tanh": np.tanh,
}
SLOPE = 0.2  # negative_slope used for leaky_relu throughout

# Tolerances of the sampled estimators against exact (fan-in 10-12, see the tests below):
# relative L1 error sum|phi - phi_exact| / sum|phi_exact| over every (sample, unit, link).
# Measured worst cases over 5 seeds: 0.041 (permutation) and 0.044 (kernel), both for relu at n=10.
PERMUTATION_REL_L1 = 0.08   # default 128 permutations (64 antithetic pairs)
KERNEL_REL_L1 = 0.10        # 300 coalitions, well below 2^n - 2 (1022 or 4094)
# RMS error over RMS reported standard error; measured 0.56-1.26 over the same cases.
STDERR_RATIO = (0.4, 2.5)
EFFICIENCY_ATOL = 1e-5


def make_layer(n_in: int, n_out: int, n_samples: int, seed: int = 0, masked: int = 3):
    """A random layer whose pre-activations straddle 0, with ``masked`` zero weights and
    inputs that are zero 30% of the time (like relu activations)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0.0, 1.5 / np.sqrt(n_in), (n_out, n_in))
    flat = rng.choice(w.size, size=masked, replace=False)
    w.flat[flat] = 0.0
    b = rng.normal(0.0, 0.3, n_out)
    a = rng.random((n_samples, n_in)) * (rng.random((n_samples, n_in)) > 0.3)
    return w.astype(np.float32), b.astype(np.float32), a.astype(np.float32)


def brute_force(w: np.ndarray, b: np.ndarray, a: np.ndarray, act: str,
                ref: np.ndarray | None = None) -> np.ndarray:
    """Eq. 3 of the paper, literally: every subset of the other links, factorial weights."""
    f = ACTS[act]
    w, b, a = (np.asarray(x, dtype=np.float64) for x in (w, b, a))
    r = np.zeros(w.shape[1]) if ref is None else np.asarray(ref, dtype=np.float64)
    n = w.shape[1]
    phi = np.zeros((a.shape[0], w.shape[0], n))
    for x, i in itertools.product(range(a.shape[0]), range(w.shape[0])):
        def v(subset: tuple[int, ...], i: int = i, x: int = x) -> float:
            pre = b[i] + sum(w[i, j] * (a[x, j] if j in subset else r[j]) for j in range(n))
            return float(f(pre))
        for j in range(n):
            others = [k for k in range(n) if k != j]
            for size in range(n):
                weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                for subset in itertools.combinations(others, size):
                    phi[x, i, j] += weight * (v(subset + (j,)) - v(subset))
    return phi


def game_totals(w, b, a, act, ref=None) -> np.ndarray:
    """v(all) - v(empty) for every (sample, unit): what efficiency distributes."""
    f = ACTS[act]
    w, b, a = (np.asarray(x, dtype=np.float64) for x in (w, b, a))
    r = np.zeros(w.shape[1]) if ref is None else ref
    return f(a @ w.T + b) - f(w @ r + b)[None, :]


def rel_l1(phi: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(phi - ref).sum() / np.abs(ref).sum())


def rms_ratio(scores, exact: np.ndarray) -> float:
    """RMS error against exact over the RMS of the reported standard errors."""
    return float(np.sqrt(np.mean((scores.phi - exact) ** 2)) / np.sqrt(np.mean(scores.stderr ** 2)))


# --- exact and linear -----------------------------------------------------------------------

@pytest.mark.parametrize("act", list(ACTS))
def test_exact_matches_brute_force(act):
    w, b, a = make_layer(6, 3, 4, seed=1, masked=2)
    phi = shapley_values(w, b, a, act, estimator="exact", negative_slope=SLOPE)
    assert phi.shape == (4, 3, 6) and phi.dtype == np.float64
    np.testing.assert_allclose(phi, brute_force(w, b, a, act), rtol=0, atol=1e-12)


def test_exact_matches_brute_force_with_mean_reference():
    w, b, a = make_layer(5, 2, 4, seed=2)
    ref = a.astype(np.float64).mean(axis=0)
    phi = shapley_values(w, b, a, "tanh", estimator="exact", reference="mean")
    np.testing.assert_allclose(phi, brute_force(w, b, a, "tanh", ref), rtol=0, atol=1e-12)
    explicit = shapley_values(w, b, a, "tanh", estimator="exact", reference=ref)
    np.testing.assert_array_equal(phi, explicit)


def test_linear_equals_exact_for_identity():
    w, b, a = make_layer(9, 5, 7, seed=3)
    lin = score_layer(w, b, a, "identity", estimator="linear", return_phi=True)
    ex = shapley_values(w, b, a, "identity", estimator="exact")
    np.testing.assert_allclose(lin.phi, ex, rtol=0, atol=1e-12)
    assert lin.estimator == "linear" and lin.stderr is None and lin.n_evaluations == 0


def test_linear_and_exact_refuse_what_they_cannot_do():
    w, b, a = make_layer(17, 2, 3)
    with pytest.raises(ValueError, match="identity"):
        score_layer(w, b, a, "relu", estimator="linear")
    with pytest.raises(ValueError, match="fan-in"):
        score_layer(w, b, a, "relu", estimator="exact")


def test_symmetric_players_get_equal_values():
    w, b, a = make_layer(7, 4, 6, seed=4, masked=0)
    w[:, 3] = w[:, 1]
    a[:, 3] = a[:, 1]
    phi = shapley_values(w, b, a, "sigmoid", estimator="exact")
    np.testing.assert_allclose(phi[:, :, 3], phi[:, :, 1], rtol=0, atol=1e-14)


# --- sampled estimators against exact ---------------------------------------------------------

@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "leaky_relu"])
@pytest.mark.parametrize("n_in", [10, 12])
def test_sampled_estimators_agree_with_exact(act, n_in):
    w, b, a = make_layer(n_in, 5, 10, seed=n_in)
    exact = shapley_values(w, b, a, act, estimator="exact", negative_slope=SLOPE)
    perm = score_layer(w, b, a, act, estimator="permutation", negative_slope=SLOPE, seed=7,
                       return_phi=True)
    assert perm.info["permutations"] == 128
    assert rel_l1(perm.phi, exact) < PERMUTATION_REL_L1
    # The reported standard errors are honest: the RMS error is about the RMS standard error.
    assert STDERR_RATIO[0] < rms_ratio(perm, exact) < STDERR_RATIO[1]
    kern = score_layer(w, b, a, act, estimator="kernel", negative_slope=SLOPE, seed=7,
                       kernel_samples=300, return_phi=True)
    assert not kern.info["enumerated"] and kern.info["coalitions"] == 300 < 2**n_in - 2
    assert kern.n_evaluations == 302
    assert rel_l1(kern.phi, exact) < KERNEL_REL_L1
    assert kern.stderr is not None and kern.stderr.shape == (5, n_in)
    assert STDERR_RATIO[0] < rms_ratio(kern, exact) < STDERR_RATIO[1]
    # Link importances (what pruning ranks) are closer still.
    li = score_layer(w, b, a, act, estimator="exact", negative_slope=SLOPE).li
    assert rel_l1(perm.li, li) < PERMUTATION_REL_L1 and rel_l1(kern.li, li) < KERNEL_REL_L1


def test_permutation_matches_a_plain_antithetic_sampler():
    """The cumulative-sum, reverse-order and sparse-input tricks change no value: a literal
    implementation fed the same permutations (drawn as the estimator draws them) agrees."""
    torch = pytest.importorskip("torch")
    w, b, a = make_layer(9, 3, 5, seed=16)
    a[:, 4] = 0.0
    f = ACTS["tanh"]
    gen = torch.Generator().manual_seed(21)
    perms = [torch.randperm(9, generator=gen).numpy() for _ in range(3)]
    wd, bd, ad = (x.astype(np.float64) for x in (w, b, a))
    plain = np.zeros((5, 3, 9))
    for x, i in itertools.product(range(5), range(3)):
        for perm in perms:
            for order in (perm, perm[::-1]):
                pre = bd[i]
                for j in order:
                    new = pre + wd[i, j] * ad[x, j]
                    plain[x, i, j] += (f(new) - f(pre)) / 6
                    pre = new
    ours = shapley_values(w, b, a, "tanh", estimator="permutation", seed=21, n_permutations=6)
    np.testing.assert_allclose(ours, plain, rtol=0, atol=1e-13)


def test_kernel_enumerates_when_the_budget_allows():
    w, b, a = make_layer(8, 4, 6, seed=5)
    kern = score_layer(w, b, a, "sigmoid", estimator="kernel", return_phi=True)
    assert kern.info["enumerated"] and kern.info["coalitions"] == 2**8 - 2
    assert kern.stderr is None
    exact = shapley_values(w, b, a, "sigmoid", estimator="exact")
    np.testing.assert_allclose(kern.phi, exact, rtol=0, atol=1e-12)


def test_adaptive_permutation_stops_at_target():
    w, b, a = make_layer(40, 6, 20, seed=6)
    s = score_layer(w, b, a, "relu", estimator="permutation", target_rel_error=0.05,
                    n_permutations=16, max_permutations=2048)
    assert s.info["rel_error"] <= 0.05
    assert s.info["permutations"] % 16 == 0 and s.info["rounds"] <= 4
    # No more than needed: one round less would not have reached the target.
    fewer = score_layer(w, b, a, "relu", estimator="permutation",
                        n_permutations=s.info["permutations"] - 16)
    assert fewer.info["rel_error"] > 0.05 or s.info["rounds"] == 1
    assert s.stderr.mean() / s.li.mean() == pytest.approx(s.info["rel_error"], rel=1e-9)
    capped = score_layer(w, b, a, "relu", estimator="permutation", target_rel_error=1e-6,
                         n_permutations=16, max_permutations=40)
    assert capped.info["permutations"] == 40 and capped.info["rel_error"] > 1e-6


# --- properties every estimator has -------------------------------------------------------------

ALL = [("linear", "identity"), ("exact", "tanh"), ("permutation", "relu"),
       ("kernel", "leaky_relu"), ("kernel", "sigmoid")]


@pytest.mark.parametrize("estimator,act", ALL)
def test_efficiency(estimator, act):
    w, b, a = make_layer(11, 4, 9, seed=8)
    phi = shapley_values(w, b, a, act, estimator=estimator, negative_slope=SLOPE,
                         kernel_samples=200)
    total = game_totals(w, b, a, act)
    np.testing.assert_allclose(phi.sum(axis=2), total, rtol=0, atol=EFFICIENCY_ATOL)


@pytest.mark.parametrize("estimator,act", ALL + [("auto", "relu")])
def test_dummy_links_score_exactly_zero(estimator, act):
    w, b, a = make_layer(11, 4, 9, seed=9, masked=0)
    w[2, 5] = 0.0          # a masked (pruned) link
    w[:, 7] = 0.0          # a dead input
    a[3, 0] = 0.0          # an input equal to the reference on one sample
    s = score_layer(w, b, a, act, estimator=estimator, negative_slope=SLOPE,
                    kernel_samples=200, return_phi=True)
    assert np.all(s.phi[:, 2, 5] == 0.0) and np.all(s.phi[:, :, 7] == 0.0)
    assert np.all(s.phi[3, :, 0] == 0.0)
    assert s.li[2, 5] == 0.0 and np.all(s.li[:, 7] == 0.0) and s.ui[7] == 0.0
    if s.stderr is not None:
        assert s.stderr[2, 5] == 0.0 and np.all(s.stderr[:, 7] == 0.0)
    # Efficiency survives the explicit zeroing.
    np.testing.assert_allclose(s.phi.sum(axis=2), game_totals(w, b, a, act), atol=EFFICIENCY_ATOL)


@pytest.mark.parametrize("estimator", ["permutation", "kernel"])
def test_seeded_and_deterministic(estimator):
    w, b, a = make_layer(30, 4, 8, seed=10)
    kw = dict(estimator=estimator, kernel_samples=200)
    one = shapley_values(w, b, a, "tanh", seed=3, **kw)
    np.testing.assert_array_equal(one, shapley_values(w, b, a, "tanh", seed=3, **kw))
    assert not np.array_equal(one, shapley_values(w, b, a, "tanh", seed=4, **kw))


@pytest.mark.parametrize("estimator,n_in", [("exact", 8), ("permutation", 12), ("kernel", 12),
                                            ("kernel", 40), ("linear", 12)])
def test_chunking_gives_identical_results(estimator, n_in):
    # 9 units x 70 samples = 630 pairs: three 256-pair blocks under a tiny budget.
    w, b, a = make_layer(n_in, 9, 70, seed=11)
    act = "identity" if estimator == "linear" else "sigmoid"
    kw = dict(estimator=estimator, seed=5, kernel_samples=150, return_phi=True)
    big = score_layer(w, b, a, act, **kw)
    tiny = score_layer(w, b, a, act, memory_budget=1, **kw)
    for field in ("phi", "li", "ui", "signed", "var", "stderr"):
        x, y = getattr(big, field), getattr(tiny, field)
        # identical up to summation order: numpy's SIMD reductions on AVX-512 depend on the
        # array length (measured: 2 of 117 entries differ by 9e-19)
        assert (x is None and y is None) or np.allclose(x, y, rtol=1e-12, atol=1e-15), field


def test_layer_scores_reduce_phi():
    w, b, a = make_layer(9, 5, 12, seed=12)
    s = score_layer(w, b, a, "relu", estimator="permutation", return_phi=True)
    assert s.phi.shape == (12, 5, 9)
    np.testing.assert_allclose(s.li, np.abs(s.phi).mean(axis=0), atol=1e-15)
    np.testing.assert_allclose(s.ui, s.li.mean(axis=0), atol=1e-15)
    np.testing.assert_allclose(s.signed, s.phi.mean(axis=0), atol=1e-15)
    np.testing.assert_allclose(s.var, s.phi.var(axis=0), atol=1e-15)
    assert s.li.dtype == np.float64 and s.stderr.shape == (5, 9) and np.all(s.li >= 0)
    assert s.n_samples == 12 and s.n_evaluations == 128 * 9 + 1 and s.seconds > 0
    assert score_layer(w, b, a, "relu", estimator="exact").n_evaluations == 2**9


def test_auto_picks_and_records_the_estimator():
    w, b, a = make_layer(13, 3, 5, seed=13)
    assert score_layer(w, b, a, "identity").estimator == "linear"
    assert score_layer(w[:, :12], b, a[:, :12], "relu").estimator == "exact"
    s = score_layer(w, b, a, "relu")
    pilot = s.info["auto"]
    expected = "analytic" if pilot["analytic_rel_l1"] <= AUTO_TARGET_REL_ERROR else "permutation"
    assert s.estimator == expected and pilot["pairs"] == 3 * 5
    # A target the approximation cannot meet sends auto to the permutation estimator, which
    # then stops on that target.
    strict = score_layer(w, b, a, "relu", target_rel_error=1e-4, max_permutations=64)
    assert strict.estimator == "permutation" and strict.info["target_rel_error"] == 1e-4
    assert strict.info["auto"]["analytic_rel_l1"] > 1e-4
    assert "auto" in ESTIMATORS and set(ESTIMATORS) >= {"linear", "exact", "permutation",
                                                        "kernel"}


@pytest.mark.parametrize("estimator", ["exact", "permutation", "kernel", "auto"])
def test_progress_reports_finished_units(estimator):
    w, b, a = make_layer(10, 9, 70, seed=14)
    seen: list[int] = []
    score_layer(w, b, a, "tanh", estimator=estimator, memory_budget=1, progress=seen.append)
    assert seen and seen[-1] == 9 and seen == sorted(seen)


def test_bad_arguments_are_refused():
    w, b, a = make_layer(5, 3, 4)
    with pytest.raises(ValueError, match="estimator"):
        score_layer(w, b, a, "relu", estimator="magic")
    with pytest.raises(ValueError, match="activation"):
        score_layer(w, b, a, "gelu")
    with pytest.raises(ValueError, match="inputs"):
        score_layer(w, b, a[:, :4], "relu")
    with pytest.raises(ValueError, match="reference"):
        score_layer(w, b, a, "relu", reference="median")
    with pytest.raises(ValueError, match="bias"):
        score_layer(w, b[:2], a, "relu")


# --- the peer: shap.KernelExplainer on one unit ------------------------------------------------

def test_agrees_with_shap_kernel_explainer():
    shap = pytest.importorskip("shap")
    w, b, a = make_layer(8, 3, 2, seed=15, masked=0)
    unit, sample = 1, 0
    wi, bi = w[unit].astype(np.float64), float(b[unit])

    def g(x: np.ndarray) -> np.ndarray:   # one unit of the layer as a function of its inputs
        return np.tanh(x @ wi + bi)

    explainer = shap.KernelExplainer(g, np.zeros((1, 8)))
    peer = explainer.shap_values(a[sample:sample + 1].astype(np.float64), nsamples=2**8,
                                 l1_reg=False, silent=True)
    peer = np.asarray(peer).reshape(-1)
    ours = shapley_values(w, b, a, "tanh", estimator="exact")[sample, unit]
    np.testing.assert_allclose(ours, peer, rtol=0, atol=1e-6)
    kern = shapley_values(w, b, a, "tanh", estimator="kernel")[sample, unit]
    np.testing.assert_allclose(kern, peer, rtol=0, atol=1e-6)
