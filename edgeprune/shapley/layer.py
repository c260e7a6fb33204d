"""Scoring one dense layer: estimator choice, the public :func:`score_layer` and
:func:`shapley_values`.

Everything runs in float64 on torch (CPU, the process's thread settings untouched) and comes back
as float64 numpy arrays. Every estimator is seeded (``torch.Generator``), draws its permutations or
coalitions once per layer, and is bit-for-bit independent of ``memory_budget``.

Estimators and their defaults (evaluations are activation evaluations per (unit, sample) pair):

==============  ==========================================================  ==================
``linear``      ``phi = W_ij (a_j - r_j)``, identity activation only          0
``exact``       all 2^n coalitions, fan-in n <= 14                            2^n
``permutation`` 128 permutations (64 antithetic pairs); with a target:        n per permutation
                rounds from 32 permutations up to 1024
``kernel``      KernelSHAP, 2n + 2048 coalitions (shap's default); every      coalitions + 2
                coalition (exact) when 2^n - 2 fits the budget
``auto``        linear for the identity, exact up to fan-in 12, else
                permutation with a 5% relative-error target (cap 1024)
==============  ==========================================================  ==================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeprune.shapley.aggregate import summarize
from edgeprune.shapley.exact import MAX_EXACT_PLAYERS, exact_phi, linear_phi
from edgeprune.shapley.game import Estimate, LinkGame, make_game
from edgeprune.shapley.kernel import kernel_phi
from edgeprune.shapley.permutation import permutation_phi

ESTIMATORS = ("auto", "linear", "exact", "permutation", "kernel")

#: ``auto`` enumerates exactly up to this fan-in (2^12 = 4096 evaluations per pair).
AUTO_EXACT_MAX_FAN_IN = 12
#: ``auto``'s relative-error target for the permutation estimator on wider layers.
AUTO_TARGET_REL_ERROR = 0.05
#: Default memory budget for the biggest temporary (bytes).
DEFAULT_MEMORY_BUDGET = 2**31


@dataclass
class LayerScores:
    """Shapley link scores of one layer (``out`` units, ``in`` inputs), float64.

    ``li`` (out, in): mean_x |phi_ij(x)|, link importance (paper eq. 3, DESIGN section 4);
    ``ui`` (in,): ``li.mean(axis=0)``, importance of the layer's input units (paper eq. 4);
    ``signed`` (out, in): mean_x phi_ij(x); ``var`` (out, in): population variance over x;
    ``stderr`` (out, in): RMS over x of the estimator's standard error of phi_ij(x), None for the
    exact estimators (exact, linear, and kernel when its design enumerates every coalition);
    ``estimator``: the estimator actually used (``auto`` resolved); ``n_evaluations``: activation
    evaluations per (unit, sample) pair; ``info``: estimator details (``permutations``,
    ``rounds``, ``coalitions``, ``enumerated``, ...) and, with a standard error, ``rel_error`` =
    ``stderr.mean() / li.mean()``; ``phi`` (N, out, in): every value, only with
    ``return_phi=True`` (a field rather than a second return value, so the return type is fixed).
    """

    li: np.ndarray
    ui: np.ndarray
    signed: np.ndarray
    var: np.ndarray
    stderr: np.ndarray | None
    estimator: str
    seconds: float
    n_samples: int
    n_evaluations: int
    info: dict = field(default_factory=dict)
    phi: np.ndarray | None = None


def resolve_estimator(estimator: str, activation: str, fan_in: int) -> str:
    """The estimator ``auto`` stands for (others are returned unchanged after validation)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    if estimator != "auto":
        return estimator
    if activation == "identity":
        return "linear"
    if fan_in <= AUTO_EXACT_MAX_FAN_IN:
        return "exact"
    return "permutation"


def _estimate(game: LinkGame, name: str, *, auto: bool, seed: int, memory_budget: int,
              n_permutations: int | None, target_rel_error: float | None,
              max_permutations: int | None, kernel_samples: int | None,
              progress: Callable[[int], None] | None) -> Estimate:
    if name == "linear":
        return linear_phi(game, progress)
    if name == "exact":
        if game.n_players > MAX_EXACT_PLAYERS:
            raise ValueError(f"exact enumeration needs fan-in <= {MAX_EXACT_PLAYERS}, this layer "
                             f"has {game.n_players}; use permutation or kernel")
        return exact_phi(game, memory_budget=memory_budget, progress=progress)
    if name == "permutation":
        if auto and target_rel_error is None:
            target_rel_error = AUTO_TARGET_REL_ERROR
        return permutation_phi(game, seed=seed, memory_budget=memory_budget,
                               n_permutations=n_permutations, target_rel_error=target_rel_error,
                               max_permutations=max_permutations, progress=progress)
    return kernel_phi(game, seed=seed, memory_budget=memory_budget, budget=kernel_samples,
                      progress=progress)


def score_layer(weight: np.ndarray, bias: np.ndarray | None, inputs: np.ndarray,
                activation: str, *, negative_slope: float = 0.01,
                reference: str | np.ndarray = "zero", estimator: str = "auto", seed: int = 0,
                memory_budget: int = DEFAULT_MEMORY_BUDGET, n_permutations: int | None = None,
                target_rel_error: float | None = None, max_permutations: int | None = None,
                kernel_samples: int | None = None,
                progress: Callable[[int], None] | None = None,
                return_phi: bool = False) -> LayerScores:
    """Score every link of the layer ``y = act(weight @ a + bias)`` on ``inputs`` (N, in).

    ``reference``: ``"zero"`` (an absent link is a removed weight), ``"mean"`` (mean of
    ``inputs``) or an array (in,). ``estimator``: one of :data:`ESTIMATORS`; ``auto`` picks
    ``linear`` for the identity, ``exact`` up to fan-in :data:`AUTO_EXACT_MAX_FAN_IN`, else
    ``permutation`` with ``target_rel_error`` (default :data:`AUTO_TARGET_REL_ERROR`).
    ``memory_budget`` bounds the biggest temporary in bytes (outputs and the permutation
    estimator's two running sums, each N*out*in float64, are not temporaries); the results do not
    depend on it. ``n_permutations``: permutations in fixed mode, or per round with a target;
    ``max_permutations``: the cap with a target. ``kernel_samples``: KernelSHAP's coalition budget
    (default 2n + 2048). ``progress(units_finished)`` is called as units complete (the adaptive
    permutation estimator only knows at the end). ``return_phi`` keeps every value in
    :attr:`LayerScores.phi` (N, out, in).
    """
    t0 = time.perf_counter()
    game = make_game(weight, bias, inputs, activation, negative_slope=negative_slope,
                     reference=reference)
    name = resolve_estimator(estimator, activation, game.n_players)
    est = _estimate(game, name, auto=estimator == "auto", seed=seed, memory_budget=memory_budget,
                    n_permutations=n_permutations, target_rel_error=target_rel_error,
                    max_permutations=max_permutations, kernel_samples=kernel_samples,
                    progress=progress)
    stderr = est.stderr
    summary = summarize(game, lambda p0, p1: (
        est.phi[p0:p1], None if stderr is None else stderr[p0:p1]))
    info = dict(est.info)
    if summary.stderr is not None:
        info["rel_error"] = summary.rel_error()
    phi = None
    if return_phi:
        phi = est.phi.reshape(game.n_units, game.n_samples, game.n_players)
        phi = phi.permute(1, 0, 2).contiguous().numpy()
    li = summary.li.numpy()
    return LayerScores(
        li=li,
        ui=li.mean(axis=0),
        signed=summary.signed.numpy(),
        var=summary.var.numpy(),
        stderr=None if summary.stderr is None else summary.stderr.numpy(),
        estimator=name,
        seconds=time.perf_counter() - t0,
        n_samples=game.n_samples,
        n_evaluations=est.n_evaluations,
        info=info,
        phi=phi,
    )


def shapley_values(weight: np.ndarray, bias: np.ndarray | None, inputs: np.ndarray,
                   activation: str = "identity", **kwargs) -> np.ndarray:
    """Every ``phi_ij(x)`` of the layer as an (N, out, in) float64 array.

    Takes the keyword arguments of :func:`score_layer` (``return_phi`` is implied).
    """
    kwargs["return_phi"] = True
    scores = score_layer(weight, bias, inputs, activation, **kwargs)
    assert scores.phi is not None
    return scores.phi
