"""Per-row symmetric int8 weights and compact column indices for the ``.npz`` bundle (v2).

The decoding side, with the format description, is :mod:`edgeprune.runtime.quant`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from edgeprune.runtime.quant import (
    CODEBOOK_SIZE,
    CODEBOOK_SIZES,
    ESCAPE,
    INDEX_CODINGS,
    QMAX,
    decode_delta8,
    narrowest_uint,
)

QUANTIZE_CHOICES = ("none", "int8", "shared4", "shared5", "shared6")
KMEANS_ITERATIONS = 50

__all__ = [
    "QUANTIZE_CHOICES",
    "encode_bitmask",
    "encode_delta8",
    "encode_indices",
    "narrowest_uint",
    "quantize_rows",
    "quantize_network_weights",
    "quantized_network",
    "share_weights",
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


def share_weights(data: np.ndarray, size: int = CODEBOOK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``(codes uint8, codebook float32)``: 1-D k-means of ``data`` into at most ``size`` shared
    values (Deep Compression's weight sharing), deterministic: centroids start at evenly spaced
    quantiles and take ``KMEANS_ITERATIONS`` Lloyd steps; empty clusters are dropped. Data with
    at most ``size`` distinct float32 values (codebooks already shared and fine-tuned,
    :mod:`edgeprune.weight_sharing`) keeps exactly those values."""
    data = np.asarray(data, dtype=np.float64)
    if data.size == 0:
        return np.zeros(0, np.uint8), np.zeros(1, np.float32)
    distinct, inverse = np.unique(data.astype(np.float32), return_inverse=True)
    if distinct.size <= size:
        return inverse.reshape(-1).astype(np.uint8), distinct
    centroids = np.unique(np.quantile(data, (np.arange(size) + 0.5) / size))
    for _ in range(KMEANS_ITERATIONS):
        codes = _nearest(data, centroids)
        sums = np.bincount(codes, weights=data, minlength=centroids.size)
        counts = np.bincount(codes, minlength=centroids.size)
        kept = counts > 0
        new = sums[kept] / counts[kept]
        if new.shape == centroids.shape and np.allclose(new, centroids, rtol=0, atol=1e-12):
            break
        centroids = np.unique(new)
    codebook = centroids.astype(np.float32)
    codebook = np.unique(codebook)  # float32 rounding may merge two centroids
    return _nearest(data, codebook.astype(np.float64)).astype(np.uint8), codebook


def _nearest(data: np.ndarray, sorted_centroids: np.ndarray) -> np.ndarray:
    edges = (sorted_centroids[1:] + sorted_centroids[:-1]) / 2
    return np.searchsorted(edges, data).astype(np.int64)


def quantize_network_weights(weights: list[np.ndarray], quantize: str = "int8") -> list[np.ndarray]:
    """The float32 weights the runtime computes with after ``quantize`` (for checks)."""
    out = []
    for w in weights:
        csr = sp.csr_matrix(np.asarray(w, dtype=np.float32))
        csr.eliminate_zeros()
        csr.sort_indices()
        deq = csr.copy().astype(np.float32)
        if quantize in CODEBOOK_SIZES:
            codes, codebook = share_weights(csr.data, CODEBOOK_SIZES[quantize])
            deq.data = codebook[codes]
        else:
            q, scale = quantize_rows(csr)
            deq.data = q.astype(np.float32) * np.repeat(scale, np.diff(csr.indptr))
        out.append(deq.toarray())
    return out


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


def encode_bitmask(indices: np.ndarray, indptr: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The row-major occupancy bits of a ``rows x cols`` CSR layer, ``numpy.packbits``-packed."""
    mask = np.zeros(rows * cols, dtype=bool)
    row_of = np.repeat(np.arange(rows, dtype=np.int64), np.diff(indptr))
    mask[row_of * cols + np.asarray(indices, dtype=np.int64)] = True
    return np.packbits(mask)


def encode_indices(indices: np.ndarray, indptr: np.ndarray, cols: int,
                   coding: str, rows: int | None = None) -> np.ndarray:
    """Column indices in ``coding`` (one of INDEX_CODINGS; ``bitmask`` needs ``rows``)."""
    if coding == "delta8":
        return encode_delta8(indices, indptr)
    if coding == "bitmask":
        return encode_bitmask(indices, indptr, len(indptr) - 1 if rows is None else rows, cols)
    if coding not in INDEX_CODINGS:
        raise ValueError(f"unknown index coding {coding!r}")
    dtype = np.dtype(coding)
    if cols - 1 > np.iinfo(dtype).max:
        raise ValueError(f"{cols} columns do not fit {coding} indices")
    return np.ascontiguousarray(indices, dtype=dtype)


def quantized_network(net, quantize: str = "int8"):
    """A copy of the :class:`~edgeprune.network.Network` ``net`` computing with the weights an
    int8 bundle stores (per-row symmetric, dequantized to float32); masks and biases unchanged.

    The reference the quantized artifacts are verified against, and whose metrics the report
    shows after quantization. Compaction only drops all-zero columns and rows, so each row's
    scale is the same here as in the bundle."""
    out = net.copy()
    weights = quantize_network_weights([layer.masked_weight for layer in net.layers], quantize)
    for layer, weight in zip(out.layers, weights, strict=True):
        layer.weight = np.where(layer.mask, weight, layer.weight).astype(np.float32)
    return out
