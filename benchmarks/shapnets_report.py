"""Tables (results.md) and plots (PNG) of benchmarks/shapnets.py's results.json, with the ShapNets
paper's numbers (ICLR 2021, Tables 1, 3, 4, 5) side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeprune.fileio import write_text_atomic

MODELS = ["shapnet-deep", "dnn-eq-comp", "dnn-eq-param", "shapnet-shallow"]
PAPER_T1 = {"synthetic16": {"shapnet-deep": 3.37e-3, "dnn-eq-comp": 3.93e-3,
                            "dnn-eq-param": 6.62e-3, "shapnet-shallow": 3.11e-3},
            "breast-cancer": {"shapnet-deep": 0.959, "dnn-eq-comp": 0.966,
                              "dnn-eq-param": 0.971, "shapnet-shallow": 0.958}}
PAPER_T3 = {"synthetic16": {"shapnet-deep": {"ours": 4.99e-3, "kernelshap-77": 4.91e-3,
                                             "kernelshap-default": 3.05e-4},
                            "shapnet-shallow": {"ours": 4.19e-8, "kernelshap-77": 4.05e-3,
                                                "kernelshap-default": 2.39e-4}},
            "breast-cancer": {"shapnet-deep": {"ours": 0.0167, "kernelshap-77": 0.0369,
                                               "kernelshap-default": 4.09e-3},
                              "shapnet-shallow": {"ours": 1.20e-4, "kernelshap-77": 0.0224,
                                                  "kernelshap-default": 1.91e-3}}}
PAPER_T4 = {"none": {"accuracy": 0.960, "sparsity": 0.209, "cv": 2.04},
            "l1-last": {"accuracy": 0.960, "sparsity": 0.841, "cv": float("nan")},
            "linf": {"accuracy": 0.957, "sparsity": 0.429, "cv": 1.28}}
PAPER_T5 = {"shapnet-deep": {"ours": 20.47, "kernelshap-40": 60.78, "kernelshap-77": 72.61,
                             "kernelshap-default": 598.79},
            "dnn-eq-comp": {"kernelshap-40": 130.04, "kernelshap-77": 201.88,
                            "kernelshap-default": 789.08},
            "dnn-eq-param": {"kernelshap-40": 11.52, "kernelshap-77": 13.53,
                             "kernelshap-default": 142.85}}
T5_METHODS = ["ours", "kernelshap-40", "kernelshap-77", "kernelshap-default", "permutation"]


def _ms(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = float(np.mean(values))
    return f"{mean:.4g} ± {float(np.std(values)):.2g}" if len(values) > 1 else f"{mean:.4g}"


def _g(value) -> str:
    return "–" if value is None else f"{value:.3g}"


def table1(doc: dict) -> list[str]:
    lines = ["## Table 1: model performance (test MSE for synthetic16, test accuracy for Breast "
             "Cancer; mean ± std over seeds)", "",
             "| data | metric | " + " | ".join(MODELS) + " |", "|---|---|" + "---:|" * 4]
    for name, runs in doc["table1"].items():
        metric = "test_mse" if name == "synthetic16" else "test_accuracy"
        lines.append(f"| {name} ({len(runs)} seeds) | this run | " + " | ".join(
            _ms([r[m][metric] for r in runs]) for m in MODELS) + " |")
        lines.append(f"| {name} | paper | " + " | ".join(
            _g(PAPER_T1[name][m]) for m in MODELS) + " |")
        lines.append(f"| {name} | parameters | " + " | ".join(
            str(runs[0][m]["params"]) for m in MODELS) + " |")
        lines.append(f"| {name} | MACs per sample | " + " | ".join(
            str(runs[0][m]["macs"]) for m in MODELS) + " |")
    return lines + [""]


def table3(doc: dict) -> list[str]:
    methods = ["ours", "kernelshap-77", "kernelshap-default"]
    lines = ["## Table 3: difference from exact Shapley values (mean ||φ − γ||₁ / d)", "",
             "| data | model | " + " | ".join(f"{m} (this run) | {m} (paper)" for m in methods)
             + " | ground truth |", "|---|---|" + "---:|" * 7]
    for name, runs in doc["table3"].items():
        truth = "brute force, 2^16 coalitions" if name == "synthetic16" else \
            "KernelSHAP, 2^13 coalitions"
        for model in ("shapnet-deep", "shapnet-shallow"):
            cells = [f"{_ms([r[model][m] for r in runs])} | {_g(PAPER_T3[name][model][m])}"
                     for m in methods]
            lines.append(f"| {name} | {model} | " + " | ".join(cells) + f" | {truth} |")
    return lines + ["", "KernelSHAP (77) and (default = 2d + 2048 coalitions) are shap's "
                    "KernelExplainer with the model's reference as the one background row and "
                    "l1_reg=False (shap's default keeps only 10 features). "
                    "On Breast Cancer the ground truth is itself an estimate, so a value near "
                    "its own error (KernelSHAP's) is as close as can be measured.", ""]


def table4(doc: dict) -> list[str]:
    lines = ["## Table 4: explanation regularisation, Deep ShapNet on Breast Cancer (λ = 0.1, "
             "suffix -1: λ = 1; mean ± std over seeds)", "",
             "| regulariser | accuracy | paper | sparsity | paper | CV of mean abs. φ | "
             "paper |", "|---|---:|---:|---:|---:|---:|---:|"]
    for reg in doc["regularisers"]:
        rows = [r for r in doc["table4"] if r["regulariser"] == reg]
        paper = PAPER_T4.get(reg, {})
        lines.append(f"| {reg} | " + " | ".join(
            f"{_ms([r[k] for r in rows])} | {_g(paper.get(k))}"
            for k in ("accuracy", "sparsity", "cv")) + " |")
    return lines + ["", "sparsity: share of the predicted class's attributions |φ_i| below 1% "
                    "of the sample's Σ|φ| (the paper does not define its threshold); l1-last "
                    "is the paper's ℓ1 (on the output explanation), l1-all the ℓ1 on every "
                    "Shapley representation (§2.5).", ""]


def fig5(doc: dict) -> list[str]:
    lines = ["## Fig. 5: dynamic pruning in the edgeprune runtime (Deep ShapNets on Breast Cancer "
             "compiled to bundle v3; modules whose inputs are within t of their reference are "
             "not computed; mean ± std over seeds)", "",
             "| regulariser | threshold | modules skipped | MACs skipped | accuracy | "
             "max prediction change | runtime bound |", "|---|---:|---:|---:|---:|---:|---:|"]
    for reg, runs in doc["fig5"].items():
        for n, threshold in enumerate(doc["thresholds"]):
            cells = [_ms([r["curve"][n][key] for r in runs]) for key in (
                "skipped_fraction", "macs_skipped_fraction", "accuracy")]
            change = max(r["curve"][n]["max_prediction_change"] for r in runs)
            bound = max(r["curve"][n]["bound"] for r in runs)
            lines.append(f"| {reg} | {threshold:g} | " + " | ".join(cells)
                         + f" | {change:.3g} | {bound:.3g} |")
    lines += ["", "### Latency per input with dynamic pruning (batch 1, seed 0, measured on this "
              "host, shared with other jobs: p50 over the test inputs)", "",
              "| regulariser | threshold | modules skipped | p50 µs | chain p50 µs | no-skip "
              "path p50 µs | saved vs chain µs |", "|---|---:|---:|---:|---:|---:|---:|"]
    for reg, bench in doc.get("fig5_latency", {}).items():
        base = bench["baseline"]
        for row in bench["thresholds"]:
            lines.append(f"| {reg} | {row['threshold']:g} | {row['skipped_fraction']:.3f} | "
                         f"{row['p50_us']:.0f} | {base['chain_p50_us']:.0f} | "
                         f"{base['no_skip_p50_us']:.0f} | {row['latency_saved_us']:.0f} |")
    return lines + [""]


def table5(doc: dict) -> list[str]:
    t5 = doc["table5"]
    lines = ["## Table 5: time to explain one sample (median, seconds, measured on this host, "
             "one torch thread); paper: seconds per 1,000 explanations on a Xeon 4114", "",
             "| method | " + " | ".join(f"{m} (this run) | {m} (paper)" for m in t5) + " |",
             "|---|" + "---:|" * (2 * len(t5))]
    for method in T5_METHODS:
        lines.append(f"| {method} | " + " | ".join(
            f"{_g(t5[m].get(method))} | {_g(PAPER_T5.get(m, {}).get(method))}" for m in t5)
            + " |")
    ours = t5["shapnet-deep"]["ours"]
    ratio = t5["shapnet-deep"]["kernelshap-default"] / ours
    return lines + ["", f"KernelSHAP (default) on the same Deep ShapNet takes {ratio:.0f}x its "
                    f"own forward pass here (paper: {598.79 / 20.47:.0f}x). KernelSHAP with "
                    "l1_reg=False; permutation: shap's PermutationExplainer with max_evals = "
                    "4d + 1.", ""]


def _axes():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _finish(fig, ax, labels: tuple[str, str, str], path: Path, legend_size: int = 8) -> str:
    """Axis labels and title, legend, saved as a 640 x 480 PNG; returns the file name."""
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.set_title(labels[2], fontsize=9)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path)
    return path.name


def plots(doc: dict, out: Path) -> list[str]:
    fig, ax = _axes()
    for reg, runs in doc["fig5"].items():
        skipped = np.mean([[c["macs_skipped_fraction"] for c in r["curve"]] for r in runs], 0)
        acc = np.mean([[c["accuracy"] for c in r["curve"]] for r in runs], axis=0)
        ax.plot(skipped * 100, acc, marker="o", label=reg)
    files = [_finish(fig, ax, (
        "multiply-adds skipped (%)", "test accuracy",
        "Deep ShapNet, Breast Cancer: accuracy vs dynamic pruning\n"
        "edgeprune runtime on this host, threshold swept (mean over seeds)"),
        out / "fig5_dynamic_pruning.png")]

    fig, ax = _axes()
    for reg in doc["regularisers"]:
        rows = [r for r in doc["table4"] if r["regulariser"] == reg]
        ax.scatter([r["sparsity"] for r in rows], [r["accuracy"] for r in rows], label=reg)
    files.append(_finish(fig, ax, (
        "attribution sparsity (share of |φ| < 1% of Σ|φ|)", "test accuracy",
        "Explanation regularisation, Deep ShapNet on Breast Cancer\n"
        "measured on this host, one point per seed"), out / "table4_regularisation.png"))

    fig, ax = _axes()
    t5 = doc["table5"]
    width = 0.8 / len(T5_METHODS)
    for n, method in enumerate(T5_METHODS):
        xs = [i + n * width for i, m in enumerate(t5) if method in t5[m]]
        ys = [t5[m][method] for m in t5 if method in t5[m]]
        ax.bar(xs, ys, width=width, label=method)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(t5))])
    ax.set_xticklabels(list(t5))
    ax.set_yscale("log")
    files.append(_finish(fig, ax, (
        "model explained", "seconds per explanation (median)",
        "Time to explain one sample (16 features), measured on this host"),
        out / "table5_explanation_time.png", legend_size=7))
    return files


def write_report(doc: dict, out: Path) -> None:
    files = plots(doc, out)
    head = ["# ShapNets (ICLR 2021) on offline data: benchmarks/shapnets.py", "",
            f"Measured on this host ({doc['host']}), {doc['wall_seconds']:.0f} s wall, "
            "shared with other jobs (timings are medians, compare them as ratios). "
            + ("**Quick smoke run (1 epoch): not results.**" if doc.get("quick") else ""), "",
            f"Setup: {doc['setups']}; Adam lr {doc['lr']}; ShapNets {doc['spec']}. The "
            "paper averages 50 runs (Table 1) with 5-fold CV on a 75/25 split and standardised "
            "features; here a few seeds of edgeprune's 70/10/20 split with min-max scaling.", ""]
    body = table1(doc) + table3(doc) + table4(doc) + fig5(doc) + table5(doc)
    body += ["## Figures", ""] + [f"- ![{f}]({f})" for f in files]
    write_text_atomic(out / "results.md", "\n".join(head + body) + "\n")
