"""What one NumPy/SciPy call costs on this host: the floor under the runtime's one-sample plans.

Usage: python benchmarks/numpy_call_floor.py [--rounds 7] [--runs 3000]
       [--out benchmarks/results/numpy_call_floor]

A one-sample call of the NumPy engine (runtime/plan.py) is a dozen numpy calls; the products
are what the work costs, everything else is per-call overhead. This measures, single-threaded,
each call the plans make (and the alternatives they were chosen over) on the sizes of the
η = 0.9 MNIST autoencoder (inputs 287 of 784, layers 163x287, 45x163, 224x45, 632x224, outputs
632 of 784): an empty Python call for reference, ufuncs with a 0-d array vs a numpy scalar
operand, ``ndarray.take`` vs the ``np.take`` wrapper, allocation, and the dense product in both
layouts with and without the bias column. Each row: the fastest of ``--rounds`` interleaved
rounds of the p50 over ``--runs`` calls (``time.perf_counter_ns`` around each call, which the
figures include). Writes calls.json, calls.md and calls.png (measured on this host).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

import numpy as np
from common import RESULTS

from edgeprune.runtime.bench.harness import blas_threads, environment, percentiles, time_calls

F32 = np.float32


def candidates(rng: np.random.Generator) -> dict[str, tuple[str, object]]:
    """name -> (group, zero-argument call)."""
    x = rng.random((1, 784), dtype=F32)
    index = np.sort(rng.choice(784, 287, replace=False)).astype(np.intp)
    gathered = np.empty(287, F32)
    zero0d, zero_scalar = np.zeros((), F32), F32(0)
    half0d, half_scalar = np.full((), 0.5, F32), F32(0.5)
    y = rng.random(632, dtype=F32) - 0.5
    small = rng.random(45, dtype=F32) - 0.5
    ext = rng.random(784, dtype=F32)
    perm = rng.permutation(784).astype(np.intp).reshape(1, -1)
    calls: dict[str, tuple[str, object]] = {
        "empty Python call": ("reference", lambda: None),
        "maximum(y45, 0-d zero, out=y45)": ("ufunc", functools.partial(
            np.maximum, small, zero0d, out=small)),
        "maximum(y45, np.float32(0), out=y45)": ("ufunc", functools.partial(
            np.maximum, small, zero_scalar, out=small)),
        "maximum(y632, 0-d zero, out=y632)": ("ufunc", functools.partial(
            np.maximum, y, zero0d, out=y)),
        "multiply(y632, 0-d half, out=y632)": ("ufunc", functools.partial(
            np.multiply, y, half0d, out=y)),
        "multiply(y632, np.float32(0.5), out=y632)": ("ufunc", functools.partial(
            np.multiply, y, half_scalar, out=y)),
        "tanh(y632, out=y632)": ("ufunc", functools.partial(np.tanh, y, out=y)),
        "ndarray.take(x, 287 idx, out=, 'wrap')": ("gather", functools.partial(
            np.ndarray.take, x, index, None, gathered, "wrap")),
        "np.take(x[0], 287 idx, out=, mode='clip')": ("gather", lambda: np.take(
            x[0], index, axis=0, out=gathered, mode="clip")),
        "ndarray.take(ext784, perm) (allocates)": ("gather", functools.partial(
            np.ndarray.take, ext, perm)),
        "ndarray.take(ext784, perm, 'wrap') (allocates)": ("gather", functools.partial(
            np.ndarray.take, ext, perm, None, None, "wrap")),
        "np.empty(784) + copyto": ("gather", lambda: np.copyto(np.empty(784, F32), ext)),
    }
    for rows, cols in ((163, 287), (45, 163), (224, 45), (632, 224)):
        w = rng.random((rows, cols), dtype=F32)
        wb = rng.random((rows, cols + 1), dtype=F32)
        h, hb = rng.random(cols, dtype=F32), rng.random(cols + 1, dtype=F32)
        out = np.empty(rows, F32)
        wb_t = np.ascontiguousarray(wb.T)
        calls[f"{rows}x{cols} dot(W, h)"] = ("product", functools.partial(np.dot, w, h,
                                                                         out=out))
        calls[f"{rows}x{cols} dot([W|b], [h;1])"] = ("product", functools.partial(
            np.dot, wb, hb, out=out))
        calls[f"{rows}x{cols} dot([h;1], [W|b]^T)"] = ("product", functools.partial(
            np.dot, hb, wb_t, out=out))
    return calls


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=3000)
    ap.add_argument("--out", type=Path, default=RESULTS / "numpy_call_floor")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    calls = candidates(np.random.default_rng(0))
    best: dict[str, float] = {}
    loads = [os.getloadavg()[0]]
    with blas_threads(1):
        for _ in range(args.rounds):
            for name, (_, fn) in calls.items():
                samples = time_calls(lambda _x, f=fn: f(), None, warmup=200, runs=args.runs,
                                     min_time=0.0)
                best[name] = min(best.get(name, float("inf")),
                                 percentiles(samples, (50,))[0] / 1e3)
            loads.append(os.getloadavg()[0])
    rows = [{"call": n, "group": calls[n][0], "p50_us": best[n]} for n in calls]
    results = {"environment": environment(), "rounds": args.rounds, "runs": args.runs,
               "load_average": loads, "calls": rows}
    (args.out / "calls.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# What one NumPy call costs (measured on this host, one thread)", "",
             f"Command: `python benchmarks/numpy_call_floor.py --rounds {args.rounds} --runs "
             f"{args.runs}`; fastest of {args.rounds} interleaved rounds of the p50 over "
             f"{args.runs} calls, timer included; load average {min(loads):.1f}-"
             f"{max(loads):.1f}.", "", "| group | call | p50 µs |", "|---|---|---:|",
             *[f"| {r['group']} | `{r['call']}` | {r['p50_us']:.3f} |" for r in rows]]
    (args.out / "calls.md").write_text("\n".join(lines) + "\n")
    plot(rows, args.out / "calls.png", loads)
    print("\n".join(lines))
    return 0


def plot(rows: list[dict], path: Path, loads: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"reference": "grey", "ufunc": "tab:blue", "gather": "tab:orange",
               "product": "tab:green"}
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r["p50_us"] for r in rows],
            color=[colours[r["group"]] for r in rows])
    ax.set_yticks(range(len(rows)), [r["call"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("p50 µs per call (timer included)")
    ax.set_title(f"One NumPy call, measured on this host (one thread, load "
                 f"{min(loads):.1f}-{max(loads):.1f})", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
