"""The ``window`` layout of the compiled engine: a sparse layer packed for in-register gathers.

Measured on this Xeon (one thread, the eta 0.9 MNIST autoencoder's compacted layers, 19-26 %
dense): the compiled engine's dense kernels stream every weight, zeros included, and cost about
what their bytes cost to read from L2 (0.06-0.08 ns per multiply-add); memory gathers
(``vgatherdps``, CSR or sliced ELL) cost ~0.3 ns per non-zero at best, so neither exploits the
73-81 % zeros inside the compacted layers. The window layout keeps only the non-zeros, 5 bytes
each (a float32 weight and a one-byte column index), and gathers the inputs from registers:

- rows are sorted by their number of non-zeros (fewest padding lanes; the order is folded into
  the bias, the next layer's columns and the output assembly by
  :class:`~edgeprune.runtime.fused.FusedForward`) and cut into slices of 16 (one 512-bit
  register of outputs);
- columns are cut into windows of 32 (two registers of inputs); for each window and slice,
  ``K`` steps of 16 weights and 16 byte indices, ``K`` the most non-zeros one of the slice's
  rows has in the window, zero weights on the shorter rows;
- the kernel (:func:`edgeprune.runtime._avx512_jit.window_matvec`) does one ``vpermi2ps``
  (16 inputs picked from the 32 of the window) and one fused multiply-add per step.

On the eta 0.9 model this packs 1.5-1.9 lanes per non-zero: 29-46 % of the dense
multiply-adds, 36-58 % of the dense bytes.
AVX-512 only (x86-64); elsewhere the layout is not chosen. numpy only (the packing); the kernels
live in the numba modules.
"""

from __future__ import annotations

import functools
import os
import platform
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

__all__ = ["ROWS", "COLS", "WindowPack", "avx512_available", "pack_windows", "window_lanes"]

ROWS = 16  # one slice: the outputs one 512-bit register holds
COLS = 32  # one window: the inputs two registers hold, what one vpermi2ps picks from


@functools.lru_cache(maxsize=1)
def avx512_available() -> bool:
    """True on an x86-64 host whose CPU (as LLVM sees it, the compiler numba uses) has AVX-512F;
    False elsewhere or when llvmlite (numba's dependency) is missing."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    target = os.environ.get("NUMBA_CPU_NAME", "host")
    if target != "host":  # numba told to compile for another CPU (portable caches): trust
        # only features it was told to use, else the AVX-512 intrinsics would not compile
        return "+avx512f" in os.environ.get("NUMBA_CPU_FEATURES", "")
    try:
        from llvmlite import binding
    except Exception:  # noqa: BLE001 - no llvmlite means no numba: no compiled engine at all
        return False
    return bool(binding.get_host_cpu_features().get("avx512f", False))


class WindowPack(NamedTuple):
    """A layer in the window layout (module docstring). ``order``: the original row of each
    packed row (``rows`` of them); ``values``: float32, 16 per step; ``index``: uint8, 16 per
    step, padded with zeros to a multiple of 4 bytes (viewable as int32); ``steps``: int32,
    ``windows * slices + 1`` running step counts in window-major order; ``lanes``: 16 * steps."""

    order: np.ndarray
    values: np.ndarray
    index: np.ndarray
    steps: np.ndarray
    slices: int
    windows: int

    @property
    def lanes(self) -> int:
        return int(self.steps[-1]) * ROWS


def _row_order(matrix: sp.csr_matrix) -> np.ndarray:
    """Rows by decreasing non-zero count (stable): rows of like length share slices."""
    return np.argsort(-np.diff(matrix.indptr), kind="stable")


def _steps(counts: np.ndarray, slices: int) -> np.ndarray:
    """``counts[row, window]`` (rows in packed order) -> steps per (window, slice)."""
    padded = np.zeros((slices * ROWS, counts.shape[1]), np.int64)
    padded[:counts.shape[0]] = counts
    return padded.reshape(slices, ROWS, -1).max(axis=1).T  # (windows, slices)


def _window_counts(matrix: sp.csr_matrix, order: np.ndarray, windows: int) -> np.ndarray:
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    counts = np.zeros((matrix.shape[0], max(windows, 1)), np.int64)
    np.add.at(counts, (rows, matrix.indices // COLS), 1)
    return counts[order]


def window_lanes(matrix: sp.csr_matrix) -> int:
    """The lanes (16 per step) the window layout of ``matrix`` takes, without packing it."""
    matrix = sp.csr_matrix(matrix)
    slices, windows = -(-matrix.shape[0] // ROWS), -(-matrix.shape[1] // COLS)
    if not slices or not windows:
        return 0
    order = _row_order(matrix)
    return int(_steps(_window_counts(matrix, order, windows), slices).sum()) * ROWS


def pack_windows(matrix: sp.csr_matrix) -> WindowPack:
    """Pack a CSR matrix (any float dtype; stored as float32) in the window layout."""
    matrix = sp.csr_matrix(matrix)
    matrix.sum_duplicates()
    matrix.sort_indices()
    n_rows, n_cols = matrix.shape
    slices, windows = max(-(-n_rows // ROWS), 1), max(-(-n_cols // COLS), 1)
    order = _row_order(matrix)
    steps = _steps(_window_counts(matrix, order, windows), slices)  # (windows, slices)
    first = np.zeros(windows * slices + 1, np.int64)
    np.cumsum(steps.ravel(), out=first[1:])
    total = int(first[-1])
    values = np.zeros(total * ROWS, np.float32)
    index = np.zeros(-(-total * ROWS // 4) * 4, np.uint8)
    # every stored entry: packed row p, column j, its rank among its row's entries in window j//32
    packed = matrix[order]
    rows = np.repeat(np.arange(n_rows), np.diff(packed.indptr))
    cols = packed.indices.astype(np.int64)
    window = cols // COLS
    key = rows * windows + window  # entries are sorted by row, then column: groups are runs
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.zeros(0, int)
    rank = np.arange(key.size) - np.repeat(start, np.diff(np.r_[start, key.size]))
    step = first[window * slices + rows // ROWS] + rank
    lane = step * ROWS + rows % ROWS
    values[lane] = packed.data
    index[lane] = cols % COLS
    return WindowPack(order, values, index, first.astype(np.int32), slices, windows)
