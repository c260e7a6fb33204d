"""Write a :class:`~edgeprune.compacted.CompactNetwork` as an ``.npz`` CSR bundle.

The layout (DESIGN.md section 6) is read back by :mod:`edgeprune.runtime`; the arrays built here
are run through the runtime's own validator before anything touches the disk, so the writer can
never produce a bundle the loader refuses.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from edgeprune.compacted import CompactNetwork
from edgeprune.fileio import atomic_path
from edgeprune.runtime.bundle import FORMAT, BundleError, validate_bundle

VERSION = 1

__all__ = ["FORMAT", "VERSION", "bundle_arrays", "save_bundle"]


def _jsonable(obj: Any) -> Any:
    """Plain-JSON copy of ``obj``: numpy scalars/arrays and paths converted, NaN/inf -> null."""
    if isinstance(obj, dict):
        return {str(key): _jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)


def bundle_arrays(
    net: CompactNetwork,
    *,
    provenance: dict | None = None,
    report: dict | None = None,
) -> dict[str, np.ndarray]:
    """The arrays of the bundle for ``net`` (``meta`` included), validated, not yet written.

    ``provenance``/``report`` default to ``net.meta["provenance"]``/``net.meta["report"]``.
    Raises ``ValueError`` when ``net`` is inconsistent.
    """
    if provenance is None:
        provenance = net.meta.get("provenance", {}) if isinstance(net.meta, dict) else {}
    if report is None:
        report = net.meta.get("report", {}) if isinstance(net.meta, dict) else {}

    arrays: dict[str, np.ndarray] = {}
    layer_meta: list[dict[str, Any]] = []
    for k, layer in enumerate(net.layers, start=1):
        weight = np.asarray(layer.weight, dtype=np.float32)
        if weight.ndim != 2:
            raise ValueError(f"layer {k}: weight must be 2-D, got shape {weight.shape}")
        # From a dense array scipy stores only the non-zeros (-0.0 included among the zeros),
        # row by row with ascending column indices.
        csr = sp.csr_matrix(weight)
        csr.eliminate_zeros()
        csr.sort_indices()
        if csr.nnz > np.iinfo(np.int32).max:
            raise ValueError(f"layer {k}: {csr.nnz} non-zeros do not fit int32 indices")
        rows, cols = weight.shape
        bias = np.asarray(layer.bias, dtype=np.float32).reshape(-1)
        if bias.shape != (rows,):
            raise ValueError(f"layer {k}: bias has shape {bias.shape}, expected ({rows},)")
        arrays[f"layer{k}.data"] = np.ascontiguousarray(csr.data, dtype=np.float32)
        arrays[f"layer{k}.indices"] = np.ascontiguousarray(csr.indices, dtype=np.int32)
        arrays[f"layer{k}.indptr"] = np.ascontiguousarray(csr.indptr, dtype=np.int32)
        arrays[f"layer{k}.bias"] = bias
        layer_meta.append(
            {
                "activation": str(layer.activation),
                "negative_slope": float(layer.negative_slope),
                "shape": [int(rows), int(cols)],
                "nnz": int(csr.nnz),
            }
        )

    arrays["input_index"] = np.asarray(net.input_index, dtype=np.int64).reshape(-1)
    arrays["output_index"] = np.asarray(net.output_index, dtype=np.int64).reshape(-1)
    arrays["output_const"] = np.asarray(net.output_const, dtype=np.float32).reshape(-1)

    latent_layer = None if net.latent_layer is None else int(net.latent_layer)
    latent_dim = None if net.latent_dim is None else int(net.latent_dim)
    if latent_layer is not None:
        if latent_dim is None:
            raise ValueError("latent_layer is set but latent_dim is not")
        if net.layers:
            if not 1 <= latent_layer <= len(net.layers):
                raise ValueError(
                    f"latent_layer={latent_layer} outside 1..{len(net.layers)} (1-based)"
                )
            latent_index = np.asarray(net.layers[latent_layer - 1].unit_index, dtype=np.int64)
        else:
            latent_index = np.zeros(0, dtype=np.int64)
        latent_index = latent_index.reshape(-1)
        if net.latent_const is None:
            if latent_index.shape[0] != latent_dim:
                raise ValueError("latent_const is required when some latent units are dead")
            latent_const = np.zeros(latent_dim, dtype=np.float32)
        else:
            latent_const = np.asarray(net.latent_const, dtype=np.float32).reshape(-1)
        arrays["latent_index"] = latent_index
        arrays["latent_const"] = latent_const

    meta = {
        "format": FORMAT,
        "version": VERSION,
        "kind": str(net.kind),
        "input_dim": int(net.input_dim),
        "output_dim": int(net.output_dim),
        "latent_layer": latent_layer,
        "latent_dim": latent_dim,
        "layers": layer_meta,
        "provenance": _jsonable(provenance),
        "report": _jsonable(report),
    }
    arrays["meta"] = np.array(json.dumps(meta, allow_nan=False, sort_keys=False))

    try:
        validate_bundle(arrays, source="bundle")
    except BundleError as err:
        # Same checks as the loader: a network the runtime would refuse is never written.
        message = str(err).split("; ")[0].removeprefix("bundle: ")
        raise ValueError(f"cannot export this network: {message}") from None
    return arrays


def save_bundle(
    net: CompactNetwork,
    path: str | os.PathLike[str],
    *,
    provenance: dict | None = None,
    report: dict | None = None,
) -> Path:
    """Write ``net`` to ``path`` as an ``.npz`` CSR bundle, atomically; returns the path.

    The bundle goes to a temporary file in the destination directory which then replaces
    ``path`` (``os.replace``), so readers see the old file or the complete new one, never a
    partial write; on any failure the temporary file is removed and ``path`` is untouched.
    The name is used as given (no ``.npz`` is appended).
    """
    arrays = bundle_arrays(net, provenance=provenance, report=report)
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        # Stored, not deflated (np.savez, not savez_compressed): float32 weights barely
        # compress, loading skips an inflate pass on slow boards, and `edgeprune info`/bench
        # report the gzip size of the file separately, so both figures stay meaningful.
        np.savez(handle, **arrays)
    return target
