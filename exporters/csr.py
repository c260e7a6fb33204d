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
from edgeprune.runtime.bundle import (
    FORMAT,
    PACKED_VERSION,
    BundleError,
    validate_bundle,
)
from edgeprune.runtime.quant import CODEBOOK_SIZES, INDEX_CODINGS, VERSION_3_CODINGS

from .packing import COMPRESSIONS, compressed_bytes, pack_arrays, zip_members
from .quantize import (
    QUANTIZE_CHOICES,
    encode_indices,
    narrowest_uint,
    quantize_rows,
    share_weights,
)

VERSION = 1  # one member per array: float32 weights, int32 indices
VERSION_COMPACT = 2  # one member per array: int8/shared4 weights, narrow or delta8 indices
VERSION_PACKED = PACKED_VERSION  # what the writer writes: meta + one blob (runtime/packed.py)

__all__ = ["FORMAT", "VERSION", "VERSION_COMPACT", "VERSION_PACKED", "bundle_arrays", "check_before_writing",
           "save_bundle", "serialize"]


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
    packed: bool = True,
) -> dict[str, np.ndarray]:
    """The arrays of the bundle for ``net`` (``meta`` included), validated, not yet written.

    ``provenance``/``report`` default to ``net.meta["provenance"]``/``net.meta["report"]``.
    ``quantize="int8"`` stores per-row symmetric int8 weights with float32 scales,
    ``"shared4"``/``"shared5"``/``"shared6"`` codes into a per-layer codebook of at most 16/32/64
    float32 values (k-means, or the layer's own values when it has no more than that: a
    network whose codebooks were fine-tuned, :mod:`edgeprune.weight_sharing`);
    ``indices`` picks the column-index coding per layer: one of ``INDEX_CODINGS`` or ``"auto"``
    (the one whose compressed bytes are fewest, measured on the layer with deflate and, when
    packed, LZMA; ties go to the plain narrow dtype).
    ``packed=True`` (the default) describes a version-3 bundle: row lengths and the codings
    above for every layer, index maps in the narrowest unsigned dtype, and :func:`serialize`
    packs the arrays into one blob. ``packed=False`` describes the one-member-per-array layout
    of versions 1 (float32, int32 indices: no quantization, indices auto/int32) and 2, which
    runtimes older than version 3 read; the version-3 codings (shared5/6, bitmask) need
    ``packed``. Raises ``ValueError`` when ``net`` is inconsistent or an option unknown.
    """
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize={quantize!r}: use one of {', '.join(QUANTIZE_CHOICES)}")
    if indices != "auto" and indices not in INDEX_CODINGS:
        raise ValueError(f"indices={indices!r}: use auto or one of {', '.join(INDEX_CODINGS)}")
    if not packed and {quantize, indices} & VERSION_3_CODINGS:
        raise ValueError(f"{quantize if quantize in VERSION_3_CODINGS else indices} needs the "
                         "packed layout (bundle version 3)")
    compact = packed or quantize != "none" or indices not in ("auto", "int32")
    if provenance is None:
        provenance = net.meta.get("provenance", {}) if isinstance(net.meta, dict) else {}
    if report is None:
        report = net.meta.get("report", {}) if isinstance(net.meta, dict) else {}

    if net.logvar is not None and not packed:
        raise ValueError("a VAE's log-variance head needs the packed layout (bundle version "
                         f"{VERSION_PACKED})")
    arrays: dict[str, np.ndarray] = {}
    layer_meta = [_layer_entry(arrays, f"layer{k}", f"layer {k}", layer, compact, quantize,
                               indices, packed)
                  for k, layer in enumerate(net.layers, start=1)]
    logvar_meta = None
    if net.logvar is not None:  # a VAE's head: one more CSR layer (meta.logvar, version 3)
        logvar_meta = _layer_entry(arrays, "logvar", "the log-variance head", net.logvar,
                                   compact, quantize, indices, packed)

    def index_map(values, dim: int) -> np.ndarray:  # version 3: narrowest dtype for dim - 1
        dtype = narrowest_uint(max(int(dim) - 1, 0)) if packed else np.dtype(np.int64)
        return np.asarray(values, dtype=np.int64).reshape(-1).astype(dtype)

    arrays["input_index"] = index_map(net.input_index, net.input_dim)
    arrays["output_index"] = index_map(net.output_index, net.output_dim)
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
        arrays["latent_index"] = index_map(latent_index, latent_dim)
        arrays["latent_const"] = latent_const

    meta = {
        "format": FORMAT,
        "version": VERSION_PACKED if packed else VERSION_COMPACT if compact else VERSION,
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

    check_before_writing(arrays, ValueError, "export this network")
    return arrays


def check_before_writing(arrays: dict[str, np.ndarray], error: type[Exception], what: str) -> None:
    """The loader's own checks on arrays about to be written: a bundle the runtime would refuse is
    never written. Raises ``error("cannot {what}: <the first clause of the loader's message>")``."""
    try:
        validate_bundle(arrays, source="bundle")
    except BundleError as err:
        message = str(err).split("; ")[0].removeprefix("bundle: ")
        raise error(f"cannot {what}: {message}") from None


def _layer_entry(arrays: dict[str, np.ndarray], prefix: str, what: str, layer, compact: bool,
                 quantize: str, indices: str, packed: bool) -> dict[str, Any]:
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
        entry.update(_compact_layer(arrays, prefix, csr, quantize, indices, packed))
    else:
        arrays[f"{prefix}.data"] = np.ascontiguousarray(csr.data, dtype=np.float32)
        arrays[f"{prefix}.indices"] = np.ascontiguousarray(csr.indices, dtype=np.int32)
        arrays[f"{prefix}.indptr"] = np.ascontiguousarray(csr.indptr, dtype=np.int32)
    arrays[f"{prefix}.bias"] = bias
    return entry


def _compact_layer(arrays: dict[str, np.ndarray], k: str, csr: sp.csr_matrix, quantize: str,
                   indices: str, packed: bool) -> dict[str, str]:
    """The version-2/3 arrays of a layer (array prefix ``k``) into ``arrays``; returns its meta
    codings."""
    rows, cols = csr.shape
    if quantize == "int8":
        qdata, scale = quantize_rows(csr)
        arrays[f"{k}.qdata"] = qdata
        arrays[f"{k}.scale"] = scale
    elif quantize in CODEBOOK_SIZES:
        codes, codebook = share_weights(csr.data, CODEBOOK_SIZES[quantize])
        arrays[f"{k}.codes"] = codes
        arrays[f"{k}.codebook"] = codebook
    else:
        arrays[f"{k}.data"] = np.ascontiguousarray(csr.data, dtype=np.float32)
    narrow = narrowest_uint(max(cols - 1, 0)).name
    if indices == "auto":
        options = (narrow, "delta8", "bitmask") if packed else (narrow, "delta8")
        candidates = {c: encode_indices(csr.indices, csr.indptr, cols, c, rows)
                      for c in options}
        coding = min(candidates, key=lambda c: (compressed_bytes(candidates[c].tobytes(), packed),
                                                options.index(c)))
        coded = candidates[coding]
    else:
        coding = indices
        coded = encode_indices(csr.indices, csr.indptr, cols, coding, rows)
    arrays[f"{k}.indices"] = coded
    lengths = np.diff(csr.indptr)
    rowlen = narrowest_uint(int(lengths.max()) if rows else 0)
    arrays[f"{k}.rowlen"] = np.ascontiguousarray(lengths, dtype=rowlen)
    return {"weights": "float32" if quantize == "none" else quantize, "indices": coding,
            "rowlen": rowlen.name}


def serialize(arrays: dict[str, np.ndarray], compression: str = "auto") -> bytes:
    """The ``.npz`` bytes of ``arrays`` (as :func:`bundle_arrays` returns them).

    A version-3 ``meta`` packs the arrays into one blob (:func:`~edgeprune.exporters.packing.
    pack_arrays`); versions 1 and 2 keep one member per array. ``compression``: ``"stored"``,
    ``"deflate"``, ``"lzma"`` (version 3 only: older runtimes read stored and deflated members)
    or ``"auto"``: per member, the smallest of those."""
    if compression != "auto" and compression not in COMPRESSIONS:
        raise ValueError(f"compression={compression!r}: use auto or one of "
                         f"{', '.join(COMPRESSIONS)}")
    version = json.loads(str(arrays["meta"].item()))["version"]
    if version == VERSION_PACKED:
        return zip_members(pack_arrays(arrays), compression)
    if compression == "lzma":
        raise ValueError(f"compression='lzma' needs the packed layout (version {version} "
                         "bundles are read by runtimes that only inflate)")
    if compression == "auto":  # the smaller of all-stored and all-deflated, as version 2 did
        return min((zip_members(arrays, c) for c in ("stored", "deflate")), key=len)
    return zip_members(arrays, compression)


def save_bundle(
    net: CompactNetwork,
    path: str | os.PathLike[str],
    *,
    provenance: dict | None = None,
    report: dict | None = None,
    quantize: str = "none",
    indices: str = "auto",
    compression: str = "auto",
    packed: bool = True,
) -> Path:
    """Write ``net`` to ``path`` as an ``.npz`` CSR bundle, atomically; returns the path.

    The bundle goes to a temporary file in the destination directory which then replaces
    ``path`` (``os.replace``), so readers see the old file or the complete new one, never a
    partial write; on any failure the temporary file is removed and ``path`` is untouched.
    The name is used as given (no ``.npz`` is appended).
    """
    arrays = bundle_arrays(net, provenance=provenance, report=report, quantize=quantize,
                           indices=indices, packed=packed)
    # Compressed only where that makes the file smaller (measured per member: float32 weights
    # of large layers barely compress, index codes and int8 weights do).
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        handle.write(serialize(arrays, compression))
    return target
