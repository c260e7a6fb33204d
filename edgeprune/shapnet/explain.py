"""``edgeprune explain`` for ShapNet models: the model's own Shapley values, no sampling.

One forward pass over the explained samples (``--samples`` training rows drawn by ``--seed``,
as for other models) returns the predictions and their Shapley values relative to the model's
reference (exact for a Shallow ShapNet, Thm. 2; local accuracy and missingness for a Deep one,
Thm. 3). The output of interest is the predicted class (classification) or every output
(regression). Written together into ``-o`` (all or nothing, :mod:`edgeprune.output_dir`):

- ``input_importance.png``: mean |φ| of every input;
- ``shapley_values.png``: the signed φ of every input over the samples;
- ``layer_importance.png`` (Deep ShapNets): the layer-wise representations (paper Fig. 3);
- ``shapley_values.npy`` (samples, inputs, outputs) and ``explained_inputs.npy``;
- ``explain.json`` / ``explain.md``: ranking, local-accuracy check, the share of each
  representation's entries at the reference (what dynamic pruning can skip, Cor. 4).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgeprune import __version__
from edgeprune import explain_plots as plots
from edgeprune.fileio import atomic_path, write_text_atomic
from edgeprune.network import ModelError
from edgeprune.output_dir import staged_output_dir
from edgeprune.shapnet.models import DeepShapNet
from edgeprune.shapnet.training import single_thread


@dataclass
class ShapNetExplanation:
    """Intrinsic explanations of ``samples`` (n, d): ``phi`` (n, d, out), ``pred`` (n, out)."""

    kind: str
    task: str
    samples: np.ndarray
    phi: np.ndarray
    pred: np.ndarray
    pred_reference: np.ndarray
    names: list[str]
    image_shape: tuple[int, int] | None
    layer_share: np.ndarray | None  # (transforms, d) for a Deep ShapNet
    at_reference: list[float]  # per representation: share of (sample, feature) entries at 0
    top: int = 10
    info: dict = field(default_factory=dict)

    @property
    def attribution(self) -> np.ndarray:
        """(n, d): φ of the predicted class (classification) or summed over the outputs."""
        if self.task == "classification":
            return np.take_along_axis(self.phi, self.pred.argmax(1)[:, None, None], 2)[:, :, 0]
        return self.phi.sum(axis=2)

    @property
    def importance(self) -> np.ndarray:
        """Mean |φ| per input over the samples (of the predicted class / every output)."""
        if self.task == "classification":
            return np.abs(self.attribution).mean(axis=0)
        return np.abs(self.phi).sum(axis=2).mean(axis=0)

    @property
    def local_accuracy_error(self) -> float:
        """max |Σ_i φ_i − (f(x) − f(reference))| over samples and outputs."""
        return float(np.abs(self.phi.sum(axis=1) - (self.pred - self.pred_reference)).max())

    def to_dict(self) -> dict:
        imp = self.importance
        order = np.argsort(-imp, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(1, len(order) + 1)
        k = min(self.top, max(1, len(imp) // 2))
        zero = np.flatnonzero(np.all(self.phi == 0, axis=(0, 2)))
        att = self.attribution

        def entry(j: int) -> dict:
            return {"index": int(j), "name": self.names[j], "mean_abs_shapley": float(imp[j])}

        return {
            "edgeprune_version": __version__,
            "source": self.info,
            "network": self.kind,
            "explanation": "intrinsic: the ShapNet's own Shapley values (one forward pass, "
                           "no sampling)",
            "task": self.task,
            "input_dim": len(imp),
            "samples": int(len(self.samples)),
            "local_accuracy_max_error": self.local_accuracy_error,
            "reference_output": self.pred_reference.tolist(),
            "representations_at_reference": self.at_reference,
            "inputs": [{**entry(j), "rank": int(rank[j]),
                        "mean_shapley": float(att[:, j].mean())} for j in range(len(imp))],
            "most_important": [entry(j) for j in order[:k]],
            "least_important": [entry(j) for j in np.argsort(imp, kind="stable")[:k]],
            "never_read": [entry(j) for j in zero],
        }

    def summary_lines(self) -> list[str]:
        d = self.to_dict()
        return ["most important inputs: " + ", ".join(e["name"] for e in d["most_important"][:5]),
                f"intrinsic Shapley values of {d['samples']} samples; local accuracy within "
                f"{d['local_accuracy_max_error']:.2g}; inputs attributed 0 in every sample: "
                f"{len(d['never_read'])} of {d['input_dim']}"]

    def markdown(self, files: list[str]) -> str:
        d = self.to_dict()
        lines = ["# edgeprune explanation (ShapNet)", "",
                 f"- model: `{d['source'].get('model', '?')}` ({self.kind}, {self.task})",
                 f"- data: `{d['source'].get('data', '?')}`, {d['samples']} samples",
                 "- explanation: the model's own Shapley values from one forward pass "
                 "(no sampling)",
                 f"- local accuracy: max |Σφ − (f(x) − f(reference))| = "
                 f"{d['local_accuracy_max_error']:.3g}", "",
                 "## Most important inputs", "", "| rank | input | mean abs. Shapley value |",
                 "|---:|---|---:|"]
        lines += [f"| {n} | {e['name']} | {e['mean_abs_shapley']:.4g} |"
                  for n, e in enumerate(d["most_important"], start=1)]
        lines += ["", "## Least important inputs", "", "| input | mean abs. Shapley value |",
                  "|---|---:|"]
        lines += [f"| {e['name']} | {e['mean_abs_shapley']:.4g} |" for e in d["least_important"]]
        lines += ["", "## Representations at the reference (skippable, Cor. 4)", "",
                  "| representation | share of (sample, input) entries at the reference |",
                  "|---:|---:|"]
        lines += [f"| {n} | {s:.3f} |" for n, s in enumerate(self.at_reference, start=1)]
        lines += ["", "## Figures", ""] + [f"- ![{f}]({f})" for f in files if f.endswith(".png")]
        return "\n".join(lines) + "\n"


def explain_model(model, task: str, kind: str, samples: np.ndarray, names: list[str],
                  image_shape, *, top: int = 10, info: dict | None = None) -> ShapNetExplanation:
    """One forward pass of ``model`` over ``samples`` (and over its reference)."""
    model = model.eval()
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    with torch.no_grad(), single_thread():
        pred, phi, reps = model.outputs(x)
        pred_ref = model(model.reference[None])[0][0]
    d = model.in_dim
    at_ref = [float((z[:, :d].abs().amax(dim=2) == 0).float().mean()) for z in reps]
    share = None
    if isinstance(model, DeepShapNet):
        mags = np.stack([z[:, :d].abs().mean(dim=(0, 2)).numpy() for z in reps])
        share = mags / np.maximum(mags.sum(axis=1, keepdims=True), np.finfo(np.float32).tiny)
    return ShapNetExplanation(kind, task, np.asarray(samples), phi.numpy(), pred.numpy(),
                              pred_ref.numpy(), names, image_shape, share, at_ref, top,
                              dict(info or {}))


def explain_shapnet(source: Path, outdir: Path, *, data_spec: str | None, samples: int,
                    seed: int, top: int, inputs=(), say=lambda msg: None):
    """``edgeprune explain MODEL`` for a ShapNet checkpoint: returns (explanation, files)."""
    from edgeprune.data import explanation_set, load_dataset
    from edgeprune.explain import input_layout
    from edgeprune.shapnet.checkpoint import load_shapnet

    model, task, info = load_shapnet(source)
    spec = data_spec or info.get("trained_on")
    if not isinstance(spec, str) or not spec:
        raise ModelError(f"{source}: no record of the data it was trained on; pass --data SPEC")
    ds = load_dataset(spec, seed=seed)
    if ds.dim != model.in_dim:
        raise ModelError(f"{source}: the model reads {model.in_dim} inputs but data {spec!r} has "
                         f"{ds.dim} features; pass the --data it was trained on")
    names, shape = input_layout(ds, model.in_dim)
    rows = explanation_set(ds, samples, seed)
    kind = "shapnet-deep" if isinstance(model, DeepShapNet) else "shapnet-shallow"
    say(f"explaining {len(rows)} samples with the {kind}'s own Shapley values")
    expl = explain_model(model, task, kind, rows, names, shape, top=top,
                         info={"input": str(source), "model": str(source), "data": spec})
    return expl, write_shapnet_explanation(expl, outdir, inputs)


def write_shapnet_explanation(expl: ShapNetExplanation, outdir: str | os.PathLike,
                              inputs=()) -> list[str]:
    """All files of the module docstring into ``outdir``, or none of them."""
    with staged_output_dir(outdir, "explain", inputs=inputs) as staging:
        what = "predicted class" if expl.task == "classification" else "prediction"
        plots.plot_input_importance(expl.importance, expl.names, expl.image_shape,
                                    staging / "input_importance.png",
                                    label="mean |Shapley value|",
                                    title=f"Input importance: mean |Shapley value| of the {what} "
                                          "(ShapNet, intrinsic)")
        plots.plot_attribution_spread(expl.attribution, expl.names,
                                      staging / "shapley_values.png", what)
        pictures = ["input_importance.png", "shapley_values.png"]
        if expl.layer_share is not None:
            plots.plot_layer_importance(expl.layer_share, staging / "layer_importance.png")
            pictures.append("layer_importance.png")
        for name, arr in (("shapley_values.npy", expl.phi),
                          ("explained_inputs.npy", expl.samples)):
            with atomic_path(staging / name, suffix=".npy") as tmp:
                np.save(tmp, np.asarray(arr, dtype=np.float32))
        files = [*pictures, "shapley_values.npy", "explained_inputs.npy", "explain.json",
                 "explain.md"]
        write_text_atomic(staging / "explain.json",
                          json.dumps({**expl.to_dict(), "files": files}, indent=2) + "\n")
        write_text_atomic(staging / "explain.md", expl.markdown(pictures))
    return files
