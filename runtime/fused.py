"""Optional compiled engine: one numba call runs a whole one-sample forward pass.

``load(path, engine="numba")`` uses it for one-sample calls (a 1-D input or a batch of one):
the input gather, every layer (dense rows blocked by four, or CSR; bias and activation fused
into the row loop) and the output assembly run in one compiled function, so a call pays one
dispatch instead of a few NumPy calls per layer. Batches keep the NumPy/SciPy plans (one BLAS
GEMM per layer is faster there). The kernel of each layer (``dense`` or ``csr``) is the one the
model chose for batch size 1.

numba is optional and imported here only, lazily: :func:`available` says whether it imports;
without it ``engine="numba"`` is a one-line :class:`~edgeprune.runtime.errors.EdgepruneError`.
It ships aarch64 wheels and a Debian package (``python3-numba``). Compilation (seconds) happens
once per machine: numba caches it next to this module (or under ``NUMBA_CACHE_DIR``).
Results match the NumPy path to float32 rounding (sums are reassociated for SIMD).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .errors import EdgepruneError

__all__ = ["ACT_CODES", "FusedForward", "available", "require"]

#: Activation names -> the codes the compiled loop switches on.
ACT_CODES = {"identity": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}


@functools.lru_cache(maxsize=1)
def _compiled() -> Any:
    """The compiled forward function, or the import error's message when numba is missing."""
    try:
        from . import _fused_jit
    except Exception as err:  # noqa: BLE001 - any import failure means: no compiled engine
        return f"{type(err).__name__}: {err}"
    return _fused_jit.forward


def available() -> bool:
    """True when numba imports (the compiled engine can be used)."""
    return not isinstance(_compiled(), str)


def require() -> Any:
    """The compiled function, or a one-line EdgepruneError saying how to get numba."""
    fn = _compiled()
    if isinstance(fn, str):
        raise EdgepruneError(
            f"engine='numba' needs numba ({fn}); install it (pip install numba, or apt install "
            "python3-numba) or use the default engine='numpy'"
        )
    return fn


class FusedForward:
    """One route's one-sample pass as a single compiled call: ``run(x, out)``.

    ``layers``: the route's :class:`~edgeprune.runtime.kernels.LayerOps`; ``kernels``: their
    kernels at batch 1; ``index``: used inputs; ``perm``/``dead_const``: the output assembly
    (see :class:`~edgeprune.runtime.model.BundleModel`).
    """

    def __init__(self, layers: list[Any], kernels: list[str], index: np.ndarray,
                 perm: np.ndarray, dead_const: np.ndarray) -> None:
        if not layers:
            raise ValueError("the compiled engine needs at least one layer")
        self._fn = require()
        f32, i32 = np.float32, np.int32
        empty2, empty_f, empty_i = np.empty((0, 1), f32), np.empty(0, f32), np.empty(0, i32)
        dense: list[np.ndarray] = []
        data: list[np.ndarray] = []
        indices: list[np.ndarray] = []
        indptr: list[np.ndarray] = []
        bias: list[np.ndarray] = []
        bufs: list[np.ndarray] = []
        for layer, kern in zip(layers, kernels):
            csr = kern == "csr"
            m = layer.matrix
            weight = None if csr else layer.weight_bias
            if not csr and weight is None:
                raise ValueError("dense kernel requested but the dense weight was not built")
            dense.append(empty2 if csr else weight)
            data.append(np.ascontiguousarray(m.data, f32) if csr else empty_f)
            indices.append(np.ascontiguousarray(m.indices, i32) if csr else empty_i)
            indptr.append(np.ascontiguousarray(m.indptr, i32) if csr else empty_i)
            bias.append(np.ascontiguousarray(layer.bias, f32))
        widths = [index.shape[0]] + [layer.shape[0] for layer in layers[:-1]]
        for w in widths:
            bufs.append(np.empty(w, f32))
        live = layers[-1].shape[0]
        self.last = np.empty(live + dead_const.shape[0], f32)
        self.last[live:] = dead_const
        self._args = (
            np.ascontiguousarray(index, np.intp),
            np.array([1 if k == "csr" else 0 for k in kernels], np.int64),
            np.array([ACT_CODES[layer.layer.activation] for layer in layers], np.int64),
            np.array([layer.layer.negative_slope for layer in layers], f32),
            *(tuple(a) for a in (dense, data, indices, indptr, bias, bufs)), self.last,
            np.ascontiguousarray(perm, np.intp),
        )

    def run(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[...] = model(x)`` for one float32 sample ``x`` (1-D, full input width)."""
        self._fn(x, *self._args, out)
        return out
