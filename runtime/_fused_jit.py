"""The numba-compiled loops of :mod:`edgeprune.runtime.fused` (imported only from there, lazily:
this is the one runtime module that imports numba). Each layer kernel is its own compiled
function, so that LLVM sees plain, unaliased arrays and vectorizes the row loops."""

from __future__ import annotations

import numba
import numpy as np

_jit = numba.njit(cache=True, fastmath=True, nogil=True, boundscheck=False, error_model="numpy")


@_jit
def dense_rows(w, h, y, b):  # pragma: no cover - compiled
    """``y = W @ h + b`` with ``w = [W | b]`` (its last column is not read), 4 rows at a time."""
    c = w.shape[1] - 1
    r = y.shape[0]
    i = 0
    while i + 4 <= r:
        s0, s1, s2, s3 = b[i], b[i + 1], b[i + 2], b[i + 3]
        for j in range(c):
            hj = h[j]
            s0 += w[i, j] * hj
            s1 += w[i + 1, j] * hj
            s2 += w[i + 2, j] * hj
            s3 += w[i + 3, j] * hj
        y[i], y[i + 1], y[i + 2], y[i + 3] = s0, s1, s2, s3
        i += 4
    while i < r:
        s = b[i]
        for j in range(c):
            s += w[i, j] * h[j]
        y[i] = s
        i += 1


@_jit
def csr_rows(data, indices, indptr, h, y, b):  # pragma: no cover - compiled
    """``y = W @ h + b`` with ``W`` in CSR."""
    for i in range(y.shape[0]):
        s = b[i]
        for q in range(indptr[i], indptr[i + 1]):
            s += data[q] * h[indices[q]]
        y[i] = s


@_jit
def activate(y, code, slope):  # pragma: no cover - compiled
    """The activation of ``code`` (fused.ACT_CODES) in place."""
    one = np.float32(1.0)
    if code == 1:
        for i in range(y.shape[0]):
            if y[i] < 0:
                y[i] = 0
    elif code == 2:
        for i in range(y.shape[0]):
            if y[i] < 0:
                y[i] = slope * y[i]
    elif code == 3:
        for i in range(y.shape[0]):
            v = y[i]
            if v >= 0:
                y[i] = one / (one + np.exp(-v))
            else:
                e = np.exp(v)
                y[i] = e / (one + e)
    elif code == 4:
        for i in range(y.shape[0]):
            y[i] = np.tanh(y[i])


@_jit
def forward_flat(x, out, f, meta, ints):  # pragma: no cover - compiled
    """One sample through every layer: gather ``x``, each layer into the next buffer (the last
    one above the constant outputs), ``out[p] = last[perm[p]]``. Every array is packed into
    three, so that the dispatch unboxes five arguments (one per layer array cost ~4 µs).

    ``f`` (float32): weights, CSR values, biases, slopes, buffers; ``ints`` (int32): CSR
    indices and row pointers; ``meta`` (int64): ``[n_layers, n_in, in_off, n_out, perm_off,
    last_off]``, then 10 per layer ``[kind, act, rows, cols, w_off, b_off, h_off, y_off, ix_off,
    ip_off]`` (offsets into ``f`` or ``ints``; the slope sits at ``f[b_off + rows]``), then the
    input index and the output permutation."""
    n, n_in, in_off, n_out, perm_off, last_off = (meta[0], meta[1], meta[2], meta[3], meta[4],
                                                  meta[5])
    idx = 6 + 10 * n
    for j in range(n_in):
        f[in_off + j] = x[meta[idx + j]]
    for k in range(n):
        m = 6 + 10 * k
        kind, act, r, c = meta[m], meta[m + 1], meta[m + 2], meta[m + 3]
        w_off, b_off, h_off, y_off = meta[m + 4], meta[m + 5], meta[m + 6], meta[m + 7]
        h = f[h_off:h_off + c]
        y = f[y_off:y_off + r]
        b = f[b_off:b_off + r]
        if kind == 0:
            dense_rows(f[w_off:w_off + r * (c + 1)].reshape((r, c + 1)), h, y, b)
        else:
            ip = ints[meta[m + 9]:meta[m + 9] + r + 1]
            nnz = ip[r]
            csr_rows(f[w_off:w_off + nnz], ints[meta[m + 8]:meta[m + 8] + nnz], ip, h, y, b)
        activate(y, act, f[b_off + r])
    for p in range(n_out):
        out[p] = f[last_off + meta[perm_off + p]]
