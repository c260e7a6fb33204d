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

#: A layer runs in the window layout (:mod:`~edgeprune.runtime.window_pack`, AVX-512 hosts)
#: when its lanes times this are fewer than its dense multiply-adds: a lane (a weight, zero or
#: not, with its in-register gather) costs about 1.2 dense multiply-adds by rows (measured,
#: x86-64, one thread, in-kernel: 632x224 at 0.29 lanes per weight 3.1 µs vs 8.9 by columns
#: with 21 % zero inputs; the unpruned 256x784, one lane per weight, 15.5 vs 12.7 by rows).
WINDOW_LANE_COST = 1.2


def window_fits(layer: Any) -> bool:
    """Whether ``layer`` (a LayerOps) runs in the window layout: an AVX-512 host and fewer
    ``lanes * WINDOW_LANE_COST`` than dense multiply-adds."""
    from .window_pack import avx512_available, window_lanes

    rows, cols = layer.shape
    if not rows or not cols or not avx512_available():
        return False
    return window_lanes(layer.matrix) * WINDOW_LANE_COST < rows * cols


def dense_layouts(layers: list[Any], kernels: list[str], input_activation: str | None) -> list[str]:
    """Per layer of a route: ``"window"`` where :func:`window_fits` (any kernel: the layout is
    sparse and exact), or ``"window_or_cols"`` (the window layout, or per call by columns when
    few inputs are non-zero: after a relu or for the route's first layer, with at least
    :data:`COLS_MIN_ROWS` rows); otherwise ``"csr"``, or for a dense layer ``"cols"`` (by
    columns, zero inputs skipped: after a relu, whose outputs are often exactly zero),
    ``"either"`` (the route's first layer when its input's zeros are unknown,
    ``input_activation`` None: both layouts are kept and each call counts the non-zero inputs
    and takes by columns at <= 3/4 of them; pixels of MNIST digits are 80 % zero) or ``"rows"``
    (by rows, four at a time). On AVX-512 hosts every dense layer runs by columns: the 512-bit
    kernel (``_avx512_jit.dense_cols16``) beats by rows with no zero input at all (measured:
    256x784 7.3 vs 12.3 µs, 64x256 0.48 vs 1.02, 256x64 0.28 vs 1.17)."""
    from .window_pack import avx512_available

    out = []
    prev = input_activation
    for layer, kern in zip(layers, kernels):
        zeros = prev in ("relu", None)
        if window_fits(layer):
            out.append("window_or_cols" if zeros and layer.shape[0] >= COLS_MIN_ROWS
                       else "window")
        elif kern == "csr":
            out.append("csr")
        elif avx512_available():  # 512-bit by columns beats by rows even with no zero input
            out.append("cols")
        elif layer.shape[0] < COLS_MIN_ROWS or not zeros:
            out.append("rows")
        else:
            out.append("cols" if prev == "relu" else "either")
        prev = layer.layer.activation
    return out


_KINDS = {"rows": 0, "csr": 1, "cols": 2, "either": 3, "window": 4, "window_or_cols": 5}


class _Packer:
    """Appends arrays to the float32 and int32 pools that :class:`FusedForward` hands the
    compiled call; returns each one's offset (floats: ``align``-element aligned)."""

    def __init__(self) -> None:
        self.pools: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self.size = [0, 0]

    def put(self, arr: np.ndarray, pool: int, align: int = 1) -> int:
        pad = -self.size[pool] % align
        if pad:
            self.pools[pool].append(np.zeros(pad, np.float32 if pool == 0 else np.int32))
            self.size[pool] += pad
        off = self.size[pool]
        self.pools[pool].append(np.ravel(arr).astype(np.float32 if pool == 0 else np.int32))
        self.size[pool] += arr.size
        return off

    def floats(self) -> np.ndarray:
        """The float pool in one array whose first element sits on a 64-byte boundary."""
        flat = np.concatenate(self.pools[0]).astype(np.float32)
        buf = np.zeros(flat.size + 16, np.float32)
        start = (-buf.ctypes.data // 4) % 16
        out = buf[start:start + flat.size]
        out[:] = flat
        return out

    def ints(self) -> np.ndarray:
        return (np.concatenate(self.pools[1]).astype(np.int32) if self.pools[1]
                else np.zeros(1, np.int32))


class FusedForward:
    """One route's one-sample pass as a single compiled call: ``run(x, out)``.

    ``layers``: the route's :class:`~edgeprune.runtime.kernels.LayerOps`; ``kernels``: their
    kernels at batch 1; ``index``: used inputs; ``perm``/``dead_const``: the output assembly
    (see :class:`~edgeprune.runtime.model.BundleModel`). Everything the call touches is packed
    into three arrays (layout in ``_fused_jit.forward_flat``), so that numba's dispatch unboxes
    five arguments rather than one per layer array. This copies the weights once (the dense
    ones with their bias column, by columns as ``W.T``, both for ``"either"``, packed for the
    window layouts), next to the NumPy engine's own. ``layouts``: per layer, as
    :func:`dense_layouts` gives (default: dense by rows). A window layer's rows are reordered
    (:func:`~edgeprune.runtime.window_pack.pack_windows`): its bias follows, the next layer's
    columns are permuted to match and the output assembly maps them back, so the result is the
    same function. ``width``: the full input width (``in_shape``), ``out_len``: the output
    width. ``row_orders``: per layer, the original row of each output buffer entry (None: as is).
    """

    def __init__(self, layers: list[Any], kernels: list[str], index: np.ndarray,
                 perm: np.ndarray, dead_const: np.ndarray,
                 layouts: list[str] | None = None, width: int | None = None) -> None:
        if not layers:
            raise ValueError("the compiled engine needs at least one layer")
        self.fn = require()  # fn(x, out, floats, meta, ints): what run() calls

        layouts = layouts or ["csr" if k == "csr" else "rows" for k in kernels]
        self.layouts = list(layouts)
        self.row_orders: list[np.ndarray | None] = []
        pool = _Packer()
        rows_meta = []
        in_order = None  # the original input feature of each entry of this layer's input buffer
        for layer, kern, layout in zip(layers, kernels, layouts):
            rows, cols = layer.shape
            kind = _KINDS[layout]
            if kind < 4 and (kern == "csr") != (layout == "csr"):
                raise ValueError(f"layout {layout!r} does not fit kernel {kern!r}")
            if kind in (0, 2, 3) and layer.weight_bias is None:
                raise ValueError("dense kernel requested but the dense weight was not built")
            m = layer.matrix if in_order is None else layer.matrix[:, in_order]
            entry = [kind, ACT_CODES[layer.layer.activation], rows, cols, 0, 0, 0, 0, 0, 0, 0, 0]
            order = None
            padded = -(-rows // 16) * 16  # bias, W.T columns and the output: whole registers
            bias = np.zeros(padded, np.float32)
            bias[:rows] = layer.bias
            if kind >= 4:
                from .window_pack import pack_windows

                packed = pack_windows(m)
                order = packed.order
                entry[4] = pool.put(packed.values, 0, 16)
                entry[8] = pool.put(packed.index.view(np.int32), 1)
                entry[9] = pool.put(packed.steps, 1)
                if kind == 5:  # by columns: W.T in the packed row order, and a scratch
                    entry[10] = pool.put(_padded_t(m[order].toarray(), padded), 0, 16)
                    entry[11] = pool.put(np.zeros(cols, np.int32), 1)
                bias[:rows] = layer.bias[order]
            elif kind == 1:
                entry[4] = pool.put(m.data, 0)
                entry[8] = pool.put(m.indices, 1)
                entry[9] = pool.put(m.indptr, 1)
            else:
                wb = layer.weight_bias
                if in_order is not None:
                    wb = wb[:, np.append(in_order, cols)]
                if kind == 0:
                    entry[4] = pool.put(wb, 0)
                else:  # by columns: W.T, and an int32 scratch for the non-zero input positions
                    entry[8] = pool.put(np.zeros(cols, np.int32), 1)
                    w_t = _padded_t(wb[:, :cols], padded)
                    if kind == 2:
                        entry[4] = pool.put(w_t, 0, 16)
                    else:
                        entry[4], entry[9] = pool.put(wb, 0), pool.put(w_t, 0, 16)
            entry[5] = pool.put(np.append(bias, np.float32(layer.layer.negative_slope)), 0)
            rows_meta.append(entry)
            self.row_orders.append(order)
            in_order = order
        # buffers: each layer's input (a window layer reads whole 32-wide windows) and output
        # (whole 16-row registers)
        room = [max(-(-layer.shape[0] // 16) * 16,
                    _span(layouts[k + 1], layer.shape[0], 32) if k + 1 < len(layers) else 0)
                for k, layer in enumerate(layers)]
        in_off = pool.put(np.zeros(_span(layouts[0], index.shape[0], 32), np.float32), 0, 16)
        h_off = in_off
        for k in range(len(layers) - 1):
            rows_meta[k][6] = h_off
            h_off = rows_meta[k][7] = pool.put(np.zeros(room[k], np.float32), 0, 16)
        rows_meta[-1][6] = h_off
        live = layers[-1].shape[0]
        last_room = room[-1]
        last_off = pool.put(np.concatenate([np.zeros(last_room, np.float32),
                                            dead_const.astype(np.float32)]), 0, 16)
        rows_meta[-1][7] = last_off
        perm = np.array(perm, np.int64)
        dead = perm >= live
        perm[dead] += last_room - live
        if order is not None:  # live output i sits where the packed order put it
            perm[~dead] = np.argsort(order)[perm[~dead]]
        n = len(layers)
        head = [n, index.shape[0], in_off, perm.shape[0], pool.put(perm, 1), last_off,
                pool.put(np.asarray(index), 1)]
        self.meta = np.concatenate([np.array(head, np.int64),
                                    np.array(rows_meta, np.int64).ravel()])
        # the full input width (the model's; default: just past the last used input)
        self.in_shape = (int(width) if width is not None else int(index.max(initial=-1)) + 1,)
        self.out_len = int(perm.shape[0])
        self.floats = pool.floats()
        self.ints = pool.ints()

    def run(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``out[...] = model(x)`` for one float32 sample ``x`` (1-D, full input width)."""
        self.fn(x, out, self.floats, self.meta, self.ints)
        return out


def _padded_t(weight: np.ndarray, rows: int) -> np.ndarray:
    """``weight.T`` with each column padded with zeros to ``rows`` entries."""
    out = np.zeros((weight.shape[1], rows), np.float32)
    out[:, :weight.shape[0]] = weight.T
    return out


def _span(layout: str, n: int, block: int) -> int:
    """Buffer room for ``n`` entries: whole blocks of ``block`` for the window layouts."""
    return -(-n // block) * block if layout.startswith("window") else n
