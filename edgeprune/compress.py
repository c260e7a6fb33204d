"""The ``compress`` pipeline: score -> prune -> fine-tune -> compact -> bundle, verified.

Every option and the output directory are validated before any work; the output directory is
assembled in a staging directory and replaces ``-o`` as one unit only when every artifact has
been checked (:mod:`edgeprune.output_dir`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeprune import __version__
from edgeprune.artifacts import ExportOptions, parse_formats, write_artifacts
from edgeprune.checkpoint import save_checkpoint
from edgeprune.choices import (
    DEFAULT_ALPHA,
    DEFAULT_MEMORY_BUDGET,
    DEFAULT_RECONSTRUCT_RIDGE,
    DEFAULT_SCORE_RULE,
    METHODS,
)
from edgeprune.data import Dataset, explanation_set
from edgeprune.fileio import write_text_atomic
from edgeprune.finetune import (
    check_finetune_kind,
    finetune_pruned,
    finetune_recipe,
)
from edgeprune.network import VAE_LIKELIHOODS, ModelError, Network
from edgeprune.output_dir import staged_output_dir
from edgeprune.prune import baseline_scores, compact_network, format_support_set, prune_network
from edgeprune.prune.rules import check_score_rule
from edgeprune.report import CompressReport, record_data_spec, record_path, write_json
from edgeprune.scoring import (
    auto_alpha_scores,
    load_link_scores,
    rule_scores,
    score_network,
)
from edgeprune.train import evaluate
from edgeprune.vae_pruning import check_vae_options

SUPPORT_SET_PRINT_LIMIT = 512  # networks with at most this many links get their support sets


@dataclass
class CompressOptions:
    """Everything ``edgeprune compress`` can be told; see the CLI help for each field."""

    importance_level: float | None = None
    sparsity: float | None = None
    method: str = "shap-sae"
    estimator: str = "auto"
    reference: str = "zero"
    samples: int = 256
    background: int = 16  # --reference background: K explanation samples as the reference
    seed: int = 0
    finetune_epochs: int = 0
    finetune_lr: float | None = None  # None: 3e-3 for an autoencoder, else 1e-3 (finetune.py)
    codebook_epochs: int = 0  # --quantize sharedN: fine-tune the shared values (weight_sharing)
    codebook_lr: float = 1e-4
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    scores_path: str | None = None
    score_rule: str = DEFAULT_SCORE_RULE  # shap-sae: paper (mean |phi|), rms or hybrid
    alpha: float | str = DEFAULT_ALPHA  # hybrid: LI^alpha * |w|^(1 - alpha); or "auto"
    steps: int = 1  # gradual pruning: steps of the polynomial schedule towards --sparsity
    compensate: bool = False  # fold each pruned link's mean contribution into its unit's bias
    allocation: str = "layer"  # "layer": the paper's m per layer; "global": one normalised budget
    distill: float = 0.0  # fine-tune: weight of matching the unpruned network (edgeprune.finetune)
    distill_on: str = "all"  # ... its every layer's output ("all") or reconstruction ("output")
    finetune_schedule: str = "constant"  # the fine-tune's learning rate: constant or cosine
    reconstruct: bool | None = None  # refit kept weights + biases (None: see reconstructs())
    reconstruct_ridge: float | None = None  # its ridge, relative (None: DEFAULT_RECONSTRUCT_RIDGE)
    target_macs: int | None = None  # instead of m / eta: the least sparsity within this budget
    target_size: int | None = None  # ... or within this many bytes of model.npz
    target_latency: float | None = None  # ... or a predicted batch-1 latency (µs), units traded
    latency_engine: str = "numpy"  # the runtime engine --target-latency predicts: numpy, numba
    # neuron pruning (edgeprune.prune.neuron_walk): units first, then links
    granularity: str = "link"  # "link", "neuron" or "neuron,link"
    strategy: str | None = None  # svbottom:k, svbottom-p:p, svbucket:p, random:k, wbottom:k
    threshold: float | str | None = None  # min accuracy / max MSE, or "0.98x" (relative)
    retrain_epochs: int = 2
    neuron_estimator: str = "auto"  # auto, exact, permutation, subset
    neuron_samples: int | None = None  # permutations (100) or subsets (500)
    silence: str = "zero"  # what a unit outside the coalition emits: zero or mean
    neuron_layers: str | None = None  # "all" hidden layers, or e.g. "1,3"
    neuron_truncation: float | None = None  # TMC truncation of permutations
    export: str | None = None  # formats besides npz; None = every installed one
    export_options: ExportOptions = field(default_factory=ExportOptions)
    max_metric_drop: float | None = None  # with export_options.quantize (edgeprune.quantization)
    likelihood: str | None = None  # a VAE: the ELBO's likelihood (default: the model's own)
    beta: float | None = None  # a VAE: the ELBO's KL weight (default: the one it was trained with)
    quiet: bool = False
    provenance: dict = field(default_factory=dict)

    def granularities(self) -> tuple[str, ...]:
        """What is pruned, in order: ("link",), ("neuron",) or ("neuron", "link")."""
        from edgeprune.prune.neuron_walk import parse_granularity

        return parse_granularity(self.granularity)

    def validate(self) -> None:
        grains = self.granularities()
        if "neuron" in grains:
            from edgeprune.prune.neuron_walk import check_neuron_options

            check_neuron_options(self)
        goals = [v for v in (self.importance_level, self.sparsity, self.target_macs,
                             self.target_size, self.target_latency) if v is not None]
        if "link" not in grains and goals:
            raise ModelError("--importance-level/--sparsity/--target-macs/--target-size/"
                             "--target-latency prune links; use --granularity neuron,link to "
                             "prune links after the units")
        if "link" in grains and len(goals) != 1:
            raise ModelError("give exactly one of --importance-level M, --sparsity ETA, "
                             "--target-macs N, --target-size BYTES or --target-latency US")
        if self.target_latency is not None and not (
                isinstance(self.target_latency, (int, float))
                and not isinstance(self.target_latency, bool)
                and math.isfinite(self.target_latency) and self.target_latency > 0):
            raise ModelError(f"--target-latency {self.target_latency}: must be a number of "
                             "microseconds > 0, e.g. 15")
        if self.latency_engine not in ("numpy", "numba"):
            raise ModelError(f"--latency-engine {self.latency_engine!r}: expected numpy or "
                             "numba")
        if self.latency_engine == "numba" and self.target_latency is not None:
            from edgeprune.runtime import fused

            if not fused.available():
                raise ModelError("--latency-engine numba needs numba, which is not installed "
                                 "(pip install 'edgeprune[fast]')")
        for name, value in (("--target-macs", self.target_macs),
                            ("--target-size", self.target_size)):
            if value is not None and (isinstance(value, bool) or int(value) != value
                                      or value < 1):
                raise ModelError(f"{name} {value}: must be a whole number >= 1")
        if self.importance_level is not None and not 0.0 < self.importance_level <= 1.0:
            raise ModelError(f"--importance-level {self.importance_level}: m must be in (0, 1], "
                             "e.g. 0.8")
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise ModelError(f"--sparsity {self.sparsity}: eta must be in [0, 1), e.g. 0.9")
        if self.method not in METHODS:
            raise ModelError(f"--method {self.method!r}: use one of {', '.join(METHODS)}")
        check_score_rule(self.score_rule, self.alpha)
        if self.steps != 1:
            if int(self.steps) != self.steps or self.steps < 1:
                raise ModelError(f"--steps {self.steps}: must be a whole number >= 1")
            if self.sparsity is None or "link" not in self.granularities():
                raise ModelError("--steps N prunes links towards --sparsity ETA; give --sparsity")
            if self.scores_path:
                raise ModelError("--steps N re-scores the pruned network at every step; "
                                 "drop --scores")
        from edgeprune.finetune import check_finetune_recipe

        check_finetune_recipe(self.distill, self.distill_on, self.finetune_schedule)
        if (self.distill or self.finetune_schedule != "constant") and not self.finetune_epochs:
            raise ModelError("--distill/--finetune-schedule shape the fine-tune; add "
                             "--finetune-epochs N (e.g. 10)")
        from edgeprune.choices import ALLOCATIONS

        if self.allocation not in ALLOCATIONS:
            raise ModelError(f"--allocation {self.allocation!r}: use one of "
                             f"{', '.join(ALLOCATIONS)}")
        if self.allocation == "global" and (self.sparsity is None
                                            or "link" not in self.granularities()):
            raise ModelError("--allocation global shares one --sparsity budget over all "
                             "layers; give --sparsity (not -m or a --target-*)")
        if self.compensate and "link" not in self.granularities():
            raise ModelError("--compensate folds the means of pruned links into the biases; "
                             "use it with --granularity link or neuron,link")
        self._check_reconstruct()
        if self.samples < 1:
            raise ModelError("--samples must be at least 1")
        if self.reference == "background" and not 1 <= self.background <= self.samples:
            raise ModelError(f"--background {self.background}: must be in [1, --samples "
                             f"{self.samples}] (the background rows are explanation samples)")
        if self.finetune_epochs < 0:
            raise ModelError("--finetune-epochs must be >= 0")
        if self.finetune_lr is not None and not (
                isinstance(self.finetune_lr, (int, float)) and math.isfinite(self.finetune_lr)
                and self.finetune_lr > 0):
            raise ModelError(f"--finetune-lr {self.finetune_lr}: must be a number > 0, e.g. 1e-3")
        if self.beta is not None and not (np.isfinite(self.beta) and self.beta >= 0):
            raise ModelError(f"--beta {self.beta}: must be a finite number >= 0")
        if self.likelihood not in (None, *VAE_LIKELIHOODS):
            raise ModelError(f"--likelihood {self.likelihood!r}: use one of "
                             f"{', '.join(VAE_LIKELIHOODS)}")
        if self.codebook_epochs < 0:
            raise ModelError("--codebook-epochs must be >= 0")
        if self.codebook_epochs and not self.export_options.quantize.startswith("shared"):
            raise ModelError("--codebook-epochs fine-tunes shared weights; add --quantize "
                             "shared4, shared5 or shared6")
        parse_formats(self.export)  # unknown or unavailable formats fail before any work
        self.export_options.validate()
        from edgeprune.quantization import check_max_metric_drop

        check_max_metric_drop(self.max_metric_drop)
        if self.max_metric_drop is not None and self.export_options.quantize == "none":
            raise ModelError("--max-metric-drop guards quantization; add --quantize int8")

    def reconstructs(self, kind: str | None = None) -> bool:
        """Whether the kept weights are refit after pruning (``--reconstruct``): as given, or
        by default for ``--method shap-sae`` link pruning without ``--compensate``, except for a
        VAE (``kind``), which it does not support yet. The baselines stay the literature's."""
        if self.reconstruct is not None:
            return bool(self.reconstruct)
        return (self.method == "shap-sae" and "link" in self.granularities()
                and not self.compensate and kind != "vae")

    def _check_reconstruct(self) -> None:
        ridge = self.reconstruct_ridge
        if ridge is not None and not self.reconstructs():
            raise ModelError("--reconstruct-ridge sets the ridge of --reconstruct; add "
                             "--reconstruct")
        if ridge is not None and (isinstance(ridge, bool) or not isinstance(ridge, (int, float))
                                  or not math.isfinite(ridge) or ridge < 0):
            raise ModelError(f"--reconstruct-ridge {ridge}: must be a number >= 0, e.g. 0.001")
        if not self.reconstruct:
            return
        if "link" not in self.granularities():
            raise ModelError("--reconstruct refits the weights kept by link pruning; use it "
                             "with --granularity link or neuron,link")
        if self.compensate:
            raise ModelError("--reconstruct refits the biases too (it contains --compensate); "
                             "drop --compensate")


@dataclass
class CompressResult:
    network: Network  # pruned (masked, cascaded, fine-tuned) network
    report: CompressReport
    outdir: Path


def check_data_matches(net: Network, ds: Dataset) -> None:
    if ds.dim != net.in_dim:
        raise ModelError(f"data {ds.name!r} has {ds.dim} features but the model reads "
                         f"{net.in_dim}; pass --data with {net.in_dim}-feature samples")


def link_scores(net: Network, ds: Dataset, opts: CompressOptions) -> tuple[list, dict | None]:
    """Per-layer non-negative link scores for the chosen method (+ a scoring summary)."""
    if opts.scores_path:
        scores, summary = load_link_scores(opts.scores_path, net), {"from": str(opts.scores_path)}
    elif opts.method == "shap-sae":
        x = explanation_set(ds, opts.samples, opts.seed)
        scores = score_network(net, x, estimator=opts.estimator, reference=opts.reference,
                               seed=opts.seed, memory_budget=opts.memory_budget, quiet=opts.quiet,
                               background=opts.background)
        summary = scores.summary()
    else:
        return baseline_scores(opts.method, net, seed=opts.seed), None
    if opts.score_rule == "hybrid" and opts.alpha == "auto":
        li, search = auto_alpha_scores(scores, net, ds.x_val, ds.y_val, sparsity=opts.sparsity,
                                       importance_level=opts.importance_level)
        return li, {**summary, "score_rule": "hybrid", **search}
    return rule_scores(scores, net, opts.score_rule, opts.alpha), {**summary,
                                                                   **_rule_summary(opts)}


def _rule_summary(opts: CompressOptions) -> dict:
    return {"score_rule": opts.score_rule,
            **({"alpha": opts.alpha} if opts.score_rule == "hybrid" else {})}


def compress(net: Network, ds: Dataset, outdir: str | os.PathLike,
             opts: CompressOptions) -> CompressResult:
    """Prune ``net`` on ``ds`` and write ``pruned.pt``, ``model.npz``, ``report.json/md``.

    ``outdir`` is checked before any work and replaced as one unit when everything has been
    written and verified (:mod:`edgeprune.output_dir`); on any failure it is left as it was."""
    opts.validate()
    check_data_matches(net, ds)
    check_vae_options(net, opts)
    check_finetune_kind(net, opts)
    if opts.likelihood is not None:
        net = net.copy()
        net.likelihood = opts.likelihood
    inputs = [p for p in (opts.provenance.get("model"), opts.scores_path) if p]
    t0 = time.perf_counter()
    with staged_output_dir(outdir, "compress", inputs=inputs) as staging:
        net = net.without_zero_links()
        before = evaluate(net, ds, opts.seed)
        walk = None
        if "neuron" in opts.granularities():  # units first: a smaller network, then links
            from edgeprune.prune.neuron_walk import neuron_stage

            walk = neuron_stage(net, ds, opts)
        work = walk.network if walk is not None else net
        result, scoring, steps, epochs = _prune_links(
            work, ds, opts, _artifact_metadata(net, ds, opts, outdir, walk, None))
        pruned, history = finetune_pruned(result.network, ds, opts, epochs, teacher=work)
        metadata = _artifact_metadata(net, ds, opts, outdir, walk, result.importance_level)
        pruned = _keep_size_budget(pruned, scoring, opts, metadata)
        after = evaluate(pruned, ds, opts.seed)
        quantization, float32_net = None, None
        if opts.export_options.quantize != "none":  # the accuracy guard, before any file
            from edgeprune.quantization import quantization_stage

            shared, codebook_history = _shared_codebooks(pruned, ds, opts)
            if shared is not None:  # the tuned codebooks are what model.npz measures now
                shared = _keep_size_budget(shared, scoring, opts, metadata)
            quantization = quantization_stage(pruned, ds, opts.seed, opts.export_options.quantize,
                                              opts.max_metric_drop, fp32_metrics=after,
                                              quantized=shared)
            if shared is not None:  # what model.npz stores exactly, and pruned.pt with it
                quantization["codebook_epochs"] = opts.codebook_epochs
                quantization["codebook_history"] = codebook_history
                float32_net, pruned = pruned, shared
        compact_net = compact_network(pruned)
        if scoring and scoring.get("from"):
            scoring["from"] = record_path(scoring["from"], outdir)
        report = _report(net, pruned, compact_net, ds, opts, result, scoring, walk,
                         {"before": before, "after": after}, history, outdir)
        report.quantization = quantization
        report.steps = steps
        report.finetune_recipe = finetune_recipe(net, opts)
        report.allocation = None if opts.allocation == "layer" else opts.allocation
        if pruned.kind == "vae":
            from edgeprune.vae_pruning import vae_report

            report.vae = vae_report(pruned, result.logvar_head, opts)
        _write_outputs(staging, net, pruned, compact_net, ds, opts, report, walk, t0, metadata,
                       float32_net)
    return CompressResult(pruned, report, Path(outdir))


def _prune_links(work: Network, ds: Dataset, opts: CompressOptions, metadata: dict):
    """Score and prune the links (or, for --granularity neuron, keep every remaining link)."""
    if "link" not in opts.granularities():
        from edgeprune.prune.neuron_walk import unpruned_links

        return unpruned_links(work), None, None, opts.finetune_epochs
    if opts.steps > 1:  # gradual: re-score and fine-tune between the schedule's steps
        from edgeprune.gradual import gradual_prune

        return gradual_prune(work, ds, opts, lambda n: link_scores(n, ds, opts),
                             lambda n, e: finetune_pruned(n, ds, opts, e, teacher=work)[0],
                             lambda n: evaluate(n, ds, opts.seed),
                             adjust=lambda before, res: _refit(before, res, ds, opts))
    scores, scoring = link_scores(work, ds, opts)
    if opts.target_latency is not None:
        from edgeprune.prune.latency_target import prune_to_latency, validation_loss
        from edgeprune.runtime.bench.latency_model import latency_model_for

        result, search = prune_to_latency(work, scores, float(opts.target_latency),
                                          latency_model_for(engine=opts.latency_engine),
                                          validation_loss(ds), opts.quiet)
        search["engine"] = opts.latency_engine
        return (_refit(work, result, ds, opts), {**(scoring or {}), "target": search}, None,
                opts.finetune_epochs)
    if opts.target_macs is not None or opts.target_size is not None:
        from edgeprune.prune.targets import prune_to_target, target_measure

        kind = "macs" if opts.target_macs is not None else "bytes"
        result, search = prune_to_target(
            work, scores, int(opts.target_macs or opts.target_size), kind,
            target_measure(kind, opts.export_options.quantize, metadata,
                           opts.export_options.npz_compression))
        return (_refit(work, result, ds, opts), {**(scoring or {}), "target": search},
                None, opts.finetune_epochs)
    result = prune_network(work, scores, importance_level=opts.importance_level,
                           sparsity=opts.sparsity, allocation=opts.allocation)
    result = _refit(work, result, ds, opts)
    if work.kind == "vae" and work.logvar is not None:  # its head, at the chain's level m
        from edgeprune.vae_pruning import prune_vae_head

        result.network, result.logvar_head = prune_vae_head(
            work, result.network, explanation_set(ds, opts.samples, opts.seed), opts, scoring,
            result.importance_level)
    return result, scoring, None, opts.finetune_epochs


def _refit(before: Network, result, ds: Dataset, opts: CompressOptions):
    """What happens to the kept links' values once the mask is chosen: ``--reconstruct``
    (layer-wise least squares, :mod:`edgeprune.prune.reconstruct`), ``--compensate`` (biases
    only) or nothing. Runs after every pruning pass (each step of --steps)."""
    if not opts.reconstructs(before.kind):
        return _compensated(before, result, ds, opts)
    from dataclasses import replace

    from edgeprune.prune.reconstruct import reconstruct_weights

    ridge = DEFAULT_RECONSTRUCT_RIDGE if opts.reconstruct_ridge is None else opts.reconstruct_ridge
    net, record = reconstruct_weights(before, result.network, ds.x_train, ridge=ridge,
                                      quiet=opts.quiet)
    return replace(result, network=net, reconstruction=record)


def _compensated(before: Network, result, ds: Dataset, opts: CompressOptions):
    """``--compensate``: the pruned links' mean contributions over the training split folded
    into the biases (:mod:`edgeprune.prune.compensate`); otherwise ``result`` unchanged."""
    if not opts.compensate:
        return result
    from dataclasses import replace

    from edgeprune.prune.compensate import compensate_biases

    net = compensate_biases(before, result.network, ds.x_train)
    return replace(result, network=net, notes=[*result.notes, (
        "--compensate: each live unit's bias matches its mean pre-activation before pruning "
        "(the pruned links' mean contributions folded in, on the training split)")])


def _artifact_metadata(net, ds, opts, outdir, walk, importance_level) -> dict:
    """What every artifact records about where it came from (also measured by --target-size)."""
    return {**_recorded_source(ds.name, opts, outdir),
            "source_model_fingerprint": net.fingerprint(),
            "report": {"method": _method_name(opts, walk), "importance_level": importance_level}}


def _method_name(opts, walk) -> str:
    if walk is None:
        return opts.method
    return f"neuron:{walk.strategy}" + (f"+{opts.method}" if "link" in opts.granularities()
                                        else "")


def _keep_size_budget(pruned: Network, scoring: dict | None, opts: CompressOptions,
                      metadata: dict) -> Network:
    """Fine-tuning changes weight values, and with them the deflated size of model.npz (a few
    per cent, measured). When that breaks --target-size, the fine-tuned network's smallest
    remaining weights are pruned until it fits again (no further fine-tuning), and the search
    record says how many links that took."""
    target = (scoring or {}).get("target")
    if not target or target["kind"] != "bytes":
        return pruned
    from edgeprune.prune import baseline_scores
    from edgeprune.prune.targets import prune_to_target, target_measure

    measure = target_measure("bytes", opts.export_options.quantize, metadata,
                             opts.export_options.npz_compression)
    size = measure(pruned)  # exactly the model.npz that will be published
    if size <= target["target"]:
        target["value"] = size
        return pruned
    trimmed, search = prune_to_target(pruned, baseline_scores("magnitude", pruned),
                                      target["target"], "bytes", measure)
    target["trimmed_after_finetune"] = {"links": int(pruned.n_active - trimmed.network.n_active),
                                        "bytes": search["value"]}
    target["value"] = search["value"]
    return trimmed.network


def _shared_codebooks(pruned: Network, ds: Dataset,
                      opts: CompressOptions) -> tuple[Network | None, list]:
    """With --codebook-epochs: ``pruned`` with shared, fine-tuned weights (else ``None``)."""
    if not opts.codebook_epochs:
        return None, []
    from edgeprune.weight_sharing import share_and_finetune

    return share_and_finetune(pruned, ds, opts.export_options.quantize,
                              epochs=opts.codebook_epochs, lr=opts.codebook_lr, seed=opts.seed,
                              quiet=opts.quiet)


def _report(net, pruned, compact_net, ds, opts, result, scoring, walk, metrics,
            history, outdir) -> CompressReport:
    return CompressReport(
        edgeprune_version=__version__,
        network=net.describe(),
        source=_recorded_source(ds.name, opts, outdir),
        method=_method_name(opts, walk),
        scoring=scoring,
        importance_level=result.importance_level,
        sparsity=pruned.sparsity,  # eta of the written network
        links_total=pruned.n_links,
        links_kept=pruned.n_active,
        original_dense_fp32_bytes=4 * sum(layer.n_links + layer.out_dim for layer in net.layers),
        input_dim=net.in_dim,
        output_dim=net.out_dim,
        layers=result.per_layer,
        unused_inputs=[int(i) for i in np.setdiff1d(np.arange(net.in_dim),
                                                      compact_net.input_index)],
        constant_outputs={int(i): float(compact_net.output_const[i])
                          for i in np.setdiff1d(np.arange(net.out_dim),
                                                compact_net.output_index)},
        target_sparsity=result.target_sparsity,
        reconstruction=result.reconstruction,
        import_=(net.meta or {}).get("import") or {},
        notes=list(result.notes),
        finetune_epochs=opts.finetune_epochs,
        finetune_history=history,
        metrics=metrics,
        granularity=",".join(opts.granularities()),
        # against the original model's links (the neuron walk removes units physically)
        links_original=net.n_links,
        sparsity_vs_original=1.0 - pruned.n_active / net.n_links,
        network_pruned=pruned.describe() if walk is not None else None,
        neuron_walk=walk.to_dict() if walk is not None else None,
        support_sets=[format_support_set(pairs, k)  # small enough to read, as in paper §3.1
                      for k, pairs in enumerate(result.support_sets, start=1)]
        if pruned.n_links <= SUPPORT_SET_PRINT_LIMIT else None,
    )


def _recorded_source(data: str, opts: CompressOptions, outdir) -> dict:
    """Where the model and data came from, paths relative to the report (report.py)."""
    source = {"data": record_data_spec(data, outdir), **opts.provenance}
    if isinstance(source.get("model"), str):
        source["model"] = record_path(source["model"], outdir)
    return source


def _write_outputs(staging: Path, net, pruned, compact_net, ds, opts, report: CompressReport,
                   walk, t0, metadata: dict, float32_net=None) -> None:
    """pruned.pt, every artifact (each verified against PyTorch), report.json and report.md."""
    pruned.meta = {**pruned.meta, "pruning": {"method": report.method,
                                              "importance_level": report.importance_level,
                                              "sparsity": report.sparsity}}
    save_checkpoint(pruned, staging / "pruned.pt")
    formats, notes = parse_formats(opts.export)
    formats = ["npz"] + [f for f in formats if f != "npz"]  # the bundle is always written
    artifacts = write_artifacts(
        pruned, compact_net, ds.x_test, staging, formats, opts.export_options,
        metadata=metadata,
        x_calibration=ds.x_train, float32_net=float32_net)
    target = (report.scoring or {}).get("target")
    if target and target["kind"] == "latency":  # predicted vs measured, here
        from edgeprune.prune.latency_target import measure_us

        target["measured_us_this_host"] = measure_us(artifacts["npz"]["path"],
                                                     engine=target.get("engine", "numpy"))
    report.artifacts = {fmt: {k: v for k, v in a.items() if k != "path"}
                        for fmt, a in artifacts.items()}
    if opts.export_options.quantize != "none":
        from edgeprune.artifacts import float32_notes

        notes = notes + float32_notes(opts.export_options.quantize, formats,
                                      opts.export_options.tflite_sparse)
    report.export_notes = notes
    report.runtime_max_abs_diff = artifacts["npz"]["max_abs_diff_vs_pytorch"]
    target = (report.scoring or {}).get("target")
    if target and target["kind"] == "bytes" and artifacts["npz"]["bytes"] > target["target"]:
        raise ModelError(  # measured the same way just before: a bug if it ever differs
            f"model.npz is {artifacts['npz']['bytes']} bytes, over --target-size "
            f"{target['target']}; this is a bug, please report it")
    report.seconds = round(time.perf_counter() - t0, 3)
    write_json(staging / "report.json", report.to_dict())
    md = report.markdown()
    if walk is not None:
        from edgeprune.prune.neuron_walk import walk_markdown

        md += walk_markdown(walk)
    write_text_atomic(staging / "report.md", md)
