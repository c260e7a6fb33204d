"""The ``edgeprune bench --plot`` PNG: p50 latency vs batch size per (artifact, backend), with
p10-p90 error bars, on log axes whose x ticks are the batch sizes measured."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeprune.bench.report import artifact_labels

__all__ = ["latency_figure", "write_plot"]


def write_plot(results: dict[str, Any], path: str | os.PathLike[str]) -> str | None:
    """p50 latency (p10-p90 bars) vs batch size per (artifact, backend), log-log PNG; unstable
    measurements are drawn hollow. Returns None, or a note why there is no plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install 'edgeprune[bench]')"
    if not results["latency"]:
        return "no plot: nothing was measured"
    fig = latency_figure(results, plt)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return None


def latency_figure(results: dict[str, Any], plt: Any) -> Any:
    """The figure of :func:`write_plot` (``plt``: matplotlib.pyplot), for tests and notebooks."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    name = artifact_labels(results)
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in results["latency"]:
        series.setdefault((name[row["artifact"]], row["backend"]), []).append(row)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (artifact, backend), rows in sorted(series.items()):
        rows = sorted(rows, key=lambda r: r["batch"])
        x = [r["batch"] for r in rows]
        p50 = [r["p50_us"] for r in rows]
        low = [max(r["p50_us"] - r["p10_us"], 0.0) for r in rows]
        high = [max(r["p90_us"] - r["p50_us"], 0.0) for r in rows]
        bars = ax.errorbar(x, p50, yerr=[low, high], marker="o", capsize=3,
                           label=f"{artifact} · {backend}")
        shaky = [r for r in rows if r["unstable"]]
        if shaky:
            ax.plot([r["batch"] for r in shaky], [r["p50_us"] for r in shaky], "o",
                    markersize=9, markerfacecolor="white", color=bars[0].get_color())
    batches = sorted({row["batch"] for row in results["latency"]})
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator(batches))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticklabels([str(b) for b in batches])
    ax.set_xlabel("batch size")
    ax.set_ylabel("latency per call (µs): p50, bars p10-p90")
    env = results["environment"]
    ax.set_title(f"edgeprune bench — {env.get('cpu_model') or env.get('machine')}, "
                 f"{results['settings']['threads']} thread(s)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
