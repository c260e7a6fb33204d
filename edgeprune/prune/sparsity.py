"""From a target sparsity eta to an importance level m (``--sparsity``).

The achieved sparsity (paper eq. 9) is counted after the dead-unit cascade: masked links over
all links, all layers together. As m grows every layer's support set grows (nested prefixes) and
the cascade is monotone (it keeps exactly the links that lie on some input-to-output path of
active links), so eta(m) is a non-increasing step function of m.

It only changes where some layer's support set grows, at ``m = cumsum_k / total`` (see
:meth:`LayerRanking.breakpoints`). The solver therefore bisects on m over the sorted union of
these breakpoints: each interval between two consecutive breakpoints is one step, evaluated at
its midpoint (an m that is robust to printing and re-reading). When the bracket is down to two
neighbouring steps, both ends are checked and the closer eta wins; a tie goes to the larger m
(fewer links pruned). This finds the closest achievable eta exactly, in about log2(#links)
evaluations of support sets plus cascade.

numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.network import Network
from edgeprune.prune.cascade import CascadeResult, cascade_dead_units
from edgeprune.prune.support import LayerRanking, check_importance_level, rank_layers


def check_sparsity(eta: float) -> float:
    """Validate a target sparsity eta (must lie in [0, 1)) and return it as a float."""
    try:
        value = float(eta)
    except (TypeError, ValueError):
        raise EdgepruneError(f"--sparsity must be a number in [0, 1), got {eta!r}") from None
    if not np.isfinite(value) or not 0.0 <= value < 1.0:
        raise EdgepruneError(f"--sparsity must be in [0, 1), got {eta!r}")
    return value


def with_masks(net: Network, masks: Sequence[np.ndarray]) -> Network:
    """A copy of ``net`` whose layer masks are replaced by ``masks`` (no cascade)."""
    if len(masks) != len(net.layers):
        raise ValueError(f"got {len(masks)} masks for a network with {len(net.layers)} layers")
    out = net.copy()
    for layer, mask in zip(out.layers, masks, strict=True):
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != layer.weight.shape:
            raise ValueError(f"mask shape {mask.shape} != weight shape {layer.weight.shape}")
        layer.mask = mask.copy()
    return out


def prune_at_level(net: Network, ranks: Sequence[LayerRanking], m: float) -> CascadeResult:
    """Apply the support sets of importance level m to ``net`` and run the cascade."""
    m = check_importance_level(m)
    return cascade_dead_units(with_masks(net, [rank.mask(m) for rank in ranks]))


@dataclass
class LevelSolution:
    """The importance level found for a target sparsity, and the pruned network it gives."""

    importance_level: float
    sparsity: float  # achieved eta after the cascade
    target: float
    evaluations: int
    cascade: CascadeResult


def candidate_levels(ranks: Sequence[LayerRanking]) -> np.ndarray:
    """One m per step of eta(m): the midpoints of the intervals between breakpoints (ascending),
    then m = 1 itself.

    Empty when every layer's total score is 0 (then m has no effect).
    """
    parts = [rank.breakpoints() for rank in ranks]
    parts = [p for p in parts if p.size]
    if not parts:
        return np.zeros(0)
    b = np.unique(np.concatenate(parts))
    b = b[(b > 0.0) & (b <= 1.0)]
    lefts = np.concatenate([[0.0], b[:-1]])
    mids = 0.5 * (lefts + b)
    # m = 1 exactly keeps every positive score (see support.py), which the last midpoint may not.
    return np.concatenate([mids[mids > 0.0], [1.0]])


def solve_importance_level(
    net: Network,
    scores: Sequence[np.ndarray],
    target_eta: float,
) -> LevelSolution:
    """Find the importance level m whose achieved eta (after the cascade) is closest to target.

    ``scores`` are the per-layer link importances (non-negative, (out, in)); only the currently
    active links of ``net`` are candidates. Raises ValueError for a target outside [0, 1).
    """
    target = check_sparsity(target_eta)
    ranks = rank_layers(scores, [layer.mask for layer in net.layers])
    levels = candidate_levels(ranks)
    cache: dict[int, CascadeResult] = {}

    def evaluate(i: int) -> float:
        if i not in cache:
            cache[i] = prune_at_level(net, ranks, float(levels[i]))
        return cache[i].network.sparsity

    def solution(i: int) -> LevelSolution:
        res = cache[i]
        return LevelSolution(float(levels[i]), res.network.sparsity, target, len(cache), res)

    if levels.size == 0:
        res = prune_at_level(net, ranks, 1.0)
        return LevelSolution(1.0, res.network.sparsity, target, 1, res)

    lo, hi = 0, int(levels.size) - 1
    if evaluate(hi) >= target:  # even the largest support sets prune at least the target
        return solution(hi)
    if evaluate(lo) <= target:  # even the smallest support sets prune at most the target
        return solution(lo)
    # Invariant: eta(lo) > target > eta(hi), eta non-increasing in the index.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        eta = evaluate(mid)
        if eta == target:
            return solution(mid)
        if eta > target:
            lo = mid
        else:
            hi = mid
    best = hi if abs(evaluate(hi) - target) <= abs(evaluate(lo) - target) else lo
    return solution(best)


def sparsity_curve(
    net: Network, scores: Sequence[np.ndarray], levels: Sequence[float]
) -> list[tuple[float, float]]:
    """``(m, eta)`` pairs: the achieved sparsity after the cascade at each importance level."""
    ranks = rank_layers(scores, [layer.mask for layer in net.layers])
    return [(float(m), prune_at_level(net, ranks, m).network.sparsity) for m in levels]
