"""Pruning to a latency budget: ``compress --target-latency US`` trades links for whole units.

On a CPU a dense product costs per multiply-add a fraction of what a sparse one costs per
non-zero (measured here: ~0.07 ns against ~1 ns, so CSR wins only below ~10 % density). Link
pruning at η = 0.9 leaves compacted layers 20-25 % dense: they run dense, and the links removed
inside them save nothing. What does save time is removing *whole units*: a unit gone is a row of
its layer and a column of the next one, so the dense products shrink.

The search, on one set of link scores:

* for each unit fraction ρ in :data:`UNIT_FRACTIONS`, remove the ρ least important units of
  every hidden layer (importance: the sum of the unit's incoming and outgoing link scores;
  removed = its incoming links masked, so the cascade folds its constant output into the next
  layer's biases), then bisect the link sparsity for the *least* one whose predicted latency
  (:mod:`edgeprune.runtime.bench.latency_model`) is within the budget;
* keep, of those candidates, the one with the lowest validation loss (reconstruction MSE, or
  cross-entropy-free misclassification rate for a classifier) -- so units are only traded for
  links where that loses less.

The record lists every candidate (ρ, sparsity, predicted µs, validation loss).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.network import Network
from edgeprune.prune.api import PruneResult, prune_network
from edgeprune.prune.cascade import compact_network
from edgeprune.prune.targets import MAX_SPARSITY, bisect_sparsity
from edgeprune.runtime.bench.latency_model import LatencyModel, predict_us

#: Fractions of each hidden layer's units removed before links are pruned.
UNIT_FRACTIONS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
ITERATIONS = 10  # bisection steps on the link sparsity: resolved to ~1e-3

__all__ = ["UNIT_FRACTIONS", "measure_us", "predicted_latency", "prune_to_latency",
           "validation_loss", "without_units"]


def without_units(net: Network, scores: Sequence[np.ndarray], fraction: float) -> Network:
    """A copy of ``net`` with the ``fraction`` least important units of every hidden layer
    removed (their incoming links masked; the cascade turns them into constants)."""
    out = net.copy()
    for k in range(len(net.layers) - 1):
        importance = np.asarray(scores[k]).sum(axis=1) + np.asarray(scores[k + 1]).sum(axis=0)
        drop = np.argsort(importance, kind="stable")[: int(fraction * importance.shape[0])]
        out.layers[k].mask[drop, :] = False
    return out


def predicted_latency(net: Network, model: LatencyModel) -> dict:
    """Predicted batch-1 µs of ``net`` once compacted (see the latency model)."""
    compact = compact_network(net)
    shapes = [(int(layer.weight.shape[0]), int(layer.weight.shape[1]), layer.nnz)
              for layer in compact.layers]
    return {**predict_us(shapes, model), "shapes": [list(s) for s in shapes]}


def validation_loss(ds) -> Callable[[Network], float]:
    """What the search compares candidates by: validation reconstruction MSE (autoencoders and
    regressors), or the misclassification rate of a classifier (validation split, else train)."""
    from edgeprune.train import accuracy, reconstruction_mse

    x = ds.x_val if ds.x_val is not None and len(ds.x_val) else ds.x_train
    y = ds.y_val if ds.x_val is not None and len(ds.x_val) else ds.y_train

    def loss(net: Network) -> float:
        if net.kind == "classifier":
            return 1.0 - accuracy(net, x, y)
        return reconstruction_mse(net, x)

    return loss


def measure_us(bundle_path, calls: int = 200, rounds: int = 7, engine: str = "numpy") -> float:
    """µs of one-sample calls of the bundle in the runtime's ``engine`` on this host: the
    fastest of ``rounds`` p50s over ``calls`` calls (a shared machine's slow rounds say more
    about its neighbours than about the model)."""
    from edgeprune.runtime import load
    from edgeprune.runtime.bench.harness import blas_threads, percentiles, time_calls

    model = load(bundle_path, engine=engine)
    x = np.random.default_rng(0).random(model.input_dim, dtype=np.float32)
    with blas_threads(1):
        p50 = min(percentiles(time_calls(model, x, warmup=20, runs=calls, min_time=0.0),
                              (50,))[0] for _ in range(rounds))
    return round(p50 / 1e3, 3)


def prune_to_latency(net: Network, scores: Sequence[np.ndarray], target_us: float,
                     model: LatencyModel, val_loss: Callable[[Network], float],
                     quiet: bool = True) -> tuple[PruneResult, dict]:
    """The pruning of ``net`` whose predicted latency is at most ``target_us`` with the lowest
    ``val_loss`` among the candidates of the module docstring; returns it and the record."""
    from tqdm.auto import tqdm

    candidates: list[dict] = []
    best: tuple[float, PruneResult, dict] | None = None
    bar = tqdm(UNIT_FRACTIONS, desc="latency search", unit="unit fraction", disable=quiet,
               leave=False)
    for fraction in bar:
        base = without_units(net, scores, fraction)

        def probe(eta: float, base: Network = base) -> tuple[PruneResult, float]:
            result = prune_network(base, scores, sparsity=eta)
            return result, predicted_latency(result.network, model)["total_us"]

        found, us = probe(0.0)
        if us > target_us:
            found, us = probe(MAX_SPARSITY)
            if us > target_us:
                candidates.append({"unit_fraction": fraction, "fits": False,
                                   "predicted_us": round(us, 3)})
                continue
            found, us = bisect_sparsity(probe, target_us, found, us, ITERATIONS)
        loss = float(val_loss(found.network))
        row = {"unit_fraction": fraction, "fits": True,
               "sparsity": round(found.network.sparsity, 6), "predicted_us": round(us, 3),
               "val_loss": loss}
        candidates.append(row)
        bar.set_postfix(units=f"{fraction:.0%}", sparsity=f"{row['sparsity']:.3f}",
                        loss=f"{loss:.4g}")
        if best is None or loss < best[0]:
            best = (loss, found, row)
    if best is None:
        smallest = min(c["predicted_us"] for c in candidates)
        raise EdgepruneError(
            f"--target-latency {target_us:g}: even the sparsest network is predicted at "
            f"{smallest:.1f} µs; raise the budget")
    _, result, row = best
    record = {"kind": "latency", "target": target_us, "value": row["predicted_us"],
              "unit_fraction": row["unit_fraction"], "latency_model": model.to_dict(),
              "prediction": predicted_latency(result.network, model),
              "candidates": candidates,
              "probes": [c for c in candidates if c["fits"]]}
    return result, record
