"""SHAP loadings of an autoencoder or VAE (the vae-shap poster; ``edgeprune explain --loadings``).

The poster estimates the factor-analysis loadings matrix L (X ~ L F) of a fitted VAE by the SHAP
values of its latent variables with respect to the input features. For every feature j and
latent unit k (the mu head of a VAE, the bottleneck layer of an autoencoder), over the
explanation set:

    mean_abs[j, k] = mean_x |phi_jk(x)|        the loading's size (the heatmap)
    signed[j, k]   = mean_x phi_jk(x)          its sign and net effect

where ``phi_jk(x)`` is the Shapley value of feature j for ``z_k = f_k(x)`` in the model-level
game of :mod:`edgeprune.encoder_shap` (input -> latent, against one reference row or a
background set). With a linear encoder ``z = W x + c`` and reference r, ``phi_jk(x) =
W_kj (x_j - r_j)`` exactly.

Outputs (one all-or-nothing directory, :mod:`edgeprune.output_dir`): ``loadings_mean_abs.png``,
``loadings_signed.png`` (features x latent heatmaps), ``shap_hist_<feature>.png`` (histograms of
``phi_jk(x)`` over the explanation set per latent unit, the poster's Fig. 4), ``loadings.csv``,
``loadings.json``, ``loadings.md``. Features are numbered from 1 in names and pictures (x1..xn,
as ``explain``), ``index`` is 0-based.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from edgeprune import __version__
from edgeprune.choices import LOADING_ROTATIONS as ROTATIONS
from edgeprune.choices import REFERENCES
from edgeprune.encoder_shap import (
    DEFAULT_PERMUTATIONS,
    EXPLAINERS,
    ExplainerError,
    encoder_shap,
    resolve_explainer,
)
from edgeprune.fileio import write_text_atomic
from edgeprune.network import ModelError, Network
from edgeprune.output_dir import check_output_dir, staged_output_dir

#: Histograms drawn when ``--features`` is not given: the strongest and the weakest feature.
DEFAULT_HISTOGRAMS = 2
#: Most histogram features one run draws.
MAX_HISTOGRAM_FEATURES = 16


@dataclass
class LoadingOptions:
    """What ``edgeprune explain --loadings`` can be told; see the CLI help for each field."""

    explainer: str = "auto"
    samples: int = 256
    reference: str = "zero"
    background: int = 0          # > 0: that many training rows as the background distribution
    permutations: int = DEFAULT_PERMUTATIONS
    features: tuple[int, ...] | None = None  # 1-based features to draw histograms for
    rotation: str = "none"       # "varimax": rotate the latent code (Loadings.varimax)
    top: int = 10
    seed: int = 0
    quiet: bool = False

    def validate(self, n_features: int | None = None) -> None:
        if self.explainer not in EXPLAINERS:
            raise ExplainerError(f"--explainer {self.explainer!r}: use one of "
                                 f"{', '.join(EXPLAINERS)}")
        if self.reference not in REFERENCES:
            raise ExplainerError(f"--reference {self.reference!r}: use one of "
                                 f"{', '.join(REFERENCES)}")
        if self.samples < 1:
            raise ExplainerError("--samples must be at least 1")
        if self.background < 0:
            raise ExplainerError("--background must be 0 (one reference row) or a row count")
        if self.reference == "background" and not self.background:
            raise ExplainerError("--reference background: give --background N (the training "
                                 "rows of the background distribution)")
        if self.permutations < 2:
            raise ExplainerError(f"--permutations must be at least 2, got {self.permutations}")
        if self.top < 1:
            raise ExplainerError("--top must be at least 1")
        if self.rotation not in ROTATIONS:
            raise ExplainerError(f"--rotation {self.rotation!r}: use one of "
                                 f"{', '.join(ROTATIONS)}")
        if self.features is not None:
            if not self.features or len(self.features) > MAX_HISTOGRAM_FEATURES:
                raise ExplainerError(f"--features names 1 to {MAX_HISTOGRAM_FEATURES} features, "
                                     f"got {len(self.features)}")
            bad = [j for j in self.features if j < 1 or (n_features and j > n_features)]
            if bad:
                raise ExplainerError(f"--features {bad[0]}: features are numbered 1.."
                                     f"{n_features or 'n'}; e.g. --features 150,600")


def parse_features(spec: str | None) -> tuple[int, ...] | None:
    """``"150,600"`` -> (150, 600) (1-based, duplicates dropped); None stays None."""
    if spec is None:
        return None
    try:
        numbers = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise ExplainerError(f"--features {spec!r}: give 1-based feature numbers separated by "
                             "commas, e.g. --features 150,600") from None
    return tuple(dict.fromkeys(numbers))


@dataclass
class Loadings:
    """SHAP loadings of one encoder: ``phi`` (N, n, latent) and its reductions (n, latent)."""

    phi: np.ndarray
    names: list[str]
    explainer: str
    info: dict = field(default_factory=dict)

    @property
    def mean_abs(self) -> np.ndarray:
        return np.abs(self.phi).mean(axis=0)

    @property
    def signed(self) -> np.ndarray:
        return self.phi.mean(axis=0)

    @property
    def n_features(self) -> int:
        return int(self.phi.shape[1])

    @property
    def n_latent(self) -> int:
        return int(self.phi.shape[2])

    def rotated(self, rotation: np.ndarray) -> Loadings:
        """The loadings of the rotated latent code ``z' = R^T z`` (``rotation`` = R, k x k
        orthogonal). Shapley values are linear in the explained output, so ``phi(z') =
        phi(z) R`` exactly; a VAE's N(0, I) prior is rotation invariant, so ``z'`` is as
        valid a latent code as ``z``."""
        return Loadings(self.phi @ rotation, self.names, self.explainer,
                        {**self.info, "rotation": np.asarray(rotation).tolist()})

    def varimax(self) -> Loadings:
        """:meth:`rotated` by the varimax rotation of the per-sample SHAP values (rows: every
        (sample, feature), columns: latent units): each feature's effect is moved onto as few
        latent units as possible, the rotation factor analysis uses to make L sparse."""
        return self.rotated(varimax_rotation(self.phi.reshape(-1, self.n_latent)))

    def histogram_features(self, features: Sequence[int] | None) -> list[int]:
        """0-based features to draw: the given 1-based ones, else the strongest and weakest
        by total mean |SHAP| over the latent units."""
        if features:
            return [j - 1 for j in features]
        order = np.argsort(-self.mean_abs.sum(axis=1), kind="stable")
        return list(dict.fromkeys([int(order[0]), int(order[-1])]))[:DEFAULT_HISTOGRAMS]

    def top_features(self, k: int) -> list[list[dict]]:
        """Per latent unit, its ``k`` features of largest mean |SHAP|."""
        ma, sg = self.mean_abs, self.signed
        rows = []
        for u in range(self.n_latent):
            order = np.argsort(-ma[:, u], kind="stable")[:k]
            rows.append([{"index": int(j), "name": self.names[j], "mean_abs": float(ma[j, u]),
                          "signed": float(sg[j, u])} for j in order])
        return rows

    def to_dict(self, top: int = 10) -> dict:
        return {"edgeprune_version": __version__, "explainer": self.explainer,
                "source": self.info, "n_samples": int(self.phi.shape[0]),
                "n_features": self.n_features, "n_latent": self.n_latent,
                "features": self.names,
                "latent_units": [f"z{k}" for k in range(1, self.n_latent + 1)],
                "mean_abs": self.mean_abs.tolist(), "signed": self.signed.tolist(),
                "top_features": self.top_features(min(top, self.n_features))}

    def csv_text(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        units = range(1, self.n_latent + 1)
        w.writerow(["index", "feature", *(f"mean_abs_z{k}" for k in units),
                    *(f"signed_z{k}" for k in units)])
        ma, sg = self.mean_abs, self.signed
        for j in range(self.n_features):
            w.writerow([j, self.names[j], *(f"{v:.9g}" for v in ma[j]),
                        *(f"{v:.9g}" for v in sg[j])])
        return out.getvalue()

    def markdown(self, pictures: list[str], top: int = 10) -> str:
        src = self.info
        lines = ["# SHAP loadings", "",
                 f"- model: `{src.get('model', '?')}` ({src.get('network', '?')})",
                 f"- data: `{src.get('data', '?')}`; {self.phi.shape[0]} explanation samples; "
                 f"background: {src.get('background', '?')}",
                 f"- explainer: `{self.explainer}` ({src.get('explainer_detail', '')})",
                 "- latent code: " + ("rotated by varimax (z' = R^T z, R in loadings.json)"
                                      if "rotation" in src else "as the model emits it"), "",
                 "Loading of feature j on latent unit k: mean over the explanation set of "
                 "|SHAP value of x_j for z_k| (signed: the plain mean).", ""]
        for u, rows in enumerate(self.top_features(min(top, self.n_features)), start=1):
            lines += [f"## z{u}: strongest features", "", "| feature | mean abs | signed |",
                      "|---|---:|---:|"]
            lines += [f"| {r['name']} | {r['mean_abs']:.4g} | {r['signed']:+.4g} |"
                      for r in rows]
            lines.append("")
        lines += ["## Figures", ""] + [f"- ![{f}]({f})" for f in pictures]
        return "\n".join(lines) + "\n"


def varimax_rotation(a: np.ndarray, *, max_iter: int = 1000, tol: float = 1e-12) -> np.ndarray:
    """The orthogonal R maximizing Kaiser's varimax criterion of ``a @ R`` (rows x k).

    Hand-written (the standard SVD iteration, as in R's ``stats::varimax``): scikit-learn's
    varimax lives in a private function of FactorAnalysis and scipy has none."""
    a = np.asarray(a, dtype=np.float64)
    rows, k = a.shape
    rot = np.eye(k)
    crit = 0.0
    for _ in range(max_iter):
        b = a @ rot
        u, s, vt = np.linalg.svd(a.T @ (b**3 - b @ np.diag((b**2).sum(axis=0)) / rows))
        rot = u @ vt
        new = float(s.sum())
        if new <= crit * (1.0 + tol):
            break
        crit = new
    return rot


def encoder_module(net: Network) -> nn.Sequential:
    """The encoder of an autoencoder or VAE Network as a torch chain: its layers up to the
    latent (for a VAE, the trunk and the mu head), masked weights, ``Linear`` + activation
    modules (the module types shap's DeepExplainer knows)."""
    from edgeprune.vae_network import layers_module

    if net.latent is None:
        raise ModelError(f"SHAP loadings need an autoencoder or a VAE, but this is a "
                         f"{net.kind} with no latent layer; for a plain state_dict pass "
                         "--latent L (the bottleneck layer)")
    return layers_module(net.layers[:net.latent], "encoder", {})


def background_rows(x_train: np.ndarray, explain_x: np.ndarray, opts: LoadingOptions
                    ) -> tuple[np.ndarray, str]:
    """The background (rows) and its description: ``opts.background`` training rows drawn by
    the seed, else the one ``--reference`` row (zeros, or the mean of the explanation set)."""
    n = x_train.shape[1]
    if opts.background:
        rng = np.random.default_rng([opts.seed, 1])
        k = min(opts.background, len(x_train))
        idx = np.sort(rng.choice(len(x_train), size=k, replace=False))
        return np.asarray(x_train[idx], dtype=np.float64), f"{k} training rows (seed {opts.seed})"
    if opts.reference == "mean":
        return explain_x.mean(axis=0, dtype=np.float64)[None, :], "the mean explanation sample"
    return np.zeros((1, n)), "the zero reference"


def shap_loadings(encoder: nn.Module, x: np.ndarray, background: np.ndarray, *,
                  names: list[str] | None = None, explainer: str = "auto",
                  permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0,
                  progress: Callable[[int], None] | None = None,
                  info: dict | None = None) -> Loadings:
    """SHAP loadings of ``encoder`` (x -> latent) on ``x`` (N, n) against ``background``."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[1]
    name = resolve_explainer(explainer, n)
    phi = encoder_shap(encoder, x, background, explainer=name, permutations=permutations,
                       seed=seed, progress=progress)
    detail = {"exact": "all 2^n coalitions",
              "permutation": f"{permutations} antithetic permutations per sample, seed {seed}",
              "shap-permutation": f"shap.PermutationExplainer, {permutations} permutations",
              "deep": "shap.DeepExplainer (DeepLIFT multipliers)"}[name]
    names = names or [f"x{j}" for j in range(1, n + 1)]
    return Loadings(phi, names, name, {**(info or {}), "explainer_detail": detail})


@dataclass
class LoadingsResult:
    loadings: Loadings
    outdir: Path
    files: list[str]


def explain_loadings(source: str | os.PathLike, outdir: str | os.PathLike, opts: LoadingOptions,
                     *, data_spec: str | None = None,
                     progress: Callable[[str], None] | None = None,
                     **model_opts) -> LoadingsResult:
    """``edgeprune explain SOURCE --loadings -o OUTDIR``: a model file (autoencoder or VAE) or a
    ``compress`` output directory (its pruned model) -> loadings files."""
    from tqdm.auto import tqdm

    from edgeprune.artifacts import resolve_pruned
    from edgeprune.checkpoint import load_network
    from edgeprune.compress import check_data_matches
    from edgeprune.data import explanation_set, load_dataset
    from edgeprune.explain import input_layout

    say = progress or (lambda msg: None)
    opts.validate()
    source = Path(source)
    if not source.exists():
        raise ModelError(f"{source}: no such model file or `compress` output directory; "
                         "check the path")
    check_output_dir(outdir, "explain", inputs=[source])  # before any work
    report: dict = {}
    if source.is_dir():
        ckpt, report = resolve_pruned(source)
        net = load_network(ckpt)
    else:
        ckpt, net = source, load_network(source, **model_opts)
    encoder = encoder_module(net)
    spec = data_spec or (report.get("source") or {}).get("data") or net.meta.get("trained_on")
    if not spec:
        raise ModelError(f"{source}: no record of the data it was trained on; pass --data SPEC")
    ds = load_dataset(spec, seed=opts.seed)
    check_data_matches(net, ds)
    opts.validate(net.in_dim)
    x = explanation_set(ds, opts.samples, opts.seed)
    background, bg_text = background_rows(ds.x_train, x, opts)
    names, _ = input_layout(ds, net.in_dim)
    name = resolve_explainer(opts.explainer, net.in_dim)
    say(f"SHAP loadings of {net.describe()} on {len(x)} samples of {spec} ({name})")
    bar = tqdm(total=len(x), desc="SHAP loadings", unit="sample", disable=opts.quiet,
               leave=False)
    try:
        loadings = shap_loadings(encoder, x, background, names=names, explainer=name,
                                 permutations=opts.permutations, seed=opts.seed,
                                 progress=bar.update,
                                 info={"input": str(source), "model": str(ckpt),
                                       "network": net.describe(), "data": spec,
                                       "background": bg_text})
    finally:
        bar.close()
    if opts.rotation == "varimax":
        loadings = loadings.varimax()
    files = write_loadings(loadings, outdir, features=opts.features, top=opts.top,
                           inputs=[source])
    return LoadingsResult(loadings, Path(outdir), files)


def write_loadings(loadings: Loadings, outdir: str | os.PathLike, *,
                   features: Sequence[int] | None = None, top: int = 10,
                   inputs: Sequence[str | os.PathLike] = ()) -> list[str]:
    """Write the heatmaps, histograms, CSV, JSON and Markdown into ``outdir``: all or none."""
    from edgeprune import loadings_plots as plots

    if features:
        LoadingOptions(features=tuple(features)).validate(loadings.n_features)
    chosen = loadings.histogram_features(features)
    with staged_output_dir(outdir, "explain", inputs=inputs) as staging:
        plots.plot_loadings_heatmap(loadings.mean_abs, staging / "loadings_mean_abs.png",
                                    signed=False)
        plots.plot_loadings_heatmap(loadings.signed, staging / "loadings_signed.png",
                                    signed=True)
        pictures = ["loadings_mean_abs.png", "loadings_signed.png"]
        for j in chosen:
            name = f"shap_hist_x{j + 1}.png"
            plots.plot_histograms(
                {f"z{k + 1}": loadings.phi[:, j, k] for k in range(loadings.n_latent)},
                f"SHAP values of {loadings.names[j]} per latent unit "
                f"({loadings.phi.shape[0]} samples)", staging / name)
            pictures.append(name)
        files = [*pictures, "loadings.csv", "loadings.json", "loadings.md"]
        write_text_atomic(staging / "loadings.csv", loadings.csv_text())
        body = {**loadings.to_dict(top), "histogram_features": [
            {"index": j, "name": loadings.names[j]} for j in chosen], "files": files}
        write_text_atomic(staging / "loadings.json", json.dumps(body) + "\n")
        write_text_atomic(staging / "loadings.md", loadings.markdown(pictures, top))
    return files
