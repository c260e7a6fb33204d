"""Each sample's non-dummy inputs, the sparse view of a layer's games that the sampling and
analytic estimators iterate over.

An input equal to its reference on a sample contributes nothing on that sample for every unit: it
is a null player of every game of that sample, and removing null players leaves every other
player's Shapley value unchanged. So an estimator may work on each sample's live inputs only,
which saves most of the work on sparse layers (relu inputs with the zero reference, MNIST pixels).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from edgeprune.shapley.game import DTYPE, LinkGame


@dataclass
class LiveInputs:
    """Each sample's non-dummy inputs, ``players`` (N, k_max) padded with ``n``, their reference
    offsets ``delta`` (N, k_max, 0 at pads), and how many there are, ``counts`` (N,).

    Inputs equal to their reference contribute nothing on that sample for every unit, so every
    per-permutation array of a pair is only as wide as its sample's non-dummy inputs: the order a
    permutation induces on them is all it means for them, and the cumulative sums at their
    positions are bit-for-bit those over all inputs (adding an exact zero changes no float). This
    saves most of the work on sparse layers (relu inputs with the zero reference).
    """

    players: torch.Tensor
    delta: torch.Tensor
    counts: torch.Tensor

    @classmethod
    def of(cls, game: LinkGame) -> LiveInputs:
        n = game.n_players
        active = game.delta != 0
        counts = active.sum(dim=1)
        k_max = max(1, int(counts.max()))
        # Stable sort puts each sample's active inputs first, in index order.
        key = torch.where(active, 0, 1).to(torch.int8)
        first = torch.sort(key, dim=1, stable=True).indices[:, :k_max]
        pad = torch.arange(k_max)[None, :] >= counts[:, None]
        players = first.masked_fill(pad, n)
        delta = torch.cat([game.delta, torch.zeros(game.n_samples, 1, dtype=DTYPE)], dim=1)
        return cls(players, delta.gather(1, players), counts)

    @property
    def width(self) -> int:
        return int(self.players.shape[1])

    def orders(self, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sample's live positions in the order of ``perm`` (pads last, in place) and the
        inverse permutation, both (N, k_max). Cut to a width ``w >= count``, a row of either is
        still a permutation of ``0..w-1``, and the two are still inverses."""
        n = perm.numel()
        rank = torch.empty(n + 1, dtype=torch.long)
        rank[perm] = torch.arange(n)
        rank[n] = n
        order = torch.argsort(rank[self.players], dim=1, stable=True)
        return order, torch.argsort(order, dim=1)

    def row_batches(self, game: LinkGame, weight: torch.Tensor, start: int, stop: int,
                    sub_rows: int) -> Iterator[RowBatch]:
        """The pairs [start, stop) (padding excluded) in sub-batches of at most ``sub_rows``
        rows with similar live-input counts (so little is padded), each with its contributions.

        ``weight`` is (out, n + 1) with a zero last column, so pads contribute exact zeros.
        """
        n_samples = game.n_samples
        pairs = torch.arange(start, min(stop, game.n_pairs))
        if pairs.numel() == 0:
            return
        unit, sample = pairs // n_samples, pairs % n_samples
        k = self.counts[sample]
        by_count = torch.argsort(k, stable=True)
        for g0 in range(0, pairs.numel(), sub_rows):
            rows = by_count[g0:g0 + sub_rows]
            width = max(1, int(k[rows].max()))
            xs, us = sample[rows], unit[rows]
            players = self.players[xs, :width]
            contrib = weight[us[:, None], players].mul_(self.delta[xs, :width])
            yield RowBatch(pairs[rows] - start, xs, us, players, contrib)


@dataclass
class RowBatch:
    """Rows of one sub-batch: their offsets in the chunk, samples, units, live players (padded
    with ``n``) and contributions ``c`` (rows, width; 0 at pads and at masked weights)."""

    offsets: torch.Tensor
    samples: torch.Tensor
    units: torch.Tensor
    players: torch.Tensor
    contrib: torch.Tensor

    def scatter(self, out: torch.Tensor, values: torch.Tensor, n: int) -> None:
        """Add ``values`` (rows, width) into ``out`` (chunk rows, n + 1) at the live players."""
        flat = (self.offsets[:, None] * (n + 1) + self.players).reshape(-1)
        out.view(-1).index_add_(0, flat, values.reshape(-1))
