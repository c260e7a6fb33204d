"""``edgeprune explain``: the SHAP-SAE paper's Figure 2/4 pictures and a summary for a user's model.

What is explained (paper section 2.2, 3.1):

* the unit importance (UI, eq. 4) of every input: the mean over the first layer's units of the
  link importance (LI, eq. 3) of the input's links, ``li1.mean(axis=0)``;
* the LI of every layer, as a heatmap (out x in);
* the inputs the pruned model never reads (every link of their first-layer column masked).

``MODEL_OR_OUTDIR`` is a model file (scored here, or ``--scores``; then pruned with SHAP-SAE at
importance level m, 0.8 by default, exactly as ``compress -m`` prunes) or a ``compress`` output
directory (its ``pruned.pt`` gives the masks; the scores come from ``--scores``, else from the
scores file ``compress --scores`` recorded, else the original model recorded in ``report.json`` is
scored, else ``pruned.pt`` itself).

Outputs (published together from a staging directory): ``input_importance.png``,
``li_layer{k}.png``, ``pruned_inputs.png`` (all :data:`~edgeprune.explain_plots.PNG_SIZE`),
``explain.json`` and ``explain.md``. In ``explain.json`` an input's ``index`` is 0-based (as
``report.json``'s ``unused_inputs``), its ``name`` is 1-based as in the paper (x1..xn, pixel
(row,col)) unless the data names its features (a CSV header).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeprune import __version__
from edgeprune import explain_plots as plots
from edgeprune.choices import DEFAULT_MEMORY_BUDGET
from edgeprune.data import Dataset
from edgeprune.fileio import write_text_atomic
from edgeprune.network import ModelError, Network
from edgeprune.output_dir import check_output_dir, staged_output_dir

DEFAULT_IMPORTANCE_LEVEL = 0.8  # SHAP-SAE's level for the pruned-input map of a plain model
NAME_LIST_LIMIT = 64  # explain.md names at most this many never-read inputs


@dataclass
class ExplainOptions:
    """What ``edgeprune explain`` can be told; see the CLI help for each field."""

    importance_level: float | None = None  # plain models only; None = DEFAULT_IMPORTANCE_LEVEL
    estimator: str = "auto"
    reference: str = "zero"
    samples: int = 256
    seed: int = 0
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    scores_path: str | None = None
    top: int = 10
    quiet: bool = False

    def validate(self) -> None:
        if self.importance_level is not None and not 0.0 < self.importance_level <= 1.0:
            raise ModelError(f"--importance-level {self.importance_level}: m must be in (0, 1], "
                             "e.g. 0.8")
        if self.samples < 1:
            raise ModelError("--samples must be at least 1")
        if self.top < 1:
            raise ModelError("--top must be at least 1")


@dataclass
class Explanation:
    """Scores of ``network`` (``li[k-1]``: layer k, (out, in)) and the masks of ``pruned``."""

    network: Network
    pruned: Network
    li: list[np.ndarray]
    names: list[str]
    image_shape: tuple[int, int] | None
    mean_input: np.ndarray
    top: int = 10
    info: dict = field(default_factory=dict)

    @property
    def ui(self) -> np.ndarray:
        """UI of the inputs (paper eq. 4)."""
        return self.li[0].mean(axis=0)

    @property
    def never_read(self) -> np.ndarray:
        """0-based inputs whose first-layer links are all masked in the pruned model."""
        return np.flatnonzero(~self.pruned.layers[0].mask.any(axis=0))

    def ranking(self) -> np.ndarray:
        """Inputs by UI, largest first (ties: lower index first)."""
        return np.argsort(-self.ui, kind="stable")

    def to_dict(self) -> dict:
        ui, order = self.ui, self.ranking()
        rank = np.empty_like(order)
        rank[order] = np.arange(1, len(order) + 1)
        spread = self.li[0].var(axis=0)  # Figure 2b: variance over the units i of LI_ij
        dropped = set(self.never_read.tolist())
        k = min(self.top, max(1, len(ui) // 2))

        def entry(j: int) -> dict:
            return {"index": int(j), "name": self.names[j], "ui": float(ui[j])}

        bottom = np.argsort(ui, kind="stable")[:k]
        return {
            "edgeprune_version": __version__,
            "source": self.info,
            "network": self.network.describe(),
            "pruned_network": self.pruned.describe(),
            "input_dim": self.network.in_dim,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "png_size": list(plots.PNG_SIZE),
            "inputs": [{**entry(j), "rank": int(rank[j]), "li_variance": float(spread[j]),
                        "mean_value": float(self.mean_input[j]),
                        "read_by_pruned_model": j not in dropped} for j in range(len(ui))],
            "most_important": [entry(j) for j in order[:k]],
            "least_important": [entry(j) for j in bottom],
            "never_read": [entry(j) for j in self.never_read],
            "layers": [self._layer_summary(k) for k in range(1, len(self.li) + 1)],
        }

    def _layer_summary(self, k: int) -> dict:
        li, layer = self.li[k - 1], self.pruned.layers[k - 1]
        i, j = np.unravel_index(int(np.argmax(li)), li.shape)
        row = {"layer": k, "shape": list(li.shape), "li_total": float(li.sum()),
               "li_mean": float(li.mean()), "strongest_link": {"i": int(i) + 1, "j": int(j) + 1,
                                                               "li": float(li[i, j])},
               "links_kept": layer.n_active, "pruned_shape": [layer.out_dim, layer.in_dim]}
        if layer.mask.shape == li.shape and li.sum() > 0:  # share of LI the kept links carry
            row["li_kept_fraction"] = float(li[layer.mask].sum() / li.sum())
        return row

    def summary_lines(self) -> list[str]:
        """What ``edgeprune explain`` prints."""
        d = self.to_dict()
        return ["most important inputs: " + ", ".join(e["name"] for e in d["most_important"][:5]),
                f"never read by the pruned model: {len(d['never_read'])} of {d['input_dim']} "
                "inputs"]

    def markdown(self, files: list[str]) -> str:
        d = self.to_dict()
        src = d["source"]
        lines = ["# edgeprune explanation", "",
                 f"- model: `{src.get('scored_model', '?')}` ({d['network']})",
                 f"- data: `{src.get('data', '?')}`; link scores: {src.get('scores', '?')}",
                 f"- pruned model: {src.get('pruned', '?')}", "",
                 "Unit importance (UI, SHAP-SAE eq. 4) is the mean link importance of an "
                 "input's links into the first layer.", "",
                 "## Most important inputs", "", "| rank | input | UI |", "|---:|---|---:|"]
        lines += [f"| {n} | {e['name']} | {e['ui']:.4g} |"
                  for n, e in enumerate(d["most_important"], start=1)]
        lines += ["", "## Least important inputs", "", "| input | UI |", "|---|---:|"]
        lines += [f"| {e['name']} | {e['ui']:.4g} |" for e in d["least_important"]]
        gone = d["never_read"]
        lines += ["", f"## Inputs the pruned model never reads ({len(gone)} of {d['input_dim']})",
                  "", (", ".join(e["name"] for e in gone[:NAME_LIST_LIMIT]) or "none")
                  + (" …" if len(gone) > NAME_LIST_LIMIT else ""), "",
                  "## Layers", "", "| layer | shape | total LI | strongest link (i, j) | "
                  "links kept |", "|---:|---|---:|---|---:|"]
        for row in d["layers"]:
            s = row["strongest_link"]
            lines.append(f"| {row['layer']} | {row['shape'][0]} x {row['shape'][1]} | "
                         f"{row['li_total']:.4g} | ({s['i']}, {s['j']}) {s['li']:.3g} | "
                         f"{row['links_kept']} |")
        lines += ["", "## Figures", ""] + [f"- ![{f}]({f})" for f in files]
        return "\n".join(lines) + "\n"


@dataclass
class ExplainResult:
    explanation: Explanation
    outdir: Path
    files: list[str]


def input_layout(ds: Dataset, in_dim: int) -> tuple[list[str], tuple[int, int] | None]:
    """Feature names and a 2-D image shape (data's own, else a square >= 4x4, else None)."""
    shape = ds.image_shape
    if not (shape and len(shape) == 2 and shape[0] * shape[1] == in_dim):
        side = math.isqrt(in_dim)
        shape = (side, side) if in_dim >= 16 and side * side == in_dim else None
    if ds.feature_names and len(ds.feature_names) == in_dim:
        return list(ds.feature_names), shape
    if shape:
        return [f"pixel ({r + 1},{c + 1})" for r in range(shape[0]) for c in range(shape[1])], shape
    return [f"x{j}" for j in range(1, in_dim + 1)], None


def explain_network(net: Network, ds: Dataset, opts: ExplainOptions, *,
                    pruned: Network | None = None, info: dict | None = None) -> Explanation:
    """Score ``net`` on ``ds`` (or read ``opts.scores_path``) and, without ``pruned``, prune it
    at ``opts.importance_level`` the way ``compress`` does (zero weights are not links)."""
    from edgeprune.compress import check_data_matches
    from edgeprune.data import explanation_set
    from edgeprune.prune import prune_network
    from edgeprune.scoring import load_link_scores, score_network

    opts.validate()
    check_data_matches(net, ds)
    net = net.without_zero_links()
    info = dict(info or {})
    info.setdefault("data", ds.name)
    if opts.scores_path:
        li = load_link_scores(opts.scores_path, net)
        info["scores"] = f"read from `{opts.scores_path}`"
    else:
        scores = score_network(net, explanation_set(ds, opts.samples, opts.seed),
                               estimator=opts.estimator, reference=opts.reference,
                               seed=opts.seed, memory_budget=opts.memory_budget, quiet=opts.quiet)
        li = scores.li()
        info["scores"] = (f"estimator `{opts.estimator}`, reference `{opts.reference}`, "
                          f"{scores.n_samples} samples, seed {opts.seed}")
    if pruned is None:
        m = opts.importance_level or DEFAULT_IMPORTANCE_LEVEL
        pruned = prune_network(net, li, importance_level=m).network
        info["pruned"] = f"SHAP-SAE at importance level m = {m}"
    elif pruned.in_dim != net.in_dim:
        raise ModelError(f"the pruned model reads {pruned.in_dim} inputs but the scored model "
                         f"{net.in_dim}; explain the pruned model's own directory")
    names, shape = input_layout(ds, net.in_dim)
    return Explanation(net, pruned, li, names, shape, ds.x_train.mean(axis=0, dtype=np.float64),
                       opts.top, info)


def _recorded_original(report: dict, pruned: Network, **model_opts) -> tuple[Path, Network] | None:
    """The model ``compress`` started from, when report.json names a readable one that fits."""
    from edgeprune.checkpoint import load_network

    src = (report.get("source") or {}).get("model")
    if not src or not Path(src).is_file():
        return None
    try:
        net = load_network(src, **model_opts)
    except (ValueError, OSError):
        return None
    fits = len(net.layers) == len(pruned.layers) and net.in_dim == pruned.in_dim
    return (Path(src), net) if fits else None


def _scores_fit(path: str, net: Network) -> bool:
    """Whether the scores file ``compress --scores`` recorded still exists and fits ``net``."""
    from edgeprune.scoring import load_link_scores

    try:
        load_link_scores(path, net)
    except ModelError:
        return False
    return True


def explain(source: str | os.PathLike, outdir: str | os.PathLike, opts: ExplainOptions, *,
            data_spec: str | None = None, progress: Callable[[str], None] | None = None,
            **model_opts) -> ExplainResult:
    """``edgeprune explain SOURCE -o OUTDIR``: load, score, prune (plain models), draw, write
    (``model_opts``: :func:`edgeprune.checkpoint.load_network`'s keyword options)."""
    from edgeprune.artifacts import resolve_pruned
    from edgeprune.checkpoint import load_network
    from edgeprune.compress import check_data_matches
    from edgeprune.data import load_dataset

    say = progress or (lambda msg: None)
    opts.validate()
    source, outdir = Path(source), Path(outdir)
    if not source.exists():
        raise ModelError(f"{source}: no such model file or `compress` output directory; "
                         "check the path")
    inputs = [p for p in (source, opts.scores_path) if p]
    check_output_dir(outdir, "explain", inputs=inputs)  # before any scoring
    if source.is_file() and _is_shapnet(source):
        return _explain_shapnet(source, outdir, opts, data_spec, say, inputs)
    pruned, report = None, {}
    if source.is_dir():
        if opts.importance_level is not None:
            raise ModelError(f"--importance-level applies to a model file; {source} already "
                             "holds the pruned model (pass the original model to re-prune)")
        ckpt, report = resolve_pruned(source)
        pruned = load_network(ckpt)
        scored, net = _recorded_original(report, pruned, **model_opts) or (ckpt, pruned)
        recorded = (report.get("scoring") or {}).get("from")
        if not opts.scores_path and recorded and _scores_fit(recorded, net):
            opts = dataclasses.replace(opts, scores_path=recorded)
        info = {"input": str(source), "scored_model": str(scored),
                "pruned": f"`{ckpt}` ({report.get('method', '?')}, m = "
                          f"{report.get('importance_level')}, η = {pruned.sparsity:.4f})"}
    else:
        net = load_network(source, **model_opts)
        info = {"input": str(source), "scored_model": str(source)}
    spec = data_spec or (report.get("source") or {}).get("data") or net.meta.get("trained_on")
    if not spec:
        raise ModelError(f"{source}: no record of the data it was trained on; pass --data SPEC")
    ds = load_dataset(spec, seed=opts.seed)
    check_data_matches(net, ds)  # before any progress line
    say(f"scoring {net.describe()} on {spec}" if not opts.scores_path
        else f"reading scores {opts.scores_path}")
    expl = explain_network(net, ds, opts, pruned=pruned, info={**info, "data": spec})
    say(f"drawing {len(expl.li) + 2} pictures into {outdir}")
    files = write_explanation(expl, outdir, inputs=inputs)
    return ExplainResult(expl, outdir, files)


def _is_shapnet(path: Path) -> bool:
    from edgeprune.shapnet.checkpoint import is_shapnet_file

    return is_shapnet_file(path)


def _explain_shapnet(source: Path, outdir: Path, opts: ExplainOptions, data_spec, say,
                     inputs) -> ExplainResult:
    """A ShapNet explains itself: its own Shapley values, no scoring or pruning."""
    from edgeprune.shapnet.explain import explain_shapnet

    for given, name in ((opts.importance_level, "--importance-level"),
                        (opts.scores_path, "--scores")):
        if given is not None:
            raise ModelError(f"{name} does not apply to {source}: a ShapNet is explained by its "
                             "own Shapley values, without link scores or pruning")
    expl, files = explain_shapnet(source, outdir, data_spec=data_spec, samples=opts.samples,
                                  seed=opts.seed, top=opts.top, inputs=inputs, say=say)
    return ExplainResult(expl, outdir, files)


def write_explanation(expl: Explanation, outdir: str | os.PathLike,
                      inputs: list | tuple = ()) -> list[str]:
    """Write the pictures, explain.json and explain.md into ``outdir``; all of them or none
    (``outdir`` is replaced as one unit, :mod:`edgeprune.output_dir`)."""
    with staged_output_dir(outdir, "explain", inputs=inputs) as staging:
        ui = expl.ui
        plots.plot_input_importance(ui, expl.names, expl.image_shape,
                                    staging / "input_importance.png")
        layer_files = [f"li_layer{k}.png" for k in range(1, len(expl.li) + 1)]
        for k, name in enumerate(layer_files, start=1):
            plots.plot_layer_li(expl.li[k - 1], k, staging / name)
        dropped = np.zeros(len(ui), dtype=bool)
        dropped[expl.never_read] = True
        plots.plot_pruned_inputs(dropped, expl.mean_input, ui, expl.names, expl.image_shape,
                                 staging / "pruned_inputs.png")
        pictures = ["input_importance.png", *layer_files, "pruned_inputs.png"]
        files = [*pictures, "explain.json", "explain.md"]
        write_text_atomic(staging / "explain.json",
                          json.dumps({**expl.to_dict(), "files": files}, indent=2) + "\n")
        write_text_atomic(staging / "explain.md", expl.markdown(pictures))
    return files
