"""Write a :class:`~edgeprune.compacted.CompactNetwork` as an ``.npz`` CSR bundle.

The layout (DESIGN.md section 6) is read back by :mod:`edgeprune.runtime`; the arrays built here
are run through the runtime's own validator before anything touches the disk, so the writer can
never produce a bundle the loader refuses.
"""

from __future__ import annotations

import io
import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from edgeprune.compacted import CompactNetwork
from edgeprune.fileio import atomic_path
from edgeprune.runtime.bundle import FORMAT, BundleError, validate_bundle
from edgeprune.runtime.quant import INDEX_CODINGS

from .quantize import (
    QUANTIZE_CHOICES,
    encode_indices,
    narrowest_uint,
    quantize_rows,
    share_weights,
)

VERSION = 1  # float32 weights, int32 indices: what a bundle without --quantize is
VERSION_COMPACT = 2  # int8 weights and/or narrow or delta-coded indices, row lengths
VERSION_VAE = 3  # version 2's layer codings plus a VAE's log-variance head (meta.logvar)

__all__ = ["FORMAT", "VERSION", "VERSION_COMPACT", "VERSION_VAE", "bundle_arrays", "save_bundle",
           "serialize"]


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
    quantize: str = "none",
    indices: str = "auto",
) -> dict[str, np.ndarray]:
    """The arrays of the bundle for ``net`` (``meta`` included), validated, not yet written.

    ``provenance``/``report`` default to ``net.meta["provenance"]``/``net.meta["report"]``.
    ``quantize="int8"`` stores per-row symmetric int8 weights with float32 scales (version 2),
    ``"shared4"`` 4-bit codes into a per-layer codebook of 16 float32 values (k-means);
    ``indices`` picks the column-index coding of a version-2 bundle per layer: one of
    ``INDEX_CODINGS`` or ``"auto"`` (the one whose deflated bytes are fewest, measured on the
    layer; ties go to the plain narrow dtype). Without quantization a version-1 bundle (float32,
    int32 indices) is written unless ``indices`` names a narrow coding.
    Raises ``ValueError`` when ``net`` is inconsistent or an option unknown.
    """
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize={quantize!r}: use one of {', '.join(QUANTIZE_CHOICES)}")
    if indices != "auto" and indices not in INDEX_CODINGS:
        raise ValueError(f"indices={indices!r}: use auto or one of {', '.join(INDEX_CODINGS)}")
    compact = quantize != "none" or indices not in ("auto", "int32")
    if provenance is None:
        provenance = net.meta.get("provenance", {}) if isinstance(net.meta, dict) else {}
    if report is None:
        report = net.meta.get("report", {}) if isinstance(net.meta, dict) else {}

    compact = compact or net.logvar is not None  # version 3 = version 2's codings + the head
    arrays: dict[str, np.ndarray] = {}
    layer_meta = [_layer_entry(arrays, f"layer{k}", f"layer {k}", layer, compact, quantize,
                               indices)
                  for k, layer in enumerate(net.layers, start=1)]
    logvar_meta = None
    if net.logvar is not None:
        logvar_meta = _layer_entry(arrays, "logvar", "the log-variance head", net.logvar,
                                   compact, quantize, indices)

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

    version = VERSION_VAE if logvar_meta is not None else VERSION_COMPACT if compact else VERSION
    meta = {
        "format": FORMAT,
        "version": version,
        "kind": str(net.kind),
        "input_dim": int(net.input_dim),
        "output_dim": int(net.output_dim),
        "latent_layer": latent_layer,
        "latent_dim": latent_dim,
        "layers": layer_meta,
        "provenance": _jsonable(provenance),
        "report": _jsonable(report),
    }
    if logvar_meta is not None:
        meta["logvar"] = logvar_meta
    arrays["meta"] = np.array(json.dumps(meta, allow_nan=False, sort_keys=False))

    try:
        validate_bundle(arrays, source="bundle")
    except BundleError as err:
        # Same checks as the loader: a network the runtime would refuse is never written.
        message = str(err).split("; ")[0].removeprefix("bundle: ")
        raise ValueError(f"cannot export this network: {message}") from None
    return arrays


def _layer_entry(arrays: dict[str, np.ndarray], prefix: str, what: str, layer, compact: bool,
                 quantize: str, indices: str) -> dict[str, Any]:
    """Add the arrays of one CSR layer (``prefix.*``) to ``arrays``; returns its meta entry."""
    weight = np.asarray(layer.weight, dtype=np.float32)
    if weight.ndim != 2:
        raise ValueError(f"{what}: weight must be 2-D, got shape {weight.shape}")
    # From a dense array scipy stores only the non-zeros (-0.0 included among the zeros),
    # row by row with ascending column indices.
    csr = sp.csr_matrix(weight)
    csr.eliminate_zeros()
    csr.sort_indices()
    if csr.nnz > np.iinfo(np.int32).max:
        raise ValueError(f"{what}: {csr.nnz} non-zeros do not fit int32 indices")
    rows, cols = weight.shape
    bias = np.asarray(layer.bias, dtype=np.float32).reshape(-1)
    if bias.shape != (rows,):
        raise ValueError(f"{what}: bias has shape {bias.shape}, expected ({rows},)")
    entry: dict[str, Any] = {
        "activation": str(layer.activation),
        "negative_slope": float(layer.negative_slope),
        "shape": [int(rows), int(cols)],
        "nnz": int(csr.nnz),
    }
    if compact:
        entry.update(_compact_layer(arrays, prefix, csr, quantize, indices))
    else:
        arrays[f"{prefix}.data"] = np.ascontiguousarray(csr.data, dtype=np.float32)
        arrays[f"{prefix}.indices"] = np.ascontiguousarray(csr.indices, dtype=np.int32)
        arrays[f"{prefix}.indptr"] = np.ascontiguousarray(csr.indptr, dtype=np.int32)
    arrays[f"{prefix}.bias"] = bias
    return entry


def _compact_layer(arrays: dict[str, np.ndarray], k: str, csr: sp.csr_matrix, quantize: str,
                   indices: str) -> dict[str, str]:
    """The version-2 arrays of layer ``k`` (its array prefix) into ``arrays``; returns its meta
    codings."""
    rows, cols = csr.shape
    if quantize == "int8":
        qdata, scale = quantize_rows(csr)
        arrays[f"{k}.qdata"] = qdata
        arrays[f"{k}.scale"] = scale
    elif quantize == "shared4":
        codes, codebook = share_weights(csr.data)
        arrays[f"{k}.codes"] = codes
        arrays[f"{k}.codebook"] = codebook
    else:
        arrays[f"{k}.data"] = np.ascontiguousarray(csr.data, dtype=np.float32)
    narrow = narrowest_uint(max(cols - 1, 0)).name
    if indices == "auto":
        candidates = {c: encode_indices(csr.indices, csr.indptr, cols, c)
                      for c in (narrow, "delta8")}
        coding = min(candidates, key=lambda c: (len(zlib.compress(candidates[c].tobytes())),
                                                c == "delta8"))
        coded = candidates[coding]
    else:
        coding = indices
        coded = encode_indices(csr.indices, csr.indptr, cols, coding)
    arrays[f"{k}.indices"] = coded
    lengths = np.diff(csr.indptr)
    rowlen = narrowest_uint(int(lengths.max()) if rows else 0)
    arrays[f"{k}.rowlen"] = np.ascontiguousarray(lengths, dtype=rowlen)
    return {"weights": "float32" if quantize == "none" else quantize, "indices": coding,
            "rowlen": rowlen.name}


def serialize(arrays: dict[str, np.ndarray], compression: str = "auto") -> tuple[bytes, bool]:
    """The ``.npz`` bytes of ``arrays`` and whether they are deflated.

    ``compression``: ``"stored"`` (np.savez), ``"deflate"`` (np.savez_compressed) or ``"auto"``:
    both are built and the smaller kept (stored on a tie: loading then skips an inflate pass)."""
    if compression not in ("auto", "stored", "deflate"):
        raise ValueError(f"compression={compression!r}: use auto, stored or deflate")
    out: dict[bool, bytes] = {}
    for deflate in ((False, True) if compression == "auto" else (compression == "deflate",)):
        buf = io.BytesIO()
        (np.savez_compressed if deflate else np.savez)(buf, **arrays)
        out[deflate] = buf.getvalue()
    best = min(out, key=lambda d: (len(out[d]), d))
    return out[best], best


def save_bundle(
    net: CompactNetwork,
    path: str | os.PathLike[str],
    *,
    provenance: dict | None = None,
    report: dict | None = None,
    quantize: str = "none",
    indices: str = "auto",
    compression: str = "auto",
) -> Path:
    """Write ``net`` to ``path`` as an ``.npz`` CSR bundle, atomically; returns the path.

    The bundle goes to a temporary file in the destination directory which then replaces
    ``path`` (``os.replace``), so readers see the old file or the complete new one, never a
    partial write; on any failure the temporary file is removed and ``path`` is untouched.
    The name is used as given (no ``.npz`` is appended).
    """
    arrays = bundle_arrays(net, provenance=provenance, report=report, quantize=quantize,
                           indices=indices)
    # Deflated only where that makes the file smaller (measured per file: float32 weights of
    # large layers barely compress, the .npy headers and int8/uint8 arrays do).
    payload, _ = serialize(arrays, compression)
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        handle.write(payload)
    return target
