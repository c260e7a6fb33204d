"""Decoding the compact arrays of a version-2 bundle (standard library + numpy only).

A version-2 layer may store (``meta.layers[k].weights`` / ``.indices`` / ``.indptr``):

``weights: "int8"``
    ``layerK.qdata`` (nnz,) int8 in [-127, 127] and ``layerK.scale`` (rows,) float32, finite and
    > 0: the weight of row ``r`` is ``qdata * scale[r]`` (per-row symmetric quantization).
``weights: "shared4"``
    ``layerK.codes`` (nnz,) uint8 and ``layerK.codebook`` (at most 16,) float32, finite: the
    weight is ``codebook[codes]`` (per-layer weight sharing, 4-bit codes, k-means centroids).
``indices: "uint8" | "uint16" | "int32"``
    ``layerK.indices`` holds the column indices in that dtype (the narrowest that holds cols - 1).
``indices: "delta8"``
    ``layerK.indices`` is a uint8 code stream: per row, the first column and then the gaps to the
    previous column, each gap ``d`` written as ``d // 255`` escape codes ``255`` and one code
    ``d % 255``. A column is emitted at every code below 255; the column is the running sum of
    the row's codes up to it.
``indptr: "uint8" | "uint16" | "int32" (row lengths)``
    ``layerK.rowlen`` (rows,) holds each row's non-zero count instead of ``layerK.indptr``.

Version 3 (the packed container, :mod:`edgeprune.runtime.packed`) adds:

``weights: "shared5" | "shared6"``
    as ``shared4`` with codebooks of at most 32 / 64 values (codes still one uint8 each: the
    container's deflate/LZMA stage does the entropy coding, which packed bits would defeat).
``indices: "bitmask"``
    ``layerK.indices`` is ``numpy.packbits`` of the layer's row-major ``rows x cols`` occupancy
    (exactly ``ceil(rows * cols / 8)`` bytes, padding bits zero): cheaper than a delta stream
    on dense rows, and a fully dense layer's mask deflates to almost nothing.

Everything is decoded once at load into the float32 / int32 arrays the kernels already take.
"""

from __future__ import annotations

import numpy as np

ESCAPE = 255
QMAX = 127
CODEBOOK_SIZE = 16
CODEBOOK_SIZES = {"shared4": 16, "shared5": 32, "shared6": 64}
INDEX_CODINGS = ("int32", "uint16", "uint8", "delta8", "bitmask")
ROWLEN_DTYPES = ("int32", "uint16", "uint8")
WEIGHT_CODINGS = ("float32", "int8", "shared4", "shared5", "shared6")
VERSION_3_CODINGS = frozenset({"shared5", "shared6", "bitmask"})  # packed container only

__all__ = [
    "CODEBOOK_SIZE",
    "CODEBOOK_SIZES",
    "ESCAPE",
    "INDEX_CODINGS",
    "QMAX",
    "ROWLEN_DTYPES",
    "VERSION_3_CODINGS",
    "WEIGHT_CODINGS",
    "bitmask_bytes",
    "decode_bitmask",
    "decode_delta8",
    "delta8_max_codes",
    "dequantize",
    "narrowest_uint",
]


def delta8_max_codes(nnz: int, rows: int, cols: int) -> int:
    """An upper bound on the length of a delta8 stream: one code per non-zero plus at most
    ``cols // 255`` escapes per row (a row's gaps sum to less than ``cols``)."""
    return nnz + rows * (cols // ESCAPE)


def decode_delta8(codes: np.ndarray, indptr: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Column indices (int64) from a delta8 stream and the row pointers, or ``(None, problem)``.

    Structural problems (a different number of columns than ``indptr`` ends at, a trailing
    escape) are reported; ranges and ordering are checked by the caller on the result."""
    codes = np.asarray(codes)
    real = codes != ESCAPE
    nnz = int(indptr[-1])
    positions = np.flatnonzero(real)
    if positions.shape[0] != nnz:
        return None, f"encodes {positions.shape[0]} columns, expected nnz={nnz}"
    if codes.shape[0] and not real[-1]:
        return None, "ends with an escape code (255) that no column follows"
    if nnz == 0:
        return np.zeros(0, dtype=np.int64), ""
    total = np.cumsum(codes, dtype=np.int64)[positions]  # running sum at each column
    before = np.concatenate(([0], total))[indptr[:-1]]  # running sum before each row
    lengths = np.diff(indptr)
    return total - np.repeat(before, lengths), ""


def dequantize(qdata: np.ndarray, scale: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """Per-row symmetric int8 -> float32: ``qdata[j] * scale[row of j]``."""
    lengths = np.diff(np.asarray(indptr, dtype=np.int64))
    with np.errstate(over="ignore"):  # an overflow to inf is refused by the caller
        return qdata.astype(np.float32) * np.repeat(scale.astype(np.float32), lengths)


def narrowest_uint(bound: int) -> np.dtype:
    """The narrowest of uint8/uint16/int32 that holds every value in ``[0, bound]``."""
    if bound <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if bound <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def bitmask_bytes(rows: int, cols: int) -> int:
    """The exact length of a layer's bitmask: ``ceil(rows * cols / 8)``."""
    return -(-rows * cols // 8)


def decode_bitmask(codes: np.ndarray, rows: int,
                   cols: int) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
    """``((indices, row_counts), "")`` from a bitmask of the checked length, or ``(None,
    problem)`` when padding bits are set. Indices come out sorted within each row; the caller
    compares ``row_counts`` with the stored row lengths."""
    bits = np.unpackbits(np.asarray(codes, dtype=np.uint8))
    if bits[rows * cols:].any():
        return None, f"sets padding bits beyond the {rows} x {cols} = {rows * cols} positions"
    mask = bits[: rows * cols].reshape(rows, cols).astype(bool)
    return (np.nonzero(mask)[1].astype(np.int64), mask.sum(axis=1)), ""
