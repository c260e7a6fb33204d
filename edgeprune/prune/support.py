"""SHAP-SAE support sets (paper eq. 6-8): which links of a layer survive importance level m.

For layer ``l`` the link scores ``LI`` (non-negative, shape (out, in)) of the currently active
links are sorted in descending order, ties broken by flat index (row-major, ascending), and the
support set is the smallest prefix whose cumulative sum reaches ``m * total``, where ``total`` is
the sum of the active links' scores (eq. 6). Every other link is masked (eq. 10).

Decisions where the paper is silent:

* Only active links are candidates: a link that is already masked stays masked, whatever its
  score, and its score does not count towards the total.
* Links with score 0 never enter a support set, for any m: the smallest prefix reaching the total
  stops at the last positive score. So ``m = 1`` keeps exactly the active links with a positive
  score (and drops zero-score links, which contribute nothing on the explanation set).
* A layer whose active links all score 0 has ``total = 0``; the empty prefix already reaches it,
  so every link of that layer is masked (the layer then emits constants, see the cascade).
* The float comparison uses ``cumsum >= m * total * (1 - 1e-12)`` so that rounding in the
  cumulative sum cannot push the prefix one link too far. ``m = 1`` is taken literally as
  "every active link with a positive score", without a float comparison, so a positive score
  too small to change the float sum is not lost to rounding.

numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeprune.errors import EdgepruneError

#: Relative tolerance of the cumulative-sum comparison for m < 1.
REL_TOL = 1e-12


def check_importance_level(m: float) -> float:
    """Validate an importance level m (must lie in (0, 1]) and return it as a float."""
    try:
        value = float(m)
    except (TypeError, ValueError):
        raise EdgepruneError(f"--importance-level must be a number in (0, 1], got {m!r}") from None
    if not np.isfinite(value) or not 0.0 < value <= 1.0:
        raise EdgepruneError(f"--importance-level must be in (0, 1], got {m!r}")
    return value


def check_scores(scores: np.ndarray, shape: tuple[int, ...], layer: int) -> np.ndarray:
    """Validate one layer's link scores (finite, non-negative, of ``shape``) as float64."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != tuple(shape):
        raise EdgepruneError(
            f"link scores of layer {layer} have shape {arr.shape}, expected {tuple(shape)}"
        )
    if not np.all(np.isfinite(arr)):
        raise EdgepruneError(f"link scores of layer {layer} contain NaN or infinite values")
    if np.any(arr < 0):
        raise EdgepruneError(
            f"link scores of layer {layer} must be non-negative (use |phi|), "
            f"min is {float(arr.min()):.3g}"
        )
    return arr


@dataclass
class LayerRanking:
    """One layer's active links in support-set order, with their cumulative scores.

    ``order`` holds flat indices (row-major into (out, in)) of the active links, sorted by score
    descending with ties broken by flat index; ``sorted_scores`` their scores in that order and
    ``cumsum[k]`` the sum of the first k+1 of them.
    """

    shape: tuple[int, int]
    order: np.ndarray  # (n_active,) int64
    cumsum: np.ndarray  # (n_active,) float64
    sorted_scores: np.ndarray  # (n_active,) float64, descending

    @property
    def total(self) -> float:
        """Total LI of the layer's active links (paper eq. 6)."""
        return float(self.cumsum[-1]) if self.cumsum.size else 0.0

    @classmethod
    def build(cls, scores: np.ndarray, mask: np.ndarray | None = None) -> LayerRanking:
        """Rank the active links (``mask`` True; all links when None) of one layer."""
        s = np.asarray(scores, dtype=np.float64)
        flat = s.reshape(-1)
        active = np.ones(flat.shape, dtype=bool) if mask is None else np.asarray(mask).reshape(-1)
        idx = np.flatnonzero(active)
        # Stable sort of the negated scores: descending, equal scores keep ascending flat index.
        order = idx[np.argsort(-flat[idx], kind="stable")]
        ranked = flat[order]
        return cls(
            shape=(int(s.shape[0]), int(s.shape[1])),
            order=order,
            cumsum=np.cumsum(ranked),
            sorted_scores=ranked,
        )

    def k_star(self, m: float) -> int:
        """Size of the support set at importance level m (the smallest prefix reaching m*total)."""
        total = self.total
        if total <= 0.0:
            return 0
        if m >= 1.0:  # every positive score, even one too small to move the float sum
            return int(np.count_nonzero(self.sorted_scores > 0.0))
        threshold = m * total * (1.0 - REL_TOL)
        # First position whose cumulative sum reaches the threshold; prefix length is that + 1.
        k = int(np.searchsorted(self.cumsum, threshold, side="left")) + 1
        return min(k, int(self.cumsum.size))

    def mask(self, m: float) -> np.ndarray:
        """Boolean (out, in) mask of the support set at importance level m."""
        out = np.zeros(self.shape[0] * self.shape[1], dtype=bool)
        out[self.order[: self.k_star(m)]] = True
        return out.reshape(self.shape)

    def breakpoints(self) -> np.ndarray:
        """The importance levels at which the support set grows: ``cumsum / total`` (ascending).

        The support set is constant for m in each interval ``(b[k-1], b[k]]``; the last value is
        exactly 1. Empty when the total is 0.
        """
        total = self.total
        if total <= 0.0:
            return np.zeros(0)
        b = self.cumsum / total
        b[-1] = 1.0
        return b


def rank_layers(
    scores: Sequence[np.ndarray], masks: Sequence[np.ndarray | None] | None = None
) -> list[LayerRanking]:
    """Validate and rank every layer's scores (``masks``: the current masks, None for all)."""
    if masks is None:
        masks = [None] * len(scores)
    if len(masks) != len(scores):
        raise ValueError(f"got {len(scores)} score arrays but {len(masks)} masks")
    ranks = []
    for k, (s, mk) in enumerate(zip(scores, masks, strict=True), start=1):
        shape = np.shape(s) if mk is None else np.shape(mk)
        ranks.append(LayerRanking.build(check_scores(s, shape, k), mk))
    return ranks


def support_mask(scores: np.ndarray, m: float, mask: np.ndarray | None = None) -> np.ndarray:
    """The support-set mask of one layer at importance level m (paper eq. 8 and 10).

    ``scores``: non-negative link importances (out, in); ``mask``: the current mask (links that
    are False stay False). Returns a new boolean (out, in) array.
    """
    m = check_importance_level(m)
    shape = np.shape(scores) if mask is None else np.shape(mask)
    return LayerRanking.build(check_scores(scores, shape, 1), mask).mask(m)


def support_masks(
    scores: Sequence[np.ndarray], m: float, masks: Sequence[np.ndarray | None] | None = None
) -> list[np.ndarray]:
    """Support-set masks of every layer at the same importance level m (before the cascade)."""
    m = check_importance_level(m)
    return [rank.mask(m) for rank in rank_layers(scores, masks)]


def support_pairs(mask: np.ndarray) -> list[tuple[int, int]]:
    """The support set of one layer as 1-based ``(i, j)`` pairs, as in the paper.

    ``i`` is the unit of layer l (row of the weight), ``j`` the unit of layer l-1 (column);
    pairs are listed in row-major order.
    """
    rows, cols = np.nonzero(np.asarray(mask, dtype=bool))
    return [(int(i) + 1, int(j) + 1) for i, j in zip(rows, cols, strict=True)]


def format_support_set(pairs: Sequence[tuple[int, int]], layer: int) -> str:
    """Render a support set like the paper: ``Γ(1) = {(1, 2), (1, 4), (3, 5)}``."""
    body = ", ".join(f"({i}, {j})" for i, j in pairs)
    return f"\u0393({layer}) = {{{body}}}"
