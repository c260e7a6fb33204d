"""The floor of a loaded model: its raw layer kernels timed alone.

For each layer of a :class:`~edgeprune.runtime.model.BundleModel` and a batch size,
:func:`kernel_floor` times only the matrix product into a preallocated buffer -- the dense
``np.dot(W, h, out=y)`` and the CSR ``y += W @ h`` of scipy's ``csr_matvec(s)`` -- with no bias,
activation, gather or scatter and no Python dispatch beyond the one call. The sum over layers of
the faster of the two is the floor that an end-to-end call of the NumPy/SciPy runtime can
approach; ``end-to-end / floor`` is its overhead. At batch 1 it also times the dense product in
the column layout ``np.dot(h, W_T, out=y)`` (OpenBLAS's ``sgemv_n``), which the one-sample
plans run on x86-64 and which is faster than ``np.dot(W, h)`` on tall layers: the sum of the
fastest of all three per layer (``best_any_sum_us``) is a floor no NumPy/SciPy product order
beats, and :func:`plan_floor` times the products exactly as the plans run them (their layout,
the bias folded into the dense weight). numpy/scipy/stdlib only, except
:func:`fused_floor`, which times the optional numba engine's own compiled layer kernels (on
the layer inputs of a real sample, since the by-columns kernel's work depends on their zeros).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..kernels import LayerOps, _sparsetools
from .harness import percentiles, time_calls

__all__ = ["fused_floor", "kernel_floor", "plan_floor"]


def _product(layer: LayerOps, kernel: str, h: np.ndarray, y: np.ndarray) -> Any:
    rows, cols = layer.shape
    m = layer.matrix
    if kernel in ("dense", "dense_cols"):
        weight = np.ascontiguousarray(layer.weight if layer.weight is not None
                                      else m.toarray().astype(np.float32))
        if kernel == "dense_cols":
            return functools.partial(np.dot, h, np.ascontiguousarray(weight.T), out=y)
        return functools.partial(np.dot, weight, h, out=y)
    fast = _sparsetools()
    if fast is None:  # pragma: no cover - scipy without _sparsetools
        return functools.partial(m.dot, h)
    if h.ndim == 2:
        return functools.partial(fast[1], rows, cols, h.shape[1], m.indptr, m.indices, m.data,
                                 h, y)
    return functools.partial(fast[0], rows, cols, m.indptr, m.indices, m.data, h, y)


def kernel_floor(model: Any, batch: int = 1, *, warmup: int = 20, runs: int = 200,
                 min_time: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Per layer: p50 µs of the dense and the CSR product alone at ``batch``; their sums.

    Returns ``{"batch", "layers": [{"shape", "density", "dense_us", "csr_us", "chosen",
    "chosen_us"}], "best_sum_us" (the faster kernel per layer), "chosen_sum_us" (the kernels
    ``auto`` runs at this batch size)}``; at batch 1 each layer also has ``dense_cols_us`` and
    the result ``best_any_sum_us`` (the fastest of the three per layer).
    """
    rng = np.random.default_rng(seed)
    chosen = model.kernels_for(batch)
    tail = (batch,) if batch > 1 else ()
    layers, best, best_any, picked = [], 0.0, 0.0, 0.0
    for ops, kern in zip(model._ops, chosen):  # noqa: SLF001 - the model's own layers
        rows, cols = ops.shape
        h = rng.random((cols, *tail), dtype=np.float32)
        y = np.zeros((rows, *tail), dtype=np.float32)
        times = {}
        for kernel in ("dense", "csr", *(("dense_cols",) if batch == 1 else ())):
            call = _product(ops, kernel, h, y)
            samples = time_calls(lambda _x, c=call: c(), None, warmup=warmup, runs=runs,
                                 min_time=min_time)
            times[kernel] = percentiles(samples, (50,))[0] / 1e3
        layers.append({"shape": [rows, cols], "density": ops.density,
                       "dense_us": times["dense"], "csr_us": times["csr"], "chosen": kern,
                       "chosen_us": times[kern],
                       **({"dense_cols_us": times["dense_cols"]} if batch == 1 else {})})
        best += min(times["dense"], times["csr"])
        best_any += min(times.values())
        picked += times[kern]
    return {"batch": batch, "layers": layers, "best_sum_us": best, "chosen_sum_us": picked,
            **({"best_any_sum_us": best_any} if batch == 1 else {})}


def plan_floor(model: Any, *, warmup: int = 20, runs: int = 200,
               min_time: float = 0.05, seed: int = 0) -> dict[str, Any]:
    """Per layer of a NumPy-engine model: p50 µs of the product its one-sample plan runs, as it
    runs it (dense: ``np.dot`` in the plan's layout with the bias folded in; CSR:
    ``csr_matvec``), alone; and their sum. Returns ``{"batch": 1, "layers": [{"shape",
    "layout", "us"}], "sum_us"}``."""
    sample = model._routes["forward"].sample  # noqa: SLF001 - the model's own plan
    if sample is None:
        raise ValueError("plan_floor needs a NumPy-engine model with at least one layer")
    rng = np.random.default_rng(seed)
    layers, total = [], 0.0
    for ops, layout in zip(model._ops, sample.layouts):  # noqa: SLF001
        rows, cols = ops.shape
        h = rng.random(cols + 1, dtype=np.float32)
        y = np.zeros(rows, dtype=np.float32)
        if layout == "csr":
            call = _product(ops, "csr", h[:cols], y)
        else:
            weight = ops.arrays_for(layout)[0]
            call = functools.partial(np.dot, *((weight, h) if layout == "rows" else (h, weight)),
                                     out=y)
        us = percentiles(time_calls(lambda _x, c=call: c(), None, warmup=warmup, runs=runs,
                                    min_time=min_time), (50,))[0] / 1e3
        layers.append({"shape": [rows, cols], "layout": layout, "us": us})
        total += us
    return {"batch": 1, "layers": layers, "sum_us": total}


def _layer_inputs(model: Any, x: np.ndarray) -> list[np.ndarray]:
    """The float32 input of each layer of the forward route for one sample ``x``."""
    from ..activations import apply_activation

    h = np.asarray(x, np.float32)[model.input_index]
    inputs = []
    for ops in model._ops:  # noqa: SLF001 - the model's own layers
        inputs.append(np.ascontiguousarray(h, dtype=np.float32))
        layer = ops.layer
        h = (ops.matrix @ h + ops.bias).astype(np.float32)
        h = apply_activation(h, layer.activation, layer.negative_slope)
    return inputs


def _aligned(shape: tuple[int, ...]) -> np.ndarray:
    """Zeros whose first element sits on a 64-byte boundary, as the engine's pool."""
    size = int(np.prod(shape))
    buf = np.zeros(size + 16, np.float32)
    start = (-buf.ctypes.data // 4) % 16
    return buf[start:start + size].reshape(shape)


def _window_call(fused: Any, k: int, h: np.ndarray, layout: str) -> tuple[Any, str]:
    """The compiled kernel call of window layer ``k`` of ``fused`` on its input ``h`` (original
    order) and the layout that input makes it run: the packed arrays are the engine's own."""
    from .. import _fused_jit as jit

    at = jit.HEAD + jit.LAYER_META * k
    kind, _, rows, cols, w_off, b_off, *_, ix_off, ip_off, t_off, nz_off = (
        int(v) for v in fused.meta[at:at + jit.LAYER_META])
    order = fused.row_orders[k - 1] if k else None
    table = _aligned((-(-cols // 32) * 32,))
    table[:cols] = h if order is None else h[order]
    padded = -(-rows // 16) * 16
    steps = fused.ints[ip_off:ip_off + (padded // 16) * (table.size // 32) + 1]
    y = _aligned((padded,))
    b = fused.floats[b_off:b_off + padded]
    nz = np.zeros(cols, np.int32)
    if layout == "window_or_cols" and (jit.nonzeros(table[:cols], nz) * rows
                                       <= jit.WINDOW_VS_COLS * 16 * int(steps[-1])):
        w_t = fused.floats[t_off:t_off + cols * padded].reshape(cols, padded)

        def by_cols(_x, w_t=w_t, h=table[:cols], y=y, b=b, nz=nz):
            jit.cols_kernel(w_t, h, y, b, nz, jit.nonzeros(h, nz))
        return by_cols, "cols"

    def window(_x, a=(fused.floats[w_off:], fused.ints[ix_off:], steps, table, y, b)):
        jit.window_matvec(*a)
    return window, "window"


def fused_floor(model: Any, x: np.ndarray, *, warmup: int = 20, runs: int = 200,
                min_time: float = 0.05) -> dict[str, Any]:
    """Per layer of an ``engine="numba"`` model: p50 µs of its compiled layer kernel alone
    (the product and bias, no activation, gather or scatter; one dispatch per call) on the
    layer's input for the sample ``x``, in the layout the engine runs; and their sum.

    Returns ``{"batch": 1, "layers": [{"shape", "layout", "zero_inputs", "us"}], "sum_us"}``.
    """
    from .. import _fused_jit as jit

    fused = model._routes["forward"].fused  # noqa: SLF001 - the model's own compiled route
    if fused is None:
        raise ValueError("fused_floor needs a model loaded with engine='numba'")
    layers, total = [], 0.0
    inputs = _layer_inputs(model, x)
    for k, (ops, layout, h) in enumerate(zip(model._ops, fused.layouts, inputs)):  # noqa: SLF001
        rows, cols = ops.shape
        y = np.zeros(rows, np.float32)
        b, m = ops.bias, ops.matrix
        nz = np.zeros(cols, np.int32)
        by_cols = layout == "cols" or (layout == "either"
                                       and jit.nonzeros(h, nz) * 4 <= cols * 3)
        if layout.startswith("window"):
            call, ran = _window_call(fused, k, h, layout)
        elif layout == "csr":
            def call(_x, a=(m.data, m.indices, m.indptr, h, y, b)):
                jit.csr_rows(*a)
        elif by_cols:  # the engine's by-columns kernel: W.T and y padded to 16 rows
            padded = -(-rows // 16) * 16
            w_t = _aligned((cols, padded))
            w_t[:, :rows] = ops.weight.T
            y, b = _aligned((padded,)), np.append(b, np.zeros(padded - rows, np.float32))

            def call(_x, w_t=w_t, h=h, y=y, b=b, nz=nz):
                jit.cols_kernel(w_t, h, y, b, nz, jit.nonzeros(h, nz))
        else:
            def call(_x, a=(ops.weight_bias, h, y, b)):
                jit.dense_rows(*a)
        if not layout.startswith("window"):
            ran = "cols" if by_cols else ("rows" if layout == "either" else layout)
        us = percentiles(time_calls(call, None, warmup=warmup, runs=runs, min_time=min_time),
                         (50,))[0] / 1e3
        layers.append({"shape": [rows, cols], "layout": ran,
                       "zero_inputs": float(np.mean(h == 0)) if h.size else 0.0, "us": us})
        total += us
    return {"batch": 1, "layers": layers, "sum_us": total}
