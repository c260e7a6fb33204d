"""Layer kernels: ``act(W @ h + b)`` run dense (BLAS) or sparse (CSR), as preallocated ops.

Activations travel *feature-major*: one sample is a 1-D vector of length ``cols``; a batch is a
C-contiguous ``(cols, B)`` array, which is exactly the right-hand operand layout of scipy's CSR
kernels and a single GEMM for the dense one.

A layer does not compute anything by itself: :meth:`LayerOps.ops` returns a list of zero-argument
callables (``functools.partial`` of numpy/scipy functions) bound to an input buffer and an
output buffer that the caller (:class:`~edgeprune.runtime.model.BundleModel`) allocated once for
one batch size. Running a layer is then ``for op in ops: op()``: no allocation, no argument
parsing in Python, ~1 µs per op. The ops per kernel:

- dense: ``np.dot([W | b], [h; 1], out=y)`` -- the bias is folded into the matrix as one more
  column, against an input buffer whose extra last row is 1 -- then the activation in place; a
  batch is the same single GEMM. (Given an input without that row, ``np.add`` adds the bias.)
- CSR, one sample: ``np.copyto(y, b)`` then scipy's C++ ``csr_matvec`` (``y += W @ h``)
  called directly from ``scipy.sparse._sparsetools``, writing into ``y``. This skips the
  ~5-10 µs of Python per call that ``csr_matrix.__matmul__`` spends on checks and on allocating
  its result, which is what made CSR lose to dense at batch 1 on small layers.
- CSR, batch: ``np.copyto(Y, b[:, None])`` then ``csr_matvecs`` (``Y += W @ H``) likewise.

``_sparsetools`` is private scipy API, stable since scipy 1.8; it is self-tested once on a small
matrix at first use and, if missing or wrong, the CSR ops fall back to ``W @ h`` through the
public ``csr_matrix`` (correct, slower, allocates).

Which kernel ``auto`` picks is :func:`choose_kernel`: CSR when the layer's density is below the
crossover density for the batch size, taken from a calibrated
:class:`~edgeprune.runtime.kernel_profile.KernelProfile` when one exists and otherwise the static
:data:`DENSITY_THRESHOLD`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from .activations import apply_activation
from .bundle import LayerArrays
from .kernel_profile import (
    KernelProfile,
    builtin_kernel_profile,
    default_kernel_profile,
    load_kernel_profile,
)

KERNELS = ("dense", "csr")
STATIC = "static"  # profile=STATIC: ignore any calibrated profile, use DENSITY_THRESHOLD

#: ``auto`` runs a layer with CSR when its density (nnz / (rows * cols)) is below this value,
#: where no calibrated kernel profile exists and the architecture has no measured built-in
#: default (:data:`~edgeprune.runtime.kernel_profile.BUILTIN_CROSSOVER`; today: Arm). Around 0.3
#: CSR overtakes dense BLAS on small Arm cores at small batch sizes (not measured here);
#: ``edgeprune bench --calibrate`` measures the real crossover per device.
DENSITY_THRESHOLD = 0.3

Op = Callable[[], Any]
ProfileArg = KernelProfile | str | None

__all__ = [
    "DENSITY_THRESHOLD",
    "KERNELS",
    "STATIC",
    "LayerOps",
    "activation_ops",
    "choose_kernel",
    "fast_csr_available",
    "resolve_profile",
]

_ZERO = np.zeros((), dtype=np.float32)


def resolve_profile(profile: Any = None) -> KernelProfile | None:
    """``None`` -> the default profile file if present, else the built-in default of this
    architecture (None where there is none: the static rule); ``"static"`` -> None; a path ->
    loaded."""
    if profile is None:
        found = default_kernel_profile()
        return found if found is not None else builtin_kernel_profile()
    if isinstance(profile, KernelProfile):
        return profile
    if isinstance(profile, str) and profile == STATIC:
        return None
    return load_kernel_profile(profile)


def choose_kernel(
    layer: LayerArrays,
    threshold: float | None = None,
    *,
    batch: int = 1,
    profile: ProfileArg = None,
) -> str:
    """Kernel that ``auto`` picks for ``layer`` at ``batch``: ``"csr"`` below the crossover.

    The crossover is ``threshold`` when given, else ``profile.threshold(batch)`` (``profile``
    as in :func:`resolve_profile`: by default the calibrated profile file when one exists),
    else :data:`DENSITY_THRESHOLD`.
    """
    if threshold is None:
        resolved = resolve_profile(profile)
        threshold = DENSITY_THRESHOLD if resolved is None else resolved.threshold(batch)
    return "csr" if layer.density < threshold else "dense"


@functools.lru_cache(maxsize=1)
def _sparsetools() -> tuple[Callable[..., Any], Callable[..., Any]] | None:
    """scipy's ``csr_matvec``/``csr_matvecs`` if importable and correct on a self-test."""
    try:
        from scipy.sparse import _sparsetools as st

        matvec, matvecs = st.csr_matvec, st.csr_matvecs
        indptr = np.array([0, 2, 3], dtype=np.int32)
        indices = np.array([0, 2, 1], dtype=np.int32)
        data = np.array([1.0, 2.0, 3.0], dtype=np.float32)
        y = np.array([10.0, 20.0], dtype=np.float32)
        matvec(2, 3, indptr, indices, data, np.array([1.0, 2.0, 4.0], np.float32), y)
        ys = np.zeros((2, 2), dtype=np.float32)
        xs = np.array([[1.0, 0.0], [2.0, 1.0], [4.0, 0.0]], dtype=np.float32)
        matvecs(2, 3, 2, indptr, indices, data, xs, ys)
        ok = np.array_equal(y, [19.0, 26.0]) and np.array_equal(ys, [[9.0, 0.0], [6.0, 3.0]])
    except Exception:  # noqa: BLE001 - any failure means: use the public, slower path
        return None
    return (matvec, matvecs) if ok else None


def fast_csr_available() -> bool:
    """True when the direct ``_sparsetools`` CSR path is in use (else the public fallback)."""
    return _sparsetools() is not None


_HALF = np.float32(0.5)


def _sigmoid_ops(y: np.ndarray) -> list[Op]:
    """``0.5 * tanh(y / 2) + 0.5`` in place (the formula of ``activations``; it never
    overflows): four SIMD ufuncs, 5x faster than scipy's scalar ``expit`` on a batch of 32."""
    return [
        functools.partial(np.multiply, y, _HALF, out=y),
        functools.partial(np.tanh, y, out=y),
        functools.partial(np.multiply, y, _HALF, out=y),
        functools.partial(np.add, y, _HALF, out=y),
    ]


def activation_ops(
    name: str, slope: float, y: np.ndarray, scratch: Callable[[], np.ndarray]
) -> list[Op]:
    """In-place activation of ``y`` as ops; ``scratch()`` gives a buffer shaped like ``y``."""
    if name == "identity":
        return []
    if name == "relu":
        return [functools.partial(np.maximum, y, _ZERO, out=y)]
    if name == "tanh":
        return [functools.partial(np.tanh, y, out=y)]
    if name == "sigmoid":
        return _sigmoid_ops(y)
    if name == "leaky_relu":
        alpha = np.asarray(slope, dtype=np.float32)
        if 0.0 <= slope <= 1.0:  # max(z, a z) is leaky_relu for 0 <= a <= 1
            buf = scratch()
            return [
                functools.partial(np.multiply, y, alpha, out=buf),
                functools.partial(np.maximum, y, buf, out=y),
            ]
        if slope > 1.0:  # min(z, a z) for a > 1
            buf = scratch()
            return [
                functools.partial(np.multiply, y, alpha, out=buf),
                functools.partial(np.minimum, y, buf, out=y),
            ]
        return [functools.partial(apply_activation, y, name, slope, out=y)]  # a < 0: allocates
    raise ValueError(f"unknown activation {name!r}")


def _csr_fallback(matrix: sp.csr_matrix, h: np.ndarray, y: np.ndarray) -> None:
    y += np.asarray(matrix @ h)


class LayerOps:
    """One layer in the representations it needs; :meth:`ops` binds them to buffers.

    The CSR arrays are the bundle's own (no copy). The dense float32 weight is materialized once
    at construction when ``need_dense`` (a forced dense kernel, or ``auto`` with a density that
    some batch size's crossover sends to dense); a layer near the crossover keeps both.
    """

    def __init__(self, layer: LayerArrays, need_dense: bool) -> None:
        self.layer = layer
        self.shape = layer.shape
        self.density = layer.density
        self.bias = layer.bias
        self._bias_col = layer.bias[:, None]
        self.matrix = sp.csr_matrix(
            (layer.data, layer.indices, layer.indptr), shape=layer.shape, copy=False
        )
        # The loader verified sorted, duplicate-free indices; tell scipy so it skips its checks.
        self.matrix.has_sorted_indices = True
        self.matrix.has_canonical_format = True
        # The dense weight carries the bias as one more column, ``[W | b]``: against an input
        # buffer whose extra last row is 1 the product is ``W @ h + b`` in one BLAS call.
        self.weight_bias: np.ndarray | None = None
        self._arrays: dict[tuple[str, float], tuple[np.ndarray, ...]] = {}
        if need_dense:
            rows, cols = layer.shape
            self.weight_bias = np.empty((rows, cols + 1), dtype=np.float32)
            self.weight_bias[:, :cols] = self.matrix.toarray()
            self.weight_bias[:, cols] = layer.bias

    @property
    def weight(self) -> np.ndarray | None:
        """The dense float32 ``(rows, cols)`` weight (a view of :attr:`weight_bias`), if built."""
        return None if self.weight_bias is None else self.weight_bias[:, : self.shape[1]]

    def arrays_for(self, layout: str, scale: float = 1.0) -> tuple[np.ndarray, ...]:
        """This layer's arrays for a product in ``layout``, every value times ``scale``:
        ``"rows"``: ``([W | b],)`` (rows, cols + 1); ``"cols"``: ``([W | b].T,)`` C-contiguous
        (cols + 1, rows), the bias as the last row; ``"csr"``: ``(data, bias)`` (the bundle's
        own arrays at scale 1). Built once and kept: clones share them (read-only)."""
        key = (layout, float(scale))
        found = self._arrays.get(key)
        if found is not None:
            return found
        if layout == "csr":
            made: tuple[np.ndarray, ...] = (self.matrix.data, self.bias)
        elif self.weight_bias is None:
            raise ValueError("dense kernel requested but the dense weight was not built")
        elif layout == "rows":
            made = (self.weight_bias,)
        elif layout == "cols":
            made = (np.ascontiguousarray(self.weight_bias.T),)
        else:
            raise ValueError(f"unknown layout {layout!r}; expected 'rows', 'cols' or 'csr'")
        if scale != 1.0:  # scaling by a power of two is exact: the products stay bit-equal
            made = tuple((a * np.float32(scale)).astype(np.float32) for a in made)
        self._arrays[key] = made
        return made

    @property
    def kernels(self) -> tuple[str, ...]:
        """The kernels this layer can run (``"csr"`` always, ``"dense"`` when materialized)."""
        return ("dense", "csr") if self.weight is not None else ("csr",)

    def ops(self, kernel: str, h: np.ndarray, y: np.ndarray) -> list[Op]:
        """Ops computing ``y = act(W @ h + b)`` in place; ``h``/``y`` are 1-D or (n, B).

        ``h`` may carry one extra last row of ones (``cols + 1`` rows): the dense kernel then
        folds the bias into its one matrix product; without it (or for CSR) the bias is an op.
        """
        rows, cols = self.shape
        batch = h.ndim == 2
        bias = self._bias_col if batch else self.bias
        folded = h.shape[0] == cols + 1
        x = h[:cols] if folded else h
        if kernel == "dense":
            if self.weight_bias is None:
                raise ValueError("dense kernel requested but the dense weight was not built")
            if folded:
                out: list[Op] = [functools.partial(np.dot, self.weight_bias, h, out=y)]
            else:
                out = [
                    functools.partial(np.dot, self.weight, x, out=y),
                    functools.partial(np.add, y, bias, out=y),
                ]
        elif kernel == "csr":
            out = [functools.partial(np.copyto, y, bias)]
            fast = _sparsetools()
            m = self.matrix
            if fast is None:
                out.append(functools.partial(_csr_fallback, m, x, y))
            elif batch:
                out.append(functools.partial(
                    fast[1], rows, cols, x.shape[1], m.indptr, m.indices, m.data, x, y
                ))
            else:
                out.append(functools.partial(fast[0], rows, cols, m.indptr, m.indices, m.data, x, y))
        else:
            raise ValueError(f"unknown kernel {kernel!r}; expected 'dense' or 'csr'")
        layer = self.layer
        scratch = functools.partial(np.empty_like, y)
        return out + activation_ops(layer.activation, layer.negative_slope, y, scratch)

    def __repr__(self) -> str:
        rows, cols = self.shape
        return f"LayerOps({rows}x{cols}, density={self.density:.3f}, {self.layer.activation})"
