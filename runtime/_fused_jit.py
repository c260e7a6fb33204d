"""The numba-compiled loops of :mod:`edgeprune.runtime.fused` (imported only from there, lazily:
this is the one runtime module that imports numba). Each layer kernel is its own compiled
function, so that LLVM sees plain, unaliased arrays and vectorizes the row loops."""

from __future__ import annotations

import numba
import numpy as np

from .window_pack import avx512_available

_jit = numba.njit(cache=True, fastmath=True, nogil=True, boundscheck=False, error_model="numpy")

#: Meta entries before the layers' (HEAD) and per layer (LAYER_META) in :func:`forward_flat`.
HEAD = 7
LAYER_META = 12

#: A ``window``-or-columns layer (kind 5) runs by columns when ``non-zero inputs * rows`` is at
#: most this many times its window lanes: measured per element (x86-64, one thread, the eta 0.9
#: MNIST autoencoder's layers) the window kernel costs ~1.2x a by-columns multiply-add.
WINDOW_VS_COLS = 1.2


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
def nonzeros(h, nz):  # pragma: no cover - compiled
    """Write the positions of ``h``'s non-zero entries into ``nz``; return how many."""
    n = 0
    for j in range(h.shape[0]):
        if h[j] != 0:
            nz[n] = j
            n += 1
    return n


@_jit
def count_nonzero(h):  # pragma: no cover - compiled
    """How many entries of ``h`` are non-zero (a vectorised count: no positions written)."""
    n = 0
    for j in range(h.shape[0]):
        n += h[j] != 0
    return n


@_jit
def dense_cols(wt, h, y, b, nz, n):  # pragma: no cover - compiled
    """``y = W @ h + b`` with ``wt = W.T`` (``(cols, rows)``, C-contiguous), reading only the
    ``n`` columns listed in ``nz`` (the non-zero inputs, :func:`nonzeros`).

    Column by column (``y += h[j] * W[:, j]``, eight columns per pass over ``y``, then four,
    then one): after a relu many inputs are exactly zero, and each one skipped saves a whole
    column of multiply-adds. Exact: a skipped term is ``0 * w = 0``."""
    r = y.shape[0]
    for i in range(r):
        y[i] = b[i]
    k = 0
    while k + 8 <= n:
        w0, w1, w2, w3 = wt[nz[k]], wt[nz[k + 1]], wt[nz[k + 2]], wt[nz[k + 3]]
        w4, w5, w6, w7 = wt[nz[k + 4]], wt[nz[k + 5]], wt[nz[k + 6]], wt[nz[k + 7]]
        a0, a1, a2, a3 = h[nz[k]], h[nz[k + 1]], h[nz[k + 2]], h[nz[k + 3]]
        a4, a5, a6, a7 = h[nz[k + 4]], h[nz[k + 5]], h[nz[k + 6]], h[nz[k + 7]]
        for i in range(r):
            y[i] += ((a0 * w0[i] + a1 * w1[i] + a2 * w2[i] + a3 * w3[i])
                     + (a4 * w4[i] + a5 * w5[i] + a6 * w6[i] + a7 * w7[i]))
        k += 8
    while k + 4 <= n:
        w0, w1, w2, w3 = wt[nz[k]], wt[nz[k + 1]], wt[nz[k + 2]], wt[nz[k + 3]]
        a0, a1, a2, a3 = h[nz[k]], h[nz[k + 1]], h[nz[k + 2]], h[nz[k + 3]]
        for i in range(r):
            y[i] += a0 * w0[i] + a1 * w1[i] + a2 * w2[i] + a3 * w3[i]
        k += 4
    while k < n:
        a0 = h[nz[k]]
        w0 = wt[nz[k]]
        for i in range(r):
            y[i] += a0 * w0[i]
        k += 1


@_jit
def csr_rows(data, indices, indptr, h, y, b):  # pragma: no cover - compiled
    """``y = W @ h + b`` with ``W`` in CSR."""
    for i in range(y.shape[0]):
        s = b[i]
        for q in range(indptr[i], indptr[i + 1]):
            s += data[q] * h[indices[q]]
        y[i] = s


@_jit
def window_matvec_portable(values, words, steps, h, y, b):  # pragma: no cover - compiled
    """The window kernel (:mod:`edgeprune.runtime._avx512_jit`) in plain loops, lane by lane:
    the same format and result, for hosts without AVX-512 (where the layout is never chosen
    automatically) and as the reference the vector kernel is tested against."""
    ns = y.shape[0] // 16
    nw = (steps.shape[0] - 1) // ns
    index = words.view(np.uint8)
    for i in range(y.shape[0]):
        y[i] = b[i]
    for w in range(nw):
        for s in range(ns):
            for q in range(steps[w * ns + s], steps[w * ns + s + 1]):
                for lane in range(16):
                    y[16 * s + lane] += values[16 * q + lane] * h[32 * w + index[16 * q + lane]]


if avx512_available():
    from ._avx512_jit import dense_cols16 as cols_kernel
    from ._avx512_jit import window_matvec
else:
    window_matvec = window_matvec_portable
    cols_kernel = dense_cols  # the by-columns kernel the engine runs (its W.T padded to 16 rows)


# float32 constants (a bare Python float would promote the arithmetic to float64)
_ONE = np.float32(1.0)
_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln 2 = _LN2_HI + _LN2_LO, Cody-Waite split (Cephes expf)
_LN2_LO = np.float32(-2.12194440e-4)
_EXP_MIN = np.float32(-87.0)  # exp(-87) = 1.6e-38, still a normal float32
_P0, _P1, _P2 = np.float32(1.9875691500e-4), np.float32(1.3981999507e-3), np.float32(8.3334519073e-3)
_P3, _P4, _P5 = np.float32(4.1665795894e-2), np.float32(1.6666665459e-1), np.float32(5.0000001201e-1)
_HALF = np.float32(0.5)
_POW2 = (np.float32(0.5), np.float32(0.25), np.float32(0.0625), np.float32(2.0 ** -8),
         np.float32(2.0 ** -16), np.float32(2.0 ** -32), np.float32(2.0 ** -64))


@_jit
def exp_neg(a):  # pragma: no cover - compiled
    """``exp(a)`` for float32 ``a <= 0`` in plain arithmetic, so that loops over it vectorize
    (libm's ``expf`` is a scalar call: 632 sigmoids took 4.5 µs, most of a small layer).
    Cephes ``expf``: ``a = k ln2 + r``, ``|r| <= ln2 / 2``, degree-7 polynomial (about 1 ulp);
    ``2**k`` (``-126 <= k <= 0``) as a product of exact powers of two chosen by the bits of
    ``-k``. Below -87 the result is ``exp(-87)`` (1.6e-38), which is 0 to every use here."""
    a = max(a, _EXP_MIN)
    fk = np.floor(a * _LOG2E + _HALF)
    r = a - fk * _LN2_HI - fk * _LN2_LO
    p = (((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5) * r * r + r + _ONE
    m = np.int32(-fk)
    for j in range(7):
        if (m >> j) & 1:
            p *= _POW2[j]
    return p


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
    elif code == 3:  # sigmoid: 1 / (1 + e) for v >= 0, e / (1 + e) below, e = exp(-|v|)
        for i in range(y.shape[0]):
            v = y[i]
            e = exp_neg(-abs(v))
            s = one / (one + e)
            y[i] = s if v >= 0 else e * s
    elif code == 4:  # tanh: sign(v) (1 - e) / (1 + e), e = exp(-2|v|)
        for i in range(y.shape[0]):
            v = y[i]
            e = exp_neg(np.float32(-2.0) * abs(v))
            t = (one - e) / (one + e)
            y[i] = t if v >= 0 else -t


@_jit
def forward_flat(x, out, f, meta, ints):  # pragma: no cover - compiled
    """One sample through every layer: gather ``x``, each layer into the next buffer (the last
    one above the constant outputs), ``out[p] = last[perm[p]]``. Every array is packed into
    three, so that the dispatch unboxes five arguments (one per layer array cost ~4 µs).

    ``f`` (float32): weights, CSR values, biases, slopes, buffers; ``ints`` (int32): CSR
    indices and row pointers, window indices and steps, scratch; ``meta`` (int64):
    ``[n_layers, n_in, in_off, n_out, perm_off, last_off, index_off]`` (:data:`HEAD`), then
    :data:`LAYER_META` per layer
    ``[kind, act, rows, cols, w_off, b_off, h_off, y_off, ix_off, ip_off, t_off, nz_off]``
    (offsets into ``f`` or ``ints``; every bias and output buffer is padded with zeros to a
    multiple of 16 rows, the slope sits right after the padded bias). The input index and the
    output permutation are int32 in ``ints`` (at ``index_off``, ``perm_off``: read as unsigned,
    which spares the wraparound test of a signed index: 0.18 against 0.56 µs for 784 outputs).
    ``kind``: 0 dense by rows (``[W | b]``), 1 CSR, 2 dense by
    columns (``W.T`` at ``w_off``, each column padded to 16 rows, zero inputs skipped;
    ``ix_off``: its int32 scratch), 3 either, per call (``[W | b]`` at ``w_off``, ``W.T`` at
    ``ip_off``): by columns when at most 3/4 of the inputs are non-zero; 4 window
    (:mod:`edgeprune.runtime.window_pack`: values at ``w_off``, byte indices at ``ix_off``,
    steps at ``ip_off``; the input buffer padded to 32 columns); 5 window or, per call, by
    columns (``W.T`` at ``t_off``, scratch at ``nz_off``) when ``non-zero inputs * rows <=
    WINDOW_VS_COLS * lanes``. By columns runs :data:`cols_kernel` (512-bit on AVX-512 hosts)."""
    n, n_in, in_off, n_out, perm_off, last_off = (meta[0], meta[1], meta[2], meta[3], meta[4],
                                                  meta[5])
    index = ints[meta[6]:meta[6] + n_in]
    first = f[in_off:in_off + n_in]
    for j in range(n_in):
        first[j] = x[np.uint32(index[j])]
    for k in range(n):
        m = HEAD + LAYER_META * k
        kind, act, r, c = meta[m], meta[m + 1], meta[m + 2], meta[m + 3]
        w_off, b_off, h_off, y_off = meta[m + 4], meta[m + 5], meta[m + 6], meta[m + 7]
        rp = (r + 15) // 16 * 16
        h = f[h_off:h_off + c]
        y = f[y_off:y_off + r]
        b = f[b_off:b_off + r]
        if kind == 0:
            dense_rows(f[w_off:w_off + r * (c + 1)].reshape((r, c + 1)), h, y, b)
        elif kind == 2 or kind == 3:
            nz = ints[meta[m + 8]:meta[m + 8] + c]
            nnz = nonzeros(h, nz)
            if kind == 2 or nnz * 4 <= c * 3:  # adaptive (3): by columns at <= 3/4 non-zero
                t_off = w_off if kind == 2 else meta[m + 9]
                cols_kernel(f[t_off:t_off + c * rp].reshape((c, rp)), h, f[y_off:y_off + rp],
                            f[b_off:b_off + rp], nz, nnz)
            else:
                dense_rows(f[w_off:w_off + r * (c + 1)].reshape((r, c + 1)), h, y, b)
        elif kind == 4 or kind == 5:
            steps = ints[meta[m + 9]:meta[m + 9] + (rp // 16) * ((c + 31) // 32) + 1]
            if (kind == 5 and count_nonzero(h) * r
                    <= WINDOW_VS_COLS * 16 * steps[steps.shape[0] - 1]):
                nz = ints[meta[m + 11]:meta[m + 11] + c]
                t_off = meta[m + 10]
                cols_kernel(f[t_off:t_off + c * rp].reshape((c, rp)), h, f[y_off:y_off + rp],
                            f[b_off:b_off + rp], nz, nonzeros(h, nz))
            else:
                window_matvec(f[w_off:], ints[meta[m + 8]:], steps,
                              f[h_off:h_off + (c + 31) // 32 * 32], f[y_off:y_off + rp],
                              f[b_off:b_off + rp])
        else:
            ip = ints[meta[m + 9]:meta[m + 9] + r + 1]
            nnz = ip[r]
            csr_rows(f[w_off:w_off + nnz], ints[meta[m + 8]:meta[m + 8] + nnz], ip, h, y, b)
        activate(y, act, f[b_off + rp])
    perm = ints[perm_off:perm_off + n_out]
    last = f[last_off:]
    for p in range(n_out):
        out[p] = last[np.uint32(perm[p])]
