"""KernelSHAP coalition designs: which coalitions to evaluate and with what regression weight.

The scheme is ``shap.KernelExplainer``'s (Lundberg & Lee 2017), re-implemented on torch with a
seeded generator so that one design can be drawn per layer and shared by all its games:

- if ``2^n - 2 <= budget``: every coalition except the empty and full ones, weighted by the exact
  Shapley kernel ``(n - 1) / (C(n, s) s (n - s))`` (the regression then returns exact Shapley
  values up to rounding);
- otherwise, smallest sizes first, each size ``s`` whose coalitions (with their complements of size
  ``n - s``) fit the remaining budget by shap's rule is enumerated with its kernel weight; the rest
  of the budget goes to coalitions drawn by the kernel's size distribution (size ``s`` with
  probability proportional to ``(n - 1) / (s (n - s))``), uniformly within a size, each together
  with its complement ``1 - z``; a repeated draw adds weight to the first copy instead of a row.

Coalitions are kept as *primaries* ``z`` whose complement ``1 - z`` is also in the design with the
same weight (so the solver evaluates ``z . c`` once and gets the complement as ``total - z . c``)
and *unpaired* coalitions (the middle size ``n / 2`` of an even ``n``, or a last draw that the
budget could not pair). Drawn coalitions alternate between two halves, which the solver also fits
separately to estimate the standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from edgeprune.shapley.game import DTYPE


def default_budget(n: int) -> int:
    """shap's default ``nsamples``: 2n + 2048 coalitions."""
    return 2 * n + 2048


@dataclass
class RowGroup:
    """Coalitions with their weights in the full design: ``paired`` rows stand for themselves and
    their complements (each with weight ``paired_w``); ``single`` rows stand for themselves."""

    paired: torch.Tensor
    paired_w: torch.Tensor
    single: torch.Tensor
    single_w: torch.Tensor

    @property
    def n_rows(self) -> int:
        """Coalitions evaluated (a paired row counts twice)."""
        return 2 * int(self.paired.shape[0]) + int(self.single.shape[0])

    def normal_matrix(self) -> torch.Tensor:
        """This group's share of ``Z^T diag(w) Z`` (n x n)."""
        zc = 1.0 - self.paired
        return (self.paired.T @ (self.paired * self.paired_w[:, None])
                + zc.T @ (zc * self.paired_w[:, None])
                + self.single.T @ (self.single * self.single_w[:, None]))


@dataclass
class Design:
    """``groups``: [enumerated, drawn half 0, drawn half 1] (the last two may be empty).

    ``half_scale[h]`` turns the full design's weights of half ``h`` into the weights of a design
    made of the enumerated part and half ``h`` alone; None when nothing was drawn in one half.
    """

    groups: list[RowGroup]
    half_scale: tuple[float, float] | None
    enumerated: bool

    @property
    def n_rows(self) -> int:
        return sum(g.n_rows for g in self.groups)

    @property
    def n_fixed(self) -> int:
        return self.groups[0].n_rows


def _empty(n: int) -> torch.Tensor:
    return torch.zeros(0, n, dtype=DTYPE)


def _group(paired: list[torch.Tensor], paired_w: list[torch.Tensor], single: list[torch.Tensor],
           single_w: list[torch.Tensor], n: int) -> RowGroup:
    empty_w = torch.zeros(0, dtype=DTYPE)
    return RowGroup(torch.cat(paired) if paired else _empty(n),
                    torch.cat(paired_w) if paired_w else empty_w,
                    torch.cat(single) if single else _empty(n),
                    torch.cat(single_w) if single_w else empty_w)


def _all_coalitions(n: int) -> Design:
    """Every coalition but the empty and full ones: primaries are those without player n - 1."""
    idx = torch.arange(1, 2 ** (n - 1)) if n >= 2 else torch.zeros(0, dtype=torch.long)
    z = ((idx[:, None] >> torch.arange(n)[None, :]) & 1).to(DTYPE)
    size = z.sum(dim=1).long()
    kernel = torch.tensor([0.0] + [(n - 1) / (math.comb(n, s) * s * (n - s))
                                   for s in range(1, n)], dtype=DTYPE)
    w = kernel[size] if n >= 2 else torch.zeros(0, dtype=DTYPE)
    w = w / (2 * w.sum()) if w.numel() else w
    none = _group([], [], [], [], n)
    return Design([RowGroup(z, w, _empty(n), torch.zeros(0, dtype=DTYPE)), none, none], None, True)


def _combinations(n: int, s: int) -> torch.Tensor:
    combos = torch.combinations(torch.arange(n), r=s)
    z = torch.zeros(combos.shape[0], n, dtype=DTYPE)
    z.scatter_(1, combos, 1.0)
    return z


def kernel_design(n: int, budget: int, gen: torch.Generator) -> Design:
    """The coalition design for fan-in ``n`` under a budget of ``budget`` coalitions."""
    if n < 63 and 2**n - 2 <= budget:
        return _all_coalitions(n)
    n_sizes, n_paired = math.ceil((n - 1) / 2), (n - 1) // 2
    size_w = np.array([(n - 1) / (s * (n - s)) for s in range(1, n_sizes + 1)])
    size_w[:n_paired] *= 2
    size_w /= size_w.sum()
    # Enumerate whole sizes while the budget covers them (shap's rule, kept for comparability).
    fixed: tuple[list, list, list, list] = ([], [], [], [])
    left, remaining, n_full = budget, size_w.copy(), 0
    for s in range(1, n_sizes + 1):
        paired = s <= n_paired
        count = math.comb(n, s) * (2 if paired else 1)
        if left * remaining[s - 1] / count < 1.0 - 1e-8:
            break
        n_full += 1
        left -= count
        if remaining[s - 1] < 1.0:
            remaining /= 1.0 - remaining[s - 1]
        z = _combinations(n, s)
        w = torch.full((z.shape[0],), size_w[s - 1] / count, dtype=DTYPE)
        (fixed[0] if paired else fixed[2]).append(z)
        (fixed[1] if paired else fixed[3]).append(w)
    groups = [_group(*fixed, n)]
    # Draw the rest: size by the kernel distribution, uniform subset, with its complement.
    index: dict[bytes, int] = {}
    drawn: list[tuple[np.ndarray, bool]] = []
    counts: list[float] = []
    if n_full < n_sizes and left > 0:
        p = size_w.copy()
        p[:n_paired] /= 2  # a paired draw spends two coalitions
        p = torch.from_numpy(p[n_full:] / p[n_full:].sum())
        tries = 0
        while left > 0 and tries < 4 * budget:
            k = max(64, min(left, 4096))
            sizes = torch.multinomial(p, k, replacement=True, generator=gen) + n_full + 1
            keys = torch.rand(k, n, generator=gen, dtype=DTYPE)
            kth = keys.sort(dim=1).values.gather(1, (sizes - 1)[:, None])
            masks = (keys <= kth).numpy()
            for mask, s in zip(masks, sizes.tolist(), strict=True):
                tries += 1
                key = np.packbits(mask).tobytes()
                if key in index:
                    counts[index[key]] += 1.0
                    continue
                index[key] = len(drawn)
                paired = s <= n_paired and left >= 2
                drawn.append((mask, paired))
                counts.append(1.0)
                left -= 2 if paired else 1
                if left <= 0:
                    break
    if not drawn:
        return Design(groups + [_group([], [], [], [], n)] * 2, None, True)
    # Drawn weights: every coalition (complements too) carries its draw count, and together they
    # carry the kernel mass of the sizes that were not enumerated.
    weight_left = float(size_w[n_full:].sum())
    total = sum(c * (2 if paired else 1) for (_, paired), c in zip(drawn, counts, strict=True))
    halves: list[tuple[list, list, list, list]] = [([], [], [], []), ([], [], [], [])]
    half_mass = [0.0, 0.0]
    for k, ((mask, paired), c) in enumerate(zip(drawn, counts, strict=True)):
        row = torch.from_numpy(mask.astype(np.float64))[None, :]
        w = torch.tensor([c * weight_left / total], dtype=DTYPE)
        h = halves[k % 2]
        (h[0] if paired else h[2]).append(row)
        (h[1] if paired else h[3]).append(w)
        half_mass[k % 2] += c * (2 if paired else 1)
    groups += [_group(*h, n) for h in halves]
    half_scale = None
    if half_mass[1] > 0:
        half_scale = (total / half_mass[0], total / half_mass[1])
    return Design(groups, half_scale, False)
