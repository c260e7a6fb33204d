"""Optional compiled engine: one numba call runs a whole one-sample forward pass.

``load(path, engine="numba")`` uses it for one-sample calls (a 1-D input or a batch of one):
the input gather, every layer (dense by rows, four at a time; dense by columns skipping zero
inputs, after a relu; or CSR -- see :func:`dense_layouts`; then bias and activation) and the
output assembly run in one compiled function, so a call pays one
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


#: A dense layer with at least this many rows may run by columns, skipping zero inputs (fewer
#: rows: too short a vector loop per column). Measured on the eta 0.9 MNIST autoencoder (x86-64,
#: one thread, CPU time per call): 224x45 after a relu with 2 % zero inputs 1.9 µs by columns vs
#: 2.6 by rows, 632x224 with 21 % zeros 8.6 vs 12.8; but 45x163 1.7 vs 1.0 and, with no zero
#: input, 163x287 5.3 vs 4.5 (by columns costs ~1.2x per multiply-add when nothing is skipped).
COLS_MIN_ROWS = 64


def dense_layouts(layers: list[Any], kernels: list[str], input_activation: str | None) -> list[str]:
    """Per layer of a route: ``"csr"``, or for a dense layer ``"cols"`` (by columns, zero inputs
    skipped: after a relu, whose outputs are often exactly zero), ``"either"`` (the route's first
    layer when its input's zeros are unknown, ``input_activation`` None: both layouts are kept
    and each call counts the non-zero inputs and takes by columns at <= 3/4 of them; pixels of
    MNIST digits are 80 % zero) or ``"rows"`` (by rows, four at a time)."""
    out = []
    prev = input_activation
    for layer, kern in zip(layers, kernels):
        if kern == "csr":
            out.append("csr")
        elif layer.shape[0] < COLS_MIN_ROWS or prev not in ("relu", None):
            out.append("rows")
        else:
            out.append("cols" if prev == "relu" else "either")
        prev = layer.layer.activation
    return out


class FusedForward:
    """One route's one-sample pass as a single compiled call: ``run(x, out)``.

    ``layers``: the route's :class:`~edgeprune.runtime.kernels.LayerOps`; ``kernels``: their
    kernels at batch 1; ``index``: used inputs; ``perm``/``dead_const``: the output assembly
    (see :class:`~edgeprune.runtime.model.BundleModel`). Everything the call touches is packed
    into three arrays (layout in ``_fused_jit.forward_flat``), so that numba's dispatch unboxes
    five arguments rather than one per layer array. This copies the weights once (the dense
    ones with their bias column, by columns as ``W.T``, or both for ``"either"``), next to the
    NumPy engine's own. ``layouts``: per layer, as :func:`dense_layouts` gives (default: dense
    by rows). ``width``: the full input width (``in_shape``), ``out_len``: the output width.
    """

    def __init__(self, layers: list[Any], kernels: list[str], index: np.ndarray,
                 perm: np.ndarray, dead_const: np.ndarray,
                 layouts: list[str] | None = None, width: int | None = None) -> None:
        if not layers:
            raise ValueError("the compiled engine needs at least one layer")
        self.fn = require()  # fn(x, out, floats, meta, ints): what run() calls
        floats: list[np.ndarray] = []
        ints: list[np.ndarray] = []
        size = [0, 0]

        def put(arr: np.ndarray, where: list[np.ndarray], k: int) -> int:
            off = size[k]
            where.append(arr.ravel())
            size[k] += arr.size
            return off

        rows_meta = []
        layouts = layouts or ["csr" if k == "csr" else "rows" for k in kernels]
        self.layouts = list(layouts)
        for layer, kern, layout in zip(layers, kernels, layouts):
            rows, cols = layer.shape
            m = layer.matrix
            kind = {"rows": 0, "csr": 1, "cols": 2, "either": 3}[layout]
            if (kern == "csr") != (layout == "csr"):
                raise ValueError(f"layout {layout!r} does not fit kernel {kern!r}")
            if kern != "csr" and layer.weight_bias is None:
                raise ValueError("dense kernel requested but the dense weight was not built")
            if kind == 1:
                w_off = put(np.asarray(m.data, np.float32), floats, 0)
                ix_off = put(np.asarray(m.indices, np.int32), ints, 1)
                ip_off = put(np.asarray(m.indptr, np.int32), ints, 1)
            elif kind == 0:
                w_off, ix_off, ip_off = put(layer.weight_bias, floats, 0), 0, 0
            else:  # by columns: W.T, and an int32 scratch for the non-zero input positions
                ix_off = put(np.zeros(cols, np.int32), ints, 1)
                w_t = np.ascontiguousarray(layer.weight_bias[:, :cols].T)
                if kind == 2:
                    w_off, ip_off = put(w_t, floats, 0), 0
                else:
                    w_off, ip_off = put(layer.weight_bias, floats, 0), put(w_t, floats, 0)
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
        # the full input width (the model's; default: just past the last used input)
        self.in_shape = (int(width) if width is not None else int(index.max(initial=-1)) + 1,)
        self.out_len = int(perm.shape[0])
        self.floats = np.concatenate(floats).astype(np.float32)
        self.ints = np.concatenate(ints).astype(np.int32) if ints else np.zeros(1, np.int32)

    def run(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[...] = model(x)`` for one float32 sample ``x`` (1-D, full input width)."""
        self.fn(x, out, self.floats, self.meta, self.ints)
        return out
