"""The pictures of ``edgeprune explain`` (SHAP-SAE paper Figure 2 and Figure 4 for a user's model).

Every PNG is drawn on a matplotlib ``Figure`` with the Agg canvas (no pyplot, no global state)
at a fixed size, :data:`FIGSIZE_IN` inches at :data:`DPI`, and saved without ``bbox_inches``
cropping, so every file is exactly :data:`PNG_SIZE` = 640 x 480 pixels (width x height).

Inputs are numbered from 1 in every picture, as in the paper (x1..xn, pixel (row, col)).
"""

from __future__ import annotations

import os

import numpy as np

from edgeprune.network import ModelError

FIGSIZE_IN = (6.4, 4.8)
DPI = 100
PNG_SIZE = (640, 480)  # (width, height) in pixels, = FIGSIZE_IN * DPI
PRUNED_GRAY = (0.6, 0.6, 0.6)  # colour of inputs the pruned model never reads (paper Figure 4)
MAX_TICK_LABELS = 32  # bar charts name each input up to this many inputs


def _figure():
    """A fresh Figure on an Agg canvas, or a one-line error naming the missing extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ModelError("edgeprune explain draws with matplotlib, which is not installed; "
                         "pip install 'edgeprune[bench]'") from None
    fig = Figure(figsize=FIGSIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> None:
    fig.savefig(path, dpi=DPI, format="png")


def _bars(ax, values: np.ndarray, names: list[str], colors=None) -> None:
    """A bar per input at x = 1..n, named when there are few enough to read."""
    x = np.arange(1, len(values) + 1)
    ax.bar(x, values, color=colors if colors is not None else "tab:blue", width=0.8)
    _input_axis(ax, names)


def _input_axis(ax, names: list[str]) -> None:
    """x = inputs 1..n, each named when there are few enough to read."""
    n = len(names)
    if n <= MAX_TICK_LABELS:
        ax.set_xticks(np.arange(1, n + 1))
        ax.set_xticklabels(names, rotation=45 if n > 8 else 0, ha="right" if n > 8 else "center",
                           fontsize=8)
    ax.set_xlabel("input")
    ax.set_xlim(0.4, n + 0.6)


def plot_input_importance(ui: np.ndarray, names: list[str], image_shape: tuple[int, int] | None,
                          path: str | os.PathLike, *, label: str = "UI",
                          title: str = "Unit importance of the inputs (UI, SHAP-SAE eq. 4)"
                          ) -> None:
    """UI of every input (paper eq. 4, Figure 2a), or another per-input importance named by
    ``label``/``title``: an image for image inputs, else bars."""
    fig = _figure()
    ax = fig.add_subplot()
    if image_shape is not None:
        im = ax.imshow(ui.reshape(image_shape), cmap="viridis", interpolation="nearest")
        fig.colorbar(im, ax=ax, label=label)
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        _bars(ax, ui, names)
        ax.set_ylabel(label)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _heatmap(fig, ax, values: np.ndarray, cmap: str, label: str) -> None:
    """``values`` (rows, cols) with rows and columns numbered from 1, and its colour bar."""
    rows, cols = values.shape
    im = ax.imshow(values, aspect="auto", cmap=cmap, interpolation="nearest",
                   extent=(0.5, cols + 0.5, rows + 0.5, 0.5))
    fig.colorbar(im, ax=ax, label=label)


def plot_layer_li(li: np.ndarray, layer: int, path: str | os.PathLike) -> None:
    """Heatmap of the LI of layer ``layer`` (rows: its units i, columns: inputs j), Figure 2c."""
    fig = _figure()
    ax = fig.add_subplot()
    out_dim, in_dim = li.shape
    _heatmap(fig, ax, li, "magma", "LI")
    ax.set_xlabel(f"input unit j (layer {layer - 1}{', the inputs' if layer == 1 else ''})")
    ax.set_ylabel(f"unit i (layer {layer})")
    ax.set_title(f"Link importance of layer {layer} ({out_dim} x {in_dim}, SHAP-SAE eq. 3)")
    fig.tight_layout()
    _save(fig, path)


def plot_pruned_inputs(never_read: np.ndarray, mean_input: np.ndarray, ui: np.ndarray,
                       names: list[str], image_shape: tuple[int, int] | None,
                       path: str | os.PathLike) -> None:
    """Inputs the pruned model never reads, in gray (paper Figure 4): over the mean input image
    for image inputs, else as gray bars among the UI bars."""
    from matplotlib.patches import Patch

    fig = _figure()
    ax = fig.add_subplot()
    dropped = np.asarray(never_read, dtype=bool)
    title = f"Inputs the pruned model never reads (gray): {int(dropped.sum())} of {dropped.size}"
    if image_shape is not None:
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        norm = Normalize(float(mean_input.min()), float(mean_input.max()))
        rgb = colormaps["inferno"](norm(mean_input))[:, :3]
        rgb[dropped] = PRUNED_GRAY
        ax.imshow(rgb.reshape(*image_shape, 3), interpolation="nearest")
        fig.colorbar(ScalarMappable(norm, "inferno"), ax=ax, label="mean input (pixels read)")
        ax.set_xticks([])
        ax.set_yticks([])
    else:  # UI bars; a never-read input gets a gray band (its bar may have height 0)
        for j in np.flatnonzero(dropped):
            ax.axvspan(j + 0.5, j + 1.5, color=PRUNED_GRAY, alpha=0.5, lw=0)
        _bars(ax, ui, names, ["dimgray" if d else "tab:blue" for d in dropped])
        ax.set_ylabel("UI")
        ax.legend(handles=[Patch(color=PRUNED_GRAY, alpha=0.5, label="never read"),
                           Patch(color="tab:blue", label="read")], fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_attribution_spread(phi: np.ndarray, names: list[str], path: str | os.PathLike,
                            what: str) -> None:
    """Signed Shapley values of every input over the explained samples (a box per input,
    x = input 1..n), ``phi`` (samples, inputs); ``what`` names the output explained."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.boxplot(phi, positions=np.arange(1, phi.shape[1] + 1), widths=0.6, showfliers=False)
    _input_axis(ax, names)
    ax.set_ylabel(f"Shapley value ({what})")
    ax.set_title(f"Intrinsic Shapley values of {phi.shape[0]} samples (ShapNet forward pass)",
                 fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def plot_layer_importance(share: np.ndarray, path: str | os.PathLike) -> None:
    """ShapNets' layer-wise explanations (paper Fig. 3): ``share[l, j]``, the mean |Z| of
    input j in Shapley representation l, normalised per representation."""
    fig = _figure()
    ax = fig.add_subplot()
    _heatmap(fig, ax, share, "viridis", "share of mean |Z| in the representation")
    ax.set_xlabel("input")
    ax.set_ylabel("Shapley transform")
    ax.set_yticks(np.arange(1, share.shape[0] + 1))
    ax.set_title("Layer-wise Shapley representations (Deep ShapNet)", fontsize=10)
    fig.tight_layout()
    _save(fig, path)
