"""Static cost figures of a layer chain: parameters, MACs, bytes and words read (stdlib + numpy).

Definitions, per layer ``W`` of shape ``(rows, cols)`` with ``nnz`` non-zeros, float32 values
and int32 CSR indices (the ``.npz`` bundle layout):

- ``params_dense = rows * cols``; ``params_nnz = nnz``; ``biases = rows``.
- ``macs_dense = rows * cols`` (every weight multiplied once per sample);
  ``macs_effective = nnz`` (only the non-zeros). Bias additions and activations are not MACs.
- ``bytes_dense_fp32 = 4 * (rows * cols + rows)`` (weights + biases);
  ``bytes_csr = 4 * nnz (values) + 4 * nnz (column indices) + 4 * (rows + 1) (indptr)
  + 4 * rows (biases)``.
- *Words read* per inference (one sample), 32-bit words, the memory term of the energy proxy:
  ``words_dense = rows * cols + rows + cols`` (all weights, the biases, the layer's input
  vector once) and ``words_csr = nnz + nnz + (rows + 1) + rows + cols`` (values, column indices,
  indptr, biases, input vector once). The input vector is counted once per layer (it is
  reused from registers/L1 after the first read, not once per non-zero); outputs written are
  not counted.

Totals are sums over layers. File figures: ``bytes_on_disk`` and ``gzip_bytes``
(``gzip.compress`` at level 9 of the file's bytes).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

WORD_BYTES = 4  # float32 values and int32 indices

__all__ = [
    "WORD_BYTES",
    "LayerShape",
    "bundle_layer_shapes",
    "file_figures",
    "layer_figures",
    "shapes_from_weights",
    "static_figures",
]


@dataclass(frozen=True)
class LayerShape:
    """What the cost model needs of one layer: ``(rows, cols)``, non-zeros, activation."""

    rows: int
    cols: int
    nnz: int
    activation: str = "unknown"

    def __post_init__(self) -> None:
        if min(self.rows, self.cols, self.nnz) < 0 or self.nnz > self.rows * self.cols:
            raise ValueError(
                f"invalid layer figures rows={self.rows} cols={self.cols} nnz={self.nnz}"
            )


def layer_figures(layer: LayerShape) -> dict[str, Any]:
    """Every static figure of one layer (see the module docstring for the definitions)."""
    r, c, nnz = layer.rows, layer.cols, layer.nnz
    size = r * c
    return {
        "shape": [r, c],
        "activation": layer.activation,
        "params_dense": size,
        "params_nnz": nnz,
        "biases": r,
        "density": nnz / size if size else 0.0,
        "macs_dense": size,
        "macs_effective": nnz,
        "bytes_dense_fp32": WORD_BYTES * (size + r),
        "bytes_csr": WORD_BYTES * (2 * nnz + (r + 1) + r),
        "words_read_dense": size + r + c,
        "words_read_csr": 2 * nnz + (r + 1) + r + c,
    }


_SUMMED = (
    "params_dense",
    "params_nnz",
    "biases",
    "macs_dense",
    "macs_effective",
    "bytes_dense_fp32",
    "bytes_csr",
    "words_read_dense",
    "words_read_csr",
)


def file_figures(path: str | os.PathLike[str]) -> dict[str, int]:
    """``bytes_on_disk`` of a file, and its ``gzip_bytes`` (level 9); a directory sums its files."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    raw = b"".join(f.read_bytes() for f in files)
    return {"bytes_on_disk": len(raw), "gzip_bytes": len(gzip.compress(raw, 9))}


def static_figures(
    layers: Sequence[LayerShape] | None, path: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """``{"layers": [...], "total": {...}, "file": {...}}``; ``layers=None``: file figures only.

    ``total`` adds ``sparsity = 1 - params_nnz / params_dense`` and the overall density.
    """
    out: dict[str, Any] = {"layers": None, "total": None}
    if layers is not None:
        rows = [layer_figures(layer) for layer in layers]
        for k, row in enumerate(rows, start=1):
            row["layer"] = k
        total = {key: sum(int(row[key]) for row in rows) for key in _SUMMED}
        dense = total["params_dense"]
        total["layers"] = len(rows)
        total["density"] = total["params_nnz"] / dense if dense else 0.0
        total["sparsity"] = 1.0 - total["density"] if dense else 0.0
        out["layers"], out["total"] = rows, total
    out["file"] = file_figures(path) if path is not None else None
    return out


def bundle_layer_shapes(bundle: Any) -> list[LayerShape]:
    """The :class:`LayerShape` list of a validated :class:`~edgeprune.runtime.bundle.Bundle`."""
    return [
        LayerShape(layer.shape[0], layer.shape[1], layer.nnz, layer.activation)
        for layer in bundle.layers
    ]


def shapes_from_weights(
    weights: Iterable[Any], activations: Iterable[str] | None = None
) -> list[LayerShape]:
    """:class:`LayerShape` list from dense 2-D weight arrays (zeros are pruned links)."""
    acts = list(activations) if activations is not None else None
    shapes = []
    for k, w in enumerate(weights):
        arr = np.asarray(w)
        if arr.ndim != 2:
            raise ValueError(f"weight {k + 1} must be 2-D, got shape {arr.shape}")
        act = acts[k] if acts is not None and k < len(acts) else "unknown"
        shapes.append(LayerShape(arr.shape[0], arr.shape[1], int(np.count_nonzero(arr)), act))
    return shapes
