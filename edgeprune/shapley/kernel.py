"""KernelSHAP (Lundberg & Lee 2017) for the link game, the estimator the SHAP-SAE paper used.

Hand-written rather than calling ``shap.KernelExplainer``: the explainer explains one row of one
function at a time and draws a fresh coalition design for every call, so a 784->256 layer with
256 samples would be 65,536 separate regressions. Here one coalition design ``Z`` (m x n, weights
``w``, see :mod:`edgeprune.shapley.kernel_design`) is shared by every (unit, sample) pair of the
layer, so the normal matrix ``A = Z^T diag(w) Z`` is factorized once and all pairs are solved
together, with two matrix products per block of pairs:

    S = C Z^T                                  coalition sums (a complement's is ``total - S``)
    Y = act(base + S) - act(base)              targets
    B = Z^T diag(w) Y                          right-hand sides (complements folded in)

Solve: weighted least squares with the efficiency constraint ``sum_j phi_j = v(all) - v(empty)``
enforced exactly through the KKT system ``[[A, 1], [1^T, 0]]``, inverted once per layer (LU; a
pseudo-inverse when a tiny budget leaves the design rank-deficient): ``phi = B M + delta u``.

Dummy players (zero contribution) are set to exactly 0 after the solve; whatever the regression
had given them (sampling noise) is spread evenly over the pair's other players, so efficiency
still holds exactly. Standard error: the drawn coalitions alternate between two halves; each half
(with the enumerated part) is solved on its own from the same products, and
``|phi_half0 - phi_half1| / 2`` estimates the standard error of the full estimate (a half has
about twice the full design's variance). It is ``None`` when the design enumerates everything.
"""

from __future__ import annotations

from collections.abc import Callable

import scipy.linalg
import torch

from edgeprune.shapley.game import (
    DTYPE,
    Estimate,
    LinkGame,
    blocked_mm,
    chunk_pairs,
    iter_chunks,
    units_done,
    zero_dummies,
)
from edgeprune.shapley.kernel_design import Design, default_budget, kernel_design

Solver = tuple[torch.Tensor, torch.Tensor]


def kkt_solver(normal: torch.Tensor) -> Solver:
    """``(M, u)`` such that ``phi = b @ M + delta * u`` solves the constrained WLS for rows ``b``."""
    n = normal.shape[0]
    kkt = torch.zeros(n + 1, n + 1, dtype=DTYPE)
    kkt[:n, :n] = normal
    kkt[:n, n] = 1.0
    kkt[n, :n] = 1.0
    # LU first: torch's eigh-based pinv is slow with some LAPACK builds (12 s at n = 784 on the
    # development machine, against 0.3 s for LU); scipy's pinvh covers a singular system.
    inv, info = torch.linalg.inv_ex(kkt)
    if int(info) != 0 or not bool(torch.isfinite(inv).all()) or \
            float((kkt @ inv - torch.eye(n + 1, dtype=DTYPE)).abs().max()) > 1e-8:
        inv = torch.from_numpy(scipy.linalg.pinvh(kkt.numpy()))
    return inv[:n, :n].T.contiguous(), inv[:n, n].clone()


def _constrained(b: torch.Tensor, delta: torch.Tensor, solver: Solver,
                 contrib: torch.Tensor) -> torch.Tensor:
    """Solve, zero the dummies and restore efficiency over the non-dummy players."""
    m, u = solver
    phi = blocked_mm(b, m).add_(delta[:, None] * u[None, :])
    live = contrib != 0
    phi.masked_fill_(~live, 0.0)
    n_live = live.sum(dim=1).clamp_(min=1).to(DTYPE)
    phi.add_(live * ((delta - phi.sum(dim=1)) / n_live)[:, None])
    return zero_dummies(phi, contrib)


class _Products:
    """The design's rows laid out for the two matrix products of a block of pairs."""

    def __init__(self, design: Design) -> None:
        self.groups = design.groups
        paired = [g.paired for g in self.groups]
        single = [g.single for g in self.groups]
        self.n_paired = sum(int(z.shape[0]) for z in paired)
        self.zt = torch.cat(paired + single).T.contiguous()
        self.paired_at, self.single_at = [], []
        p, s = 0, self.n_paired
        for g in self.groups:
            self.paired_at.append((p, p + int(g.paired.shape[0])))
            self.single_at.append((s, s + int(g.single.shape[0])))
            p, s = self.paired_at[-1][1], self.single_at[-1][1]

    def per_pair_bytes(self) -> int:
        # S, the three target arrays and one weighted slice, each about as wide as S.
        return 8 * 5 * int(self.zt.shape[1])

    def right_hand_sides(self, game: LinkGame, contrib: torch.Tensor,
                         base: torch.Tensor) -> list[torch.Tensor]:
        """``Z_g^T diag(w_g) Y`` for each row group g: (rows, n) each."""
        rows, n = contrib.shape
        b = base[:, None]
        a0 = game.act(b)
        s = blocked_mm(contrib, self.zt)
        sp = s[:, :self.n_paired]
        y_in = game.act_(b + sp).sub_(a0)                      # coalition z
        y_out = game.act_(b + (contrib.sum(dim=1, keepdim=True) - sp)).sub_(a0)  # complement
        y_single = game.act_(s[:, self.n_paired:].add_(b)).sub_(a0)
        del s, sp
        out = []
        for g, (p0, p1), (s0, s1) in zip(self.groups, self.paired_at, self.single_at,
                                         strict=True):
            rhs = torch.zeros(rows, n, dtype=DTYPE)
            if p1 > p0:
                # z y_in w + (1 - z) y_out w = z (y_in - y_out) w + 1 (y_out . w)
                diff = (y_in[:, p0:p1] - y_out[:, p0:p1]).mul_(g.paired_w)
                rhs += blocked_mm(diff, g.paired)
                rhs += blocked_mm(y_out[:, p0:p1].contiguous(), g.paired_w[:, None])
            if s1 > s0:
                rhs += blocked_mm(y_single[:, s0 - self.n_paired:s1 - self.n_paired]
                                  * g.single_w, g.single)
            out.append(rhs)
        return out


def kernel_phi(game: LinkGame, *, seed: int, memory_budget: int, budget: int | None = None,
               progress: Callable[[int], None] | None = None) -> Estimate:
    """KernelSHAP for every (unit, sample) pair of the layer with one shared design."""
    n = game.n_players
    budget = default_budget(n) if budget is None else int(budget)
    if budget < 2:
        raise ValueError(f"kernel_samples must be at least 2, got {budget}")
    design = kernel_design(n, budget, torch.Generator().manual_seed(int(seed)))
    products = _Products(design)
    normals = [g.normal_matrix() for g in design.groups]
    solver = kkt_solver(normals[0] + normals[1] + normals[2])
    halves = None
    if design.half_scale is not None:
        halves = [kkt_solver(normals[0] + scale * normals[1 + h])
                  for h, scale in enumerate(design.half_scale)]
    phi = torch.empty(game.n_padded, n, dtype=DTYPE)
    se = torch.empty(game.n_padded, n, dtype=DTYPE) if halves is not None else None
    per_pair = products.per_pair_bytes() + 8 * 12 * n
    width = int(products.zt.shape[1])
    for start, stop in iter_chunks(game, chunk_pairs(per_pair, memory_budget, width=width)):
        contrib, base = game.chunk(start, stop)
        delta = game.full_values(contrib, base)
        fixed, half0, half1 = products.right_hand_sides(game, contrib, base)
        phi[start:stop] = _constrained(fixed + half0 + half1, delta, solver, contrib)
        if halves is not None and se is not None and design.half_scale is not None:
            r0, r1 = design.half_scale
            p0 = _constrained(fixed + half0 * r0, delta, halves[0], contrib)
            p1 = _constrained(fixed + half1 * r1, delta, halves[1], contrib)
            se[start:stop] = p0.sub_(p1).abs_().mul_(0.5)
        if progress is not None:
            progress(units_done(game, stop))
    info = {"coalitions": design.n_rows, "budget": budget, "enumerated": design.enumerated,
            "enumerated_coalitions": design.n_fixed}
    return Estimate(phi=phi[:game.n_pairs], stderr=None if se is None else se[:game.n_pairs],
                    n_evaluations=design.n_rows + 2, info=info)

