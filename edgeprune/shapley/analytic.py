"""Deterministic Shapley values of the one-neuron link game: the Gaussian approximation of DASP
(Ancona, Oztireli & Gross, ICML 2019, "Explaining deep neural networks with a polynomial time
algorithm for Shapley values approximation").

Hand-written: DASP's reference code propagates probabilistic layers through whole networks in
TensorFlow; here only its one-neuron core is needed, vectorized over every (unit, sample) pair.

A pair has ``m`` live players (non-zero contributions ``c_j``; dummies are null players and are
left out, which changes no other player's value) and base ``b``. The Shapley value of player j is
the average over coalition sizes ``k = 0 .. m-1`` of its expected marginal contribution when it
joins a uniformly random k-subset of the other ``M = m - 1`` players:

    phi_j = 1/m  sum_k  E[ g(b + c_j + S_k) - g(b + S_k) ]

``S_k``, the sum of k values drawn without replacement from the others' contributions, has mean
``k mu_j`` and variance ``k (M - k) / (M - 1) s_j^2`` (finite-population correction; ``mu_j``
and ``s_j^2`` are the others' mean and population variance). DASP treats ``S_k`` as normal, and
the expectation then has a closed form:

- relu: ``E relu(z + S) = z Phi(z/s) + s phi(z/s)`` (exact for a normal S);
- leaky_relu: ``alpha z + (1 - alpha) E relu(z + S)`` (exact for a normal S);
- identity: ``z`` (exact: the linear estimator's values);
- sigmoid: ``sigmoid(z / sqrt(1 + pi s^2 / 8))``, the probit approximation of the logistic-normal
  integral (MacKay 1992; max error about 0.02 in the expectation);
- tanh: ``tanh(z / sqrt(1 + pi s^2 / 2))``, the same approximation through tanh(x) = 2 sigmoid(2x) - 1.

Sizes ``k = 0`` and ``k = M`` are exact (S is a constant there). The interior sizes ``1 .. M-1``
are enumerated when there are at most :data:`DEFAULT_SIZES` of them; otherwise they are split
into that many equal bins, each evaluated at its (fractional) midpoint, since the expected
marginal is a smooth function of k. Cost per pair: O(m x sizes) closed-form evaluations.

The normal approximation is exact for m <= 2 and for linear units; otherwise its error is
measured against enumeration (tests, ``benchmarks/scoring.py``). Finally the pair's values are
corrected to satisfy efficiency exactly, ``sum_j phi_j = g(b + sum c) - g(b)``: the residual is
spread over the live players in proportion to ``|phi_j|`` (evenly when all vanish), which
measured more accurate than an even spread (docs/architecture.md). Symmetric players get equal
values and dummies exact zeros by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from edgeprune.errors import EdgepruneError
from edgeprune.shapley.game import (
    BLOCK,
    CACHE_VALUES,
    DTYPE,
    Estimate,
    LinkGame,
    iter_chunks,
    units_done,
)
from edgeprune.shapley.live_inputs import LiveInputs

#: Interior coalition sizes evaluated per pair (enumerated when a pair has no more than this).
DEFAULT_SIZES = 8
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

#: ``marginal(z, c, var) -> E[g(z + c + S)] - E[g(z + S)]``, sharing the work of both terms.
Marginal = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _relu_marginal(z: torch.Tensor, c: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    s = var.sqrt_()
    inv = s.clamp(min=1e-300).reciprocal_()
    t0 = z * inv
    t1 = torch.addcmul(t0, c, inv)
    # (z + c) Phi(t1) - z Phi(t0) + s (phi(t1) - phi(t0)), each term formed in place.
    out = torch.special.ndtr(t1).mul_(z + c).sub_(torch.special.ndtr(t0).mul_(z))
    dens = t1.square_().mul_(-0.5).exp_().sub_(t0.square_().mul_(-0.5).exp_())
    return out.add_(dens.mul_(s).mul_(_INV_SQRT_2PI))


def _probit_marginal(scale: float, squash: Callable[[torch.Tensor], torch.Tensor]) -> Marginal:
    def marginal(z: torch.Tensor, c: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        r = var.mul_(scale).add_(1.0).rsqrt_()
        return squash((z + c).mul_(r)).sub_(squash(z.mul(r)))
    return marginal


def gaussian_marginal(activation: str, negative_slope: float = 0.01) -> Marginal:
    """``E[g(z + c + S)] - E[g(z + S)]`` for ``S ~ N(0, var)`` (``var`` may be overwritten)."""
    if activation == "identity":
        return lambda z, c, var: c.clone()
    if activation == "relu":
        return _relu_marginal
    if activation == "leaky_relu":
        a = float(negative_slope)
        return lambda z, c, var: _relu_marginal(z, c, var).mul_(1.0 - a).add_(c, alpha=a)
    if activation == "sigmoid":
        return _probit_marginal(math.pi / 8.0, torch.sigmoid_)
    if activation == "tanh":
        return _probit_marginal(math.pi / 2.0, torch.tanh_)
    raise EdgepruneError(f"the analytic estimator has no closed form for {activation!r}")


def size_nodes(m: torch.Tensor, sizes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Interior coalition sizes ``k`` (rows, sizes) and their weights for pairs of ``m`` players.

    With ``M - 1 = m - 2`` interior sizes: enumerated (weight 1/m each, unused nodes weight 0)
    when ``m - 2 <= sizes``, else the midpoints of ``sizes`` equal bins of [1, M - 1] (weight
    ``(m - 2) / (sizes * m)`` each). The weights of a row plus the two exact ends sum to 1.
    """
    m = m.to(DTYPE)[:, None]
    q = torch.arange(sizes, dtype=DTYPE)[None, :]
    interior = (m - 2.0).clamp(min=0.0)
    enumerate_all = interior <= sizes
    k = torch.where(enumerate_all, 1.0 + q, 1.0 + (interior - 1.0) * (q + 0.5) / sizes)
    w = torch.where(enumerate_all, (q < interior).to(DTYPE) / m, interior / (sizes * m))
    return k, w


def _row_sum(x: torch.Tensor) -> torch.Tensor:
    """Row sums (rows, 1) by a sequential scan: trailing zero pads change no bit, so a row's sum
    does not depend on how wide its sub-batch is (a tree reduction's rounding would)."""
    return x.cumsum(dim=1)[:, -1:]


def _pair_values(contrib: torch.Tensor, base: torch.Tensor, marginal: Marginal,
                 act: Callable[[torch.Tensor], torch.Tensor], sizes: int) -> torch.Tensor:
    """Efficiency-corrected DASP values of rows ``contrib`` (rows, width; 0 = dummy or pad)."""
    live = contrib != 0
    m = live.sum(dim=1)
    b = base[:, None]
    total = _row_sum(contrib)
    sq = contrib.square()
    others = (m[:, None] - 1).to(DTYPE).clamp(min=1.0)              # M (1 where M = 0)
    mean = (total - contrib) / others                               # others' mean
    var = ((_row_sum(sq) - sq) / others - mean.square()).clamp(min=0.0)
    fpc_den = (others - 1.0).clamp(min=1.0)
    top = b + total
    # The two exact ends: joining nobody, and joining everybody else.
    phi = (act(b + contrib) - act(b)) + (act(top) - act(top - contrib))
    phi.mul_(torch.where(m[:, None] > 1, 1.0, 0.5))                 # m = 1: both ends are one size
    phi.div_(m[:, None].clamp(min=1).to(DTYPE))
    k, w = size_nodes(m, sizes)
    for q in range(sizes):
        kq, wq = k[:, q:q + 1], w[:, q:q + 1]
        if not bool((wq > 0).any()):
            continue
        z = torch.addcmul(b, mean, kq)
        s2 = var * (kq * (others - kq) / fpc_den).clamp_(min=0.0)
        phi.addcmul_(marginal(z, contrib, s2), wq)
    phi.masked_fill_(~live, 0.0)
    # Efficiency, exactly: spread the residual in proportion to |phi| (evenly if all vanish).
    residual = act(top) - act(b) - _row_sum(phi)
    mag = phi.abs()
    norm = _row_sum(mag)
    share = torch.where(norm > 0, mag / norm.clamp(min=1e-300),
                        live.to(DTYPE) / m[:, None].clamp(min=1).to(DTYPE))
    return phi.add_(share * residual)


def analytic_phi(game: LinkGame, *, memory_budget: int, sizes: int = DEFAULT_SIZES,
                 progress: Callable[[int], None] | None = None) -> Estimate:
    """DASP values for every (unit, sample) pair of the layer (deterministic)."""
    if sizes < 1:
        raise ValueError(f"analytic sizes must be at least 1, got {sizes}")
    marginal = gaussian_marginal(game.activation, game.negative_slope)
    n = game.n_players
    live = LiveInputs.of(game)
    weight = torch.cat([game.weight, torch.zeros(game.n_units, 1, dtype=DTYPE)], dim=1)
    # About a dozen (rows, width) float64 temporaries per sub-batch, each kept near CACHE_VALUES
    # values so the elementwise passes run from cache (as in the permutation estimator).
    k_mean = max(1, int(live.counts.float().mean()))
    sub_rows = max(64, min(CACHE_VALUES // k_mean,
                           int(memory_budget) // (8 * 16 * live.width)))
    pairs_per_chunk = -(-4 * sub_rows // BLOCK) * BLOCK
    out = torch.zeros(game.n_padded, n + 1, dtype=DTYPE)
    for start, stop in iter_chunks(game, pairs_per_chunk):
        for batch in live.row_batches(game, weight, start, stop, sub_rows):
            values = _pair_values(batch.contrib, game.base[batch.units], marginal, game.act,
                                  sizes)
            batch.scatter(out[start:stop], values, n)
        if progress is not None:
            progress(units_done(game, stop))
    n_eval = 2 * (sizes + 2)
    return Estimate(phi=out[:game.n_pairs, :n], stderr=None, n_evaluations=n_eval,
                    info={"sizes": sizes})
