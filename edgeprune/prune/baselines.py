"""Baseline link scores behind the same interface as the Shapley link importances.

A score function maps a :class:`~edgeprune.network.Network` to one non-negative (out, in) array
per layer, so the support-set rule (eq. 8), the m <-> eta bisection and the cascade apply to
baselines unchanged. Masked links score 0 (they are never candidates anyway).

* ``magnitude``: ``|w_ij|``.
* ``random``: seeded uniform scores in [0, 1).
* ``lap``: lookahead pruning (Park et al., ICLR 2020),
  ``|w_ij| * ||W_prev[j, :]|| * ||W_next[:, i]||`` with masked weights and L2 norms; the norm is
  1 where there is no previous (first layer) or next (last layer) layer.

Also :func:`prune_global` / :func:`prune_global_magnitude`: one score (|w|) threshold across all
layers instead of the layer-wise support sets. numpy only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.network import Network
from edgeprune.prune.api import PruneResult, build_result
from edgeprune.prune.cascade import CascadeResult, cascade_dead_units
from edgeprune.prune.sparsity import check_sparsity, with_masks

ScoreFn = Callable[..., list[np.ndarray]]


def magnitude_scores(net: Network) -> list[np.ndarray]:
    """``|w|`` of every active link (0 for masked links), per layer."""
    return [np.abs(layer.masked_weight).astype(np.float64) for layer in net.layers]


def random_scores(net: Network, seed: int = 0) -> list[np.ndarray]:
    """Seeded uniform scores in [0, 1) for every active link (0 for masked links), per layer."""
    rng = np.random.default_rng(seed)
    return [np.where(layer.mask, rng.random(layer.weight.shape), 0.0) for layer in net.layers]


def lap_scores(net: Network) -> list[np.ndarray]:
    """Lookahead-pruning scores: ``|w_ij| * ||W_prev[j, :]||_2 * ||W_next[:, i]||_2``.

    ``i`` indexes the units of layer k (rows), ``j`` its inputs (columns); ``W_prev`` is the
    (masked) weight of layer k-1, whose row j holds the links into unit j, and ``W_next`` that
    of layer k+1, whose column i holds the links out of unit i.
    """
    weights = [layer.masked_weight.astype(np.float64) for layer in net.layers]
    scores = []
    for k, w in enumerate(weights):
        n_out, n_in = w.shape
        prev_norm = np.linalg.norm(weights[k - 1], axis=1) if k > 0 else np.ones(n_in)
        next_norm = (
            np.linalg.norm(weights[k + 1], axis=0) if k + 1 < len(weights) else np.ones(n_out)
        )
        scores.append(np.abs(w) * next_norm[:, None] * prev_norm[None, :])
    return scores


#: Baseline score functions by name (``random`` takes a ``seed`` keyword).
BASELINES: dict[str, ScoreFn] = {
    "magnitude": magnitude_scores,
    "random": random_scores,
    "lap": lap_scores,
}


def baseline_scores(name: str, net: Network, *, seed: int = 0) -> list[np.ndarray]:
    """Per-layer scores of baseline ``name`` (one of :data:`BASELINES`)."""
    if name not in BASELINES:
        raise EdgepruneError(f"unknown baseline {name!r}; use one of {', '.join(BASELINES)}")
    if name == "random":
        return random_scores(net, seed=seed)
    return BASELINES[name](net)


def _global_order(net: Network, scores: list[np.ndarray]) -> tuple[np.ndarray, list[int]]:
    """Flat indices (into all layers' weights concatenated) of active links, score descending
    (ties by layer, then flat index)."""
    flat = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1) for s in scores])
    active = np.concatenate([layer.mask.reshape(-1) for layer in net.layers])
    idx = np.flatnonzero(active)
    order = idx[np.argsort(-flat[idx], kind="stable")]
    return order, [layer.n_links for layer in net.layers]


def _keep_top(net: Network, order: np.ndarray, sizes: list[int], k: int) -> CascadeResult:
    flat = np.zeros(sum(sizes), dtype=bool)
    flat[order[:k]] = True
    masks, start = [], 0
    for layer, size in zip(net.layers, sizes, strict=True):
        masks.append(flat[start : start + size].reshape(layer.weight.shape))
        start += size
    return cascade_dead_units(with_masks(net, masks))


def prune_global(net: Network, scores: list[np.ndarray], target_eta: float) -> PruneResult:
    """Keep the globally highest ``scores`` (ties by layer, then flat index) so that the
    sparsity after the cascade is closest to ``target_eta``; ``importance_level`` of the result
    is None.

    The number of links kept before the cascade is found by bisection (eta after the cascade
    does not increase as more links are kept); ties go to the larger count.
    """
    target = check_sparsity(target_eta)
    if len(scores) != len(net.layers):
        raise EdgepruneError(f"got link scores for {len(scores)} layers but the network has "
                             f"{len(net.layers)}")
    order, sizes = _global_order(net, scores)
    cache: dict[int, CascadeResult] = {}

    def eta(k: int) -> float:
        if k not in cache:
            cache[k] = _keep_top(net, order, sizes, k)
        return cache[k].network.sparsity

    lo, hi = 0, int(order.size)
    if eta(hi) >= target:
        best = hi
    elif eta(lo) <= target:
        best = lo
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if eta(mid) > target:
                lo = mid
            else:
                hi = mid
        best = hi if abs(eta(hi) - target) <= abs(eta(lo) - target) else lo
    return build_result(cache[best], None, target_sparsity=target)


def prune_global_magnitude(net: Network, target_eta: float) -> PruneResult:
    """One |w| threshold across all layers (:func:`prune_global` of :func:`magnitude_scores`)."""
    return prune_global(net, magnitude_scores(net), target_eta)
