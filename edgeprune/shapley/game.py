"""The link game of one dense layer (DESIGN section 4, SHAP-SAE eq. 3) and the chunking machinery
that every estimator shares.

For a layer ``y = act(W a + b)``, a reference ``r`` and explanation inputs ``A`` (N x in), every
(unit ``i``, sample ``x``) pair is one game whose players are the incoming links ``j`` of unit ``i``:

    c_ij(x)  = W_ij (a_j(x) - r_j)                 contribution of link (i, j) on sample x
    base_i   = b_i + sum_j W_ij r_j                 pre-activation with every link removed
    v(J)     = act(base_i + sum_{j in J} c_ij(x))   value of a coalition J of links

A link with ``c_ij(x) == 0`` (a masked weight, or an input equal to its reference) is a dummy
player; its Shapley value is exactly 0 and every estimator writes an exact 0 there.

Pairs are numbered unit-major, ``p = i * N + x``, so that a chunk of consecutive pairs finishes
whole units in order (the ``progress`` callback reports finished units). Estimators work on chunks
of pairs whose size and start are multiples of :data:`BLOCK`. Every operation is row-wise
(elementwise maths, scans, gathers and sums along the player axis), so a pair's values never
depend on which pairs share its chunk; matrix products are always issued on blocks of exactly
:data:`BLOCK` rows (:func:`blocked_mm`) because BLAS (MKL) rounds differently for different matrix
shapes. Random permutations and coalitions are drawn once per layer. Together this makes every
estimator bit-for-bit independent of the memory budget, which only bounds the temporaries (the
outputs, N * out * in float64 values, and the permutation estimator's two running sums of that
size are not counted; a budget below one block's needs is exceeded).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from edgeprune.torch_network import torch_activation

#: Rows per matrix-product block; chunks are whole numbers of blocks.
BLOCK = 256
#: Preferred size of one per-chunk temporary, in float64 values (4 MiB).
CACHE_VALUES = 1 << 19

DTYPE = torch.float64

Activation = Callable[[torch.Tensor], torch.Tensor]


def get_activation(name: str, negative_slope: float = 0.01) -> Activation:
    """The torch function for activation ``name`` (:func:`edgeprune.torch_network.torch_activation`)."""
    return torch_activation(name, negative_slope)


def get_activation_(name: str, negative_slope: float = 0.01) -> Activation:
    """The in-place version of :func:`get_activation` (same values, bit for bit)."""
    return torch_activation(name, negative_slope, inplace=True)


@dataclass
class Estimate:
    """Per-pair Shapley values of a layer (rows: unit-major pairs, padding removed).

    ``stderr`` is the estimator's standard error of each value (None for exact methods);
    ``n_evaluations`` counts activation evaluations per (unit, sample) pair.
    """

    phi: torch.Tensor
    stderr: torch.Tensor | None
    n_evaluations: int
    info: dict


@dataclass
class LinkGame:
    """All (unit, sample) games of one layer, held as float64 torch tensors.

    ``weight`` is (out, n), ``delta`` = inputs - reference is (N, n), ``base`` is (out,).
    """

    weight: torch.Tensor
    delta: torch.Tensor
    base: torch.Tensor
    act: Activation
    act_: Activation
    activation: str
    negative_slope: float = 0.01

    @property
    def n_players(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_units(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.delta.shape[0])

    @property
    def n_pairs(self) -> int:
        return self.n_units * self.n_samples

    @property
    def n_padded(self) -> int:
        """Pairs rounded up to whole blocks."""
        return -(-self.n_pairs // BLOCK) * BLOCK

    def chunk(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Contributions ``C`` (stop-start, n) and bases (stop-start,) of pairs [start, stop).

        Pairs past :attr:`n_pairs` are padding: zero contributions and zero base.
        """
        p = torch.arange(start, stop)
        valid = p < self.n_pairs
        p = torch.where(valid, p, torch.zeros_like(p))
        unit, sample = p // self.n_samples, p % self.n_samples
        contrib = self.weight[unit] * self.delta[sample]
        base = self.base[unit]
        if not bool(valid.all()):
            contrib[~valid] = 0.0
            base = torch.where(valid, base, torch.zeros_like(base))
        return contrib, base

    def full_values(self, contrib: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """``v(all) - v(empty)`` per row: the total that efficiency distributes."""
        return self.act(base + contrib.sum(dim=1)) - self.act(base)


def make_game(weight: np.ndarray, bias: np.ndarray | None, inputs: np.ndarray, activation: str,
              *, negative_slope: float = 0.01,
              reference: str | np.ndarray = "zero") -> LinkGame:
    """Validate the layer and build its :class:`LinkGame` (float64)."""
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"weight must be 2-D (out, in), got shape {w.shape}")
    n_out, n_in = w.shape
    if n_out == 0 or n_in == 0:
        raise ValueError(f"weight of shape {w.shape} has no links to score")
    b = np.zeros(n_out) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
    if b.shape != (n_out,):
        raise ValueError(f"bias has shape {b.shape}, expected ({n_out},)")
    a = np.asarray(inputs, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != n_in:
        raise ValueError(f"inputs must be (N, {n_in}), got shape {a.shape}")
    if a.shape[0] == 0:
        raise ValueError("inputs must hold at least one explanation sample")
    if isinstance(reference, str):
        if reference == "zero":
            r = np.zeros(n_in)
        elif reference == "mean":
            r = a.mean(axis=0)
        else:
            raise ValueError(f"reference {reference!r}: use 'zero', 'mean' or an array")
    else:
        r = np.asarray(reference, dtype=np.float64).reshape(-1)
        if r.shape != (n_in,):
            raise ValueError(f"reference has shape {r.shape}, expected ({n_in},)")
    for name, arr in (("weight", w), ("bias", b), ("inputs", a), ("reference", r)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} holds non-finite values")
    act = get_activation(activation, negative_slope)
    wt = torch.from_numpy(w)
    return LinkGame(
        weight=wt,
        delta=torch.from_numpy(a - r[None, :]),
        base=torch.from_numpy(b) + wt @ torch.from_numpy(r),
        act=act,
        act_=get_activation_(activation, negative_slope),
        activation=activation,
        negative_slope=float(negative_slope),
    )


def chunk_pairs(bytes_per_pair: int, memory_budget: int, width: int | None = None) -> int:
    """Pairs per chunk: whole blocks whose temporaries fit ``memory_budget``.

    One block is the smallest unit of work, so a budget below one block's needs is exceeded.
    With ``width`` (the widest per-pair row, in float64 values) chunks are also kept near
    :data:`CACHE_VALUES` values per temporary: the elementwise passes then run from cache, which
    measured faster than one huge chunk (about 2x for the permutation estimator at fan-in 784).
    The results never depend on the chunk size.
    """
    blocks = max(1, int(memory_budget) // max(1, bytes_per_pair * BLOCK))
    if width:
        blocks = min(blocks, max(1, CACHE_VALUES // (width * BLOCK)))
    return blocks * BLOCK


def subgame(game: LinkGame, units: slice | torch.Tensor,
            samples: slice | torch.Tensor = slice(None)) -> LinkGame:
    """The games of some units on some samples (same reference and activation).

    Every per-pair value of the estimators depends only on its own pair (and on the seed, for
    the layer-wide permutations and coalition designs), so scoring a layer one slice of units at
    a time gives the same values as scoring it whole, while holding only that slice's outputs.
    """
    return LinkGame(weight=game.weight[units], delta=game.delta[samples], base=game.base[units],
                    act=game.act, act_=game.act_, activation=game.activation,
                    negative_slope=game.negative_slope)


def iter_chunks(game: LinkGame, pairs_per_chunk: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of each chunk over the padded pair range."""
    for start in range(0, game.n_padded, pairs_per_chunk):
        yield start, min(start + pairs_per_chunk, game.n_padded)


def units_done(game: LinkGame, stop: int) -> int:
    """Units whose pairs all lie before pair ``stop``."""
    return min(game.n_units, stop // game.n_samples)


def unit_groups(game: LinkGame) -> Iterator[tuple[int, int]]:
    """``(first_unit, stop_unit)`` groups for per-unit reductions over samples.

    The group size depends only on the layer's shape (never on the memory budget), so reductions
    come out the same whatever chunking produced the per-pair values.
    """
    size = max(1, (1 << 22) // max(1, game.n_samples * game.n_players))
    for u0 in range(0, game.n_units, size):
        yield u0, min(u0 + size, game.n_units)


def blocked_mm(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``x @ y`` issued as one GEMM per :data:`BLOCK` rows of ``x`` (rows a multiple of BLOCK).

    Issuing every product on the same shape keeps the result of each row independent of how
    many rows the caller batched together (MKL picks shape-dependent kernels and splits).
    """
    rows = x.shape[0]
    if rows % BLOCK:
        raise ValueError(f"blocked_mm needs a multiple of {BLOCK} rows, got {rows}")
    out = torch.empty(rows, y.shape[1], dtype=x.dtype)
    for s in range(0, rows, BLOCK):
        torch.mm(x[s:s + BLOCK], y, out=out[s:s + BLOCK])
    return out


def zero_dummies(phi: torch.Tensor, contrib: torch.Tensor) -> torch.Tensor:
    """Write an exact 0 for every dummy player (zero contribution), in place."""
    phi.masked_fill_(contrib == 0, 0.0)
    return phi
