"""ShapNet dynamic pruning in the edgeprune runtime (issue 17, paper §2.5 / Cor. 4 / Fig. 5).

Measured on this host. For Breast Cancer Wisconsin (classification, 30 features) and the paper's
synthetic regression ``synthetic16``: a Deep ShapNet (k = 2, 4 channels, inner MLP 16) trained
without explanation regularisation and with the ℓ1 penalty on every Shapley representation
(``--explanation-l1 λ --l1-layers all``), compiled to ``model.npz``. On the test split, per skip
threshold (0 and quantiles of the modules' deviations from their references):

- the fraction of Shapley modules and of the chain's multiply-adds skipped, the accuracy (MSE),
  the largest prediction change against the unpruned run and the runtime's worst-case bound
  (:func:`edgeprune.shapnet.dynamic.dynamic_pruning_curve`);
- batch-1 latency per input of the runtime (:func:`edgeprune.runtime.bench.dynamic.
  bench_dynamic_pruning`): the chain without skipping, the per-module path without skipping
  and with the threshold, in one process, cycling through the test inputs.

Writes ``benchmarks/results/shapnet_dynamic/{results.json,results.md,dynamic_pruning.png}``.
``python benchmarks/shapnet_dynamic.py [--epochs N] [--seeds 0,1] [--datasets ...] [--out DIR]
[--from-json]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "shapnet_dynamic"
CACHE = HERE / "cache"
DATASETS = {"breast-cancer": "classification", "synthetic16": "regression"}
L1 = 0.01
LABEL = "measured on this host (batch 1, one BLAS thread)"


def train(data: str, task: str, l1: float, seed: int, epochs: int):
    """The trained model (cached in ``benchmarks/cache/``), its test inputs and targets."""
    from edgeprune.data import load_dataset
    from edgeprune.shapnet.checkpoint import load_shapnet, save_shapnet
    from edgeprune.shapnet.training import (
        Regularisation,
        ShapNetSpec,
        build_shapnet,
        reference_values,
        task_data,
        train_shapnet,
    )

    ds = load_dataset(data, seed=seed, regression=task == "regression")
    task, out_dim, (t_train, t_val, t_test) = task_data(ds, task)
    cached = CACHE / f"shapnet_deep_{data}_l1-{l1:g}_s{seed}_e{epochs}.pt"
    if cached.is_file():
        return load_shapnet(cached)[0].eval(), ds.x_test, t_test
    spec = ShapNetSpec(kind="shapnet-deep", active_size=2, channels=4, hidden=(16,))
    model = build_shapnet(spec, ds.dim, out_dim, reference_values(ds, spec.reference), seed)
    reg = Regularisation(l1=l1, l1_layers="all")
    train_shapnet(model, ds.x_train, t_train, ds.x_val, t_val, task=task, reg=reg,
                  epochs=epochs, seed=seed, quiet=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    save_shapnet(model.eval(), cached, task, {"trained_on": data, "epochs": epochs})
    return model, ds.x_test, t_test


def measure(data: str, task: str, l1: float, seed: int, epochs: int) -> dict:
    from edgeprune.runtime.bench.dynamic import bench_dynamic_pruning
    from edgeprune.runtime.bench.harness import blas_threads
    from edgeprune.shapnet.dynamic import (
        as_runtime_model,
        auto_thresholds,
        dynamic_pruning_curve,
        module_deviations,
    )

    start = time.time()
    model, x, y = train(data, task, l1, seed, epochs)
    runtime = as_runtime_model(model)
    thresholds = auto_thresholds(module_deviations(runtime, x), n=8)
    curve = dynamic_pruning_curve(runtime, x, y, thresholds)
    with blas_threads(1):
        latency = bench_dynamic_pruning(runtime, x, thresholds, warmup=5, runs=200,
                                        min_time=0.5)
    rows = [{**c, **{k: v for k, v in lat.items() if k not in c}}
            for c, lat in zip(curve, latency["thresholds"])]
    return {"data": data, "task": task, "l1": l1, "seed": seed, "epochs": epochs,
            "modules": runtime.n_modules, "macs": runtime.macs, "test_samples": len(x),
            "baseline": latency["baseline"], "rows": rows,
            "seconds": round(time.time() - start, 1)}


def markdown(results: list[dict]) -> str:
    lines = ["# ShapNet dynamic pruning in the edgeprune runtime", "",
             f"All numbers {LABEL}; latency = p50 µs per input over the test split. *saved* = "
             "chain p50 − p50 at the threshold (negative: the skip test costs more than it "
             "saves); *new patterns*: every call's skip patterns first seen (the runtime's "
             "per-pattern ops cache emptied before each call). Deep ShapNet k = 2, 4 channels, "
             "inner MLP 16, Adam "
             f"{results[0]['epochs']} epochs; ℓ1 = penalty on every Shapley representation.", ""]
    for r in results:
        metric = "accuracy" if r["task"] == "classification" else "mse"
        base = r["baseline"]
        lines += [f"## {r['data']}, ℓ1 = {r['l1']:g}, seed {r['seed']} ({r['modules']} modules, "
                  f"{r['macs']:,} MACs; chain {base['chain_p50_us']:.1f} µs, per-module path "
                  f"without skipping {base['no_skip_p50_us']:.1f} µs)", "",
                  f"| threshold | modules skipped | MACs skipped | {metric} | max pred. change "
                  "| bound | p50 µs | saved µs | p50 µs, new patterns |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in r["rows"]:
            lines.append(f"| {row['threshold']:.3g} | {row['skipped_fraction']:.1%} | "
                         f"{row['macs_skipped_fraction']:.1%} | {row[metric]:.4g} | "
                         f"{row['max_prediction_change']:.3g} | {row['bound']:.3g} | "
                         f"{row['p50_us']:.1f} | {row['latency_saved_us']:.1f} | "
                         f"{row.get('p50_first_pattern_us', float('nan')):.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax_metric, ax_lat = fig.subplots(1, 2)
    for r in results:
        metric = "accuracy" if r["task"] == "classification" else "mse"
        x = [row["macs_skipped_fraction"] for row in r["rows"]]
        label = f"{r['data']} ℓ1={r['l1']:g} s{r['seed']}"
        if metric == "accuracy":
            ax_metric.plot(x, [row["accuracy"] for row in r["rows"]], "o-", label=label)
        lat = [row["p50_us"] / r["baseline"]["chain_p50_us"] for row in r["rows"]]
        ax_lat.plot(x, lat, "o-", label=label)
    ax_metric.set(xlabel="fraction of MACs skipped", ylabel="test accuracy",
                  title="breast-cancer: accuracy vs computation pruned")
    ax_lat.axhline(1.0, color="grey", lw=0.8)
    ax_lat.set(xlabel="fraction of MACs skipped", ylabel="p50 latency / unpruned chain",
               title="latency per input (batch 1)")
    for ax in (ax_metric, ax_lat):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"ShapNet dynamic pruning — {LABEL}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--from-json", action="store_true",
                        help="only rewrite the Markdown and the plot from results.json")
    args = parser.parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        results = json.loads((out / "results.json").read_text())["runs"]
    else:
        results = []
        for seed in (int(s) for s in args.seeds.split(",")):
            for data in args.datasets.split(","):
                task = DATASETS[data]
                for l1 in (0.0, L1):
                    print(f"{data} l1={l1} seed {seed}", file=sys.stderr, flush=True)
                    results.append(measure(data, task, l1, seed, args.epochs))
        (out / "results.json").write_text(json.dumps({"label": LABEL, "runs": results},
                                                     indent=1))
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "dynamic_pruning.png")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
