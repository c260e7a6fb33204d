"""Monte Carlo Shapley values over random permutations, in antithetic pairs.

One permutation ``pi`` of the n players gives every player's marginal contribution at once: with
``T_k = c_pi(1) + ... + c_pi(k)`` (a cumulative sum), player ``pi(k)`` adds
``act(base + T_k) - act(base + T_(k-1))``. Its reverse ``pi'`` (antithetic partner) reuses the same
sums: player ``pi(k)`` then joins after ``pi(k+1..n)`` and adds
``act(base + T_n - T_(k-1)) - act(base + T_n - T_k)``. With ``h_k = act(base + T_k) -
act(base + T_n - T_k)`` the pair average is ``(h_k - h_(k-1)) / 2``; each pair's estimate obeys
efficiency exactly (up to rounding), and so does their mean.

The permutations are drawn once per layer from a seeded ``torch.Generator`` and shared by every
(unit, sample) pair (like the kernel estimator's coalition design), so the result depends only on
the seed, never on the chunking. The standard error of a value is the spread of its pair sums over
the pairs, ``sd / sqrt(pairs)``. Dummy players are exact zeros throughout (a zero contribution
leaves the cumulative sum unchanged, bit for bit), and inputs equal to their reference on a sample
(zero activations after a relu, with the zero reference) are dropped from that sample's rows before
the sums, which is exact and saves most of the work on sparse layers.

Two modes:

- fixed: ``n_permutations`` permutations (default :data:`DEFAULT_PERMUTATIONS`);
- adaptive (``target_rel_error`` given): a first round of ``n_permutations`` permutations
  (default :data:`DEFAULT_ROUND`), then further rounds, each sized (in whole multiples of the
  first) by the 1/sqrt(pairs) law to reach the target, until the layer's relative error (mean over
  links of the RMS-over-samples standard error, divided by the mean link importance) is at most
  the target or ``max_permutations`` (default :data:`DEFAULT_MAX_PERMUTATIONS`) are used.

Permutation counts include both members of each antithetic pair (so they are rounded up to even,
at least 4, so that the standard error has at least one degree of freedom).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from edgeprune.errors import EdgepruneError
from edgeprune.shapley.aggregate import summarize
from edgeprune.shapley.game import (
    BLOCK,
    CACHE_VALUES,
    DTYPE,
    Activation,
    Estimate,
    LinkGame,
    iter_chunks,
    units_done,
)
from edgeprune.shapley.live_inputs import LiveInputs

#: Permutations (64 antithetic pairs) in fixed mode.
DEFAULT_PERMUTATIONS = 128
#: Permutations added per round in adaptive mode.
DEFAULT_ROUND = 32
#: Cap on permutations in adaptive mode.
DEFAULT_MAX_PERMUTATIONS = 1024
#: Antithetic pairs per pass over the layer.
PASS_PAIRS = 64


def _even(count: int) -> int:
    return max(4, 2 * -(-int(count) // 2))


def pair_sums(act_: Activation, contrib: torch.Tensor, base: torch.Tensor, a0: torch.Tensor,
              index: torch.Tensor, buffers: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Marginal contributions along each row's player order ``index`` plus those along the
    reverse order, in ``index`` order (the second buffer holds the result).

    That is twice the pair average (the halving is folded into :func:`_finish`, exact in binary).
    Rows of ``contrib`` may end in zero pads; ``base`` and ``a0 = act(base)`` are (rows, 1);
    ``act_`` works in place.
    """
    t, r = buffers
    torch.gather(contrib, 1, index, out=t)
    t.cumsum_(dim=1)                                  # T_k
    torch.sub(t[:, -1:], t, out=r)                    # T_n - T_k (exactly 0 at k = n)
    act_(r.add_(base))                                # reverse order: act(base + T_n - T_k)
    act_(t.add_(base))                                # forward order: act(base + T_k)
    h0 = a0 - t[:, -1:]
    t.sub_(r)                                         # h_k
    torch.sub(t[:, 1:], t[:, :-1], out=r[:, 1:])      # h_k - h_(k-1)
    torch.sub(t[:, :1], h0, out=r[:, :1])
    return r


def _finish(s1: torch.Tensor, s2: torch.Tensor, pairs: int,
            start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error of rows [start, stop) from the running sums of the pair sums."""
    a1 = s1[start:stop, :-1]
    var = s2[start:stop, :-1].addcmul(a1, a1, value=-1.0 / pairs)
    return a1 / (2 * pairs), var.clamp_(min=0.0).div_(4 * pairs * (pairs - 1)).sqrt_()


def _accumulate_chunk(game: LinkGame, live: LiveInputs, weight: torch.Tensor, start: int,
                      stop: int, orders: list[tuple[torch.Tensor, torch.Tensor]], sub_rows: int,
                      s1: torch.Tensor, s2: torch.Tensor) -> None:
    """Add one round of permutations to the running sums of pairs [start, stop).

    ``weight`` is (out, n + 1) with a zero last column; ``s1``/``s2`` are (pairs, n + 1), their
    last column absorbing the pads.
    """
    n = game.n_players
    for batch in live.row_batches(game, weight, start, stop, sub_rows):
        contrib, xs = batch.contrib, batch.samples
        rows, width = contrib.shape
        b = game.base[batch.units][:, None]
        a0 = game.act(b)
        acc1 = torch.zeros(rows, width, dtype=DTYPE)
        acc2 = torch.zeros(rows, width, dtype=DTYPE)
        buffers = (torch.empty(rows, width, dtype=DTYPE), torch.empty(rows, width, dtype=DTYPE))
        back = torch.empty(rows, width, dtype=DTYPE)
        for order, inverse in orders:
            g = pair_sums(game.act_, contrib, b, a0, order.index_select(0, xs)[:, :width],
                          buffers)
            # Back to live positions through the inverse order (a gather beats scatter_add).
            torch.gather(g, 1, inverse.index_select(0, xs)[:, :width], out=back)
            acc1.add_(back)
            acc2.addcmul_(back, back)
        dummy = contrib == 0           # masked weights: exact zeros already, written explicitly
        acc1.masked_fill_(dummy, 0.0)
        acc2.masked_fill_(dummy, 0.0)
        batch.scatter(s1[start:stop], acc1, n)
        batch.scatter(s2[start:stop], acc2, n)


def permutation_phi(game: LinkGame, *, seed: int, memory_budget: int,
                    n_permutations: int | None = None, target_rel_error: float | None = None,
                    max_permutations: int | None = None,
                    progress: Callable[[int], None] | None = None) -> Estimate:
    """Antithetic permutation sampling for every (unit, sample) pair of the layer."""
    n = game.n_players
    adaptive = target_rel_error is not None
    if adaptive and not target_rel_error > 0:
        raise EdgepruneError(f"target_rel_error must be positive, got {target_rel_error}")
    if n_permutations is not None and n_permutations < 1:
        raise ValueError(f"n_permutations must be positive, got {n_permutations}")
    if adaptive:
        round_pairs = _even(n_permutations or DEFAULT_ROUND) // 2
        max_pairs = max(round_pairs, _even(max_permutations or DEFAULT_MAX_PERMUTATIONS) // 2)
    else:
        round_pairs = max_pairs = _even(n_permutations or DEFAULT_PERMUTATIONS) // 2
    gen = torch.Generator().manual_seed(int(seed))
    live = LiveInputs.of(game)
    weight = torch.cat([game.weight, torch.zeros(game.n_units, 1, dtype=DTYPE)], dim=1)
    # Running sums (an extra column absorbs the pads); they are outputs, not temporaries.
    s1 = torch.zeros(game.n_padded, n + 1, dtype=DTYPE)
    s2 = torch.zeros(game.n_padded, n + 1, dtype=DTYPE)
    # Sub-batches: about CACHE_VALUES per work array (few, long-running parallel regions, data in
    # cache), at most the memory budget for their nine arrays (float64 and int64). A chunk holds
    # several sub-batches so that sorting by count has room; progress is reported per chunk.
    k_mean = max(1, int(live.counts.float().mean()))
    sub_rows = min(max(64, CACHE_VALUES // k_mean),
                   max(64, int(memory_budget) // (8 * 9 * live.width)))
    pairs_per_chunk = -(-4 * sub_rows // BLOCK) * BLOCK
    pairs, rounds, batch = 0, 0, round_pairs
    while pairs < max_pairs:
        batch = min(batch, max_pairs - pairs)
        # Drawn once per round for the whole layer: the chunking never touches the generator.
        perms = [torch.randperm(n, generator=gen) for _ in range(batch)]
        # Passes of at most PASS_PAIRS permutations bound the per-sample orders kept in memory
        # (a fixed size, so the grouping of the sums never depends on the memory budget).
        for p0 in range(0, batch, PASS_PAIRS):
            orders = [live.orders(p) for p in perms[p0:p0 + PASS_PAIRS]]
            last = not adaptive and p0 + PASS_PAIRS >= batch
            for start, stop in iter_chunks(game, pairs_per_chunk):
                _accumulate_chunk(game, live, weight, start, stop, orders, sub_rows, s1, s2)
                if progress is not None and last:
                    progress(units_done(game, stop))
            del orders
        pairs += batch
        rounds += 1
        if not adaptive:
            break
        rel_error = summarize(
            game, lambda p0, p1, k=pairs: _finish(s1, s2, k, p0, p1)).rel_error()
        if rel_error <= target_rel_error:
            break
        # The error falls as 1/sqrt(pairs): size the next round to reach the target (whole
        # rounds), which keeps the number of criterion passes small.
        wanted = math.ceil(pairs * ((rel_error / target_rel_error) ** 2 - 1.0))
        batch = max(1, -(-wanted // round_pairs)) * round_pairs
    # The same arithmetic as _finish, in place: s1 becomes phi and s2 the standard error.
    se = s2.addcmul_(s1, s1, value=-1.0 / pairs).clamp_(min=0.0)
    se = se.div_(4 * pairs * (pairs - 1)).sqrt_()[:game.n_pairs, :n]
    phi = s1.div_(2 * pairs)[:game.n_pairs, :n]
    if progress is not None and adaptive:
        progress(game.n_units)
    # (score_layer records the achieved relative error of every estimator with a standard error.)
    info = {"permutations": 2 * pairs, "rounds": rounds, "target_rel_error": target_rel_error}
    return Estimate(phi=phi, stderr=se, n_evaluations=2 * pairs * n + 1, info=info)
