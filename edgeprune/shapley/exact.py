"""Exact Shapley values of the link game: the closed form for linear units and full enumeration.

``exact`` evaluates all 2^n coalitions of every (unit, sample) pair and contracts them with the
Shapley weight matrix ``Q`` (2^n x n):

    Q[S, j] =  w(|S| - 1)   if j in S          w(s) = s! (n - 1 - s)! / n!
    Q[S, j] = -w(|S|)       if j not in S

so that ``phi = V @ Q`` equals eq. 3 of the paper, ``sum_S w(|S|) (v(S + j) - v(S))``. Coalition
sums are built by doubling (``sum[S + 2^j] = sum[S] + c_j``), which is exact row by row and needs
no matrix product; only the contraction with ``Q`` is a GEMM (issued per block, see
:func:`edgeprune.shapley.game.blocked_mm`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from edgeprune.errors import EdgepruneError
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

#: Largest fan-in the exact estimator accepts (2^16 coalitions per pair: 512 KiB of values each).
MAX_EXACT_PLAYERS = 16


def linear_phi(game: LinkGame, progress: Callable[[int], None] | None = None) -> Estimate:
    """Closed form ``phi_ij(x) = W_ij (a_j(x) - r_j)``, valid only for the identity activation."""
    if game.activation != "identity":
        raise EdgepruneError(f"the linear estimator is exact only for the identity activation, "
                         f"not {game.activation!r}; use exact, permutation or kernel")
    phi = (game.weight[:, None, :] * game.delta[None, :, :]).reshape(game.n_pairs, -1)
    zero_dummies(phi, phi)  # turns a -0.0 into 0.0
    if progress is not None:
        progress(game.n_units)
    return Estimate(phi=phi, stderr=None, n_evaluations=0, info={})


def shapley_weight_matrix(n: int) -> torch.Tensor:
    """``Q`` (2^n x n) with bit j of the row index meaning player j is in the coalition."""
    w = torch.tensor([math.factorial(s) * math.factorial(n - 1 - s) / math.factorial(n)
                      for s in range(n)], dtype=DTYPE)
    rows = torch.arange(2**n)
    member = ((rows[:, None] >> torch.arange(n)[None, :]) & 1).bool()
    size = member.sum(dim=1)
    with_j = w[(size - 1).clamp(min=0)][:, None].expand(-1, n)
    without_j = -w[size.clamp(max=n - 1)][:, None].expand(-1, n)
    return torch.where(member, with_j, without_j).contiguous()


def coalition_values(game: LinkGame, contrib: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``v(S)`` for every coalition S of every row: (rows, 2^n), bit j = player j."""
    rows, n = contrib.shape
    vals = torch.empty(rows, 2**n, dtype=DTYPE)
    vals[:, 0] = base
    for j in range(n):
        half = 2**j
        torch.add(vals[:, :half], contrib[:, j:j + 1], out=vals[:, half:2 * half])
    return game.act_(vals)


def exact_phi(game: LinkGame, *, memory_budget: int,
              progress: Callable[[int], None] | None = None) -> Estimate:
    """Shapley values by enumerating all 2^n coalitions (n <= :data:`MAX_EXACT_PLAYERS`)."""
    n = game.n_players
    if n > MAX_EXACT_PLAYERS:
        raise EdgepruneError(f"exact enumeration needs fan-in <= {MAX_EXACT_PLAYERS}, this layer has "
                         f"{n}; use permutation or kernel")
    q = shapley_weight_matrix(n)
    # Temporaries per pair: the coalition values (2^n, activated in place), C and phi.
    per_pair = 8 * (2**n + 3 * n + 2)
    phi = torch.empty(game.n_padded, n, dtype=DTYPE)
    for start, stop in iter_chunks(game, chunk_pairs(per_pair, memory_budget, width=2**n)):
        contrib, base = game.chunk(start, stop)
        vals = coalition_values(game, contrib, base)
        # Every column of Q sums to 0, so v(empty) can be taken off first: smaller terms.
        vals.sub_(vals[:, :1].clone())
        phi[start:stop] = zero_dummies(blocked_mm(vals, q), contrib)
        del vals
        if progress is not None:
            progress(units_done(game, stop))
    return Estimate(phi=phi[:game.n_pairs], stderr=None, n_evaluations=2**n, info={})
