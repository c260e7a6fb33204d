"""Latency of ShapNet dynamic pruning per input (numpy/scipy/stdlib, like the board side).

For one ShapNet bundle and a set of inputs, one sample per call (batch 1, the edge case),
cycling through the inputs, the same harness timing as the rest of ``bench``:

- ``chain``: the compiled chain without skipping (``ShapNetModel.chain``, CSR kernels);
- ``no skip``: the per-module path with nothing skipped (the pruning machinery's own cost);
- per threshold ``t``: the per-module path skipping the modules within ``t`` of their
  reference, with the fraction of modules and of multiply-adds it skipped on these inputs,
  the largest change of the prediction against the chain and the runtime's bound.

``latency_saved_us`` = p50(chain) - p50(t) per input (negative: skipping costs more than it
saves on this model and machine), ``saved_vs_no_skip_us`` = p50(no skip) - p50(t). The
runtime builds a transform's ops once per skip pattern and caches them; cycling through the
inputs times the cached patterns (``p50_us``), and ``p50_first_pattern_us`` times calls whose
patterns are all new (the cache emptied before each call): the cost for a stream of inputs
whose patterns never repeat.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..shapnet import ShapNetModel, check_skip_threshold
from .harness import latency_stats, time_calls

__all__ = ["bench_dynamic_pruning"]


def _cycling(fn, x: np.ndarray):
    rows = itertools.cycle(range(x.shape[0]))

    def call(_unused: Any) -> Any:
        return fn(x[next(rows)])

    return call


def bench_dynamic_pruning(model: ShapNetModel, x: np.ndarray, thresholds: Sequence[float], *,
                          warmup: int = 10, runs: int = 100, min_time: float = 0.5,
                          max_time: float | None = None) -> dict[str, Any]:
    """``{"inputs", "modules", "baseline": {chain, no_skip}, "thresholds": [rows]}``."""
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, model.input_dim)
    values = [check_skip_threshold(t, "--skip-threshold") for t in thresholds]
    timing = dict(warmup=warmup, runs=max(runs, x.shape[0]), min_time=min_time,
                  max_time=max_time)
    chain = latency_stats(time_calls(_cycling(model.chain, x), None, **timing), 1)
    baseline = latency_stats(time_calls(_cycling(model.run_unpruned_path, x), None, **timing), 1)
    reference = model.run(x).prediction
    macs = model.module_macs()
    rows = []
    for t in values:
        result = model.run(x, skip_threshold=t)
        stats = latency_stats(time_calls(_cycling(lambda s, t=t: model.run_flat(s, t), x),
                                         None, **timing), 1)

        def cold(sample: np.ndarray, t: float = t) -> np.ndarray:
            model.clear_pattern_cache()
            return model.run_flat(sample, t)

        cold_stats = latency_stats(time_calls(_cycling(cold, x), None, **timing), 1)
        rows.append({
            "threshold": t,
            "skipped_fraction": result.skipped_fraction,
            "macs_skipped_fraction": float((result.skipped @ macs).mean() / model.macs),
            "max_prediction_change": float(np.abs(result.prediction - reference).max()),
            "bound": float(model.skip_bound(t)[0].max()),
            "p50_us": stats["p50_us"], "p90_us": stats["p90_us"], "unstable": stats["unstable"],
            "p50_first_pattern_us": cold_stats["p50_us"],
            "latency_saved_us": chain["p50_us"] - stats["p50_us"],
            "saved_vs_no_skip_us": baseline["p50_us"] - stats["p50_us"],
        })
    return {"inputs": int(x.shape[0]), "modules": model.n_modules, "macs": model.macs,
            "baseline": {"chain_p50_us": chain["p50_us"], "no_skip_p50_us": baseline["p50_us"],
                         "unstable": bool(chain["unstable"] or baseline["unstable"])},
            "thresholds": rows}
