"""Scoring one dense layer: estimator choice, the public :func:`score_layer` and
:func:`shapley_values`.

Everything runs in float64 on torch (CPU, the process's thread settings untouched) and comes back
as float64 numpy arrays. Every estimator is seeded (``torch.Generator``), draws its permutations or
coalitions once per layer, and is bit-for-bit independent of ``memory_budget``.

Estimators and their defaults (evaluations are activation evaluations per (unit, sample) pair):

==============  ==========================================================  ==================
``linear``      ``phi = W_ij (a_j - r_j)``, identity activation only          0
``exact``       all 2^n coalitions, fan-in n <= 16                            2^n
``permutation`` 128 permutations (64 antithetic pairs); with a target:        n per permutation
                rounds from 32 permutations up to 1024
``kernel``      KernelSHAP, 2n + 2048 coalitions (shap's default); every      coalitions + 2
                coalition (exact) when 2^n - 2 fits the budget
``analytic``    DASP's Gaussian approximation, 8 interior coalition sizes,    2 x (sizes + 2)
                deterministic (exact for identity units and pairs of <= 2
                live links)
``auto``        linear for the identity, exact up to fan-in 12, else the
                cheaper of analytic and permutation that meets the accuracy
                target (5% relative error), decided per layer by a pilot
                (:mod:`edgeprune.shapley.auto`)
==============  ==========================================================  ==================

Memory: every estimator scores a layer in slices of units whose outputs (values and standard
errors, N x units x in float64 each) take at most half the budget, reducing each slice to its
per-link statistics before the next; the other half bounds each estimator's temporaries. Every
value depends only on its own (unit, sample) pair and on the seed (permutations and coalition
designs are drawn once per call from it), so slicing changes no result, with one exception: the
adaptive permutation estimator decides when to stop per slice (each slice then meets the target
on its own, so the layer does too). ``return_phi`` keeps every value and is not budgeted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from edgeprune.choices import ESTIMATORS
from edgeprune.errors import EdgepruneError
from edgeprune.shapley.aggregate import LinkSummary, summarize
from edgeprune.shapley.analytic import DEFAULT_SIZES, analytic_phi
from edgeprune.shapley.auto import AUTO_EXACT_MAX_FAN_IN, AUTO_TARGET_REL_ERROR, choose_estimator
from edgeprune.shapley.exact import MAX_EXACT_PLAYERS, exact_phi, linear_phi
from edgeprune.shapley.game import DTYPE, Estimate, LinkGame, make_game, subgame
from edgeprune.shapley.kernel import kernel_phi
from edgeprune.shapley.permutation import permutation_phi

__all__ = ["AUTO_EXACT_MAX_FAN_IN", "AUTO_TARGET_REL_ERROR", "DEFAULT_MEMORY_BUDGET",
           "ESTIMATORS", "LayerScores", "resolve_estimator", "score_layer", "shapley_values"]

#: Default memory budget (bytes).
DEFAULT_MEMORY_BUDGET = 2**31


@dataclass
class LayerScores:
    """Shapley link scores of one layer (``out`` units, ``in`` inputs), float64.

    ``li`` (out, in): mean_x |phi_ij(x)|, link importance (paper eq. 3, DESIGN section 4);
    ``ui`` (in,): ``li.mean(axis=0)``, importance of the layer's input units (paper eq. 4);
    ``signed`` (out, in): mean_x phi_ij(x); ``var`` (out, in): population variance over x;
    ``stderr`` (out, in): RMS over x of the estimator's standard error of phi_ij(x), None for the
    deterministic estimators (exact, linear, analytic, and kernel when its design enumerates
    every coalition); ``li_bias`` (out, in): with a standard error, the bound
    ``sqrt(2/pi) mean_x se_ij(x)`` on how much sampling noise can inflate ``li`` (see
    :mod:`edgeprune.shapley.aggregate`); ``estimator``: the estimator actually used (``auto``
    resolved); ``n_evaluations``: activation evaluations per (unit, sample) pair; ``info``:
    estimator details (``permutations``, ``rounds``, ``coalitions``, ``sizes``, the ``auto``
    pilot, ...) and, with a standard error, ``rel_error`` = ``stderr.mean() / li.mean()``;
    ``phi`` (N, out, in): every value, only with ``return_phi=True``.
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
    li_bias: np.ndarray | None = None
    li_debiased: np.ndarray | None = None


def resolve_estimator(estimator: str, activation: str, fan_in: int) -> str:
    """Validate ``estimator``; ``auto`` is returned as is (it is decided by a pilot)."""
    if estimator not in ESTIMATORS:
        raise EdgepruneError(f"unknown estimator {estimator!r}; use one of {', '.join(ESTIMATORS)}")
    if estimator == "exact" and fan_in > MAX_EXACT_PLAYERS:
        raise EdgepruneError(f"exact enumeration needs fan-in <= {MAX_EXACT_PLAYERS}, this layer "
                         f"has {fan_in}; use analytic, permutation or kernel")
    return estimator


def _estimate(game: LinkGame, name: str, *, seed: int, memory_budget: int,
              n_permutations: int | None, target_rel_error: float | None,
              max_permutations: int | None, kernel_samples: int | None,
              analytic_sizes: int | None, progress: Callable[[int], None] | None) -> Estimate:
    if name == "linear":
        return linear_phi(game, progress)
    if name == "exact":
        return exact_phi(game, memory_budget=memory_budget, progress=progress)
    if name == "analytic":
        return analytic_phi(game, memory_budget=memory_budget,
                            sizes=analytic_sizes or DEFAULT_SIZES, progress=progress)
    if name == "permutation":
        return permutation_phi(game, seed=seed, memory_budget=memory_budget,
                               n_permutations=n_permutations, target_rel_error=target_rel_error,
                               max_permutations=max_permutations, progress=progress)
    return kernel_phi(game, seed=seed, memory_budget=memory_budget, budget=kernel_samples,
                      progress=progress)


def slice_units(game: LinkGame, memory_budget: int) -> int:
    """Units per slice: their outputs (values and standard errors) fit half the budget."""
    per_unit = 2 * 8 * game.n_samples * game.n_players
    return max(1, min(game.n_units, (int(memory_budget) // 2) // per_unit))


def _concat(parts: list[LinkSummary]) -> LinkSummary:
    se = [p.stderr for p in parts]
    return LinkSummary(li=torch.cat([p.li for p in parts]),
                       signed=torch.cat([p.signed for p in parts]),
                       var=torch.cat([p.var for p in parts]),
                       stderr=None if any(x is None for x in se) else torch.cat(se),
                       li_bias=None if any(p.li_bias is None for p in parts)
                       else torch.cat([p.li_bias for p in parts]),
                       li_debiased=None if any(p.li_debiased is None for p in parts)
                       else torch.cat([p.li_debiased for p in parts]))


def score_layer(weight: np.ndarray, bias: np.ndarray | None, inputs: np.ndarray,
                activation: str, *, negative_slope: float = 0.01,
                reference: str | np.ndarray = "zero", estimator: str = "auto", seed: int = 0,
                memory_budget: int = DEFAULT_MEMORY_BUDGET, n_permutations: int | None = None,
                target_rel_error: float | None = None, max_permutations: int | None = None,
                kernel_samples: int | None = None, analytic_sizes: int | None = None,
                progress: Callable[[int], None] | None = None,
                return_phi: bool = False) -> LayerScores:
    """Score every link of the layer ``y = act(weight @ a + bias)`` on ``inputs`` (N, in).

    ``reference``: ``"zero"`` (an absent link is a removed weight), ``"mean"`` (mean of
    ``inputs``) or an array (in,). ``estimator``: one of :data:`ESTIMATORS`; ``auto`` picks
    ``linear`` for the identity, ``exact`` up to fan-in :data:`AUTO_EXACT_MAX_FAN_IN`, else the
    cheapest of ``analytic`` / ``permutation`` meeting ``target_rel_error`` (default
    :data:`AUTO_TARGET_REL_ERROR`), measured by a pilot. ``memory_budget`` (bytes) bounds the
    outputs held at once and every estimator's temporaries (module docstring); results do not
    depend on it. ``n_permutations``: permutations in fixed mode, or per round with a target;
    ``max_permutations``: the cap with a target. ``kernel_samples``: KernelSHAP's coalition
    budget (default 2n + 2048). ``analytic_sizes``: interior coalition sizes of ``analytic``
    (default 8). ``progress(units_finished)`` is called as units complete. ``return_phi`` keeps
    every value in :attr:`LayerScores.phi` (N, out, in).
    """
    t0 = time.perf_counter()
    game = make_game(weight, bias, inputs, activation, negative_slope=negative_slope,
                     reference=reference)
    name = resolve_estimator(estimator, activation, game.n_players)
    info: dict = {}
    if name == "auto":
        if target_rel_error is None:
            target_rel_error = AUTO_TARGET_REL_ERROR
        name, info["auto"] = choose_estimator(game, target_rel_error=target_rel_error,
                                              seed=seed, memory_budget=memory_budget // 2,
                                              sizes=analytic_sizes or DEFAULT_SIZES)
    if name == "permutation" and target_rel_error is not None:
        info["target_rel_error"] = target_rel_error
    step = slice_units(game, memory_budget)
    parts, phis, est = [], [], None
    for u0 in range(0, game.n_units, step):
        sub = subgame(game, slice(u0, min(u0 + step, game.n_units)))
        sub_progress = None if progress is None else (lambda k, u0=u0: progress(u0 + k))
        est = _estimate(sub, name, seed=seed, memory_budget=memory_budget // 2,
                        n_permutations=n_permutations, target_rel_error=target_rel_error,
                        max_permutations=max_permutations, kernel_samples=kernel_samples,
                        analytic_sizes=analytic_sizes, progress=sub_progress)
        se = est.stderr
        parts.append(summarize(sub, lambda p0, p1, e=est, se=se: (
            e.phi[p0:p1], None if se is None else se[p0:p1])))
        if return_phi:
            phis.append(est.phi.reshape(sub.n_units, sub.n_samples, sub.n_players))
        del est.phi, est.stderr
    assert est is not None
    info.update(est.info)
    if len(parts) > 1:
        info["slices"] = len(parts)
    summary = _concat(parts) if len(parts) > 1 else parts[0]
    if summary.stderr is not None:
        info["rel_error"] = summary.rel_error()
    phi = None
    if return_phi:
        phi = torch.cat(phis).to(DTYPE).permute(1, 0, 2).contiguous().numpy()
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
        li_bias=None if summary.li_bias is None else summary.li_bias.numpy(),
        li_debiased=None if summary.li_debiased is None else summary.li_debiased.numpy(),
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
