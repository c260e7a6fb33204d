"""The pictures of SHAP loadings (``edgeprune explain --loadings``, the vae-shap poster's Fig. 3
and Fig. 4), drawn like :mod:`edgeprune.explain_plots`: a bare Agg ``Figure`` at
:data:`~edgeprune.explain_plots.PNG_SIZE` (640 x 480), features and latent units numbered from 1.
"""

from __future__ import annotations

import os

import numpy as np

from edgeprune.explain_plots import _figure, _save

#: Histogram panels per row.
PANELS_PER_ROW = 4
HIST_BINS = 30


def plot_loadings_heatmap(matrix: np.ndarray, path: str | os.PathLike, *, signed: bool,
                          title: str | None = None, label: str | None = None,
                          columns: str = "latent unit", prefix: str = "z") -> None:
    """A features x latent matrix as a heatmap: rows are features 1..n (top to bottom), columns
    latent units (or factors) 1..k. ``signed`` centres a diverging colour map on 0."""
    fig = _figure()
    ax = fig.add_subplot()
    n, k = matrix.shape
    if signed:
        lim = float(np.abs(matrix).max()) or 1.0
        kw = {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}
    else:
        kw = {"cmap": "magma", "vmin": 0.0}
    im = ax.imshow(matrix, aspect="auto", interpolation="nearest",
                   extent=(0.5, k + 0.5, n + 0.5, 0.5), **kw)
    fig.colorbar(im, ax=ax, label=label or ("mean SHAP value" if signed else "mean |SHAP value|"))
    ax.set_xticks(np.arange(1, k + 1))
    ax.set_xticklabels([f"{prefix}{u}" for u in range(1, k + 1)] if k <= 16 else
                       [str(u) for u in range(1, k + 1)], fontsize=8 if k <= 16 else 6)
    ax.set_xlabel(columns)
    ax.set_ylabel("input feature")
    ax.set_title(title or ("Signed SHAP loadings (mean over the explanation set)" if signed else
                           "SHAP loadings: mean |SHAP| of each latent unit per feature"),
                 fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_histograms(values: dict[str, np.ndarray], title: str, path: str | os.PathLike, *,
                    share_x: bool = True) -> None:
    """One histogram panel per entry of ``values`` (label -> values over samples), on a shared
    x axis so that wide and narrow spreads compare at a glance (the poster's Fig. 4)."""
    fig = _figure()
    labels = list(values)
    cols = min(PANELS_PER_ROW, len(labels))
    rows = -(-len(labels) // cols)
    arrays = [np.asarray(values[k], dtype=np.float64) for k in labels]
    lo = min(float(a.min()) for a in arrays)
    hi = max(float(a.max()) for a in arrays)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    axes = fig.subplots(rows, cols, squeeze=False, sharex=share_x)
    for i, (label, arr) in enumerate(zip(labels, arrays)):
        ax = axes[i // cols][i % cols]
        ax.hist(arr, bins=np.linspace(lo, hi, HIST_BINS + 1) if share_x else HIST_BINS,
                color="tab:blue")
        ax.set_title(f"{label}  (sd {arr.std():.3g})", fontsize=8)
        ax.tick_params(labelsize=7, labelbottom=True)
        if i // cols == rows - 1:
            ax.set_xlabel("SHAP value", fontsize=8)
    for i in range(len(labels), rows * cols):
        axes[i // cols][i % cols].set_visible(False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    _save(fig, path)
