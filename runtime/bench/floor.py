"""The floor of a loaded model: its raw layer kernels timed alone.

For each layer of a :class:`~edgeprune.runtime.model.BundleModel` and a batch size,
:func:`kernel_floor` times only the matrix product into a preallocated buffer -- the dense
``np.dot(W, h, out=y)`` and the CSR ``y += W @ h`` of scipy's ``csr_matvec(s)`` -- with no bias,
activation, gather or scatter and no Python dispatch beyond the one call. The sum over layers of
the faster of the two is the floor that an end-to-end call of the NumPy/SciPy runtime can
approach; ``end-to-end / floor`` is its overhead. numpy/scipy/stdlib only.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..kernels import LayerOps, _sparsetools
from .harness import percentiles, time_calls

__all__ = ["kernel_floor"]


def _product(layer: LayerOps, kernel: str, h: np.ndarray, y: np.ndarray) -> Any:
    rows, cols = layer.shape
    m = layer.matrix
    if kernel == "dense":
        weight = np.ascontiguousarray(layer.weight if layer.weight is not None
                                      else m.toarray().astype(np.float32))
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
    ``auto`` runs at this batch size)}``.
    """
    rng = np.random.default_rng(seed)
    chosen = model.kernels_for(batch)
    tail = (batch,) if batch > 1 else ()
    layers, best, picked = [], 0.0, 0.0
    for ops, kern in zip(model._ops, chosen):  # noqa: SLF001 - the model's own layers
        rows, cols = ops.shape
        h = rng.random((cols, *tail), dtype=np.float32)
        y = np.zeros((rows, *tail), dtype=np.float32)
        times = {}
        for kernel in ("dense", "csr"):
            call = _product(ops, kernel, h, y)
            samples = time_calls(lambda _x, c=call: c(), None, warmup=warmup, runs=runs,
                                 min_time=min_time)
            times[kernel] = percentiles(samples, (50,))[0] / 1e3
        layers.append({"shape": [rows, cols], "density": ops.density,
                       "dense_us": times["dense"], "csr_us": times["csr"], "chosen": kern,
                       "chosen_us": times[kern]})
        best += min(times.values())
        picked += times[kern]
    return {"batch": batch, "layers": layers, "best_sum_us": best, "chosen_sum_us": picked}
