"""The ``edgeprune bench --plot`` PNG: latency vs batch size per (artifact, backend)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeprune.bench.report import artifact_labels

__all__ = ["write_plot"]


def write_plot(results: dict[str, Any], path: str | os.PathLike[str]) -> str | None:
    """p50 latency vs batch size per (artifact, backend), log-log PNG. None, or a note why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install 'edgeprune[bench]')"
    name = artifact_labels(results)
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for row in results["latency"]:
        series.setdefault((name[row["artifact"]], row["backend"]), []).append(
            (row["batch"], row["p50_us"]))
    if not series:
        return "no plot: nothing was measured"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (artifact, backend), points in sorted(series.items()):
        points.sort()
        ax.plot([b for b, _ in points], [t for _, t in points], marker="o",
                label=f"{artifact} · {backend}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("p50 latency per call (µs)")
    env = results["environment"]
    ax.set_title(f"edgeprune bench — {env.get('cpu_model') or env.get('machine')}, "
                 f"{results['settings']['threads']} thread(s)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=120)
    plt.close(fig)
    return None
