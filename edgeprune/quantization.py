"""The accuracy guard of ``--quantize int8``: the pruned model's test metrics in float32 and
after int8 quantization, and ``--max-metric-drop``.

The guarded metric is the test accuracy for a classifier (drop in absolute points: 0.01 = one
percentage point) and the test reconstruction MSE for an autoencoder (relative increase: 0.01 =
1 % higher MSE). Every metric of :func:`edgeprune.train.evaluate` is reported before and after.
"""

from __future__ import annotations

import math

from edgeprune.network import ModelError, Network

__all__ = ["check_max_metric_drop", "quantization_stage"]


def check_max_metric_drop(value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ModelError(f"--max-metric-drop {value}: must be a finite number >= 0, e.g. 0.01")


def quantization_stage(pruned: Network, ds, seed: int, quantize: str,
                       max_metric_drop: float | None, fp32_metrics: dict | None = None,
                       quantized: Network | None = None) -> dict:
    """Metrics of ``pruned`` before/after ``quantize``; refuses a drop over ``max_metric_drop``.

    ``fp32_metrics`` (already computed for ``pruned``) saves one evaluation; ``quantized`` is
    the network the bundle will compute (default: ``pruned`` quantized at write time; after
    codebook fine-tuning, the fine-tuned shared network)."""
    from edgeprune.exporters.quantize import quantized_network
    from edgeprune.train import evaluate

    before = fp32_metrics if fp32_metrics is not None else evaluate(pruned, ds, seed)
    if quantized is None:
        quantized = quantized_network(pruned, quantize)
    after = evaluate(quantized, ds, seed)
    if "test_accuracy" in before:
        metric, drop = "test_accuracy", before["test_accuracy"] - after["test_accuracy"]
        unit = "accuracy points (0.01 = 1 pp)"
    else:
        metric = "test_mse"
        base = before["test_mse"]
        drop = (after["test_mse"] - base) / base if base > 0 else (
            0.0 if after["test_mse"] == base else math.inf)
        unit = "relative MSE increase (0.01 = 1 %)"
    stage = {"quantize": quantize, "metric": metric, "drop": drop, "drop_unit": unit,
             "fp32": before, "quantized": after, "max_metric_drop": max_metric_drop}
    if max_metric_drop is not None and drop > max_metric_drop:
        raise ModelError(
            f"--max-metric-drop {max_metric_drop}: {quantize} quantization changes {metric} from "
            f"{before[metric]:.6g} to {after[metric]:.6g}, a drop of {drop:.4g} {unit}; raise "
            "--max-metric-drop, prune less, or leave out --quantize")
    return stage


def quantization_lines(report: dict) -> list[str]:
    """The report's quantization stage as text lines (console and report.md)."""
    stage = report.get("quantization")
    if not stage:
        return []
    from edgeprune.report import metrics_lines

    lines = [f"{stage['quantize']} quantization (pruned model, float32 -> {stage['quantize']}):"]
    lines += [f"  {name}: {b} -> {a}" for name, b, a in
              metrics_lines(stage["fp32"], stage["quantized"])]
    guard = stage.get("max_metric_drop")
    lines.append(f"  {stage['metric']} drop: {stage['drop']:.4g} {stage['drop_unit']}"
                 + (f", within --max-metric-drop {guard}" if guard is not None else ""))
    for fmt, art in (report.get("artifacts") or {}).items():
        if "max_abs_diff_vs_fp32" in art:
            lines.append(f"  model.{fmt} ({art.get('quantize', stage['quantize'])}) vs the float32 "
                         f"pruned model: max |diff| = {art['max_abs_diff_vs_fp32']:.2e} on the "
                         "test split")
    return lines
