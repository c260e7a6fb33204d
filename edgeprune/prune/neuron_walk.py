"""The iterative neuron-pruning walk (Stier et al. 2018, section 4.1; DESIGN section 5).

score -> remove the chosen units physically -> retrain -> re-score, step by step::

    step 0: the given network, its validation metric
    step s: for every target layer l (in turn): play the neuron game on l (Shapley values of
            its units, :mod:`edgeprune.shapley.neuron_game`), let the strategy choose units
            (:mod:`edgeprune.prune.neuron_strategies`) and delete them: a new Network whose
            layer l lost those rows and layer l + 1 those columns; then retrain for
            ``retrain_epochs`` and measure the metric on the validation split.

The walk stops when the metric falls below the threshold (``until="threshold"``, the default)
or, with ``until="empty"`` (the paper's tables), when a strategy would remove the last units of
a layer; that final step is recorded with the metric of the silenced layer, ``m(empty)``, and
no network is built for it. The result is the last network that met the threshold.

Thresholds are in the metric's own units: a minimum accuracy for classifiers, a maximum
reconstruction MSE for autoencoders; ``"0.98x"`` is relative to the unpruned model (accuracy
>= 0.98 x initial, or MSE <= 0.98 x initial).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from edgeprune.choices import GRANULARITIES
from edgeprune.network import Layer, ModelError, Network
from edgeprune.prune.neuron_strategies import Strategy, incoming_norms, parse_strategy, select_units
from edgeprune.shapley.neuron_game import NeuronGame, game_metric, hidden_layers

UNTIL = ("threshold", "empty")


def remove_units(net: Network, layer: int, units, fill: np.ndarray | None = None) -> Network:
    """A new Network without ``units`` (0-based) of ``layer`` (1-based, hidden): rows of layer
    ``layer`` and columns of layer ``layer + 1`` are deleted. ``fill`` (the layer's width):
    the constant each removed unit is replaced by, folded into the next layer's bias (mean
    silencing); without it a removed unit contributes 0."""
    if layer not in hidden_layers(net):
        raise ModelError(f"layer {layer} is not a hidden layer (1..{len(net.layers) - 1})")
    cur, nxt = net.layers[layer - 1], net.layers[layer]
    units = np.unique(np.asarray(units, dtype=np.int64))
    if len(units) and (units[0] < 0 or units[-1] >= cur.out_dim):
        raise ModelError(f"units {units.tolist()} out of range for layer {layer} "
                         f"({cur.out_dim} units)")
    keep = np.setdiff1d(np.arange(cur.out_dim), units)
    if len(keep) == 0:
        raise ModelError(f"removing every unit of layer {layer} leaves no network")
    bias = nxt.bias.astype(np.float64)
    if fill is not None and len(units):
        fill = np.asarray(fill, dtype=np.float64)
        bias = bias + nxt.masked_weight[:, units].astype(np.float64) @ fill[units]
    out = net.copy()
    out.layers[layer - 1] = Layer(cur.weight[keep], cur.bias[keep], cur.activation,
                                  cur.negative_slope, cur.mask[keep])
    out.layers[layer] = Layer(nxt.weight[:, keep], bias.astype(np.float32), nxt.activation,
                              nxt.negative_slope, nxt.mask[:, keep])
    return Network(out.layers, latent=out.latent, kind=out.kind, meta=out.meta)


def parse_threshold(spec) -> tuple[float, bool]:
    """``0.9`` / ``"0.9"`` -> (0.9, absolute); ``"0.98x"`` -> (0.98, relative)."""
    text = str(spec).strip().lower()
    relative = text.endswith("x")
    try:
        value = float(text[:-1] if relative else text)
    except ValueError:
        raise ModelError(f"--threshold {spec!r}: expected a number such as 0.9 (accuracy) or "
                         "0.02 (MSE), or a factor of the unpruned model's metric such as 0.98x"
                         ) from None
    if not (np.isfinite(value) and value > 0):
        raise ModelError(f"--threshold {spec!r}: must be a positive number")
    return value, relative


def resolve_threshold(spec, metric: str, initial: float) -> float:
    """The threshold in the metric's units (an absolute accuracy or MSE)."""
    value, relative = parse_threshold(spec)
    if relative:
        return value * initial
    if metric == "accuracy" and value > 1:
        raise ModelError(f"--threshold {spec}: an accuracy threshold must be in (0, 1]")
    return value


def meets(metric: str, value: float, threshold: float) -> bool:
    """Accuracy >= threshold, or MSE <= threshold."""
    return bool(value >= threshold) if metric == "accuracy" else bool(value <= threshold)


def shapley_scale(metric: str, total: float) -> float:
    """What the strategies' p is a fraction of: 1 for the accuracy game (the paper's values are
    accuracy differences, already fractions), ``|v(all)|`` for the MSE game."""
    return 1.0 if metric == "accuracy" else (abs(total) or 1.0)


def measure(net: Network, x: np.ndarray, y: np.ndarray | None, metric: str) -> float:
    """The walk's metric of ``net``: accuracy, or reconstruction MSE."""
    from edgeprune.train import accuracy, reconstruction_mse

    return accuracy(net, x, y) if metric == "accuracy" else reconstruction_mse(net, x)


def parse_layers(spec, net: Network) -> list[int]:
    """``None``/``"all"`` -> every hidden layer; ``"1,3"`` or [1, 3] -> those (1-based)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return hidden_layers(net)
    try:
        layers = [int(s) for s in spec.split(",")] if isinstance(spec, str) else [int(s)
                                                                                 for s in spec]
    except ValueError:
        raise ModelError(f"--neuron-layers {spec!r}: expected all or 1-based layer indices "
                         "such as 1,2") from None
    bad = [k for k in layers if k not in hidden_layers(net)]
    if bad or not layers:
        raise ModelError(f"--neuron-layers {spec!r}: hidden layers of this network are "
                         f"1..{len(net.layers) - 1}")
    return sorted(set(layers))


@dataclass
class WalkStep:
    """One step of the walk (step 0 is the unpruned network)."""

    step: int
    units_left: list[int]  # per target layer
    metric: float  # validation metric after retraining (m(empty) for an emptied layer)
    test_metric: float | None
    meets: bool
    epochs: int  # training epochs so far, the root model's included
    removed: list[list[int]] = field(default_factory=list)  # original unit ids, per layer
    removed_shapley: float = 0.0  # sum of the removed units' Shapley values
    removed_shapley_fraction: float = 0.0  # ... as a fraction of v(all) of their layer(s)
    evaluations: int = 0  # coalitions evaluated by the games of this step
    seconds: float = 0.0
    shapley: list[dict] = field(default_factory=list)  # NeuronShapley.to_dict() per layer


@dataclass
class NeuronWalk:
    """The walk and its outcome; ``network`` is the last network that met the threshold."""

    network: Network
    steps: list[WalkStep]
    best_step: int
    metric: str
    threshold: float
    threshold_spec: str
    strategy: str
    layers: list[int]
    until: str
    stop_reason: str
    settings: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def units_found(self) -> list[int]:
        return self.steps[self.best_step].units_left

    def to_dict(self) -> dict:
        best = self.steps[self.best_step]
        return {"strategy": self.strategy, "metric": self.metric, "threshold": self.threshold,
                "threshold_spec": self.threshold_spec, "layers": self.layers,
                "until": self.until, **self.settings, "units_before": self.steps[0].units_left,
                "units_after": best.units_left, "best_step": self.best_step,
                "metric_before": self.steps[0].metric, "metric_after": best.metric,
                "n_steps": len(self.steps) - 1, "epochs": self.steps[-1].epochs,
                "stop_reason": self.stop_reason, "seconds": round(self.seconds, 3),
                "steps": [asdict(s) for s in self.steps]}


def _eval_split(ds) -> tuple[np.ndarray, np.ndarray | None]:
    if len(ds.x_val):
        return ds.x_val, ds.y_val
    return ds.x_train, ds.y_train


def neuron_walk(net: Network, ds, strategy: str | Strategy, threshold, *,
                layers=None, retrain_epochs: int = 2, estimator: str = "auto",
                samples: int | None = None, silence: str = "zero",
                truncation: float | None = None, until: str = "threshold",
                initial_epochs: int | None = None, lr: float = 1e-3, batch_size: int = 64,
                seed: int = 0, max_steps: int | None = None, record_values: bool = True,
                quiet: bool = False) -> NeuronWalk:
    """Prune units of ``net`` step by step (see the module docstring) on dataset ``ds``.

    The game and the threshold use the validation split, retraining the training split (with
    the loss of the network's kind). ``initial_epochs`` (default: the checkpoint's ``epochs``)
    starts the epoch count, as the paper's tables do."""
    from edgeprune.train import fit

    t0 = time.perf_counter()
    strat = parse_strategy(strategy)
    if until not in UNTIL:
        raise ModelError(f"until={until!r}: use one of {', '.join(UNTIL)}")
    if retrain_epochs < 0:
        raise ModelError("--retrain-epochs must be >= 0")
    metric = game_metric(net)
    targets = parse_layers(layers, net)
    x_eval, y_eval = _eval_split(ds)
    has_test = len(ds.x_test) > 0 and (metric != "accuracy" or ds.y_test is not None)

    def test_metric(n: Network) -> float | None:
        return measure(n, ds.x_test, ds.y_test, metric) if has_test else None

    m0 = measure(net, x_eval, y_eval, metric)
    thr = resolve_threshold(threshold, metric, m0)
    if not meets(metric, m0, thr):
        raise ModelError(f"--threshold {threshold}: the unpruned model's validation {metric} is "
                         f"{m0:.4g}, which does not meet {thr:.4g}; relax the threshold")
    epochs = int(initial_epochs if initial_epochs is not None else net.meta.get("epochs", 0) or 0)
    ids = {k: np.arange(net.layers[k - 1].out_dim) for k in targets}
    steps = [WalkStep(0, [len(ids[k]) for k in targets], m0, test_metric(net), True, epochs)]
    best, best_step, current = net, 0, net
    rng = np.random.default_rng(seed)
    stop = "max steps"
    bar = tqdm(desc=f"neuron walk {strat}", unit="step", disable=quiet, leave=False)
    step = 0
    while max_steps is None or step < max_steps:
        step += 1
        ts = time.perf_counter()
        removed, games, emptied = [], [], None
        for k in targets:
            game = NeuronGame(current, k, x_eval, y_eval, metric=metric, silence=silence)
            est = game.shapley(estimator, samples, seed=seed * 100_003 + step * 101 + k,
                               truncation=truncation)
            lay = current.layers[k - 1]
            chosen = select_units(strat, est.phi, norms=incoming_norms(lay.weight, lay.mask),
                                  scale=shapley_scale(metric, est.total), rng=rng, n=game.n)
            removed.append(ids[k][chosen].tolist())
            games.append((est, chosen))
            if len(chosen) == game.n:
                emptied = est
                ids[k] = ids[k][:0]
                break
            fill = game.reference.numpy() if silence == "mean" else None
            current = remove_units(current, k, chosen, fill)
            ids[k] = np.delete(ids[k], chosen)
        phis = sum(float(est.phi[c].sum()) for est, c in games)
        total = sum(est.total for est, _ in games)
        record = WalkStep(step, [len(ids[k]) for k in targets], 0.0, None, False, epochs,
                          removed, phis, phis / total if total else float("nan"),
                          sum(est.evaluations for est, _ in games),
                          shapley=[est.to_dict() for est, _ in games] if record_values else [])
        if emptied is not None:
            record.metric = emptied.metric_empty
            record.meets = meets(metric, record.metric, thr)
            record.seconds = time.perf_counter() - ts
            steps.append(record)
            stop = "no unit left"
            break
        if retrain_epochs:
            current, _ = fit(current, ds, epochs=retrain_epochs, lr=lr, batch_size=batch_size,
                             seed=seed + step, quiet=True)
        epochs += retrain_epochs
        record.epochs = epochs
        record.metric = measure(current, x_eval, y_eval, metric)
        record.test_metric = test_metric(current)
        record.meets = meets(metric, record.metric, thr)
        record.seconds = time.perf_counter() - ts
        steps.append(record)
        bar.update(1)
        bar.set_postfix(units=sum(record.units_left), metric=f"{record.metric:.4g}")
        if record.meets:
            best, best_step = current, step
        elif until == "threshold":
            stop = "below threshold"
            break
    bar.close()
    return NeuronWalk(
        network=best, steps=steps, best_step=best_step, metric=metric, threshold=thr,
        threshold_spec=str(threshold), strategy=strat.spec, layers=targets, until=until,
        stop_reason=stop, seconds=time.perf_counter() - t0,
        settings={"estimator": estimator, "samples": samples, "silence": silence,
                  "truncation": truncation, "retrain_epochs": retrain_epochs, "seed": seed})


def walk_markdown(walk: NeuronWalk) -> str:
    """A report.md section: the walk step by step."""
    lines = ["", "## Neuron walk", "",
             f"- strategy `{walk.strategy}` on layer(s) {walk.layers}, validation {walk.metric} "
             f"threshold {walk.threshold:.4g} (`{walk.threshold_spec}`), until {walk.until}",
             f"- units {walk.steps[0].units_left} -> {walk.units_found} (step {walk.best_step} "
             f"of {len(walk.steps) - 1}; stopped: {walk.stop_reason})", "",
             f"| step | units left | {walk.metric} (val) | meets | removed Shapley | epochs |",
             "|---:|---:|---:|:---:|---:|---:|"]
    for s in walk.steps:
        lines.append(f"| {s.step} | {','.join(map(str, s.units_left))} | {s.metric:.4g} | "
                     f"{'yes' if s.meets else 'no'} | {s.removed_shapley:.4g} | {s.epochs} |")
    return "\n".join(lines) + "\n"


def walk_summary(walk: NeuronWalk | dict) -> str:
    """One line for the CLI, from a walk or its ``to_dict()`` (report.json's neuron_walk)."""
    d = walk.to_dict() if isinstance(walk, NeuronWalk) else walk
    return (f"neuron walk {d['strategy']}: units {d['units_before']} -> {d['units_after']} in "
            f"{d['best_step']} step(s), validation {d['metric']} {d['metric_before']:.4g} -> "
            f"{d['metric_after']:.4g} (threshold {d['threshold']:.4g}; stopped: "
            f"{d['stop_reason']})")


def neuron_stage(net: Network, ds, opts) -> NeuronWalk:
    """The walk with the settings of a :class:`~edgeprune.compress.CompressOptions`."""
    walk = neuron_walk(
        net, ds, opts.strategy, opts.threshold, layers=getattr(opts, "neuron_layers", None),
        retrain_epochs=opts.retrain_epochs, estimator=opts.neuron_estimator,
        samples=opts.neuron_samples, silence=opts.silence,
        truncation=getattr(opts, "neuron_truncation", None), lr=opts.finetune_lr or 1e-3,  # unmeasured at 3e-3: as before
        seed=opts.seed, quiet=opts.quiet)
    walk.network = walk.network.without_zero_links()  # as compress does
    return walk




def parse_granularity(spec: str | None) -> tuple[str, ...]:
    """``"link"`` (default), ``"neuron"`` or ``"neuron,link"`` (units first, then links)."""
    parts = [p.strip().lower() for p in (spec or "link").split(",") if p.strip()]
    bad = [p for p in parts if p not in GRANULARITIES]
    if bad or not parts:
        raise ModelError(f"--granularity {spec!r}: use link, neuron or neuron,link")
    return tuple(g for g in GRANULARITIES if g in parts)


def check_neuron_options(opts) -> None:
    """Validate the neuron fields of a CompressOptions before any work (one-line errors)."""
    from edgeprune.shapley.neuron_game import NEURON_ESTIMATORS, SILENCE

    if not opts.strategy:
        raise ModelError("--granularity neuron needs --strategy, e.g. svbucket:0.2")
    parse_strategy(opts.strategy)
    if opts.threshold is None:
        raise ModelError("--granularity neuron needs --threshold: a minimum accuracy "
                         "(classifiers, e.g. 0.9), a maximum MSE (autoencoders) or a factor "
                         "of the unpruned model's metric such as 0.98x")
    parse_threshold(opts.threshold)
    if opts.retrain_epochs is None or opts.retrain_epochs < 0:
        raise ModelError("--retrain-epochs must be >= 0")
    if opts.neuron_estimator not in NEURON_ESTIMATORS:
        raise ModelError(f"--neuron-estimator {opts.neuron_estimator!r}: use one of "
                         f"{', '.join(NEURON_ESTIMATORS)}")
    if opts.neuron_samples is not None and opts.neuron_samples < 2:
        raise ModelError(f"--neuron-samples {opts.neuron_samples}: use at least 2 "
                         "(defaults: 100 permutations, 500 subsets)")
    if opts.silence not in SILENCE:
        raise ModelError(f"--silence {opts.silence!r}: use one of {', '.join(SILENCE)}")
    trunc = getattr(opts, "neuron_truncation", None)
    if trunc is not None and not 0.0 <= trunc < 1.0:
        raise ModelError(f"--truncation {trunc}: use a fraction in [0, 1), e.g. 0.01")
    layers = getattr(opts, "neuron_layers", None)
    if isinstance(layers, str) and layers.strip().lower() not in ("", "all"):
        try:
            [int(s) for s in layers.split(",")]
        except ValueError:
            raise ModelError(f"--neuron-layers {layers!r}: expected all or 1-based layer "
                             "indices such as 1,2") from None


def unpruned_links(net: Network):
    """A :class:`~edgeprune.prune.api.PruneResult` that prunes no link (granularity neuron)."""
    from edgeprune.prune.api import build_result
    from edgeprune.prune.cascade import cascade_dead_units

    return build_result(cascade_dead_units(net), None)
