"""Dynamic pruning of ShapNets (paper §2.5, Cor. 4, Fig. 5): accuracy against the fraction of
computation skipped, over skip thresholds, measured in the edgeprune runtime.

:func:`dynamic_pruning_curve` runs the compiled model with each threshold (modules whose active
inputs are all within the threshold of their reference are not computed, see
:mod:`edgeprune.runtime.shapnet`) and reports per threshold the fraction of modules skipped,
the fraction of the chain's multiply-adds skipped, the metric (accuracy for class labels, MSE
otherwise), the largest change of the prediction against the unpruned run and the worst-case
bound the runtime guarantees for that threshold.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.runtime.shapnet import ShapNetModel, check_skip_threshold, load_shapnet

__all__ = ["as_runtime_model", "auto_thresholds", "dynamic_pruning_curve", "module_deviations"]


def as_runtime_model(model_or_bundle: Any) -> ShapNetModel:
    """A :class:`ShapNetModel` from a bundle path, a runtime model, a compiled ShapNet or a
    PyTorch Shallow/Deep ShapNet (compiled in memory, through the bundle validator)."""
    if isinstance(model_or_bundle, ShapNetModel):
        return model_or_bundle
    if isinstance(model_or_bundle, (str, os.PathLike)):
        return load_shapnet(model_or_bundle)
    from edgeprune.exporters.shapnet import shapnet_bundle_arrays
    from edgeprune.runtime.bundle import validate_bundle
    from edgeprune.shapnet.compile import CompiledShapnet, compile_shapnet

    compiled = model_or_bundle if isinstance(model_or_bundle, CompiledShapnet) \
        else compile_shapnet(model_or_bundle)
    return ShapNetModel(validate_bundle(shapnet_bundle_arrays(compiled), source="compiled"))


def module_deviations(model: ShapNetModel, x: np.ndarray) -> np.ndarray:
    """``(B, modules)``: each module's ``max |input - reference|`` in the unpruned run (a module
    is skipped at threshold ``t`` when this is ``<= t``, earlier skips aside)."""
    x = np.asarray(x, dtype=np.float32).reshape(-1, model.input_dim)
    out = np.empty((x.shape[0], model.n_modules))
    for b in range(x.shape[0]):
        out[b] = model.deviations(x[b])
    return out


def auto_thresholds(deviations: np.ndarray, n: int = 12) -> list[float]:
    """0 and ``n - 1`` quantiles of the deviations (spread over the fraction skipped)."""
    values = np.unique(np.quantile(deviations.reshape(-1), np.linspace(0, 1, n)[1:]))
    return [0.0, *(float(v) for v in values if v > 0)]


def _metric(pred: np.ndarray, y: np.ndarray | None) -> dict[str, float]:
    if y is None:
        return {}
    y = np.asarray(y)
    if y.dtype.kind in "iub":
        return {"accuracy": float(np.mean(_labels(pred) == y.reshape(-1)))}
    if y.size != pred.size:
        raise EdgepruneError(f"targets of shape {y.shape} for predictions of shape {pred.shape}; "
                             "give integer class labels (samples,) or targets like the "
                             "predictions")
    return {"mse": float(np.mean((pred - y.reshape(pred.shape)) ** 2))}


def dynamic_pruning_curve(model_or_bundle: Any, x: np.ndarray, y: np.ndarray | None = None,
                          thresholds: Sequence[float] | str = "auto") -> list[dict[str, Any]]:
    """Per threshold: ``threshold``, ``skipped_fraction`` (modules, over samples),
    ``skipped_by_transform``, ``macs_skipped_fraction`` (the chain's multiply-adds not run),
    ``accuracy`` (integer labels ``y``: argmax, or ``> 0`` for one output) or ``mse`` (float
    targets), ``prediction_agreement`` (classes equal to the unpruned run's, labels only),
    ``max_prediction_change`` against the unpruned run and ``bound`` (the runtime's worst-case
    bound on that change). The first row is always threshold 0 (nothing changes).
    """
    model = as_runtime_model(model_or_bundle)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != model.input_dim:
        raise EdgepruneError(f"inputs of shape {x.shape}: the ShapNet reads "
                             f"(samples, {model.input_dim})")
    if y is not None and len(y) != len(x):
        raise EdgepruneError(f"{len(y)} targets for {len(x)} inputs")
    if isinstance(thresholds, str):
        if thresholds != "auto":
            raise EdgepruneError(f"thresholds {thresholds!r}: give numbers >= 0 or 'auto'")
        thresholds = auto_thresholds(module_deviations(model, x))
    values = sorted({check_skip_threshold(t, "threshold") for t in thresholds} | {0.0})
    base = model.run(x)
    macs = model.module_macs()
    sizes = [t.n_modules for t in model.layout.transforms]
    edges = np.cumsum([0, *sizes])
    rows = []
    for t in values:
        out = model.run(x, skip_threshold=t)
        skipped = out.skipped
        row: dict[str, Any] = {
            "threshold": float(t),
            "skipped_fraction": float(skipped.mean()),
            "skipped_by_transform": [float(skipped[:, a:b].mean())
                                     for a, b in zip(edges[:-1], edges[1:])],
            "macs_skipped_fraction": float((skipped @ macs).mean() / model.macs),
            **_metric(out.prediction, y),
            "max_prediction_change": float(np.abs(out.prediction - base.prediction).max()),
            "bound": float(model.skip_bound(t)[0].max()),
        }
        if y is not None and np.asarray(y).dtype.kind in "iub":
            agree = _metric(out.prediction, _labels(base.prediction))
            row["prediction_agreement"] = agree["accuracy"]
        rows.append(row)
    return rows


def _labels(pred: np.ndarray) -> np.ndarray:
    return pred.argmax(axis=1) if pred.shape[1] > 1 else (pred[:, 0] > 0).astype(int)
