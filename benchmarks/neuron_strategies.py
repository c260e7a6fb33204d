"""Neuron-pruning strategies on MNIST-5k: the experiment of Stier et al. 2018, section 4.1.

Usage: python benchmarks/neuron_strategies.py [--runs 10] [--workers 2] [--quick]
       [--strategies svbucket:0.2,random:1,...] [--out benchmarks/results/neuron_strategies]
       [--from-json benchmarks/results/neuron_strategies/results.json]

Per run r (seed r): a 784-40-10 ReLU classifier is trained for 20 epochs (softmax cross-entropy,
Adam) on MNIST-5k's training split; then every strategy walks from that root model: neuron game
on the hidden layer (accuracy on the validation split, 100 antithetic permutations), remove the
chosen units, retrain 2 epochs, repeat until no unit is left (``until="empty"``, as the paper's
tables count steps to the end). "found" is the smallest number of units whose retrained model
still has validation accuracy >= 0.9; "steps to threshold" is where the default walk of
``edgeprune compress`` (``until="threshold"``) stops. Epochs follow the paper's accounting:
20 + 2 x steps.

Writes results.json, README.md (tables, the paper's numbers side by side) and the pruning-walk
plots walk_random.png, walk_wbottom.png, walk_svbottomp.png (the paper's Figures 2-4) and
accuracy_vs_units.png. ``--quick`` is a smoke test (digits, 1 run, few strategies) written to
benchmarks/cache/ unless --out is given.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from neuron_strategies_report import (
    PAPER,
    accuracy_at,
    write_markdown,
    write_plots,
)

HERE = Path(__file__).resolve().parent

STRATEGIES = ["svbucket:0.1", "svbucket:0.2", "svbucket:0.3", "svbottom-p:0.5",
              "svbottom-p:0.7", "svbottom:1", "svbottom:3", "random:1", "random:3",
              "wbottom:1", "wbottom:3"]
QUICK_STRATEGIES = ["svbucket:0.2", "svbottom-p:0.5", "random:3", "wbottom:3"]


def config(args) -> dict:
    if args.quick:
        return {"data": "digits", "hidden": 16, "epochs": 10, "lr": 0.01, "retrain_epochs": 1,
                "threshold": 0.8, "samples": 20, "runs": args.runs or 1,
                "strategies": args.strategies or QUICK_STRATEGIES}
    return {"data": "mnist5k", "hidden": 40, "epochs": 20, "lr": 1e-3, "retrain_epochs": 2,
            "threshold": 0.9, "samples": 100, "runs": args.runs or 10,
            "strategies": args.strategies or STRATEGIES}


def one_run(cfg: dict, run: int) -> dict:
    """Train the root model of run ``run`` and walk every strategy from it."""
    import torch

    torch.set_num_threads(1)
    from edgeprune.data import load_dataset
    from edgeprune.prune.neuron_walk import neuron_walk
    from edgeprune.train import accuracy, build_classifier, train_classifier

    ds = load_dataset(cfg["data"], seed=0)
    t0 = time.perf_counter()
    root = build_classifier(ds.dim, [cfg["hidden"]], 10, "relu", seed=run)
    root, _ = train_classifier(root, ds.x_train, ds.y_train, epochs=cfg["epochs"], lr=cfg["lr"],
                               seed=run, quiet=True)
    out = {"run": run, "root_val_accuracy": accuracy(root, ds.x_val, ds.y_val),
           "root_test_accuracy": accuracy(root, ds.x_test, ds.y_test),
           "root_seconds": time.perf_counter() - t0, "walks": []}
    if out["root_val_accuracy"] < cfg["threshold"]:  # no walk can start; reported, not hidden
        out["skipped"] = f"root validation accuracy below {cfg['threshold']}"
        return out
    for strategy in cfg["strategies"]:
        walk = neuron_walk(root, ds, strategy, cfg["threshold"], until="empty",
                           retrain_epochs=cfg["retrain_epochs"], estimator="permutation",
                           samples=cfg["samples"], lr=cfg["lr"], seed=run,
                           initial_epochs=cfg["epochs"], record_values=False, quiet=True)
        steps = walk.steps
        first_fail = next((s.step for s in steps if not s.meets), len(steps))
        out["walks"].append({
            "strategy": strategy,
            "steps": len(steps) - 1,
            "epochs_paper": cfg["epochs"] + cfg["retrain_epochs"] * (len(steps) - 1),
            "epochs_trained": steps[-1].epochs,
            "found": walk.units_found[0],
            "steps_to_threshold": first_fail,
            "found_at_threshold_stop": steps[first_fail - 1].units_left[0],
            "seconds": walk.seconds,
            "curve": [{"units": s.units_left[0], "val_accuracy": s.metric,
                       "test_accuracy": s.test_metric, "removed": s.removed[0] if s.removed
                       else [], "removed_shapley": s.removed_shapley,
                       "removed_shapley_fraction": s.removed_shapley_fraction}
                      for s in steps]})
    return out


def stats(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"avg": float(v.mean()), "max": float(v.max()), "min": float(v.min()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


def summarize(runs: list[dict], cfg: dict) -> dict:
    by = {s: [w for r in runs for w in r["walks"] if w["strategy"] == s]
          for s in cfg["strategies"]}
    probe = [u for u in (16, 12, 10, 8, 6, 4, 2) if u < cfg["hidden"]]
    summary = {}
    for s, walks in by.items():
        summary[s] = {k: stats([w[k] for w in walks]) for k in
                      ("steps", "epochs_paper", "found", "steps_to_threshold",
                       "found_at_threshold_stop", "seconds")}
        summary[s]["accuracy_at_units"] = {
            str(u): float(np.mean([accuracy_at(w["curve"], u) for w in walks])) for u in probe}
        summary[s]["n"] = len(walks)
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None, help="Runs (root models); default 10.")
    ap.add_argument("--workers", type=int, default=1, help="Parallel processes.")
    ap.add_argument("--strategies", type=lambda s: s.split(","), default=None)
    ap.add_argument("--quick", action="store_true", help="Smoke test on digits.")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--from-json", type=Path, default=None,
                    help="Only redraw the plots and README.md from an existing results.json.")
    args = ap.parse_args()
    if args.from_json:
        doc = json.loads(args.from_json.read_text())
        write_plots(doc, args.from_json.parent)
        write_markdown(doc, args.from_json.parent)
        return 0
    cfg = config(args)
    out = args.out or (HERE / "cache" / "neuron_strategies_quick" if args.quick
                       else HERE / "results" / "neuron_strategies")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs = list(range(cfg["runs"]))
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers) as pool:
            results = list(pool.map(one_run, [cfg] * len(runs), runs))
    else:
        results = [one_run(cfg, r) for r in runs]
    for r in results:
        print(f"run {r['run']}: root val acc {r['root_val_accuracy']:.4f}, "
              + ", ".join(f"{w['strategy']} found {w['found']} in {w['steps']} steps"
                          for w in r["walks"]), flush=True)
    skipped = [r["run"] for r in results if r.get("skipped")]
    if skipped:
        print(f"runs {skipped} skipped: root model below the threshold", flush=True)
    results = [r for r in results if not r.get("skipped")] or results
    summary = summarize(results, cfg)
    doc = {"config": cfg, "python": platform.python_version(), "skipped_runs": skipped,
           "wall_seconds": round(time.perf_counter() - t0, 1), "paper": PAPER,
           "summary": summary, "runs": results}
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    write_plots(doc, out)
    write_markdown(doc, out)
    print(f"wrote {out}/results.json, README.md and plots in {doc['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
