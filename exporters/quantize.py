"""Per-row symmetric int8 weights and compact column indices for the ``.npz`` bundle (v2).

The decoding side, with the format description, is :mod:`edgeprune.runtime.quant`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from edgeprune.runtime.quant import ESCAPE, INDEX_CODINGS, QMAX, decode_delta8

QUANTIZE_CHOICES = ("none", "int8")

__all__ = [
    "QUANTIZE_CHOICES",
    "encode_delta8",
    "encode_indices",
    "narrowest_uint",
    "quantize_rows",
    "quantize_network_weights",
]


def quantize_rows(csr: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """``(qdata int8, scale float32 per row)`` with ``scale = max|w| / 127`` (1 for empty rows).

    Rounding half to even; every value lands in [-127, 127] so the code is symmetric."""
    rows = csr.shape[0]
    data = np.asarray(csr.data, dtype=np.float64)
    lengths = np.diff(csr.indptr)
    amax = np.zeros(rows)
    nonempty = lengths > 0
    if data.size:
        amax[nonempty] = np.maximum.reduceat(np.abs(data), csr.indptr[:-1][nonempty])
    scale = np.where(amax > 0, amax / QMAX, 1.0).astype(np.float32)
    # tiny rows: a float32 scale that underflows to 0 would be refused by the loader
    scale = np.where(scale > 0, scale, np.float32(1.0)).astype(np.float32)
    q = np.rint(data / np.repeat(scale.astype(np.float64), lengths))
    return np.clip(q, -QMAX, QMAX).astype(np.int8), scale


def quantize_network_weights(weights: list[np.ndarray]) -> list[np.ndarray]:
    """The float32 weights the runtime will compute with after int8 quantization (for checks)."""
    out = []
    for w in weights:
        csr = sp.csr_matrix(np.asarray(w, dtype=np.float32))
        csr.eliminate_zeros()
        csr.sort_indices()
        q, scale = quantize_rows(csr)
        deq = csr.copy().astype(np.float32)
        deq.data = q.astype(np.float32) * np.repeat(scale, np.diff(csr.indptr))
        out.append(deq.toarray())
    return out


def narrowest_uint(bound: int) -> np.dtype:
    """The narrowest of uint8/uint16/int32 that holds every value in ``[0, bound]``."""
    if bound <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if bound <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def encode_delta8(indices: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """The delta8 code stream of sorted CSR column indices (see runtime/quant.py)."""
    indices = np.asarray(indices, dtype=np.int64)
    lengths = np.diff(indptr)
    gaps = indices.copy()
    if indices.size:
        gaps[1:] -= indices[:-1]
        starts = np.asarray(indptr[:-1])[lengths > 0]
        gaps[starts] = indices[starts]  # a row starts from column 0
    escapes = gaps // ESCAPE
    out = np.full(int(escapes.sum()) + gaps.shape[0], ESCAPE, dtype=np.uint8)
    ends = np.cumsum(escapes + 1) - 1  # each column's code comes after its escapes
    out[ends] = (gaps % ESCAPE).astype(np.uint8)
    decoded, problem = decode_delta8(out, np.asarray(indptr))
    assert decoded is not None and np.array_equal(decoded, indices), problem
    return out


def encode_indices(indices: np.ndarray, indptr: np.ndarray, cols: int,
                   coding: str) -> np.ndarray:
    """Column indices in ``coding`` (one of INDEX_CODINGS)."""
    if coding == "delta8":
        return encode_delta8(indices, indptr)
    if coding not in INDEX_CODINGS:
        raise ValueError(f"unknown index coding {coding!r}")
    dtype = np.dtype(coding)
    if cols - 1 > np.iinfo(dtype).max:
        raise ValueError(f"{cols} columns do not fit {coding} indices")
    return np.ascontiguousarray(indices, dtype=dtype)


def quantized_network(net):
    """A copy of the :class:`~edgeprune.network.Network` ``net`` computing with the weights an
    int8 bundle stores (per-row symmetric, dequantized to float32); masks and biases unchanged.

    The reference the quantized artifacts are verified against, and whose metrics the report
    shows after quantization. Compaction only drops all-zero columns and rows, so each row's
    scale is the same here as in the bundle."""
    out = net.copy()
    weights = quantize_network_weights([layer.masked_weight for layer in net.layers])
    for layer, weight in zip(out.layers, weights, strict=True):
        layer.weight = np.where(layer.mask, weight, layer.weight).astype(np.float32)
    return out
