"""Issue 16: pruning a VAE with SHAP-SAE against magnitude — what the ELBO keeps.

Usage: python benchmarks/vae_pruning.py [--data mnist5k] [--seeds 0,1] [--etas 0.5,0.8,0.9]
       [--methods shap-sae,magnitude] [--quick]      # measure, then write the report
       python benchmarks/vae_pruning.py --report      # tables + plot from the saved runs

Protocol, per seed: a Bernoulli VAE 784-256-(16 μ, 16 log σ²)-256-784 for mnist5k, or
64-64-(8, 8)-64-64 for digits (60 epochs) (ReLU, sigmoid output, β = 1, KL annealed over 5
epochs, 30 epochs, Adam lr 1e-3, batch 64) is trained on the seeded
training split (cached in benchmarks/cache/vae_pruning/). Its chain is scored once with SHAP-SAE
(auto estimator, 256 explanation samples, zero reference; the log-variance head is scored inside
each ``compress`` run, see docs/architecture.md "Variational autoencoders"). Each method prunes
the chain to link sparsity η (eq. 9, after the cascade) through ``edgeprune.compress.compress``
exactly as the CLI does, pruned only and after 10 epochs of masked β-ELBO fine-tuning. Measured
on the test split: the negative ELBO per image (one seeded sample of z; lower is better), its
reconstruction and KL terms, the MSE of decode(μ), the latent units still live and the bytes of
model.npz (float32, bundle v3 with the head). Paired differences: per seed, SHAP-SAE minus
magnitude on the same VAE and split. Measured on this host (x86 CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache" / "vae_pruning"
OUT = HERE / "results" / "vae_pruning"
RECIPE = {"latent": 16, "hidden": [256], "epochs": 30, "beta": 1.0, "kl_anneal_epochs": 5,
          "likelihood": "bernoulli", "finetune_epochs": 10, "samples": 256}
#: digits (8x8, 64 features): the same protocol on a VAE 64-64-(8, 8)-64-64, 60 epochs.
DIGITS = {**RECIPE, "latent": 8, "hidden": [64], "epochs": 60}
QUICK = {**RECIPE, "latent": 4, "hidden": [32], "epochs": 5, "finetune_epochs": 2,
         "samples": 64}
METRICS = ("test_neg_elbo", "test_recon_nll", "test_kl", "test_mse")


def trained_vae(spec: str, ds, seed: int, rc: dict, quiet: bool):
    """The dense VAE as a Network (cached checkpoint)."""
    from edgeprune.checkpoint import load_network, save_checkpoint
    from edgeprune.vae import train_vae
    from edgeprune.vae_network import vae_to_network

    path = CACHE / (f"{spec}_vae_{rc['latent']}_{'-'.join(map(str, rc['hidden']))}_"
                    f"e{rc['epochs']}_s{seed}.pt")
    if path.is_file():
        return load_network(path), path
    vae, _ = train_vae(ds.x_train, latent=rc["latent"], hidden=rc["hidden"],
                       epochs=rc["epochs"], beta=rc["beta"], likelihood=rc["likelihood"],
                       kl_anneal_epochs=rc["kl_anneal_epochs"], seed=seed, quiet=quiet)
    net = vae_to_network(vae, meta={"vae": {"beta": rc["beta"]}, "trained_on": spec})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(net, path)
    return net, path


def run_seed(spec: str, seed: int, etas: list[float], methods: list[str], rc: dict,
             quiet: bool) -> dict:
    from edgeprune import runtime
    from edgeprune.compress import CompressOptions, compress
    from edgeprune.data import explanation_set, load_dataset
    from edgeprune.scoring import save_scores, score_network
    from edgeprune.train import evaluate

    ds = load_dataset(spec, seed=seed)
    net, path = trained_vae(spec, ds, seed, rc, quiet)
    scores_path = CACHE / f"{path.stem}_scores.npz"
    t0 = time.perf_counter()
    if not scores_path.is_file():
        save_scores(score_network(net, explanation_set(ds, rc["samples"], seed), seed=seed,
                                  quiet=quiet), scores_path)
    score_seconds = time.perf_counter() - t0
    rows = [{"method": "dense", "eta": 0.0, "finetune": False, "seed": seed,
             "achieved_eta": 0.0, **evaluate(net, ds, seed),
             "live_latent": rc["latent"], "logvar_links_kept": net.logvar.n_active}]
    for method in methods:
        for eta in etas:
            for epochs in (0, rc["finetune_epochs"]):
                t1 = time.perf_counter()
                with tempfile.TemporaryDirectory() as tmp:
                    res = compress(net, ds, Path(tmp) / "out", CompressOptions(
                        sparsity=eta, method=method, seed=seed, quiet=True, export="npz",
                        finetune_epochs=epochs, samples=rc["samples"],
                        scores_path=str(scores_path) if method == "shap-sae" else None))
                    report = res.report.to_dict()
                    model = runtime.load(Path(tmp) / "out" / "model.npz")
                    live = int(model.bundle.latent_index.shape[0])
                head = report["vae"]["logvar_head"]
                row = {"method": method, "eta": eta, "finetune": bool(epochs), "seed": seed,
                       "achieved_eta": round(report["sparsity"], 6),
                       **report["metrics"]["after"], "live_latent": live,
                       "logvar_links_kept": head["links_kept"],
                       "npz_bytes": report["artifacts"]["npz"]["bytes"],
                       "seconds": round(time.perf_counter() - t1, 1)}
                rows.append(row)
                if not quiet:
                    print(f"  s{seed} {method:>9} eta={eta} ft={bool(epochs)!s:<5} "
                          f"eta*={row['achieved_eta']:.3f} -elbo={row['test_neg_elbo']:.2f} "
                          f"mse={row['test_mse']:.5f} live={live} ({row['seconds']}s)",
                          flush=True)
    return {"dataset": spec, "seed": seed, "recipe": rc, "etas": etas,
            "score_seconds": round(score_seconds, 1), "rows": rows}


def paired(runs: list[dict], eta: float, finetune: bool, key: str) -> np.ndarray:
    """Per seed: shap-sae minus magnitude (same VAE, split and η)."""
    out = []
    for run in runs:
        by = {(r["method"], r["eta"], r["finetune"]): r[key] for r in run["rows"]}
        if ("shap-sae", eta, finetune) in by and ("magnitude", eta, finetune) in by:
            out.append(by[("shap-sae", eta, finetune)] - by[("magnitude", eta, finetune)])
    return np.asarray(out, dtype=np.float64)


def fmt(d: np.ndarray, digits: int = 2) -> str:
    if not len(d):
        return "—"
    if len(d) == 1:
        return f"{float(d[0]):+.{digits}f} (1 seed)"
    return f"{float(np.mean(d)):+.{digits}f} ± {float(np.std(d, ddof=1)):.{digits}f}"


def report(runs: list[dict], out: Path) -> list[Path]:
    """summary.md (means over seeds, paired differences), results.json and the plot."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for run in runs for r in run["rows"]]
    seeds = sorted({run["seed"] for run in runs})
    keys = sorted({(r["method"], r["eta"], r["finetune"]) for r in rows},
                  key=lambda k: (k[1], k[0] != "dense", k[0], k[2]))
    lines = [f"# VAE pruning ({runs[0]['dataset']}, seeds {', '.join(map(str, seeds))}; "
             "measured on this host)", "",
             f"Recipe: `{json.dumps(runs[0]['recipe'])}`. Means over seeds; test split.", "",
             "| method | η | fine-tuned | achieved η | −ELBO | recon NLL | KL | MSE | live latent "
             "| log σ² links | model.npz bytes |", "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in keys:
        sel = [r for r in rows if (r["method"], r["eta"], r["finetune"]) == key]

        def mean(name, sel=sel):
            vals = [r[name] for r in sel if r.get(name) is not None]
            return float(np.mean(vals)) if vals else float("nan")

        lines.append(f"| {key[0]} | {key[1]:g} | {'yes' if key[2] else 'no'} | "
                     f"{mean('achieved_eta'):.3f} | {mean('test_neg_elbo'):.2f} | "
                     f"{mean('test_recon_nll'):.2f} | {mean('test_kl'):.2f} | "
                     f"{mean('test_mse'):.5f} | {mean('live_latent'):.1f} | "
                     f"{mean('logvar_links_kept'):.0f} | "
                     + (f"{mean('npz_bytes'):,.0f}" if key[0] != "dense" else "—") + " |")
    etas = sorted({r["eta"] for r in rows if r["method"] != "dense"})
    lines += ["", "Paired differences, SHAP-SAE − magnitude (mean ± std over seeds; negative "
              "−ELBO / MSE = SHAP-SAE better):", "",
              "| η | fine-tuned | Δ −ELBO | Δ MSE (×1e-3) |", "|---:|---|---:|---:|"]
    for eta in etas:
        for ft in (False, True):
            lines.append(f"| {eta:g} | {'yes' if ft else 'no'} | "
                         f"{fmt(paired(runs, eta, ft, 'test_neg_elbo'))} | "
                         f"{fmt(1e3 * paired(runs, eta, ft, 'test_mse'), 3)} |")
    files = [out / "summary.md", out / "results.json", out / "vae_pruning.png"]
    files[0].write_text("\n".join(lines) + "\n")
    files[1].write_text(json.dumps({"runs": runs, "host": platform.platform()}, indent=2) + "\n")
    _plot(rows, files[2], runs[0]["dataset"], seeds)
    return files


def _plot(rows: list[dict], path: Path, spec: str, seeds: list[int]) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    dense = np.mean([r["test_neg_elbo"] for r in rows if r["method"] == "dense"])
    ax.axhline(dense, color="gray", ls=":", label="dense VAE")
    for method, color in (("shap-sae", "tab:blue"), ("magnitude", "tab:orange")):
        for ft, style in ((True, "-"), (False, "--")):
            sel = [r for r in rows if r["method"] == method and r["finetune"] == ft]
            etas = sorted({r["eta"] for r in sel})
            if not etas:
                continue
            ys = [np.mean([r["test_neg_elbo"] for r in sel if r["eta"] == e]) for e in etas]
            ax.plot(etas, ys, style, marker="o", color=color,
                    label=f"{method}, {'fine-tuned' if ft else 'pruned only'}")
    ax.set_xlabel("link sparsity η of the chain")
    ax.set_ylabel("test −ELBO per image (nats, lower is better)")
    ax.set_title(f"VAE pruning on {spec}, seeds {','.join(map(str, seeds))} — measured on "
                 "this host", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--etas", default="0.5,0.8,0.9")
    ap.add_argument("--methods", default="shap-sae,magnitude")
    ap.add_argument("--quick", action="store_true", help="a tiny VAE (tests, smoke runs)")
    ap.add_argument("--report", action="store_true", help="only rebuild the report")
    ap.add_argument("--runs", type=Path, default=CACHE / "runs")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    rc = QUICK if args.quick else DIGITS if args.data == "digits" else RECIPE
    if not args.report:
        args.runs.mkdir(parents=True, exist_ok=True)
        for seed in [int(s) for s in args.seeds.split(",")]:
            run = run_seed(args.data, seed, [float(e) for e in args.etas.split(",")],
                           args.methods.split(","), rc, args.quiet)
            (args.runs / f"{args.data}_s{seed}{'_quick' if args.quick else ''}.json").write_text(
                json.dumps(run, indent=2))
    pattern = f"{args.data}_s*{'_quick' if args.quick else ''}.json"
    runs = [json.loads(p.read_text()) for p in sorted(args.runs.glob(pattern))
            if args.quick or not p.stem.endswith("_quick")]
    if not runs:
        print(f"no runs in {args.runs}; run without --report first", file=sys.stderr)
        return 1
    for path in report(runs, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
