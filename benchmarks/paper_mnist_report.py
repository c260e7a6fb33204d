"""Tables, the paper's claims, and Figures 3-4 of benchmarks/paper_mnist.py.

The paper is "SHAP-SAE" (shared/papers/shap-sae_paper.txt), section 3.2. Its claims, quoted:
"the SHAP-SAE outperforms the dense autoencoder up to the sparsity level eta = 0.8", "only
1.37% performance degradation with 0.90 sparsity level", and "the SHAP-SAE outperforms all other
benchmarks [k-sparse AE, dropout AE, LAP, MINT] over the range of sparsity levels". It reports
"accuracy" without saying of what; we read it as the accuracy of a fixed classifier on the
reconstructions (our primary metric) and also check the latent linear probe.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from edgeprune.fileio import atomic_path, write_text_atomic

METRICS = {"classifier_accuracy": ("accuracy of a fixed classifier on the reconstructions",
                                   True),
           "probe_accuracy": ("linear-probe accuracy on the latent code", True),
           "mse": ("reconstruction MSE (test)", False)}
PAPER = {"beats_dense_up_to": 0.8, "drop_at_0.9_percent": 1.37,
         "beats": ["k-sparse", "dropout", "lap", "MINT"]}
COLORS = {"shap-sae": "tab:red", "magnitude": "tab:blue", "random": "tab:gray",
          "lap": "tab:green", "k-sparse": "tab:purple", "dropout": "tab:orange",
          "global-magnitude": "tab:cyan"}
#: Hand-written discussion per dataset tag, added after reading the numbers (the verdicts in
#: the tables are computed by :func:`claims`; these lines explain them).
NOTES: dict[str, list[str]] = {
    "mnist5k": [
        "- **Resolution.** The test split has 1,000 images: one image is 0.1 pp and the binomial "
        "standard error of an accuracy near 92 % is about 0.85 pp, so differences below about "
        "1 pp are not resolved here, whatever their sign.",
        "- **Claim 1 (SHAP-SAE beats the dense AE up to η = 0.8): parity, not an improvement.** "
        "Fine-tuned, with the dense AE given the same 10 extra epochs, SHAP-SAE is +0.07, +0.33, "
        "+0.33, −0.23 pp from dense at η = 0.5–0.8, inside the noise. Every other rule applied "
        "to the same dense AE does the same (LAP +0.27, +0.20, +0.07, +0.23; magnitude +0.20, "
        "+0.20, +0.07, −0.13), so this is the ordinary \"prune and retrain costs nothing at "
        "moderate sparsity\" effect, not something the Shapley scores add. Pruned only, "
        "SHAP-SAE is below dense from η = 0.6 on (−1.8, −5.9, −22.4 pp).",
        "- **Claim 2 (only 1.37 % lost at η = 0.9): not reproduced on the classifier accuracy.** "
        "Fine-tuned SHAP-SAE loses 3.4 ± 2.0 pp (pruned only: 55.5 pp), where magnitude loses "
        "0.3, global magnitude 0.4 and LAP 0.8 pp. Only on the linear probe is SHAP-SAE's loss of "
        "that size (2.0 pp pruned only, 1.5 pp fine-tuned), and there magnitude, LAP and global "
        "magnitude lose less (0.1–0.9 pp).",
        "- **Claim 3 (SHAP-SAE beats k-sparse, dropout and LAP at every η): not reproduced.** "
        "Fine-tuned, all methods but random are within 0.6 pp of each other up to η = 0.8, and "
        "at η = 0.9 "
        "(88.7 % vs 90.9–91.9 %) and 0.95 (78.0 % vs 84.2–87.6 %) SHAP-SAE is last of all but "
        "random. Pruned only is where SHAP-SAE looks best: at η = 0.5–0.8 it is ahead of "
        "magnitude (+2.7 to +9.3 pp) and LAP (+1.3 to +9.1 pp), and it has the lowest "
        "reconstruction MSE of every method at η ≤ 0.7 (0.0119 at η = 0.5 against 0.0157–0.0208); "
        "but the dropout AE pruned by global magnitude is still ahead of it on accuracy at "
        "η = 0.5–0.8 (by 0.1–3.8 pp) and the k-sparse AE at η = 0.7–0.8; at η = 0.9 it is "
        "behind magnitude, global magnitude and the k-sparse AE, at 0.95 behind LAP too (only "
        "the dropout AE, which collapses first when not retrained, stays below it).",
        "- **Why SHAP-SAE falls behind at high η: where it puts the links** (last table). A "
        "link's importance is the mean |φ| over the explanation set and, with the zero "
        "reference, a first-layer link's φ is zero whenever its pixel is off; so links of "
        "rarely-lit pixels rank last and SHAP-SAE stops reading them first (the gray frame of "
        "`reconstructions.png`, the paper's Figure 4 effect): 470 of 784 pixels read at "
        "η = 0.5 and 289 at η = 0.9, where magnitude reads 784 and 658. It also keeps far "
        "fewer first-layer links than magnitude, LAP or global magnitude (11.6k vs 18.5–20.6k "
        "at η = 0.9) and more in the output layer, and at η = 0.9 leaves 72 output pixels "
        "constant. A model that no "
        "longer sees the outer parts of the strokes fails on atypical digits, which retraining "
        "cannot undo; that is the accuracy lost at η ≥ 0.9 and its large seed-to-seed spread.",
        "- **Not an estimator artefact.** `auto` chose the `analytic` estimator for every "
        "layer. A one-off check on seed 0 (outside results.json) with permutation scores (32 "
        "antithetic permutations, same 256 samples; rank correlation with the analytic LI "
        "0.987–0.998 per layer) gave fine-tuned accuracies 91.4 / 88.6 / 77.0 % at "
        "η = 0.8 / 0.9 / 0.95 against 91.2 / 86.2 / 74.9 % with the analytic scores, the same "
        "pixels read (330, 287, 253), and still below magnitude and LAP at η ≥ 0.9.",
        "- **Linear probe.** The k-sparse and dropout AEs have better latent codes before any "
        "pruning (89.9 % and 90.5 % vs 88.7 %) and keep that lead at every η (except the "
        "pruned-only dropout AE at η = 0.95); SHAP-SAE's probe is never the best.",
        "- **Setting differences.** MNIST-5k (3,500 training images) instead of MNIST's 60,000; "
        "the paper gives no training recipe, no fine-tuning protocol and does not say which "
        "accuracy it plots, so all three are ours; Fashion-MNIST is not bundled (run it with "
        "`--data idx:DIR`); MINT is not implemented.",
    ],
    "digits": [
        "- The 64-32-16-32-64 AE has only 4,608 links; at η = 0.9 461 remain and every method "
        "collapses (at most 48 % after fine-tuning), so the η ≥ 0.9 columns say little about "
        "the ranking. The test split has 359 images (0.28 pp per image).",
        "- Pruned only, SHAP-SAE is the best method at η = 0.5–0.6 (85.3 / 80.4 % against "
        "LAP 84.9 / 73.9, dropout 81.2 / 78.6, magnitude 74.7 / 65.4) with the lowest MSE there, "
        "the same pattern as on MNIST-5k; at η = 0.7–0.8 the k-sparse and dropout AEs lead.",
        "- Fine-tuned, SHAP-SAE is below the dense AE at every η (−0.5, −1.2, −3.8, −10.3 pp at "
        "η = 0.5–0.8) and behind magnitude, LAP and the k-sparse AE at η = 0.7–0.8 (78.6 % vs "
        "82.4–83.8 % at η = 0.8). It is ahead of the dropout AE at every η, the one baseline "
        "and setting where the paper's claim 3 holds here.",
        "- Same mechanism as on MNIST-5k: SHAP-SAE reads 45 of the 64 pixels at η = 0.5 and 33 "
        "at η = 0.8, the other rules 58–64.",
    ],
}
#: Lines for OUT/summary.md, after the per-dataset verdicts.
INDEX_NOTES = [
    "## Reading the verdicts",
    "",
    "- \"Accuracy\" is the paper's unnamed metric; we read it as the accuracy of a fixed "
    "classifier (trained once on the original images) on the reconstructions, and check the "
    "latent linear probe with the same rules in each dataset's summary.md.",
    "- Baselines reach link sparsity η as follows: magnitude, random and LAP score the dense AE's "
    "links and use SHAP-SAE's own per-layer support-set rule with m solved for η; the k-sparse "
    "and dropout AEs are trained with their regularizer (top-k latent, k = latent/2; dropout "
    "p = 0.1 on the hidden layers) and then pruned by global weight magnitude to η, because "
    "their regularizers sparsify activations, not links. `global-magnitude` (the dense AE "
    "pruned by that same global rule) separates the training from the pruning rule. MINT is "
    "not implemented: it trims neurons with a conditional mutual-information estimator, and a "
    "faithful port was out of this task's time.",
    "- Wall time: two from-scratch runs of the full benchmark (`python "
    "benchmarks/paper_mnist.py`, 3 seeds, both datasets, empty cache) on this shared 2-CPU "
    "machine took 1,855 s (load average about 5 from other jobs) and 1,680 s (about 2.3), and "
    "gave identical numbers (every seed fixed, one torch/BLAS thread).",
    "- On MNIST-5k after fine-tuning, SHAP-SAE matches the dense AE up to η = 0.8 (as do all "
    "the other pruning rules) but loses 3.4 pp at η = 0.9 and is behind every baseline except "
    "random at η ≥ 0.9; pruned only, it is ahead of magnitude and LAP at η ≤ 0.8 and has the "
    "lowest MSE at η ≤ 0.7, but behind the pruned dropout AE. None of the three claims is "
    "reproduced as stated; see mnist5k/summary.md for why (it stops reading rarely-lit pixels "
    "first).",
]


def _stats(values) -> tuple[float, float, int]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else 0.0), len(v)


def grouped(doc: dict) -> dict:
    """(method, eta, finetune) -> metric -> {seed: value}."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for r in doc["runs"]:
        for m in METRICS:
            out[(r["method"], r["eta"], r["finetune"])][m][r["seed"]] = r[m]
        out[(r["method"], r["eta"], r["finetune"])]["achieved_eta"][r["seed"]] = r["achieved_eta"]
        out[(r["method"], r["eta"], r["finetune"])]["seconds"][r["seed"]] = r["seconds"]
    return out


def reference_of(method: str) -> str:
    """The eta = 0 model a method starts from."""
    return method if method in ("k-sparse", "dropout") else "dense"


def series(g: dict, method: str, metric: str, finetune: bool, etas) -> tuple[list, list, list]:
    """x, mean, std of a method's curve, starting at its own eta = 0 model."""
    xs, means, stds = [], [], []
    for eta in [0.0, *etas]:
        key = (reference_of(method) if eta == 0.0 else method, eta, finetune)
        if key in g:
            mu, sd, _ = _stats(list(g[key][metric].values()))
            xs.append(eta)
            means.append(mu)
            stds.append(sd)
    return xs, means, stds


def paired_diff(g: dict, a: tuple, b: tuple, metric: str) -> tuple[float, float, int, int]:
    """mean and std over seeds of a - b, seeds compared, seeds where a > b."""
    sa, sb = g[a][metric], g[b][metric]
    seeds = sorted(set(sa) & set(sb))
    d = np.array([sa[s] - sb[s] for s in seeds])
    mu, sd, n = _stats(d)
    return mu, sd, n, int((d > 0).sum())


def _fmt(mu: float, sd: float, metric: str) -> str:
    if metric == "mse":
        return f"{mu:.5f} ± {sd:.5f}"
    return f"{100 * mu:.2f} ± {100 * sd:.2f}"


# -- the paper's claims ------------------------------------------------------------------------


def _claim_cells(g: dict, etas: list[float], metric: str, ft: bool) -> dict[str, str]:
    """Verdict cells of every claim for one fine-tune setting (accuracies in pp)."""
    cells: dict[str, str] = {}
    if ("dense", 0.0, ft) not in g or ("shap-sae", etas[0], ft) not in g:
        return cells
    upto = [e for e in etas if e <= PAPER["beats_dense_up_to"] + 1e-9]
    if upto:
        diffs = [paired_diff(g, ("shap-sae", e, ft), ("dense", 0.0, ft), metric) for e in upto]
        wins = sum(d[0] > 0 for d in diffs)
        cells["dense"] = (("**agrees**" if wins == len(upto) else
                           f"**does not agree**: above dense at {wins} of {len(upto)} η")
                          + "; SHAP-SAE − dense: " + ", ".join(
                              f"{100 * d[0]:+.2f} ± {100 * d[1]:.2f}" for d in diffs))
    if 0.9 in etas:
        mu, sd, n, _ = paired_diff(g, ("dense", 0.0, ft), ("shap-sae", 0.9, ft), metric)
        paper = PAPER["drop_at_0.9_percent"]
        verdict = ("**agrees** (no loss)" if mu <= 0 else
                   "**agrees** (loss within 1 pp of 1.37, or smaller)"
                   if 100 * mu <= paper + 1.0 else "**does not agree** (ours loses more)")
        cells["drop"] = f"{verdict}; dense − SHAP-SAE = {100 * mu:+.2f} ± {100 * sd:.2f}"
    for base in ("k-sparse", "dropout", "lap", "magnitude", "random", "global-magnitude"):
        if (base, etas[0], ft) not in g:
            continue
        diffs = [paired_diff(g, ("shap-sae", e, ft), (base, e, ft), metric)[0] for e in etas]
        wins = sum(d > 0 for d in diffs)
        yes, no = ("agrees", "does not agree") if base in PAPER["beats"] else ("holds",
                                                                               "does not hold")
        cells[base] = ((f"**{yes}**" if wins == len(etas) else
                        f"**{no}**: ahead at {wins} of {len(etas)} η")
                       + "; " + ", ".join(f"{100 * d:+.2f}" for d in diffs))
    return cells


def claims(doc: dict, metric: str = "classifier_accuracy") -> list[str]:
    """The claims of section 3.2 as a Markdown table, checked on ``metric`` by fixed rules:
    a "beat" is a higher mean over seeds; differences are in percentage points (pp), listed
    per η in the order of ``doc["etas"]`` (claim 1: the η <= 0.8 only)."""
    g = grouped(doc)
    etas = doc["etas"]
    cols = {ft: _claim_cells(g, etas, metric, ft) for ft in (False, True)}
    rows = [("dense", "1. SHAP-SAE beats the dense AE for every η ≤ 0.8"),
            ("drop", "2. SHAP-SAE loses only 1.37 % at η = 0.9")]
    rows += [(b, f"3. SHAP-SAE beats {b} at every η") for b in ("k-sparse", "dropout", "lap")]
    rows += [(b, f"(not in the paper) SHAP-SAE beats {b} at every η")
             for b in ("magnitude", "random", "global-magnitude")]
    out = ["| claim | pruned only | fine-tuned (dense: same extra epochs) |", "|---|---|---|"]
    for key, label in rows:
        if key in cols[False] or key in cols[True]:
            out.append(f"| {label} | {cols[False].get(key, '')} | {cols[True].get(key, '')} |")
    out.append("| 3. SHAP-SAE beats MINT at every η | not run: MINT is not implemented | |")
    return out


# -- tables -------------------------------------------------------------------------------------


def tables(doc: dict) -> list[str]:
    g = grouped(doc)
    etas = doc["etas"]
    methods = [m for m in doc["methods"] if m != "dense"]
    out = []
    for metric, (title, _) in METRICS.items():
        unit = "" if metric == "mse" else " (%)"
        out += [f"### {title}{unit}, mean ± std over {len(doc['seeds'])} seed(s)", "",
                "| method | fine-tune | η=0 (its dense AE) | " + " | ".join(f"η={e}" for e in etas)
                + " |", "|---|---|" + "---:|" * (len(etas) + 1)]
        for ft in (False, True):
            for method in ["dense", *methods]:
                xs, mu, sd = series(g, method, metric, ft, [] if method == "dense" else etas)
                if not xs:
                    continue
                cells = dict(zip(xs, (_fmt(a, b, metric) for a, b in zip(mu, sd))))
                out.append(f"| {method} | {'yes' if ft else 'no'} | "
                           + " | ".join(cells.get(e, "") for e in [0.0, *etas]) + " |")
        out.append("")
    out += ["### achieved sparsity η* (mean over seeds; every method is solved for η)", "",
            "| method | " + " | ".join(f"η={e}" for e in etas) + " |",
            "|---|" + "---:|" * len(etas)]
    for method in methods:
        cells = [f"{np.mean(list(g[(method, e, False)]['achieved_eta'].values())):.4f}"
                 if (method, e, False) in g else "" for e in etas]
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    out.append("")
    layer_rows = [r for r in doc["runs"] if "links_kept_per_layer" in r and not r["finetune"]]
    if layer_rows:
        out += ["### where the kept links are (mean over seeds): links kept per layer; input "
                "features read; output units left constant", "",
                "| method | " + " | ".join(f"η={e}" for e in etas) + " |",
                "|---|" + "---:|" * len(etas)]
        for method in methods:
            cells = []
            for eta in etas:
                rs = [r for r in layer_rows if r["method"] == method and r["eta"] == eta]
                if not rs:
                    cells.append("")
                    continue
                links = np.mean([r["links_kept_per_layer"] for r in rs], axis=0)
                read = doc["recipe"]["in_dim"] - np.mean([r["inputs_pruned"] for r in rs])
                const = np.mean([r["constant_outputs"] for r in rs])
                cells.append(" / ".join(f"{v:.0f}" for v in links)
                             + f"; reads {read:.0f}; {const:.0f} const")
            out.append(f"| {method} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def write_markdown(doc: dict, out: Path) -> None:
    rc = doc["recipe"]
    seeds = doc["setup"]
    clf_acc = [s["classifier_test_accuracy_on_originals"] for s in seeds.values()]
    scoring = [s["shap_scoring"] for s in seeds.values()]
    score_secs = [s["seconds"] for s in scoring if not s.get("cached")]
    resolved = sorted({lay["estimator"] for s in scoring for lay in s.get("layers", [])})
    hidden, dim = rc["hidden"], rc["in_dim"]
    arch = "-".join(map(str, ["d", *hidden, *reversed(hidden[:-1]), "d"]))
    lines = [
        f"# SHAP-SAE paper §3.2 on `{doc['dataset']}`" + (" (quick smoke test)" if doc["quick"]
                                                            else ""),
        "",
        f"Command: `{doc['command'].strip()}`. Wall time {doc['wall_seconds']:.0f} s "
        f"({doc['cpu_seconds']:.0f} s CPU in this process) on {doc['machine']['cpus']} CPUs, "
        f"load average {doc['machine']['load1_mean']} (max {doc['machine']['load1_max']}) "
        f"while it ran (the machine is shared). Raw numbers: `results.json`.",
        "",
        "## Recipe",
        "",
        f"- autoencoder {arch.replace('d', str(dim))}: relu hidden and latent layers, "
        f"sigmoid output, PyTorch default init; MSE, Adam lr {rc['lr']}, batch "
        f"{rc['batch_size']}, {rc['epochs_used']} epochs ({rc['epochs']} with at least "
        f"{rc['small_below']} training samples, else {rc['epochs_small']}); split sizes train/val/test "
        f"{'/'.join(map(str, rc['split_sizes']))}; seeds {', '.join(map(str, doc['seeds']))} "
        "(each seed: split, init, shuffles, explanation set)",
        f"- k-sparse AE: top-{rc['ksparse_k']} of {hidden[-1]} latent units kept in the training "
        f"forward; dropout AE: p = {rc['dropout_p']} on every hidden layer's output; same "
        "epochs, optimizer and init as the dense AE",
        f"- SHAP-SAE: estimator `{rc['estimator']}`, {rc['samples']} explanation samples, "
        f"reference `{rc['reference']}`"
        + (f" (resolved per layer to {', '.join(resolved)})" if resolved else "")
        + "; scoring took "
        + (", ".join(f"{s:.0f} s" for s in score_secs) + " per seed" if score_secs
           else "(cached)"),
        "- magnitude / random / LAP: the same per-layer support-set rule (eq. 8) with |w|, "
        "uniform or lookahead scores; m solved for η after the dead-unit cascade",
        "- k-sparse, dropout and global-magnitude: one global |w| threshold over all layers, "
        "solved for η after the cascade (their regularizers sparsify activations, not links)",
        f"- fine-tune: masked, {rc['finetune_epochs']} epochs, Adam lr {rc['finetune_lr']}, "
        "plain forward for every method; the dense references get the same extra epochs",
        f"- fixed classifier: {dim}-{min(rc['classifier_hidden'], dim)}-{rc['n_classes']} "
        f"relu MLP, {rc['classifier_epochs']} epochs on the original training images; test "
        f"accuracy on the original images {100 * np.mean(clf_acc):.2f} %",
        "- linear probe: logistic regression on the standardized latent code (train split → "
        "test split)",
        f"- torch/BLAS threads: {rc['threads']}",
        "",
        "## The paper's claims, checked on the classifier accuracy",
        "",
        "Fixed rules (`paper_mnist_report.claims`): a method beats another where its mean over "
        "seeds is higher; differences in percentage points (pp), mean ± std over seeds of the "
        "paired (same seed) difference, listed per η.",
        "",
        *claims(doc, "classifier_accuracy"),
        "",
        "### The same rules on the linear-probe accuracy",
        "",
        *claims(doc, "probe_accuracy"),
        "",
    ]
    notes = None if doc["quick"] else NOTES.get(doc.get("tag", Path(out).name))
    if notes:
        lines += ["## Discussion", "", *notes, ""]
    lines += ["## Tables", "", *tables(doc)]
    lines += ["Plots: `performance_vs_eta.png` (Figure 3 style) and `reconstructions.png` "
              "(Figure 4 style).", ""]
    write_text_atomic(out / "summary.md", "\n".join(lines))


# -- figures ------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def plot_performance(doc: dict, out: Path) -> None:
    """Figure 3 style: (a) SHAP-SAE minus dense accuracy; then one panel per metric, one line
    per method, solid with fine-tune, dashed without; the dense AE as horizontal lines."""
    plt = _plt()
    g = grouped(doc)
    etas = doc["etas"]
    methods = [m for m in doc["methods"] if m != "dense"]
    fig, axes = plt.subplots(1, 4, figsize=(21, 5.2))
    ax = axes[0]
    for ft, style in ((True, "-"), (False, "--")):
        if ("dense", 0.0, ft) not in g:
            continue
        xs, mu, sd = [], [], []
        for eta in etas:
            m, s, _, _ = paired_diff(g, ("shap-sae", eta, ft), ("dense", 0.0, ft),
                                     "classifier_accuracy")
            xs.append(eta)
            mu.append(100 * m)
            sd.append(100 * s)
        ax.errorbar(xs, mu, yerr=sd, color=COLORS["shap-sae"], ls=style, marker="o",
                    capsize=3, label=f"SHAP-SAE − dense{' (+FT both)' if ft else ''}")
    ax.axhline(0, color="black", lw=0.8)
    ax.plot([0.9], [-PAPER["drop_at_0.9_percent"]], "k*", ms=12, label="paper: −1.37 at η=0.9")
    ax.axvspan(min(etas) - 0.02, PAPER["beats_dense_up_to"] + 0.02, color="tab:red", alpha=0.06,
               label="paper: SHAP-SAE > dense here")
    ax.set(xlabel="sparsity η", ylabel="accuracy difference (pp)",
           title="(a) SHAP-SAE vs dense AE, classifier accuracy")
    ax.legend(fontsize=7)
    for ax, (metric, (title, higher)) in zip(axes[1:], METRICS.items()):
        scale = 1.0 if metric == "mse" else 100.0
        for ft, style in ((True, "-"), (False, "--")):
            if ("dense", 0.0, ft) in g:
                mu, _, _ = _stats(list(g[("dense", 0.0, ft)][metric].values()))
                ax.axhline(scale * mu, color="black", ls=style, lw=1,
                           label=f"dense AE{' + FT' if ft else ''}")
            for method in methods:
                xs, mu, sd = series(g, method, metric, ft, etas)
                ax.errorbar(xs[1:], scale * np.array(mu[1:]), yerr=scale * np.array(sd[1:]),
                            color=COLORS.get(method), ls=style, marker="o", ms=3, capsize=2,
                            lw=1.6 if method == "shap-sae" else 1.0,
                            label=f"{method}{' + FT' if ft else ''}")
        if metric == "mse":
            ax.set_yscale("log")
        ax.set(xlabel="sparsity η", ylabel=title + ("" if metric == "mse" else " (%)"),
               title=f"{title} ({'higher' if higher else 'lower'} is better)")
        ax.title.set_fontsize(9)
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle(f"{doc['dataset']}: performance vs sparsity η, mean ± std over "
                 f"{len(doc['seeds'])} seed(s); solid = fine-tuned, dashed = pruned only")
    fig.tight_layout()
    _save(fig, out / "performance_vs_eta.png")
    plt.close(fig)


def plot_reconstructions(figure: dict, dataset: str, out: Path) -> None:
    """Figure 4 style: originals, dense reconstructions, SHAP-SAE (fine-tuned) reconstructions
    at several eta; inputs that no kept link reads are painted gray."""
    shape = figure.get("image_shape")
    if not shape or len(shape) != 2 or not figure.get("rows"):
        return
    plt = _plt()
    rows = [("original", figure["images"], None), ("dense AE", figure["dense"], None)]
    rows += [(f"SHAP-SAE η={r['eta']}\n(+FT, {int(r['pruned_inputs'].sum())} inputs unread)",
              r["recon"], r["pruned_inputs"]) for r in figure["rows"]]
    n = len(figure["images"])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n + 1.6, 1.15 * len(rows)),
                             squeeze=False)
    for i, (label, imgs, gray) in enumerate(rows):
        for j in range(n):
            rgb = np.repeat(np.clip(imgs[j], 0, 1).reshape(*shape, 1), 3, axis=2)
            if gray is not None:
                rgb[gray.reshape(shape)] = 0.5
            ax = axes[i, j]
            ax.imshow(rgb, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(f"{dataset}: reconstructions; gray = input pixels whose every first-layer "
                 "link is pruned (seed 0)", fontsize=9)
    fig.tight_layout()
    _save(fig, out / "reconstructions.png")
    plt.close(fig)


def write_outputs(doc: dict, out: Path, figure: dict | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.json", json.dumps(doc, indent=1) + "\n")
    write_markdown(doc, out)
    plot_performance(doc, out)
    if figure:
        plot_reconstructions(figure, doc["dataset"], out)


def write_index(docs: list[dict], out: Path, wall_seconds: float | None = None) -> None:
    """OUT/summary.md: one section per dataset with its claims, links to the details.
    Without ``wall_seconds`` (redrawn from results.json) the per-dataset times are summed."""
    total = (f"Total wall time {wall_seconds:.0f} s" if wall_seconds is not None else
             f"Sum of the per-dataset wall times {sum(d['wall_seconds'] for d in docs):.0f} s")
    lines = ["# SHAP-SAE paper §3.2 (Figures 3-4) reproduced", "",
             f"{total} for {', '.join(d['dataset'] for d in docs)}. "
             "Per dataset: `<dataset>/summary.md` (recipe, tables, claims), `results.json`, "
             "`performance_vs_eta.png`, `reconstructions.png`.", ""]
    for doc in docs:
        lines += [f"## {doc['dataset']} (`{doc['tag']}/`)", "",
                  f"{doc['wall_seconds']:.0f} s wall, load average "
                  f"{doc['machine']['load1_mean']} on {doc['machine']['cpus']} CPUs.", "",
                  *claims(doc), ""]
    if not any(d["quick"] for d in docs):
        lines += INDEX_NOTES + [""]
    write_text_atomic(out / "summary.md", "\n".join(lines))
