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
    return _fused_jit.forward_flat


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


#: A dense layer runs by columns, skipping zero inputs, when its input is a relu's output and it
#: has at least this many rows (fewer rows: too short a vector loop per column; measured below).
COLS_MIN_ROWS = 64


def dense_layouts(layers: list[Any], kernels: list[str], input_activation: str | None) -> list[str]:
    """Per layer: ``"cols"`` (dense by columns, zero inputs skipped), ``"rows"`` (dense by rows)
    or ``"csr"``. ``input_activation``: the activation that produced the route's input (None:
    the model's input, whose zeros are unknown)."""
    out = []
    prev = input_activation
    for layer, kern in zip(layers, kernels):
        if kern == "csr":
            out.append("csr")
        elif prev == "relu" and layer.shape[0] >= COLS_MIN_ROWS:
            out.append("cols")
        else:
            out.append("rows")
        prev = layer.layer.activation
    return out


class FusedForward:
    """One route's one-sample pass as a single compiled call: ``run(x, out)``.

    ``layers``: the route's :class:`~edgeprune.runtime.kernels.LayerOps`; ``kernels``: their
    kernels at batch 1; ``index``: used inputs; ``perm``/``dead_const``: the output assembly
    (see :class:`~edgeprune.runtime.model.BundleModel`). Everything the call touches is packed
    into three arrays (layout in ``_fused_jit.forward_flat``), so that numba's dispatch unboxes
    five arguments rather than one per layer array. This copies the weights once (the dense
    ones with their bias column), next to the NumPy engine's own.
    """

    def __init__(self, layers: list[Any], kernels: list[str], index: np.ndarray,
                 perm: np.ndarray, dead_const: np.ndarray,
                 layouts: list[str] | None = None) -> None:
        if not layers:
            raise ValueError("the compiled engine needs at least one layer")
        self._fn = require()
        floats: list[np.ndarray] = []
        ints: list[np.ndarray] = []
        size = [0, 0]

        def put(arr: np.ndarray, where: list[np.ndarray], k: int) -> int:
            off = size[k]
            where.append(arr.ravel())
            size[k] += arr.size
            return off

        rows_meta = []
        for layer, kern in zip(layers, kernels):
            rows, cols = layer.shape
            m = layer.matrix
            kind = 1 if kern == "csr" else 0
            if kern == "csr":
                w_off = put(np.asarray(m.data, np.float32), floats, 0)
                ix_off = put(np.asarray(m.indices, np.int32), ints, 1)
                ip_off = put(np.asarray(m.indptr, np.int32), ints, 1)
            elif layouts is not None and layouts[len(rows_meta)] == "cols":
                if layer.weight is None:
                    raise ValueError("dense kernel requested but the dense weight was not built")
                kind, ip_off = 2, 0
                w_off = put(np.ascontiguousarray(layer.weight.T), floats, 0)
                ix_off = put(np.zeros(cols, np.int32), ints, 1)
            else:
                if layer.weight_bias is None:
                    raise ValueError("dense kernel requested but the dense weight was not built")
                w_off, ix_off, ip_off = put(layer.weight_bias, floats, 0), 0, 0
            b_off = put(np.append(layer.bias, np.float32(layer.layer.negative_slope))
                        .astype(np.float32), floats, 0)
            rows_meta.append([kind,
                              ACT_CODES[layer.layer.activation], rows, cols, w_off, b_off,
                              0, 0, ix_off, ip_off])
        in_off = put(np.zeros(index.shape[0], np.float32), floats, 0)
        h_off = in_off
        for k, layer in enumerate(layers):
            rows_meta[k][6] = h_off
            if k < len(layers) - 1:
                h_off = rows_meta[k][7] = put(np.zeros(layer.shape[0], np.float32), floats, 0)
        live = layers[-1].shape[0]
        last_off = put(np.concatenate([np.zeros(live, np.float32),
                                       dead_const.astype(np.float32)]), floats, 0)
        rows_meta[-1][7] = last_off
        n = len(layers)
        head = [n, index.shape[0], in_off, perm.shape[0], 6 + 10 * n + index.shape[0], last_off]
        self.meta = np.concatenate([np.array(head, np.int64),
                                    np.array(rows_meta, np.int64).ravel(),
                                    np.asarray(index, np.int64), np.asarray(perm, np.int64)])
        self.floats = np.concatenate(floats).astype(np.float32)
        self.ints = np.concatenate(ints).astype(np.int32) if ints else np.zeros(1, np.int32)

    def run(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[...] = model(x)`` for one float32 sample ``x`` (1-D, full input width)."""
        self._fn(x, out, self.floats, self.meta, self.ints)
        return out
