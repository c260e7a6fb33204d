"""Fit the runtime's batch-1 cost model (edgeprune.runtime.bench.latency_model) to a
runtime_latency run, and measure what ``compress --target-latency`` gives.

Usage: python benchmarks/latency_model_fit.py [--latency benchmarks/results/runtime_latency]
       [--target-us 15] [--out benchmarks/results/latency_target]

1. Reads ``latency.json`` of ``benchmarks/runtime_latency.py``: per layer of every model its raw
   dense and CSR kernel times at batch 1 (dense: in the layout the engine's one-sample plans run,
   ``dense_cols_us`` on x86-64), and each model's end-to-end ``edgeprune-auto`` p50.
   Least squares: dense µs on rows·(cols+1), CSR µs on non-zeros and rows, then the per-call and
   per-row (bias, activation) remainder on the end-to-end times. Writes ``cost_model.json`` (the
   coefficients that ``latency_model.BUILTIN`` holds for this host, and predicted vs measured
   per model: in-sample). With numba installed, it also times the numba engine on the same
   models (every layer forced dense, forced CSR, and auto; interleaved) and fits that engine's
   coefficients (``latency_model.BUILTIN_NUMBA``, ``compress --latency-engine numba``).
2. Runs ``compress --target-latency`` on the same MNIST autoencoder and scores (the built-in
   coefficients), then measures, interleaved (one thread, fastest of 5 rounds of p50s), the
   result and the η = 0.9 link-pruned model in the default and the numba engine and in LiteRT,
   and the unpruned model in LiteRT and the numba engine; plus test MSE and probe accuracy.
   Writes ``target.json`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import CACHE, RESULTS, mnist_autoencoder, mnist_scores

from edgeprune.compress import CompressOptions, compress
from edgeprune.runtime.bench.latency_model import LatencyModel, predict_us
from edgeprune.runtime.plan import DENSE_LAYOUT


def relative_nnls(x: list, y: list, scale: list | None = None) -> np.ndarray:
    """Non-negative least squares of ``x @ c ≈ y`` on relative errors (each row divided by its
    ``scale``, default ``y``): costs are never negative, and a 2 µs layer counts as much as a
    200 µs one (plain least squares let the largest times decide and clipped what went
    negative, which left the small models' predictions far off)."""
    from scipy.optimize import nnls

    w = 1.0 / np.asarray(scale if scale is not None else y, dtype=np.float64)
    coef, _ = nnls(np.asarray(x, dtype=np.float64) * w[:, None],
                   np.asarray(y, dtype=np.float64) * w)
    return coef


def fit(latency: dict) -> tuple[LatencyModel, list[dict]]:
    """Coefficients from one runtime_latency run, and the in-sample check per model."""
    dense_x, dense_y, csr_x, csr_y = [], [], [], []
    models = {}
    for f in latency["kernel_floor"]:
        if f["batch"] != 1:
            continue
        shapes = []
        for layer in f["layers"]:
            r, c = layer["shape"]
            nnz = round(layer["density"] * r * c)
            dense_x.append([1.0, r * (c + 1) / 1e3])
            # the product the engine runs at batch 1: np.dot(h, W_T) on x86-64 (runtime/plan.py)
            dense_y.append(layer.get("dense_cols_us", layer["dense_us"])
                           if DENSE_LAYOUT == "cols" else layer["dense_us"])
            csr_x.append([1.0, nnz / 1e3, r / 1e3])
            csr_y.append(layer["csr_us"])
            shapes.append((r, c, nnz))
        models[f["artifact"]] = shapes
    d0, d1 = relative_nnls(dense_x, dense_y)
    s0, s1, s2 = relative_nnls(csr_x, csr_y)
    kernels = LatencyModel(0.0, max(d0, 0.0), max(d1, 0.0), max(s0, 0.0), max(s1, 0.0),
                           max(s2, 0.0), 0.0, source="kernels only")
    e2e = {r["artifact"]: r["p50_us"] for r in latency["latency"]
           if r["backend"] == "edgeprune-auto" and r["batch"] == 1}
    rows_x, rest_y = [], []
    for art, shapes in models.items():
        rows_x.append([1.0, sum(r for r, _, _ in shapes) / 1e3])
        rest_y.append(e2e[art] - predict_us(shapes, kernels)["total_us"])
    c0, c1 = relative_nnls(rows_x, rest_y, scale=list(e2e.values()))
    coef = [round(float(max(v, 0.0)), 4) for v in (c0, d0, d1, s0, s1, s2, c1)]
    model = LatencyModel(*coef, source="built-in x86_64")
    check = [{"model": Path(art).parent.name, "measured_us": e2e[art],
              "predicted_us": round(predict_us(shapes, model)["total_us"], 2)}
             for art, shapes in models.items()]
    return model, check


def fit_numba(bundles: list[Path], rounds: int = 5) -> tuple[LatencyModel, list[dict]]:
    """The numba engine's coefficients: its one-sample p50 on every model with all layers
    forced dense and forced CSR (interleaved, one thread, fastest of ``rounds``), least squares
    of ``call_us + dense_ns * sum rows * (cols + 1) + csr_ns * sum nnz + act_ns * sum rows``
    (one compiled call per sample: no per-layer call term), leaving out forced runs over 3x the
    model's ``auto`` time. Returns it and the in-sample check
    (the auto-kernel prediction against the measured ``engine="numba"`` default too)."""
    from edgeprune.runtime import load
    from edgeprune.runtime.bench.harness import blas_threads

    x = np.random.default_rng(0).random(784, dtype=np.float32)
    cands, design = {}, {}
    for path in bundles:
        shapes = [(i.shape[0], i.shape[1], i.nnz) for i in load(path).layers]
        for kernel in ("dense", "csr", "auto"):
            model = load(path, engine="numba", kernel=kernel)
            model(x)  # compile or load the cache
            name = f"{path.parent.name} {kernel}"
            cands[name] = lambda m=model: m(x)
            design[name] = (kernel, shapes)
    with blas_threads(1):
        times = interleaved(cands, rounds=rounds)
    rows, ys = [], []
    for name, (kernel, shapes) in design.items():
        auto = times[name.rsplit(" ", 1)[0] + " auto"]
        if kernel == "auto" or times[name] > 3 * auto:
            # a forced kernel far from the engine's own choice (e.g. its sparse kernels on a
            # dense model: another code path) says nothing about the budgets searched
            continue
        macs = sum(r * (c + 1) for r, c, _ in shapes) if kernel == "dense" else 0
        nnz = sum(n for _, _, n in shapes) if kernel == "csr" else 0
        rows.append([1.0, macs / 1e3, nnz / 1e3, sum(r for r, _, _ in shapes) / 1e3])
        ys.append(times[name])
    c0, d1, s1, a1 = relative_nnls(rows, ys)
    coef = [round(float(max(v, 0.0)), 4) for v in (c0, d1, s1, a1)]
    model = LatencyModel(call_us=coef[0], dense_call_us=0.0, dense_ns=coef[1], csr_call_us=0.0,
                         csr_ns=coef[2], csr_row_ns=0.0, act_ns=coef[3],
                         source="built-in x86_64, numba engine")
    def predicted(kernel: str, shapes: list[tuple[int, int, int]]) -> float:
        if kernel == "auto":
            return predict_us(shapes, model)["total_us"]
        work = sum(model.dense_ns * r * (c + 1) if kernel == "dense" else model.csr_ns * n
                   for r, c, n in shapes)
        return model.call_us + (work + model.act_ns * sum(r for r, _, _ in shapes)) / 1e3

    check = [{"model": name, "measured_us": round(times[name], 2),
              "predicted_us": round(predicted(kernel, shapes), 2)}
             for name, (kernel, shapes) in design.items()]
    return model, check


def interleaved(cands: dict, rounds: int = 5, runs: int = 300) -> dict[str, float]:
    """Fastest of ``rounds`` p50s (µs) per candidate, the candidates interleaved."""
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, fn in cands.items():
            for _ in range(20):
                fn()
            samples = []
            for _ in range(runs):
                t = time.perf_counter_ns()
                fn()
                samples.append(time.perf_counter_ns() - t)
            best[name] = min(best.get(name, float("inf")), float(np.median(samples)) / 1e3)
    return best


def target_run(target_us: float, out: Path) -> dict:
    """compress --target-latency on the MNIST AE, then the interleaved comparison."""
    from ai_edge_litert import interpreter as lite

    from edgeprune.runtime import load
    from edgeprune.runtime.bench.harness import blas_threads
    from edgeprune.train import evaluate

    net, ds, _ = mnist_autoencoder()
    scores_path, _ = mnist_scores(net, ds)
    outdir = CACHE / "latency" / f"target{target_us:g}"
    res = compress(net, ds, outdir, CompressOptions(target_latency=target_us, quiet=True,
                                                    scores_path=str(scores_path), seed=0,
                                                    reconstruct=False))  # as committed
    target = res.report.scoring["target"]
    dirs = {"target": outdir, "eta0.9": CACHE / "latency" / "eta0.9",
            "unpruned": CACHE / "latency" / "unpruned"}

    def litert(path: Path):
        it = lite.Interpreter(model_path=str(path), num_threads=1)
        it.allocate_tensors()
        i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

        def run(x):
            it.set_tensor(i, x)
            it.invoke()
            return it.get_tensor(o)
        return run

    x = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    cands = {}
    for name, d in dirs.items():
        plain, fast = load(d / "model.npz"), load(d / "model.npz", engine="numba")
        lt = litert(d / "model.tflite")
        cands[f"{name} edgeprune-auto"] = lambda m=plain: m(x[0])
        cands[f"{name} edgeprune-numba"] = lambda m=fast: m(x[0])
        cands[f"{name} litert"] = lambda r=lt: r(x)
    loads = [os.getloadavg()[0]]
    with blas_threads(1):
        times = interleaved(cands)
    loads.append(os.getloadavg()[0])
    quality = {}
    from edgeprune.checkpoint import load_network
    for name, d in dirs.items():
        model_net = net if name == "unpruned" else load_network(d / "pruned.pt")
        quality[name] = {**evaluate(model_net, ds, 0), "sparsity": float(model_net.sparsity),
                         "shapes": [list(layer.shape) for layer in load(d / "model.npz").layers]}
    return {"target_us": target_us, "search": target, "p50_us": times, "quality": quality,
            "load_average": loads}


def plot(run: dict, path: Path) -> None:
    """Left: the search's candidates (validation MSE against units removed, all at the same
    predicted latency); right: the measured µs of the three models in each runtime."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    fits = [c for c in run["search"]["candidates"] if c["fits"]]
    left.plot([100 * c["unit_fraction"] for c in fits], [c["val_loss"] for c in fits], "o-")
    chosen = run["search"]["unit_fraction"]
    left.axvline(100 * chosen, color="grey", ls="--", label=f"chosen: {chosen:.0%}")
    left.set_xlabel("hidden units removed per layer (%)")
    left.set_ylabel("validation MSE (no fine-tuning)")
    left.set_title(f"candidates within {run['target_us']:g} µs (predicted)")
    left.legend()
    names = ("unpruned", "eta0.9", "target")
    runtimes = ("edgeprune-auto", "edgeprune-numba", "litert")
    for k, rt in enumerate(runtimes):
        right.bar([i + (k - 1) * 0.27 for i in range(len(names))],
                  [run["p50_us"][f"{n} {rt}"] for n in names], 0.27, label=rt)
    right.set_xticks(range(len(names)), names)
    right.set_ylabel("p50 µs per sample (batch 1)")
    right.set_title("measured on this host, one thread")
    right.legend(fontsize=8)
    fig.suptitle("compress --target-latency on the MNIST autoencoder (measured on this host; "
                 "predicted = the cost model)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=Path, default=RESULTS / "runtime_latency")
    ap.add_argument("--target-us", type=float, default=15.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "latency_target")
    ap.add_argument("--fit-only", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    latency = json.loads((args.latency / "latency.json").read_text())
    model, check = fit(latency)
    record = {"coefficients": model.to_dict(), "in_sample": check,
              "from": str(args.latency / "latency.json")}
    lines = ["# The batch-1 cost model and `compress --target-latency`", "",
             "Coefficients of the NumPy engine (least squares on the runtime_latency run's raw "
             f"kernels and end-to-end auto p50s, measured on this host): `{model.to_dict()}`",
             "", "| model | measured auto µs | predicted µs (in-sample) |", "|---|---:|---:|",
             *[f"| {c['model']} | {c['measured_us']:.1f} | {c['predicted_us']:.1f} |"
               for c in check]]
    from edgeprune.runtime import fused

    if fused.available():
        loads = [os.getloadavg()[0]]
        numba_model, numba_check = fit_numba(
            sorted({Path(f["artifact"]) for f in latency["kernel_floor"]}))
        loads.append(os.getloadavg()[0])
        record["numba"] = {"coefficients": numba_model.to_dict(), "in_sample": numba_check,
                           "load_average": loads}
        lines += ["", "Coefficients of the numba engine (least squares on its one-sample p50s "
                  "with every layer forced dense and forced CSR, measured here interleaved, "
                  f"load average {min(loads):.1f}-{max(loads):.1f}): "
                  f"`{numba_model.to_dict()}`", "",
                  "| model, kernels | measured numba µs | predicted µs (forced: in-sample; auto: "
                  "out of sample) |", "|---|---:|---:|",
                  *[f"| {c['model']} | {c['measured_us']:.1f} | {c['predicted_us']:.1f} |"
                    for c in numba_check]]
    (args.out / "cost_model.json").write_text(json.dumps(record, indent=2) + "\n")
    if not args.fit_only:
        os.environ["EDGEPRUNE_HOME"] = tempfile.mkdtemp(prefix="edgeprune_home_")
        run = target_run(args.target_us, args.out)
        (args.out / "target.json").write_text(json.dumps(run, indent=2) + "\n")
        plot(run, args.out / "target.png")
        s, q, t = run["search"], run["quality"], run["p50_us"]
        lines += ["", f"`compress --target-latency {args.target_us:g}` (built-in cost model): "
                  f"{s['unit_fraction']:.0%} of hidden units removed, sparsity "
                  f"{q['target']['sparsity']:.4f}, predicted {s['value']:.1f} µs, measured "
                  f"{s['measured_us_this_host']:.1f} µs at compress time. Candidates:", "",
                  "| units removed | sparsity | predicted µs | validation MSE |",
                  "|---:|---:|---:|---:|",
                  *[f"| {c['unit_fraction']:.0%} | {c.get('sparsity', float('nan')):.4f} | "
                    f"{c['predicted_us']:.1f} | {c.get('val_loss', float('nan')):.5f} |"
                    for c in s["candidates"]],
                  "", "Interleaved on this host (one thread, fastest of 5 rounds of p50 over "
                  f"300 calls; load average {min(run['load_average']):.1f}-"
                  f"{max(run['load_average']):.1f}):", "",
                  "| model | layers | sparsity | test MSE | probe acc | auto µs | numba µs | "
                  "litert µs |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for name in ("unpruned", "eta0.9", "target"):
            lines.append(
                f"| {name} | {' '.join('x'.join(map(str, sh)) for sh in q[name]['shapes'])} | "
                f"{q[name]['sparsity']:.3f} | {q[name]['test_mse']:.5f} | "
                f"{q[name].get('probe_accuracy', float('nan')):.3f} | "
                f"{t[f'{name} edgeprune-auto']:.1f} | {t[f'{name} edgeprune-numba']:.1f} | "
                f"{t[f'{name} litert']:.1f} |")
        fastest_unpruned = min(v for k, v in t.items() if k.startswith("unpruned"))
        ours = min(t["target edgeprune-auto"], t["target edgeprune-numba"])
        lines += ["", f"Fastest edgeprune on the target model / unpruned model in its fastest "
                  f"runtime: {ours:.1f} / {fastest_unpruned:.1f} µs = "
                  f"{ours / fastest_unpruned:.2f}"]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
