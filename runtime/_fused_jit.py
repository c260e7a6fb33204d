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
def forward(x, index, kinds, acts, slopes, dense, data, indices, indptr, bias, bufs, last, perm,
            out):  # pragma: no cover - compiled
    """Gather ``x`` into ``bufs[0]``, run every layer into the next buffer (the last one into
    ``last``, above the constant outputs) and assemble ``out[p] = last[perm[p]]``."""
    h = bufs[0]
    for j in range(index.shape[0]):
        h[j] = x[index[j]]
    n = kinds.shape[0]
    for k in range(n):
        y = last if k == n - 1 else bufs[k + 1]
        if kinds[k] == 0:
            dense_rows(dense[k], h, y[: bias[k].shape[0]], bias[k])
        else:
            csr_rows(data[k], indices[k], indptr[k], h, y[: bias[k].shape[0]], bias[k])
        activate(y[: bias[k].shape[0]], acts[k], slopes[k])
        h = y
    for p in range(perm.shape[0]):
        out[p] = last[perm[p]]
