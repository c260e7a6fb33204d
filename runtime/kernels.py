"""Layer kernels: ``act(W @ h + b)`` run dense (BLAS) or sparse (scipy CSR).

Activations travel *feature-major*: one sample is a 1-D vector of length ``cols``; a batch is a
C-contiguous ``(cols, B)`` array. Then a CSR product ``W @ H`` reads its right operand without a
copy and writes a fresh C-contiguous ``(rows, B)`` result, and the dense product is a single GEMM;
bias and activation are applied in place.

Which kernel a layer gets is decided by :func:`choose_kernel`, a static density threshold for now
(a later calibration per device may replace it; keep its signature).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import scipy.sparse as sp

from .activations import apply_activation
from .bundle import LayerArrays

KERNELS = ("dense", "csr")

#: ``auto`` runs a layer with CSR when its density (nnz / (rows * cols)) is below this value.
#: Around 0.3 scipy's CSR mat-vec overtakes dense BLAS on small Arm cores; it is a static default
#: until per-device calibration exists.
DENSITY_THRESHOLD = 0.3

__all__ = [
    "DENSITY_THRESHOLD",
    "KERNELS",
    "CsrKernel",
    "DenseKernel",
    "LayerKernel",
    "build_kernel",
    "choose_kernel",
]


def choose_kernel(layer: LayerArrays, threshold: float | None = None) -> str:
    """Kernel that ``auto`` picks for ``layer``: ``"csr"`` below the density threshold."""
    limit = DENSITY_THRESHOLD if threshold is None else threshold
    return "csr" if layer.density < limit else "dense"


class LayerKernel(Protocol):
    """A ready-to-run layer; ``__call__`` maps ``(cols,)``/``(cols, B)`` to ``(rows,)``/``(rows, B)``."""

    kernel: str
    shape: tuple[int, int]

    def __call__(self, h: np.ndarray) -> np.ndarray: ...


class _KernelBase:
    kernel = "base"

    def __init__(self, layer: LayerArrays) -> None:
        self.shape = layer.shape
        self.activation = layer.activation
        self.negative_slope = layer.negative_slope
        self.bias = layer.bias
        self._bias_col = layer.bias[:, None]  # broadcasts over the batch axis of (rows, B)

    def _finish(self, z: np.ndarray) -> np.ndarray:
        z += self._bias_col if z.ndim == 2 else self.bias
        return apply_activation(z, self.activation, self.negative_slope, out=z)

    def __repr__(self) -> str:
        rows, cols = self.shape
        return f"{type(self).__name__}({rows}x{cols}, {self.activation})"


class DenseKernel(_KernelBase):
    """Dense float32 weight, materialized once at construction."""

    kernel = "dense"

    def __init__(self, layer: LayerArrays) -> None:
        super().__init__(layer)
        self.weight = _csr(layer).toarray(order="C")

    def __call__(self, h: np.ndarray) -> np.ndarray:
        return self._finish(self.weight @ h)


class CsrKernel(_KernelBase):
    """scipy ``csr_matrix`` built once at construction (canonical: sorted, no duplicates)."""

    kernel = "csr"

    def __init__(self, layer: LayerArrays) -> None:
        super().__init__(layer)
        self.matrix = _csr(layer)

    def __call__(self, h: np.ndarray) -> np.ndarray:
        return self._finish(np.asarray(self.matrix @ h))


def _csr(layer: LayerArrays) -> sp.csr_matrix:
    matrix = sp.csr_matrix((layer.data, layer.indices, layer.indptr), shape=layer.shape, copy=False)
    # The loader verified sorted, duplicate-free indices; tell scipy so it skips its own checks.
    matrix.has_sorted_indices = True
    matrix.has_canonical_format = True
    return matrix


def build_kernel(layer: LayerArrays, kernel: str = "auto") -> DenseKernel | CsrKernel:
    """Build the kernel for ``layer``: ``"dense"``, ``"csr"`` or ``"auto"`` (:func:`choose_kernel`)."""
    name = choose_kernel(layer) if kernel == "auto" else kernel
    if name == "dense":
        return DenseKernel(layer)
    if name == "csr":
        return CsrKernel(layer)
    raise ValueError(f"unknown kernel {kernel!r}; expected 'dense', 'csr' or 'auto'")
