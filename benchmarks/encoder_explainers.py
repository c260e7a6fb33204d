"""Which explainer for SHAP loadings (`explain --loadings`, issue 16): accuracy and time.

Usage: python benchmarks/encoder_explainers.py [--quick] [--out benchmarks/results/encoder_explainers]

The game is model-level (input features -> one latent unit of a deep encoder), so the link
game's estimators (edgeprune.shapley) do not apply; the candidates are edgeprune.encoder_shap's
``permutation`` (ours, vectorized antithetic permutations), shap's ``PermutationExplainer``
(``shap-permutation``) and ``DeepExplainer`` (``deep``), against ``exact`` enumeration.

1. Accuracy: random encoders 12 -> 32 (relu) -> 16 (tanh) -> 4 and 10 -> 24 (relu) -> 3, 32
   samples, against exact Shapley values, for one reference row (the mean) and for an 8-row
   background: relative L1 error of phi (every sample, feature, latent unit) and of the
   loadings mean_x |phi|, seconds per sample.
2. Time: an encoder 1000 -> 128 (relu) -> 5 (the shape of the simulation's VAE trunk + mu head):
   seconds per sample (median of --repeats runs) for one reference row; and the error of each
   explainer against a converged reference (our permutation explainer with 400 permutations,
   4 samples), since exact values are out of reach there.

Measured on this host, one torch thread (the machine is shared and 2-core), wall-clock medians.
Writes results.json, README.md and error_vs_time.png into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from edgeprune.encoder_shap import encoder_shap, relative_l1
from edgeprune.fileio import atomic_path, write_text_atomic

HERE = Path(__file__).resolve().parent
SMALL = [("12-32-16-4", [12, 32, 16, 4], ["relu", "tanh"]), ("10-24-3", [10, 24, 3], ["relu"])]
LARGE = [1000, 128, 5]
SETTINGS = ([("permutation", p) for p in (4, 10, 32, 100)]
            + [("shap-permutation", p) for p in (10, 32)] + [("deep", None)])


def encoder(dims: list[int], acts: list[str], seed: int) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    mods: list[torch.nn.Module] = []
    for k in range(len(dims) - 1):
        mods.append(torch.nn.Linear(dims[k], dims[k + 1]))
        if k < len(acts):
            mods.append({"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[acts[k]]())
    return torch.nn.Sequential(*mods)


def timed(fn, repeats: int):
    """``(result, median seconds)`` of ``repeats`` runs after one untimed warm-up run (imports,
    first-call set-up)."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def label(name: str, perms: int | None) -> str:
    return name if perms is None else f"{name} {perms}"


def accuracy_part(repeats: int, samples: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for tag, dims, acts in SMALL:
        enc = encoder(dims, acts, seed=1)
        x = rng.normal(size=(samples, dims[0]))
        backgrounds = {"mean reference": x.mean(axis=0)[None], "8-row background":
                       rng.normal(size=(8, dims[0]))}
        for bg_name, bg in backgrounds.items():
            exact, t_exact = timed(lambda enc=enc, x=x, bg=bg: encoder_shap(
                enc, x, bg, explainer="exact"), repeats)
            rows.append({"encoder": tag, "background": bg_name, "explainer": "exact",
                         "permutations": None, "s_per_sample": t_exact / len(x),
                         "phi_rel_l1": 0.0, "loadings_rel_l1": 0.0})
            for name, perms in SETTINGS:
                phi, t = timed(lambda enc=enc, x=x, bg=bg, name=name, perms=perms: encoder_shap(
                    enc, x, bg, explainer=name, permutations=perms or 10, seed=0), repeats)
                rows.append({"encoder": tag, "background": bg_name, "explainer": name,
                             "permutations": perms, "s_per_sample": t / len(x),
                             "phi_rel_l1": relative_l1(phi, exact),
                             "loadings_rel_l1": relative_l1(np.abs(phi).mean(0),
                                                            np.abs(exact).mean(0))})
                print(f"{tag} {bg_name} {label(name, perms)}: {rows[-1]['phi_rel_l1']:.4f} "
                      f"{rows[-1]['s_per_sample'] * 1e3:.2f} ms/sample", flush=True)
    return rows


def time_part(repeats: int, quick: bool) -> dict:
    enc = encoder(LARGE, ["relu"], seed=2)
    rng = np.random.default_rng(1)
    n = LARGE[0]
    x = rng.normal(size=(4, n))
    ref_row = rng.normal(size=(1, n)) * 0.1
    ref_perms = 100 if quick else 400
    t0 = time.perf_counter()
    reference = encoder_shap(enc, x, ref_row, explainer="permutation", permutations=ref_perms,
                             seed=123)
    t_ref = time.perf_counter() - t0
    rows = []
    for name, perms in [("permutation", 10), ("permutation", 32), ("deep", None),
                        ("shap-permutation", 2)]:
        xs = x[:2] if name == "shap-permutation" else x
        reps = 1 if name == "shap-permutation" else repeats
        phi, t = timed(lambda name=name, perms=perms, xs=xs: encoder_shap(
            enc, xs, ref_row, explainer=name, permutations=perms or 10, seed=0), reps)
        rows.append({"explainer": name, "permutations": perms, "samples_timed": len(xs),
                     "s_per_sample": t / len(xs),
                     "phi_rel_l1_vs_reference": relative_l1(phi, reference[:len(xs)])})
        print(f"1000 features {label(name, perms)}: {rows[-1]['s_per_sample']:.3f} s/sample, "
              f"{rows[-1]['phi_rel_l1_vs_reference']:.4f} vs reference", flush=True)
    return {"encoder": "-".join(map(str, LARGE)), "reference": f"permutation {ref_perms}, 4 "
            "samples, seed 123", "reference_seconds": t_ref, "rows": rows}


def write_markdown(res: dict, path: Path) -> None:
    lines = ["# Explainers for SHAP loadings (input -> latent game)", "",
             f"Generated by `benchmarks/encoder_explainers.py`; measured on this host "
             f"({res['machine']}, load average {res['load_average']:.1f} at start), one torch "
             "thread, medians of repeated runs. `phi rel. L1` = sum |phi - exact| / sum |exact| "
             "over samples, features and latent units; `loadings rel. L1` the same for "
             "mean_x |phi|.", "",
             "## Accuracy against exact Shapley values (small encoders)", "",
             "| encoder | background | explainer | ms / sample | phi rel. L1 | "
             "loadings rel. L1 |", "|---|---|---|---:|---:|---:|"]
    for r in res["accuracy"]:
        lines.append(f"| {r['encoder']} | {r['background']} | "
                     f"{label(r['explainer'], r['permutations'])} | "
                     f"{r['s_per_sample'] * 1e3:.2f} | {r['phi_rel_l1']:.4f} | "
                     f"{r['loadings_rel_l1']:.4f} |")
    t = res["time"]
    lines += ["", f"## Time on a {t['encoder']} encoder (one reference row)", "",
              f"Error against a converged reference ({t['reference']}).", "",
              "| explainer | samples timed | s / sample | phi rel. L1 vs reference |",
              "|---|---:|---:|---:|"]
    for r in t["rows"]:
        lines.append(f"| {label(r['explainer'], r['permutations'])} | {r['samples_timed']} | "
                     f"{r['s_per_sample']:.4f} | {r['phi_rel_l1_vs_reference']:.4f} |")
    write_text_atomic(path, "\n".join(lines) + "\n")


def write_plot(res: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rows = [r for r in res["accuracy"] if r["encoder"] == SMALL[0][0]
            and r["explainer"] != "exact"]
    for bg, marker in (("mean reference", "o"), ("8-row background", "s")):
        for name, color in (("permutation", "tab:blue"), ("shap-permutation", "tab:orange"),
                            ("deep", "tab:green")):
            pts = [r for r in rows if r["background"] == bg and r["explainer"] == name]
            ax.plot([r["s_per_sample"] * 1e3 for r in pts], [r["phi_rel_l1"] for r in pts],
                    marker=marker, color=color, label=f"{name}, {bg}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ms per sample (measured on this host, 1 thread)")
    ax.set_ylabel("relative L1 error of phi vs exact")
    ax.set_title(f"Explainers on the {SMALL[0][0]} encoder (32 samples)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples and repeats")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(HERE / "results" / "encoder_explainers"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    repeats = 1 if args.quick else args.repeats
    t0 = time.perf_counter()
    res = {"machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
           "load_average": os.getloadavg()[0], "torch_threads": 1,
           "accuracy": accuracy_part(repeats, 8 if args.quick else 32),
           "time": time_part(repeats, args.quick)}
    res["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.json", json.dumps(res, indent=2) + "\n")
    write_markdown(res, out / "README.md")
    write_plot(res, out / "error_vs_time.png")
    print(f"wrote {out} in {res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
