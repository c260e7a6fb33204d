"""Latency of every backend on the MNIST-5k 784-256-64-256-784 autoencoder, pruned by SHAP-SAE.

Usage: python benchmarks/runtime_latency.py [--etas 0.5,0.8,0.9,0.95] [--runs 200] [--min-time 1]
       [--out benchmarks/results/runtime_latency]

One run: trains (or reuses, benchmarks/cache/) the autoencoder, scores it once, prunes it to each
eta, exports npz/ONNX/TFLite (each verified against PyTorch), calibrates the runtime's dense/CSR
crossover on this device, then measures edgeprune (auto, csr, dense), ONNX Runtime, LiteRT and
torch at batch 1, 32 and 256, single-threaded, side by side. Writes latency.json, latency.md,
latency.png and summary.md (the issue-4 targets, checked from the numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import CACHE, RESULTS, mnist_autoencoder, mnist_scores, pruned_at

from edgeprune import bench as benchmark
from edgeprune.artifacts import write_artifacts
from edgeprune.prune import compact_network


def prepare(etas: list[float]) -> list[Path]:
    """Artifact directories: ``unpruned/`` and ``eta<η>/`` with model.npz/.onnx/.tflite."""
    net, ds, _ = mnist_autoencoder()
    scores_path, _ = mnist_scores(net, ds)
    base = CACHE / "latency"
    dirs = []
    unpruned = base / "unpruned"
    if not (unpruned / "model.tflite").is_file():
        unpruned.mkdir(parents=True, exist_ok=True)
        write_artifacts(net, compact_network(net), ds.x_test, unpruned, ["npz", "onnx", "tflite"])
    dirs.append(unpruned)
    for eta in etas:
        d = base / f"eta{eta}"
        if not (d / "model.tflite").is_file():
            pruned_at(net, ds, scores_path, eta, d)
        dirs.append(d)
    return dirs


def targets(results: dict, etas: list[float]) -> list[str]:
    """The issue's targets, judged from the measured rows (not asserted anywhere)."""
    rows = results["latency"]
    label = {a["path"]: Path(a["path"]).parent.name for a in results["artifacts"]}
    lines = ["| model | batch | fastest backend (p50) | edgeprune-auto p50 µs | "
             "auto / ONNX Runtime (same model) | auto / best forced kernel |",
             "|---|---:|---|---:|---:|---:|"]
    by = {}
    for r in rows:
        by.setdefault((label[r["artifact"]], r["batch"]), []).append(r)
    for (model, batch), rs in sorted(by.items()):
        best = min(rs, key=lambda r: r["p50_us"])
        get = {r["backend"]: r["p50_us"] for r in rs}
        auto = get.get("edgeprune-auto")
        ort = get.get("onnxruntime")
        forced = min(v for k, v in get.items() if k in ("edgeprune-csr", "edgeprune-dense"))
        lines.append(f"| {model} | {batch} | {best['backend']} ({best['p50_us']:.1f} µs) | "
                     f"{auto:.1f} | {auto / ort:.2f} | {auto / forced:.2f} |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--etas", default="0.5,0.8,0.9,0.95")
    ap.add_argument("--batches", default="1,32,256")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--out", type=Path, default=RESULTS / "runtime_latency")
    args = ap.parse_args()
    etas = [float(e) for e in args.etas.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    dirs = prepare(etas)
    opts = benchmark.BenchOptions(batches=[int(b) for b in args.batches.split(",")],
                                  backends="edgeprune,onnxruntime,litert,torch", warmup=20,
                                  runs=args.runs, min_time=args.min_time, threads=1)
    profile = benchmark.calibrate_device(dirs, opts, profile_out=args.out / "kernel_profile.json",
                                         progress=None)
    opts.kernel_profile = str(profile)
    results = benchmark.run(dirs, opts, progress=lambda s: print(s, flush=True))
    benchmark.write_outputs(results, str(args.out / "latency.json"),
                            str(args.out / "latency.md"), str(args.out / "latency.png"))
    summary = ["# Runtime latency: the issue-4 targets, read off latency.json", "",
               f"Command: `python benchmarks/runtime_latency.py --etas {args.etas} "
               f"--runs {args.runs} --min-time {args.min_time}`; single thread; "
               "p50 of repeated runs; kernel crossover calibrated on this machine first.", "",
               *targets(results, etas)]
    (args.out / "summary.md").write_text("\n".join(summary) + "\n")
    print(benchmark.summary_lines(results))
    print("\n".join(summary))
    json.loads((args.out / "latency.json").read_text())  # the file parses
    return 0


if __name__ == "__main__":
    sys.exit(main())
