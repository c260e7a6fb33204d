"""Measure, on this device, the density below which CSR beats dense, per batch size.

For every layer shape and batch size, :func:`calibrate` times the runtime's own dense and CSR
layer ops (:class:`~edgeprune.runtime.kernels.LayerOps`, identity activation, preallocated
buffers: exactly what a model runs) on random matrices over a grid of densities. Per batch
size the times are summed over the shapes (so large layers, where the choice matters most,
weigh most), the CSR curve is made non-decreasing in density (it is physically monotone; this
removes timing noise), and the crossover is where it meets the dense time, linearly
interpolated between grid densities: 1.0 when CSR wins everywhere, 0.0 when dense always wins.

The result is a :class:`~edgeprune.runtime.kernel_profile.KernelProfile`;
:func:`calibrate_and_save` also writes it where ``auto`` finds it. numpy/scipy/stdlib only.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import LayerArrays
from ..kernel_profile import KernelProfile, save_kernel_profile
from ..kernels import LayerOps
from .harness import blas_threads, environment, percentiles, time_calls

__all__ = [
    "DEFAULT_BATCHES",
    "DEFAULT_DENSITIES",
    "DEFAULT_SHAPES",
    "calibrate",
    "calibrate_and_save",
    "random_layer",
]

#: A standard grid: the layers of 784-256-64-256-784 and 64-32-8-32-64 autoencoders.
DEFAULT_SHAPES: tuple[tuple[int, int], ...] = (
    (256, 784), (64, 256), (256, 64), (784, 256), (32, 64), (8, 32), (32, 8), (64, 32),
)
DEFAULT_BATCHES: tuple[int, ...] = (1, 4, 16, 64, 256)
DEFAULT_DENSITIES: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)


def random_layer(rows: int, cols: int, density: float, rng: np.random.Generator) -> LayerArrays:
    """A CSR layer with about ``density`` non-zeros, at least one per row (as after compaction)."""
    mask = rng.random((rows, cols)) < density
    mask[np.arange(rows), rng.integers(0, cols, size=rows)] = True
    r, c = np.nonzero(mask)
    indptr = np.zeros(rows + 1, dtype=np.int32)
    np.cumsum(np.bincount(r, minlength=rows), out=indptr[1:])
    return LayerArrays(
        data=rng.standard_normal(r.size).astype(np.float32),
        indices=c.astype(np.int32),
        indptr=indptr,
        bias=rng.standard_normal(rows).astype(np.float32),
        shape=(rows, cols),
        activation="identity",
        negative_slope=0.0,
    )


def _time_ops(ops: list, timing: dict[str, Any]) -> float:
    def run(_: Any) -> None:
        for op in ops:
            op()

    return percentiles(time_calls(run, None, **timing), (50,))[0] / 1e3  # p50 in µs


def _crossover(densities: np.ndarray, csr: np.ndarray, dense: float) -> float:
    csr = np.maximum.accumulate(csr)
    slower = np.nonzero(csr > dense)[0]
    if slower.size == 0:
        return 1.0
    i = int(slower[0])
    if i == 0:
        return 0.0
    d0, d1, t0, t1 = densities[i - 1], densities[i], csr[i - 1], csr[i]
    return float(d0 + (d1 - d0) * (dense - t0) / (t1 - t0)) if t1 > t0 else float(d0)


def calibrate(
    shapes: Sequence[tuple[int, int]] | None = None,
    batches: Sequence[int] = DEFAULT_BATCHES,
    densities: Sequence[float] = DEFAULT_DENSITIES,
    *,
    warmup: int = 3,
    runs: int = 10,
    min_time: float = 0.02,
    threads: int = 1,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> KernelProfile:
    """Time dense vs CSR on ``shapes`` x ``batches`` x ``densities``; return the profile."""
    shapes = list(dict.fromkeys((int(r), int(c)) for r, c in (shapes or DEFAULT_SHAPES)))
    grid = np.array(sorted({float(d) for d in densities}), dtype=np.float64)
    batch_list = sorted({int(b) for b in batches})
    if not shapes or grid.size == 0 or not batch_list or min(batch_list) < 1:
        raise ValueError("calibration needs shapes, densities and batch sizes >= 1")
    if grid[0] <= 0 or grid[-1] > 1:
        raise ValueError("calibration densities must lie in (0, 1]")
    rng = np.random.default_rng(seed)
    timing = {"warmup": warmup, "runs": runs, "min_time": min_time}
    say = progress or (lambda _msg: None)
    crossover, measurements = [], []
    with blas_threads(threads):
        for batch in batch_list:
            dense_total, csr_total = 0.0, np.zeros(grid.size)
            for rows, cols in shapes:
                tail = (batch,) if batch > 1 else ()
                h = rng.random((cols, *tail), dtype=np.float32)
                y = np.empty((rows, *tail), dtype=np.float32)
                for k, density in enumerate(grid):
                    layer = LayerOps(random_layer(rows, cols, density, rng), need_dense=k == 0)
                    if k == 0:
                        dense_total += _time_ops(layer.ops("dense", h, y), timing)
                    csr_total[k] += _time_ops(layer.ops("csr", h, y), timing)
            point = _crossover(grid, csr_total, dense_total)
            say(f"batch {batch}: dense {dense_total:.1f} µs, crossover density {point:.3f}")
            crossover.append((batch, point))
            measurements.append({
                "batch": batch, "dense_us": dense_total,
                "csr_us": {f"{d:g}": float(t) for d, t in zip(grid, csr_total)},
            })
    env = environment()
    device = {k: env.get(k) for k in ("machine", "cpu_model", "board", "soc", "cpu_count")}
    device["libraries"] = {k: env["libraries"].get(k) for k in ("numpy", "scipy")}
    device["shapes"] = [list(s) for s in shapes]
    device["threads"] = threads
    return KernelProfile(
        crossover=tuple(crossover), source="calibration (not yet saved)", device=device,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        measurements=tuple(measurements),
    )


def calibrate_and_save(
    path: str | os.PathLike[str] | None = None, **kwargs: Any
) -> tuple[KernelProfile, Path]:
    """:func:`calibrate` then save (default: the location ``auto`` reads); returns both."""
    profile = calibrate(**kwargs)
    target = save_kernel_profile(profile.crossover, path, device=profile.device,
                                 created=profile.created, measurements=profile.measurements)
    return KernelProfile(profile.crossover, os.fspath(target), profile.device, profile.created,
                         profile.measurements), target
