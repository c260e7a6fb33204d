"""Markdown tables and plots of benchmarks/scoring.py's results.json."""

from __future__ import annotations

from pathlib import Path

from edgeprune.fileio import atomic_path, write_text_atomic

TARGET_SECONDS = 30.0
TARGET_JACCARD = 0.99
TARGET_SPEEDUP = 1000.0
LEVELS = (0.8, 0.9)
COLORS = {"analytic": "tab:blue", "permutation": "tab:orange", "kernel": "tab:green"}


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


def _small_table(doc: dict) -> list[str]:
    lines = ["| fan-in | act | estimator | setting | µs / pair | φ rel. L1 | LI rel. L1 | "
             "LI inflation | noise-bias bound | LI rel. L1 debiased |",
             "|---:|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in doc["small"]:
        extra = ("", "", "")
        if "li_inflation" in r:
            extra = (f"{r['li_inflation']:+.4f}", f"{r['li_bias_bound']:.4f}",
                     f"{r['li_debiased_rel_l1']:.4f}")
        setting = r["setting"] + (" (enumerates)" if r.get("enumerated") else "")
        lines.append(f"| {r['fan_in']} | {r['activation']} | {r['estimator']} | {setting} | "
                     f"{_us(r['seconds_per_pair'])} | {r['phi_rel_l1']:.4f} | "
                     f"{r['li_rel_l1']:.4f} | {' | '.join(extra)} |")
    return lines


def _peer_table(doc: dict) -> list[str]:
    lines = ["| act | pairs | KernelExplainer µs / pair | its φ rel. L1 | judged on | our cheapest "
             "setting at least as accurate | its µs / pair | its φ rel. L1 | speed-up |",
             "|---|---:|---:|---:|---|---|---:|---:|---:|"]
    for p, s in zip(doc["peer"], doc["peer_speedup"], strict=True):
        for tag, where in (("", "the peer's pairs"), ("_all_pairs", "all pairs of the layer")):
            head = (f"| {p['activation']} | {p['pairs']} | {_us(p['seconds_per_pair'])} | "
                    f"{p['phi_rel_l1']:.4f} | {where} | ")
            if s.get(f"match{tag}") is None:
                lines.append(head + "none | | | |")
                continue
            lines.append(head + f"{s[f'match{tag}']} | {_us(s[f'ours_seconds_per_pair{tag}'])} | "
                         f"{s[f'ours_phi_rel_l1{tag}']:.4f} | {s[f'speedup{tag}']:,.0f}x |")
    return lines


def _mnist_table(mn: dict) -> list[str]:
    lines = ["| estimator | layers' estimators | wall s | load avg before | peak MiB | "
             "Spearman LI | Jaccard m=0.8 (min layer) | Jaccard m=0.9 (min layer) | "
             "LI rel. L1 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in mn["runs"]:
        a = r["agreement"]["all"]
        used = ",".join(lr["estimator"] for lr in r["summary"]["layers"])
        lines.append(f"| {r['estimator']} | {used} | {r['wall_seconds']:.1f} | "
                     f"{r['load_before']:.1f} | {r['peak_extra_bytes'] / 2**20:,.0f} | "
                     f"{a['spearman']:.4f} | {a['jaccard_m0.8_min']:.4f} | "
                     f"{a['jaccard_m0.9_min']:.4f} | {a['li_rel_l1']:.4f} |")
    lines += ["", "Per layer (Spearman / Jaccard m=0.8 / Jaccard m=0.9 / LI rel. L1):", "",
              "| estimator | " + " | ".join(f"layer {lr['layer']}" for lr in
                                           mn["runs"][0]["agreement"]["layers"]) + " |",
              "|---|" + "---|" * len(mn["runs"][0]["agreement"]["layers"])]
    for r in mn["runs"]:
        cells = [f"{lr['spearman']:.3f} / {lr['jaccard_m0.8']:.3f} / {lr['jaccard_m0.9']:.3f} / "
                 f"{lr['li_rel_l1']:.3f}" for lr in r["agreement"]["layers"]]
        lines.append(f"| {r['estimator']} | " + " | ".join(cells) + " |")
    return lines


def targets(doc: dict) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for each of the issue's targets."""
    out: list[tuple[str, str, bool | None]] = []
    mn = doc.get("mnist")
    if mn:
        auto = next(r for r in mn["runs"] if r["estimator"] == "auto")
        out.append((f"auto scores all {mn['links']:,} links (256 samples) in <= 30 s",
                    f"{auto['wall_seconds']:.1f} s (load average {auto['load_before']:.1f} "
                    "before)", auto["wall_seconds"] <= TARGET_SECONDS))
        j = auto["agreement"]["all"]["jaccard_m0.8_min"]
        out.append(("support-set Jaccard >= 0.99 vs the converged reference at m = 0.8",
                    f"{j:.4f} (lowest layer)", j >= TARGET_JACCARD))
        budget = auto["summary"]["memory_budget_bytes"]
        worst = max(r["peak_extra_bytes"] for r in mn["runs"])
        out.append(("peak memory <= the budget",
                    f"{worst / 2**20:,.0f} MiB worst estimator, budget {budget / 2**20:,.0f} MiB",
                    worst <= budget))
    for s in doc.get("peer_speedup", []):
        name = f"fan-in 16 ({s['activation']}): KernelExplainer's error, 1,000x faster"
        parts = []
        for tag, where in (("", "on its pairs"), ("_all_pairs", "on all pairs")):
            if s.get(f"match{tag}") is None:
                parts.append(f"{where}: no setting of ours as accurate")
            else:
                parts.append(f"{where}: {s[f'speedup{tag}']:,.0f}x ({s[f'match{tag}']})")
        met = all(s.get(f"speedup{tag}", 0) >= TARGET_SPEEDUP for tag in ("", "_all_pairs"))
        out.append((name, "; ".join(parts), met))
    return out


def write_markdown(doc: dict, out: Path) -> Path:
    lines = ["# Shapley scoring at scale", "",
             "Generated by `benchmarks/scoring.py`"
             + (" (--quick: a smoke test, not the committed numbers)" if doc.get("quick") else "")
             + f"; machine: {doc['machine']['platform']}, {doc['machine']['cpus']} CPUs, load "
             f"average {doc['machine']['load_at_start']:.1f} at start; total "
             f"{doc.get('wall_seconds', 0):.0f} s.", "", "## Targets", "",
             "| target | measured | met |", "|---|---|---|"]
    for target, measured, met in targets(doc):
        lines.append(f"| {target} | {measured} | {'yes' if met else 'NO'} |")
    if doc.get("mnist"):
        ref = doc["mnist"]["reference"]
        lines += ["", "## MNIST-5k autoencoder, 256 samples", "",
                  f"Reference: antithetic permutation sampling, {ref['permutations']} "
                  "permutations per (unit, sample) pair; its relative standard error per layer: "
                  + ", ".join(f"{lr['mean_rel_stderr']:.4f}" for lr in
                              ref["summary"]["layers"]) + ".", ""] + _mnist_table(doc["mnist"])
    sub = doc.get("mnist_subset")
    if sub:
        lines += ["", "### Is the reference converged? A much stronger one on a few units", "",
                  f"{len(sub['rows'][0]['units'])} units of every layer, all 256 samples, "
                  f"{sub['rows'][0]['strong_permutations']} permutations taken as the truth; "
                  "relative L1 error of LI against it:", "",
                  "| layer | analytic | the 512-permutation reference | reference, "
                  "moment-corrected LI |", "|---:|---:|---:|---:|"]
        for r in sub["rows"]:
            lines.append(f"| {r['layer']} | {r['analytic_li_rel_l1']:.4f} | "
                         f"{r['reference_li_rel_l1']:.4f} | "
                         f"{r['reference_debiased_li_rel_l1']:.4f} |")
    lines += ["", "## Small layers against exact enumeration", "",
              "Wall time per (unit, sample) pair (median of repeats, the whole layer scored "
              "at once), relative L1 error of every φ and of LI. For the sampling estimators: "
              "LI inflation = mean(LI − exact LI) / mean(exact LI), the reported bound "
              "sqrt(2/π)·mean(se) on it, and the error of the moment-corrected LI.", ""]
    lines += _small_table(doc)
    lines += ["", "## Peer: shap.KernelExplainer (fan-in 16)", ""] + _peer_table(doc)
    path = out / "README.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def write_plots(doc: dict, out: Path) -> list[str]:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fans = sorted({r["fan_in"] for r in doc["small"]})
    acts = sorted({r["activation"] for r in doc["small"]})
    fig, axes = plt.subplots(len(acts), len(fans), figsize=(4.2 * len(fans), 3.4 * len(acts)),
                             squeeze=False)
    for i, act in enumerate(acts):
        for j, n in enumerate(fans):
            ax = axes[i][j]
            rows = [r for r in doc["small"] if r["fan_in"] == n and r["activation"] == act]
            for est, color in COLORS.items():
                pts = sorted((r["seconds_per_pair"] * 1e6, max(r["phi_rel_l1"], 1e-6))
                             for r in rows if r["estimator"] == est)
                if pts:
                    ax.plot(*zip(*pts, strict=True), "o-", color=color, label=est, ms=4)
            ex = [r for r in rows if r["estimator"] == "exact"]
            if ex:
                ax.axvline(ex[0]["seconds_per_pair"] * 1e6, color="k", ls=":", label="exact")
            for p in doc.get("peer", []):
                if p["fan_in"] == n and p["activation"] == act:
                    ax.plot(p["seconds_per_pair"] * 1e6, p["phi_rel_l1"], "r*", ms=12,
                            label="shap KernelExplainer")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_title(f"fan-in {n}, {act}")
            ax.set_xlabel("µs per (unit, sample)")
            ax.set_ylabel("relative L1 error of φ")
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out / "error_vs_time.png", suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
    names.append("error_vs_time.png")
    mn = doc.get("mnist")
    if mn:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
        est = [r["estimator"] for r in mn["runs"]]
        a1.bar(est, [r["wall_seconds"] for r in mn["runs"]], color="tab:gray")
        a1.axhline(TARGET_SECONDS, color="r", ls="--", label="30 s target")
        a1.set_yscale("log")
        a1.set_ylabel("seconds, all 434,176 links")
        a1.legend()
        width = 0.38
        xs = range(len(est))
        for k, m in enumerate((0.8, 0.9)):
            a2.bar([x + (k - 0.5) * width for x in xs],
                   [r["agreement"]["all"][f"jaccard_m{m}_min"] for r in mn["runs"]], width,
                   label=f"m = {m}")
        a2.set_xticks(list(xs), est)
        a2.axhline(TARGET_JACCARD, color="r", ls="--")
        low = min(r["agreement"]["all"][f"jaccard_m{m}_min"] for r in mn["runs"] for m in LEVELS)
        a2.set_ylim(max(0.0, low - 0.05), 1.0)
        a2.set_ylabel("support Jaccard vs reference (min layer)")
        a2.legend()
        fig.tight_layout()
        with atomic_path(out / "mnist_agreement.png", suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
        names.append("mnist_agreement.png")
    return names
