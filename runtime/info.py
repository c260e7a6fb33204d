"""``describe(path)``: static facts about a bundle, as shown by ``edgeprune info``."""

from __future__ import annotations

import os
import zipfile
from typing import Any

from .bench.costs import file_figures
from .bundle import read_arrays, validate_bundle
from .kernels import choose_kernel

__all__ = ["describe"]

_F32 = 4
_COMPRESSION = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate",
                zipfile.ZIP_LZMA: "lzma"}
_I32 = 4


def describe(path: str | os.PathLike[str], kernel: str = "auto") -> dict[str, Any]:
    """Validate the bundle at ``path`` and summarize it as a JSON-serializable dict.

    Byte figures: ``bytes_on_disk`` (the file), ``gzip_bytes`` (``gzip.compress`` of the file
    bytes), ``dense_fp32_bytes`` (the compact layers stored dense: weights + biases in float32)
    and ``csr_bytes`` (data + indices + indptr + bias arrays, float32/int32 as the kernels hold
    them). ``stored_array_bytes`` is the arrays as stored in the file (int8 weights, narrow or
    delta-coded indices, row lengths; ``meta`` excluded) and ``in_memory_bytes`` what the loaded
    bundle holds in RAM (every layer decoded to float32/int32, plus the index maps and
    constants). ``kernel`` is the choice reported per layer (``"auto"`` applies the runtime's
    density rule). ``container`` is ``"packed"`` (version 3: meta + one blob) or ``"members"``
    (one ``.npy`` member per array), and ``zip_members`` lists each member's compression and
    its bytes in the file and uncompressed.
    """
    if kernel not in ("auto", "dense", "csr"):
        raise ValueError(f"unknown kernel {kernel!r}; expected 'dense', 'csr' or 'auto'")
    arrays = read_arrays(path)
    bundle = validate_bundle(arrays, source=os.fspath(path))
    layers = []
    dense_bytes = csr_bytes = params_dense = 0
    for k, layer in enumerate(bundle.layers, start=1):
        rows, cols = layer.shape
        params_dense += rows * cols
        dense_bytes += (rows * cols + rows) * _F32
        csr_bytes += layer.nnz * (_F32 + _I32) + (rows + 1) * _I32 + rows * _F32
        layers.append(
            {
                "layer": k,
                "shape": [rows, cols],
                "nnz": layer.nnz,
                "density": layer.density,
                "activation": layer.activation,
                "negative_slope": layer.negative_slope,
                "kernel": choose_kernel(layer) if kernel == "auto" else kernel,
                "weights": bundle.meta["layers"][k - 1].get("weights", "float32"),
                "indices": bundle.meta["layers"][k - 1].get("indices", "int32"),
            }
        )
    maps = [bundle.input_index, bundle.output_index, bundle.output_const,
            bundle.latent_index, bundle.latent_const]
    in_memory = sum(a.nbytes for layer in bundle.layers
                    for a in (layer.data, layer.indices, layer.indptr, layer.bias))
    in_memory += sum(a.nbytes for a in maps if a is not None)
    meta = bundle.meta
    nnz = sum(layer.nnz for layer in bundle.layers)
    with zipfile.ZipFile(path) as zf:  # already read and validated above
        members = [{"name": i.filename, "compression": _COMPRESSION.get(i.compress_type, "?"),
                    "bytes": i.compress_size, "uncompressed_bytes": i.file_size}
                   for i in zf.infolist()]
    info: dict[str, Any] = {
        "path": os.fspath(path),
        "format": meta["format"],
        "version": meta["version"],
        "container": "packed" if "blob" in meta else "members",
        "zip_members": members,
        "kind": bundle.kind,
        "layers": layers,
        "input_dim": bundle.input_dim,
        "used_inputs": int(bundle.input_index.shape[0]),
        "output_dim": bundle.output_dim,
        "live_outputs": int(bundle.output_index.shape[0]),
        "constant_outputs": bundle.output_dim - int(bundle.output_index.shape[0]),
        "latent_layer": bundle.latent_layer,
        "latent_dim": bundle.latent_dim,
        "live_latent": None if bundle.latent_index is None else int(bundle.latent_index.shape[0]),
        "nnz": nnz,
        "compact_dense_params": params_dense,
        **file_figures(path),
        "dense_fp32_bytes": dense_bytes,
        "csr_bytes": csr_bytes,
        "stored_array_bytes": sum(a.nbytes for name, a in arrays.items() if name != "meta"),
        "in_memory_bytes": int(in_memory),
        "provenance": meta.get("provenance", {}),
        "report": meta.get("report", {}),
    }
    if bundle.shapnet is not None:
        lay = bundle.shapnet
        info["shapnet"] = {
            "variant": lay.variant, "features": lay.features, "inputs": lay.inputs,
            "prediction_dim": lay.prediction_dim, "explanation": [lay.inputs,
                                                                  lay.explanation_channels],
            "transforms": [{"modules": t.n_modules, "k": t.k, "in_channels": t.in_channels,
                            "out_channels": t.out_channels, "inner_widths": list(t.inner_widths),
                            "layers": [t.first_layer + 1, t.mixing_layer + 1]}
                           for t in lay.transforms]}
    return info
