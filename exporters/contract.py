"""The export contract: the error type and the checks every exporter follows (numpy only).

Both :mod:`edgeprune.exporters.onnx` and :mod:`edgeprune.exporters.tflite` follow the same
contract, implemented here once:

* :func:`check_network` validates the :class:`~edgeprune.compacted.CompactNetwork` and
  raises a one-line :class:`ExportError` naming the layer, the activation and the format for
  anything the format cannot express, *before* anything is written;
* :func:`export_metadata` builds the provenance strings stored in the artifact;
* :func:`verification_data` and :func:`check_parity` define the write-time check (the artifact's
  output on real inputs against a reference, max abs diff <= :data:`PARITY_TOLERANCE`);
* :func:`write_atomic` writes through a temporary file in the destination directory, runs the
  check on that file and only then renames it over the destination (``os.replace``), so on any
  failure nothing is left at the destination.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np

from edgeprune.compacted import CompactNetwork
from edgeprune.errors import EdgepruneError, first_line
from edgeprune.fileio import write_bytes_atomic

PARITY_TOLERANCE = 1e-5

__all__ = [
    "PARITY_TOLERANCE",
    "ExportError",
    "check_network",
    "check_parity",
    "describe",
    "export_metadata",
    "first_line",
    "verification_data",
    "write_atomic",
]


class ExportError(EdgepruneError):
    """A one-line, user-facing reason why a network cannot be exported (nothing was written)."""


def check_network(net: CompactNetwork, fmt: str, activations: Collection[str]) -> None:
    """Raise :class:`ExportError` unless ``net`` is consistent and ``fmt`` expresses every layer."""
    in_idx = np.asarray(net.input_index).reshape(-1)
    out_idx = np.asarray(net.output_index).reshape(-1)
    const = np.asarray(net.output_const).reshape(-1)
    if net.input_dim < 1 or net.output_dim < 1:
        raise ExportError(f"{fmt}: the network has no inputs or no outputs")
    if const.shape != (net.output_dim,):
        raise ExportError(
            f"{fmt}: output_const has {const.size} entries, expected {net.output_dim}"
        )
    if in_idx.size and (in_idx.min() < 0 or in_idx.max() >= net.input_dim):
        raise ExportError(f"{fmt}: input_index is out of range 0..{net.input_dim - 1}")
    if out_idx.size and (out_idx.min() < 0 or out_idx.max() >= net.output_dim):
        raise ExportError(f"{fmt}: output_index is out of range 0..{net.output_dim - 1}")
    if np.unique(out_idx).size != out_idx.size:
        raise ExportError(f"{fmt}: output_index has repeated entries")
    if not np.all(np.isfinite(const)):
        raise ExportError(f"{fmt}: output_const holds NaN or inf")
    width = in_idx.size
    for k, layer in enumerate(net.layers, start=1):
        if layer.activation not in activations:
            raise ExportError(
                f"layer {k}: activation {layer.activation!r} cannot be expressed in {fmt} "
                f"(supported: {', '.join(sorted(activations))})"
            )
        weight = np.asarray(layer.weight)
        if weight.ndim != 2 or weight.shape[1] != width or weight.shape[0] < 1:
            raise ExportError(
                f"layer {k}: weight shape {weight.shape} does not take {width} inputs ({fmt})"
            )
        if np.asarray(layer.bias).reshape(-1).shape != (weight.shape[0],):
            raise ExportError(f"layer {k}: bias does not match {weight.shape[0]} units ({fmt})")
        if not (np.all(np.isfinite(weight)) and np.all(np.isfinite(layer.bias))):
            raise ExportError(f"layer {k}: weights or bias hold NaN or inf ({fmt})")
        if layer.activation == "leaky_relu" and not math.isfinite(layer.negative_slope):
            raise ExportError(f"layer {k}: leaky_relu slope {layer.negative_slope} ({fmt})")
        width = weight.shape[0]
    if net.layers and width != out_idx.size:
        raise ExportError(
            f"{fmt}: the last layer has {width} units but output_index lists {out_idx.size}"
        )
    if not net.layers and out_idx.size:
        raise ExportError(f"{fmt}: a network without layers cannot have computed outputs")


def _stringify(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def compact_fingerprint(net: CompactNetwork) -> str:
    """A short SHA-256 over the deployed arrays (identifies the artifact's content)."""
    h = hashlib.sha256()
    for arr in (net.input_index, net.output_index, net.output_const):
        h.update(np.ascontiguousarray(arr).tobytes())
    for layer in net.layers:
        for arr in (layer.weight, layer.bias):
            h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
        h.update(f"{layer.activation}:{layer.negative_slope}".encode())
    return h.hexdigest()[:16]


def export_metadata(net: CompactNetwork, metadata: dict | None) -> dict[str, str]:
    """Provenance key/values (all strings) for an artifact; ``metadata`` entries win.

    Always present: ``edgeprune_version``, ``eta`` (the achieved sparsity, ``"unknown"`` when
    the network does not record it), ``source_fingerprint`` (the hash of the source model: from
    ``metadata`` or ``net.meta["provenance"]``, else ``"unknown"``), ``compact_fingerprint``,
    ``kind``, ``input_dim``, ``output_dim``, ``nnz``.
    """
    from edgeprune import __version__

    meta = net.meta if isinstance(net.meta, dict) else {}
    provenance = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else {}
    eta = meta.get("sparsity", meta.get("eta"))
    out = {
        "edgeprune_version": __version__,
        "eta": "unknown" if eta is None else _stringify(float(eta)),
        "source_fingerprint": str(provenance.get("source_fingerprint", "unknown")),
        "compact_fingerprint": compact_fingerprint(net),
        "kind": str(net.kind),
        "input_dim": str(int(net.input_dim)),
        "output_dim": str(int(net.output_dim)),
        "nnz": str(int(net.nnz)),
    }
    for key, value in (metadata or {}).items():
        out[str(key)] = _stringify(value)
    return out


def describe(net: CompactNetwork, meta: dict[str, str]) -> str:
    """One-line summary stored in the artifact (ONNX ``doc_string``, TFLite ``description``)."""
    dims = [int(net.input_dim)] + [int(np.shape(layer.weight)[0]) for layer in net.layers]
    acts = ",".join(layer.activation for layer in net.layers) or "constant"
    return (f"edgeprune {meta['edgeprune_version']} {net.kind}: compacted "
            f"{'-'.join(map(str, dims))} -> {net.output_dim} outputs [{acts}], eta={meta['eta']}")


def verification_data(
    net: CompactNetwork,
    inputs: np.ndarray | None,
    reference: np.ndarray | None,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The (inputs, reference) pair of the write-time check; ``None`` when ``verify`` is off.

    Without a reference the NumPy forward pass of ``net`` is the reference. Without inputs a
    fixed synthetic batch (a zero row plus uniform [0, 1) rows) still proves that the artifact
    loads, takes a batch and computes the network; callers should pass real inputs.
    """
    if not verify:
        return None
    if inputs is None:
        if reference is not None:
            raise ExportError("verify_reference was given without verify_inputs")
        rng = np.random.default_rng(0)
        inputs = np.vstack([np.zeros((1, net.input_dim), np.float32),
                            rng.random((7, net.input_dim), dtype=np.float32)])
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != net.input_dim or x.shape[0] < 1:
        raise ExportError(
            f"verify_inputs must have shape (N>=1, {net.input_dim}), got {np.shape(inputs)}"
        )
    ref = net.forward(x) if reference is None else np.asarray(reference, dtype=np.float32)
    if ref.shape != (x.shape[0], net.output_dim):
        raise ExportError(
            f"verify_reference has shape {ref.shape}, expected {(x.shape[0], net.output_dim)}"
        )
    return x, ref


def check_parity(got: np.ndarray, reference: np.ndarray, what: str) -> float:
    """Max abs difference of ``got`` vs ``reference``; :class:`ExportError` above tolerance."""
    got = np.asarray(got)
    if got.shape != reference.shape:
        raise ExportError(f"{what}: output shape {got.shape} != reference {reference.shape}")
    diff = float(np.max(np.abs(got.astype(np.float64) - reference.astype(np.float64))))
    if not diff <= PARITY_TOLERANCE:
        raise ExportError(
            f"{what}: output differs from the reference by {diff:.3g} "
            f"(> {PARITY_TOLERANCE:g}); the file was not written"
        )
    return diff


def write_atomic(path: str | os.PathLike[str], data: bytes,
                 check: Callable[[Path], None] | None = None) -> Path:
    """Write ``data`` to ``path`` atomically, calling ``check(tmp_path)`` before the rename.

    The temporary file lives next to ``path`` so ``os.replace`` is atomic; if writing or the
    check fails it is removed and ``path`` is left as it was (absent or the previous file).
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise ExportError(f"{target}: directory {directory} does not exist")
    return write_bytes_atomic(target, data, check)
