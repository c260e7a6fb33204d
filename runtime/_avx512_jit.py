"""The ``window`` layer kernel of the compiled engine with AVX-512 instructions (x86-64 only;
imported from :mod:`edgeprune.runtime._fused_jit` where :func:`edgeprune.runtime.window_pack.
avx512_available` says the host has AVX-512F; this module imports numba and llvmlite).

numba has no SIMD types of its own and its loop vectorizer gathers from memory one element at a
time (measured: a plain-loop sliced-ELL kernel ran at 1.9-3 ns per non-zero, slower than dense),
so this module hands LLVM explicit 16-lane vectors through ``numba.extending.intrinsic``: a
``F32x16`` value type (one ``<16 x float>`` register), loads, stores, ``llvm.fma`` and the
two-table permute ``vpermi2ps`` (``llvm.x86.avx512.vpermi2var.ps.512``), which picks 16 floats out
of 32 held in two registers by 16 indices -- a gather from registers, one instruction, where the
memory gather ``vgatherdps`` measured ~14 cycles per 16 lanes on this Xeon (0.3 ns per
non-zero: slower than the dense kernel at the densities pruning leaves).

Format (packed by :func:`~edgeprune.runtime.window_pack.pack_windows`): rows in slices of 16,
columns in windows of 32. For window ``w`` and slice ``s`` there are ``K[w, s]`` steps (the most
non-zeros any of the slice's 16 rows has in that window); step ``q`` holds 16 weights (lane
``l``: row ``16 s + l``) and 16 byte indices (0-31, the column inside the window), zero weights
where a row has fewer entries. ``steps`` holds the running total of steps in window-major order.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

__all__ = ["dense_cols16", "window_matvec"]

_V16F = ir.VectorType(ir.FloatType(), 16)
_V16I = ir.VectorType(ir.IntType(32), 16)
_V16B = ir.VectorType(ir.IntType(8), 16)


class F32x16Type(types.Type):
    """Sixteen float32 lanes held in one register (LLVM ``<16 x float>``)."""

    def __init__(self) -> None:
        super().__init__(name="F32x16")


f32x16 = F32x16Type()


@register_model(F32x16Type)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type) -> None:
        super().__init__(dmm, fe_type, _V16F)


def _address(context, builder, array_type, array, offset, element):
    """Pointer to ``array[offset]`` reinterpreted as a pointer to ``element``."""
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [offset]), element.as_pointer())


@intrinsic
def vload(typingctx, array, offset):
    """16 floats of a float32 array from ``array[offset]`` (any alignment)."""
    def codegen(context, builder, sig, args):
        return builder.load(_address(context, builder, sig.args[0], args[0], args[1], _V16F),
                            align=4)
    return f32x16(array, types.intp), codegen


@intrinsic
def vstore(typingctx, array, offset, value):
    """``array[offset:offset + 16] = value``."""
    def codegen(context, builder, sig, args):
        builder.store(args[2], _address(context, builder, sig.args[0], args[0], args[1], _V16F),
                      align=4)
        return context.get_dummy_value()
    return types.void(array, types.intp, f32x16), codegen


@intrinsic
def vzero(typingctx):
    def codegen(context, builder, sig, args):
        return ir.Constant(_V16F, [0.0] * 16)
    return f32x16(), codegen


@intrinsic
def vadd(typingctx, a, b):
    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return f32x16(f32x16, f32x16), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """``a * b + c`` lane by lane, one rounding."""
    def codegen(context, builder, sig, args):
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_V16F, [_V16F] * 3), "llvm.fma.v16f32")
        return builder.call(fma, list(args))
    return f32x16(f32x16, f32x16, f32x16), codegen


@intrinsic
def vpick(typingctx, low, words, byte_offset, high):
    """Lane ``l``: entry ``idx[l]`` (0-31) of the 32 floats ``low ++ high``, where ``idx`` are
    the 16 bytes at ``byte_offset`` in the memory of the int32 array ``words``."""
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[1])(context, builder, args[1]).data
        raw = builder.bitcast(data, ir.IntType(8).as_pointer())
        idx = builder.zext(builder.load(builder.bitcast(builder.gep(raw, [args[2]]),
                                                        _V16B.as_pointer()), align=1), _V16I)
        permute = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_V16F, [_V16F, _V16I, _V16F]),
            "llvm.x86.avx512.vpermi2var.ps.512")
        return builder.call(permute, [args[0], idx, args[3]])
    return f32x16(f32x16, words, types.intp, f32x16), codegen


@numba.njit(cache=True, fastmath=True, nogil=True, boundscheck=False, error_model="numpy")
def window_matvec(values, words, steps, h, y, b):  # pragma: no cover - compiled
    """``y = W @ h + b`` for ``W`` packed in windows (module docstring): ``y`` and ``b`` hold
    16 * slices floats (rows in the packed order), ``h`` 32 * windows (entries past the layer's
    columns are read into the table but never picked), ``words`` the byte indices, ``steps``
    ``windows * slices + 1`` running step counts. Two accumulators per slice hide the latency
    of the multiply-add chain."""
    ns = y.shape[0] // 16
    nw = (steps.shape[0] - 1) // ns
    for s in range(ns):
        vstore(y, 16 * s, vload(b, 16 * s))
    q = 0
    for w in range(nw):
        low = vload(h, 32 * w)
        high = vload(h, 32 * w + 16)
        for s in range(ns):
            end = steps[w * ns + s + 1]
            acc = vload(y, 16 * s)
            acc2 = vzero()
            while q + 2 <= end:
                acc = vfma(vload(values, 16 * q), vpick(low, words, 16 * q, high), acc)
                acc2 = vfma(vload(values, 16 * q + 16), vpick(low, words, 16 * q + 16, high),
                            acc2)
                q += 2
            if q < end:
                acc = vfma(vload(values, 16 * q), vpick(low, words, 16 * q, high), acc)
                q += 1
            vstore(y, 16 * s, vadd(acc, acc2))


@intrinsic
def vsplat(typingctx, value):
    """A float32 scalar in all 16 lanes."""
    def codegen(context, builder, sig, args):
        lanes = builder.insert_element(ir.Constant(_V16F, ir.Undefined), args[0],
                                       ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(lanes, lanes, ir.Constant(_V16I, [0] * 16))
    return f32x16(types.float32), codegen


@numba.njit(cache=True, fastmath=True, nogil=True, boundscheck=False, error_model="numpy")
def dense_cols16(wt, h, y, b, nz, n):  # pragma: no cover - compiled
    """``y = W @ h + b`` by columns in 512-bit registers, reading only the ``n`` columns listed
    in ``nz`` (``_fused_jit.dense_cols``, same arguments): ``wt`` is ``W.T`` with each column
    padded to ``y.shape[0]`` rows, a multiple of 16; eight columns per pass over ``y``. numba's
    own vectorizer emits 256-bit code for this loop on this CPU (LLVM prefers 256-bit vectors
    on server x86): measured in-kernel, the unpruned MNIST autoencoder's 784x256 took 3.9 µs
    here against 7.1, its 256x784 (no zero input) 7.3 against 12.3 by rows."""
    r = y.shape[0]
    for i in range(0, r, 16):
        vstore(y, i, vload(b, i))
    k = 0
    while k + 8 <= n:
        w0, w1, w2, w3 = wt[nz[k]], wt[nz[k + 1]], wt[nz[k + 2]], wt[nz[k + 3]]
        w4, w5, w6, w7 = wt[nz[k + 4]], wt[nz[k + 5]], wt[nz[k + 6]], wt[nz[k + 7]]
        a0, a1, a2, a3 = (vsplat(h[nz[k]]), vsplat(h[nz[k + 1]]), vsplat(h[nz[k + 2]]),
                          vsplat(h[nz[k + 3]]))
        a4, a5, a6, a7 = (vsplat(h[nz[k + 4]]), vsplat(h[nz[k + 5]]), vsplat(h[nz[k + 6]]),
                          vsplat(h[nz[k + 7]]))
        for i in range(0, r, 16):
            s = vfma(a0, vload(w0, i), vload(y, i))
            t = vfma(a4, vload(w4, i), vzero())
            s = vfma(a1, vload(w1, i), s)
            t = vfma(a5, vload(w5, i), t)
            s = vfma(a2, vload(w2, i), s)
            t = vfma(a6, vload(w6, i), t)
            s = vfma(a3, vload(w3, i), s)
            t = vfma(a7, vload(w7, i), t)
            vstore(y, i, vadd(s, t))
        k += 8
    while k < n:
        w0, a0 = wt[nz[k]], vsplat(h[nz[k]])
        for i in range(0, r, 16):
            vstore(y, i, vfma(a0, vload(w0, i), vload(y, i)))
        k += 1
