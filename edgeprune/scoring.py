"""Scoring every link of a Network with Shapley values, layer by layer (DESIGN section 4).

Each layer's game is played on the input activations that the *current* (masked) network
computes on the explanation set; the per-layer estimators live in :mod:`edgeprune.shapley`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from edgeprune.choices import DEFAULT_ALPHA, DEFAULT_MEMORY_BUDGET, ESTIMATORS, REFERENCES
from edgeprune.fileio import atomic_path
from edgeprune.network import ModelError, Network
from edgeprune.peak_memory import PeakMemory, current_rss
from edgeprune.runtime.limits import MAX_MEMORY_BUDGET_GB
from edgeprune.shapley import LayerScores, score_layer
from edgeprune.shapley.background import (
    DEFAULT_BACKGROUND,
    background_rows,
    score_layer_background,
)

_GB = 1024**3


def memory_budget_bytes(gb: object, option: str = "--memory-budget") -> int:
    """Validate a memory budget given in GB (as the CLI's ``--memory-budget``); return bytes.

    It must be a finite number > 0 and at most ``MAX_MEMORY_BUDGET_GB``, and at least one byte;
    anything else is a one-line :class:`ModelError` naming ``option`` and the fix.
    """
    fix = (f"give a number of GB in (0, {MAX_MEMORY_BUDGET_GB}], e.g. {option} 2 "
           "(the default)")
    if isinstance(gb, bool) or not isinstance(gb, (int, float, np.integer, np.floating)):
        raise ModelError(f"{option} {gb!r}: must be a number of GB; {fix}")
    value = float(gb)
    if not math.isfinite(value):
        raise ModelError(f"{option} {value}: must be a finite number of GB; {fix}")
    if value <= 0:
        raise ModelError(f"{option} {value:g}: must be more than 0 GB; {fix}")
    if value > MAX_MEMORY_BUDGET_GB:
        raise ModelError(f"{option} {value:g}: more than the bound of {MAX_MEMORY_BUDGET_GB} GB "
                         f"(edgeprune.runtime.limits.MAX_MEMORY_BUDGET_GB); {fix}")
    nbytes = int(value * _GB)
    if nbytes < 1:
        raise ModelError(f"{option} {value:g}: is less than one byte; {fix}")
    return nbytes


def _check_budget(memory_budget: object) -> int:
    """``score_network``'s ``memory_budget`` (bytes), checked as ``--memory-budget`` (GB)."""
    if isinstance(memory_budget, (int, float, np.integer, np.floating)) and not isinstance(
            memory_budget, bool):
        return memory_budget_bytes(float(memory_budget) / _GB)
    return memory_budget_bytes(memory_budget)


@dataclass
class NetworkScores:
    """Shapley link scores for every layer (index k-1 holds layer k) and how they were made."""

    layers: list[LayerScores]
    estimator: str
    reference: str
    n_samples: int
    seed: int
    peak_memory_bytes: int = 0
    memory_budget: int = 0
    background: int = 0  # --reference background: the K background rows

    def li(self) -> list[np.ndarray]:
        return [s.li for s in self.layers]

    def summary(self) -> dict:
        return {
            "estimator": self.estimator,
            "reference": self.reference,
            **({"background": self.background} if self.reference == "background" else {}),
            "samples": self.n_samples,
            "seed": self.seed,
            "seconds": round(sum(s.seconds for s in self.layers), 4),
            "memory_budget_bytes": self.memory_budget,
            "peak_memory_bytes": self.peak_memory_bytes,
            "layers": [
                {"layer": k, "shape": list(s.li.shape), "estimator": s.estimator,
                 "seconds": round(s.seconds, 4), "evaluations_per_pair": s.n_evaluations,
                 "li_total": float(s.li.sum()),
                 "mean_rel_stderr": (None if s.stderr is None else
                                     float(s.stderr.mean() / max(s.li.mean(), 1e-30))),
                 "li_noise_bias_bound": (None if s.li_bias is None else
                                         float(s.li_bias.mean() / max(s.li.mean(), 1e-30))),
                 "peak_memory_bytes": s.info.get("peak_memory_bytes"),
                 **({"auto": _json_safe(s.info["auto"])} if "auto" in s.info else {})}
                for k, s in enumerate(self.layers, start=1)
            ],
        }


def _json_safe(d: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.items()}


def score_network(net: Network, x_explain: np.ndarray, *, estimator: str = "auto",
                  reference: str = "zero", seed: int = 0, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                  n_permutations: int | None = None, target_rel_error: float | None = None,
                  quiet: bool = False, background: int = DEFAULT_BACKGROUND) -> NetworkScores:
    """Score every link of every layer (encoder and decoder) of ``net``.

    ``reference="background"``: interventional SHAP over ``background`` of the explanation
    samples (:mod:`edgeprune.shapley.background`), each layer against those samples' inputs.

    Each layer's peak resident memory above the level at its start is measured
    (:class:`edgeprune.peak_memory.PeakMemory`) and reported in ``info["peak_memory_bytes"]``;
    the network's is the largest of them plus what the layer inputs hold.
    """
    if estimator not in ESTIMATORS:
        raise ModelError(f"--estimator {estimator!r}: use one of {', '.join(ESTIMATORS)}")
    if reference not in REFERENCES:
        raise ModelError(f"--reference {reference!r}: use one of {', '.join(REFERENCES)}")
    memory_budget = _check_budget(memory_budget)
    x_explain = np.asarray(x_explain, dtype=np.float32)
    if x_explain.ndim != 2 or x_explain.shape[1] != net.in_dim:
        raise ModelError(f"explanation data has shape {x_explain.shape}, but the model reads "
                         f"{net.in_dim} features; use data with {net.in_dim} columns")
    rows = (background_rows(len(x_explain), background, seed)
            if reference == "background" else None)
    start_rss = current_rss() or 0
    inputs = net.layer_inputs(x_explain)
    results, peak = [], 0
    for k, (layer, a) in enumerate(zip(net.layers, inputs), start=1):
        bar = tqdm(total=layer.out_dim, desc=f"score layer {k}/{len(net.layers)} "
                   f"({layer.out_dim}x{layer.in_dim})", unit="unit", disable=quiet, leave=False)
        done = [0]

        def progress(n: int, bar=bar, done=done) -> None:
            bar.update(n - done[0])
            done[0] = n

        kw = {"negative_slope": layer.negative_slope, "estimator": estimator, "seed": seed + k,
              "memory_budget": memory_budget, "n_permutations": n_permutations,
              "target_rel_error": target_rel_error, "progress": progress}
        with PeakMemory() as mem:
            if rows is None:
                scores = score_layer(layer.masked_weight, layer.bias, a, layer.activation,
                                     reference=reference, **kw)
            else:
                scores = score_layer_background(layer.masked_weight, layer.bias, a,
                                                layer.activation, a[rows], **kw)
        bar.close()
        scores.info["peak_memory_bytes"] = mem.extra_bytes
        peak = max(peak, mem.peak_bytes - start_rss if start_rss else mem.extra_bytes)
        results.append(scores)
    return NetworkScores(results, estimator, reference, len(x_explain), seed,
                         peak_memory_bytes=max(0, peak), memory_budget=int(memory_budget),
                         background=0 if rows is None else len(rows))


def rule_scores(scores: NetworkScores | list[np.ndarray], net: Network, rule: str = "paper",
                alpha: float = DEFAULT_ALPHA) -> list[np.ndarray]:
    """Per-layer link scores under ``--score-rule`` (:mod:`edgeprune.prune.rules`): ``paper``
    is LI itself; ``hybrid`` is ``LI^alpha * |w|^(1 - alpha)`` with ``net``'s masked weights;
    ``rms`` needs the full :class:`NetworkScores` (the mean and variance of phi), not just LI
    arrays read from a file."""
    from edgeprune.prune.rules import check_score_rule, hybrid_scores, rms_scores

    check_score_rule(rule, alpha)
    if alpha == "auto":
        raise ModelError("--alpha auto is chosen by compress (it needs the data and the target); "
                         "give a number here")
    li = scores.li() if isinstance(scores, NetworkScores) else list(scores)
    if rule == "hybrid":
        return hybrid_scores(li, [layer.masked_weight for layer in net.layers], float(alpha))
    if rule == "rms":
        if not isinstance(scores, NetworkScores):
            raise ModelError("--score-rule rms needs the mean and variance of phi, which a "
                             "--scores file's li arrays do not carry; score without --scores")
        return rms_scores([s.signed for s in scores.layers], [s.var for s in scores.layers])
    return li


def auto_alpha_scores(scores: NetworkScores | list[np.ndarray], net: Network, x_val, y_val,
                      *, sparsity: float | None = None,
                      importance_level: float | None = None) -> tuple[list[np.ndarray], dict]:
    """``--score-rule hybrid --alpha auto``: the hybrid scores whose pruned network (at the
    target, before fine-tuning) has the lowest validation loss over ``ALPHA_GRID`` — MSE for an
    autoencoder, error rate for a classifier (``y_val``) — and a summary of the search."""
    from edgeprune.prune import prune_network
    from edgeprune.prune.rules import choose_alpha, hybrid_scores

    li = scores.li() if isinstance(scores, NetworkScores) else list(scores)
    x_val = np.asarray(x_val, dtype=np.float32)

    def loss(pruned: Network) -> float:
        out = pruned.forward(x_val)
        if net.kind == "classifier":
            return float(np.mean(out.argmax(axis=1) != np.asarray(y_val)))
        return float(np.mean((out - x_val) ** 2))

    weights = [layer.masked_weight for layer in net.layers]
    alpha, tried = choose_alpha(li, weights, lambda s: prune_network(
        net, s, sparsity=sparsity, importance_level=importance_level).network, loss)
    return hybrid_scores(li, weights, alpha), {"alpha": alpha, "alpha_search": tried}


def save_scores(scores: NetworkScores, path: str | os.PathLike) -> Path:
    """Write ``li{k}``, ``ui{k}``, ``signed{k}``, ``var{k}`` (and ``stderr{k}``, ``li_bias{k}``
    with a sampling estimator) to an .npz."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {"meta": np.array(json.dumps(scores.summary()))}
    for k, s in enumerate(scores.layers, start=1):
        arrays[f"li{k}"] = s.li
        arrays[f"ui{k}"] = s.ui
        arrays[f"signed{k}"] = s.signed
        arrays[f"var{k}"] = s.var
        if s.stderr is not None:
            arrays[f"stderr{k}"] = s.stderr
        if s.li_bias is not None:
            arrays[f"li_bias{k}"] = s.li_bias
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    return path


def load_link_scores(path: str | os.PathLike, net: Network) -> list[np.ndarray]:
    """Read the ``li{k}`` arrays of a scores file and check them against ``net``'s shapes."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            li = [np.asarray(z[f"li{k}"], dtype=np.float64) for k in range(1, len(net.layers) + 1)]
    except FileNotFoundError:
        raise ModelError(f"{path}: no such scores file; create it with `edgeprune score`") from None
    except KeyError as exc:
        raise ModelError(f"{path}: missing array {exc}; was it scored for this model?") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one line
        raise ModelError(f"{path}: cannot read scores ({type(exc).__name__}); re-run "
                         "`edgeprune score`") from None
    for k, (s, layer) in enumerate(zip(li, net.layers), start=1):
        if s.shape != layer.weight.shape or not np.all(np.isfinite(s)) or np.any(s < 0):
            raise ModelError(f"{path}: li{k} has shape {s.shape} or invalid values; expected "
                             f"non-negative finite {layer.weight.shape} for this model")
    return li
