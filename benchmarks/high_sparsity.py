"""Issue 13: Shapley score rules at high sparsity (eta 0.9, 0.95) against magnitude and LAP.

Usage: python benchmarks/high_sparsity.py [--data mnist5k] [--seeds 0,1,2] [--etas 0.9,0.95]
       [--variants a,b,...] [--runs DIR]     # measure; one JSON per (dataset, seed) in DIR
       python benchmarks/high_sparsity.py --report [--runs DIR] [--out DIR]   # tables + plot

The protocol is benchmarks/paper_mnist.py's, imported from it, not copied: the same cached
dense autoencoder (784-256-64-256-784, 30 epochs), the same fixed classifier, the same SHAP-SAE
scores (auto estimator, 256 samples, zero reference) and the same masked fine-tune (10 epochs,
Adam lr 1e-3, batch 64). Each variant prunes the dense AE to link sparsity eta (eq. 9, after the
cascade) and is measured pruned only and fine-tuned, on the test split: classifier accuracy on
the reconstructions (the headline), reconstruction MSE, and how many input pixels are still read.

Variants (every one reachable from ``edgeprune compress``):

* ``magnitude``, ``lap``: ``--method magnitude|lap``; ``global-magnitude``: one |w| threshold
  over all layers (``prune_global_magnitude``, the paper_mnist row).
* ``shap-sae``: ``--score-rule paper`` (mean |phi|, eq. 3); ``shap-rms``: ``--score-rule rms``;
  ``hybrid-0.5`` / ``hybrid-0.25``: ``--score-rule hybrid --alpha 0.5|0.25``.
* ``hybrid-auto``: ``--score-rule hybrid --alpha auto`` (alpha of 0, .25, .5, .75, 1 with the
  lowest validation MSE of the pruned, not yet fine-tuned network).
* ``hybrid-0.5-g3`` / ``magnitude-g3``: ``--steps 3`` (cubic schedule 0.63 eta, 0.96 eta, eta),
  re-scoring the pruned network at each step, 3 + 3 epochs between steps and 4 after the last
  (the same 10 epochs in all). Pruned-only rows do not exist for gradual runs.

Paired differences: per seed, variant minus magnitude on the same dense model, data split and
classifier; reported as mean +- std over seeds. The test split has 1,000 images (mnist5k), so one
image is 0.1 pp.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import paper_mnist as pm  # noqa: E402  (benchmarks/ is not a package)

RUNS = HERE / "cache" / "high_sparsity"
OUT = HERE / "results" / "high_sparsity"
VARIANTS = ["magnitude", "global-magnitude", "lap", "shap-sae", "shap-rms", "hybrid-0.25",
            "hybrid-0.5", "magnitude-g3", "hybrid-0.5-g3", "hybrid-auto"]
RULES = {"shap-sae": ("paper", 1.0), "shap-rms": ("rms", 1.0), "hybrid-0.25": ("hybrid", 0.25),
         "hybrid-0.5": ("hybrid", 0.5), "hybrid-0.5-g3": ("hybrid", 0.5)}


def run_one(spec: str, seed: int, etas: list[float], variants: list[str], quiet: bool) -> dict:
    from edgeprune.compress import CompressOptions
    from edgeprune.data import explanation_set, load_dataset
    from edgeprune.gradual import gradual_prune
    from edgeprune.prune import baseline_scores, prune_global_magnitude, prune_network
    from edgeprune.scoring import NetworkScores, auto_alpha_scores, rule_scores, score_network
    from edgeprune.shapley import LayerScores
    from edgeprune.train import accuracy, train_network

    rc = pm.recipe(types.SimpleNamespace(quick=False, estimator="auto", samples=None,
                                         threads=1))
    ds = load_dataset(spec, seed=seed)
    nets, _ = pm.trained_models(spec, ds, seed, rc, quiet, only=("dense",))
    dense, clf = nets["dense"], nets["classifier"]
    pm.shap_scores(spec, dense, ds, seed, rc)  # computes and caches on the first run
    with np.load(pm.scores_path(spec, dense, seed, rc)) as z:  # li, signed and var of phi
        shap = NetworkScores([LayerScores(li=z[f"li{k}"], ui=z[f"ui{k}"], signed=z[f"signed{k}"],
                                          var=z[f"var{k}"], stderr=None, estimator="cached",
                                          seconds=0.0, n_samples=rc["samples"], n_evaluations=0)
                              for k in range(1, len(dense.layers) + 1)],
                             rc["estimator"], "zero", rc["samples"], seed)
    ft = {"epochs": rc["finetune_epochs"], "lr": rc["finetune_lr"],
          "batch_size": rc["batch_size"], "seed": seed, "quiet": True}
    x_explain = explanation_set(ds, rc["samples"], seed)
    rows, extra_alpha = [], {}

    def record(variant, eta, net, finetune, seconds):
        recon = net.forward(ds.x_test)
        row = {"dataset": spec, "variant": variant, "eta": eta, "finetune": finetune,
               "seed": seed, "achieved_eta": round(net.sparsity, 6),
               "mse": float(np.mean((recon - ds.x_test) ** 2)),
               "classifier_accuracy": accuracy(clf, recon, ds.y_test),
               "inputs_read": int(net.layers[0].mask.any(axis=0).sum()),
               "links_kept_per_layer": [layer.n_active for layer in net.layers],
               "seconds": round(seconds, 2),
               **({"alpha": extra_alpha[eta]} if variant == "hybrid-auto" else {})}
        rows.append(row)
        if not quiet:
            print(f"  s{seed} {variant:>15} eta={eta:<4} ft={finetune!s:<5} "
                  f"eta*={row['achieved_eta']:.4f} mse={row['mse']:.5f} "
                  f"clf={row['classifier_accuracy']:.4f} in={row['inputs_read']} "
                  f"({seconds:.0f}s)", flush=True)

    def rescore(net):  # the gradual runs re-score the pruned, fine-tuned network
        variant_rule = rule
        if variant_rule is None:
            return baseline_scores("magnitude", net), None
        sc = score_network(net, x_explain, estimator=rc["estimator"], seed=seed, quiet=True)
        return rule_scores(sc, net, *variant_rule), None

    record("dense", 0.0, dense, False, 0.0)
    for variant in variants:
        rule = RULES.get(variant)
        for eta in etas:
            t0 = time.perf_counter()
            if variant.endswith("-g3"):
                opts = CompressOptions(sparsity=eta, steps=3,
                                       finetune_epochs=rc["finetune_epochs"])
                res, _, _, left = gradual_prune(
                    dense, ds, opts, rescore,
                    lambda n, e: train_network(n, ds.x_train, ds.x_val, **{**ft, "epochs": e})[0],
                    lambda n: {})
                tuned = train_network(res.network, ds.x_train, ds.x_val,
                                      **{**ft, "epochs": left})[0]
                record(variant, eta, tuned, True, time.perf_counter() - t0)
                continue
            if variant == "hybrid-auto":
                scores, search = auto_alpha_scores(shap, dense, ds.x_val, ds.y_val, sparsity=eta)
                res = prune_network(dense, scores, sparsity=eta)
                extra_alpha[eta] = search["alpha"]
            elif variant == "global-magnitude":
                res = prune_global_magnitude(dense, eta)
            elif rule is None:
                res = prune_network(dense, baseline_scores(variant, dense, seed=seed),
                                    sparsity=eta)
            else:
                res = prune_network(dense, rule_scores(shap, dense, *rule), sparsity=eta)
            record(variant, eta, res.network, False, time.perf_counter() - t0)
            tuned = train_network(res.network, ds.x_train, ds.x_val, **ft)[0]
            record(variant, eta, tuned, True, time.perf_counter() - t0)
    return {"dataset": spec, "seed": seed, "etas": etas, "variants": variants, "recipe": rc,
            "rows": rows}


# -- report -----------------------------------------------------------------------------------


def paired(rows: list[dict], variant: str, eta: float, finetune: bool, key: str):
    """Per-seed differences variant - magnitude (in pp for accuracy)."""
    def by_seed(v):
        return {r["seed"]: r[key] for r in rows
                if r["variant"] == v and r["eta"] == eta and r["finetune"] == finetune}
    a, m = by_seed(variant), by_seed("magnitude")
    seeds = sorted(set(a) & set(m))
    scale = 100.0 if key == "classifier_accuracy" else 1.0
    return np.array([scale * (a[s] - m[s]) for s in seeds])


def fmt(d: np.ndarray, digits: int = 2) -> str:
    if d.size == 0:
        return "–"
    sd = f" ± {d.std(ddof=1):.{digits}f}" if d.size > 1 else ""
    return f"{d.mean():+.{digits}f}{sd}"


def summarize(docs: list[dict], out: Path) -> str:
    rows = [r for d in docs for r in d["rows"]]
    etas = sorted({e for d in docs for e in d["etas"]})
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    seeds = sorted({d["seed"] for d in docs})
    datasets = sorted({d["dataset"] for d in docs})
    lines = ["# High-sparsity Shapley rules (issue 13), measured on this host", "",
             f"Data {', '.join(datasets)}; seeds {seeds}; the paper_mnist protocol "
             "(benchmarks/high_sparsity.py docstring). Classifier accuracy on the reconstructions "
             "of the test split (mnist5k: 1,000 images, 0.1 pp each; digits: 540, 0.19 pp); "
             "Δ = variant − magnitude on the same seed, mean ± std over seeds.", ""]
    for spec in datasets:
        rs = [r for r in rows if r["dataset"] == spec]
        dense = [100 * r["classifier_accuracy"] for r in rs if r["variant"] == "dense"]
        sd = np.std(dense, ddof=1) if len(dense) > 1 else 0.0
        lines += [f"## {spec}", "", f"Dense AE: {np.mean(dense):.2f} ± {sd:.2f} %", ""]
        for ft in (True, False):
            lines += [f"### {'fine-tuned (10 epochs)' if ft else 'pruned only'}", "",
                      "| variant | " + " | ".join(f"acc η={e} | Δ acc vs magnitude η={e} | "
                                                  f"inputs read η={e}" for e in etas) + " |",
                      "|---|" + "---:|---:|---:|" * len(etas)]
            for v in variants:
                cells = []
                for e in etas:
                    sel = [r for r in rs if r["variant"] == v and r["eta"] == e
                           and r["finetune"] == ft]
                    if not sel:
                        cells += ["–", "–", "–"]
                        continue
                    acc = np.array([100 * r["classifier_accuracy"] for r in sel])
                    inp = np.mean([r["inputs_read"] for r in sel])
                    cells += [f"{acc.mean():.2f}", "0" if v == "magnitude" else
                              fmt(paired(rs, v, e, ft, "classifier_accuracy")), f"{inp:.0f}"]
                lines.append(f"| {v} | " + " | ".join(cells) + " |")
            alphas = [f"s{r['seed']} η={r['eta']}: {r['alpha']:g}" for r in rs
                      if r["variant"] == "hybrid-auto" and r["finetune"] == ft]
            if alphas:
                lines += ["", "hybrid-auto chose α = " + ", ".join(alphas) + "."]
            lines += ["", "MSE, Δ vs magnitude (×1e-3): " + "; ".join(
                f"{v} η={e}: " + fmt(1e3 * paired(rs, v, e, ft, "mse"))
                for v in variants if v != "magnitude" for e in etas
                if paired(rs, v, e, ft, "mse").size), ""]
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    plot(rows, etas, variants, datasets, out / "high_sparsity.png")
    return text


def plot(rows, etas, variants, datasets, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), 2, figsize=(11, 4 * len(datasets)), squeeze=False)
    for i, spec in enumerate(datasets):
        rs = [r for r in rows if r["dataset"] == spec]
        for j, ft in enumerate((True, False)):
            ax = axes[i][j]
            shown = [v for v in variants if v != "magnitude"
                     and any(r["variant"] == v and r["finetune"] == ft for r in rs)]
            width = 0.8 / max(1, len(etas))
            for k, e in enumerate(etas):
                d = [paired(rs, v, e, ft, "classifier_accuracy") for v in shown]
                ax.bar(np.arange(len(shown)) + k * width, [x.mean() for x in d], width,
                       yerr=[x.std(ddof=1) if x.size > 1 else 0 for x in d],
                       label=f"η = {e}", capsize=3)
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xticks(np.arange(len(shown)) + width * (len(etas) - 1) / 2)
            ax.set_xticklabels(shown, rotation=30, ha="right", fontsize=8)
            ax.set_ylabel("Δ classifier accuracy vs magnitude (pp)")
            ax.set_title(f"{spec}, {'fine-tuned' if ft else 'pruned only'} "
                         "(measured on this host)", fontsize=9)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--etas", default="0.9,0.95")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--runs", type=Path, default=RUNS)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--report", action="store_true", help="Only write tables and the plot.")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.report:
        docs = [json.loads(p.read_text()) for p in sorted(args.runs.glob("*.json"))]
        if not docs:
            raise SystemExit(f"no runs under {args.runs}")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(
            {"measured_on": "this host", "runs": docs}, indent=1) + "\n")
        print(summarize(docs, args.out))
        return 0
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    args.runs.mkdir(parents=True, exist_ok=True)
    etas = [float(e) for e in args.etas.split(",")]
    variants = args.variants.split(",")
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="sklearn")
        for spec in args.data.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                t0 = time.perf_counter()
                doc = run_one(spec, seed, etas, variants, args.quiet)
                doc.update(wall_seconds=round(time.perf_counter() - t0, 1),
                           machine={"platform": platform.platform(), "cpus": 2,
                                    "torch": torch.__version__},
                           git=pm.git_state(), command=" ".join(sys.argv))
                tag = "all" if variants == VARIANTS else "-".join(variants)
                path = args.runs / f"{pm.data_tag(spec)}_s{seed}_{tag}.json"
                path.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
