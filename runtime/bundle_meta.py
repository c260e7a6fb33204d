"""The ``meta`` of a CSR bundle: its versions, the JSON checks of every field, and the arrays a
checked ``meta`` declares (dtype and length of each), so that the reader can refuse a member from
its header before reading it (standard library + numpy only; split out of ``bundle.py``, which
reads the file and validates the arrays against what is declared here)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from . import limits
from .activations import ACTIVATIONS
from .checks import Checker
from .quant import (
    CODEBOOK_SIZES,
    INDEX_CODINGS,
    ROWLEN_DTYPES,
    VERSION_3_CODINGS,
    WEIGHT_CODINGS,
    bitmask_bytes,
    delta8_max_codes,
    narrowest_uint,
)
from .shapnet_layout import declared_shapnet_arrays, parse_shapnet_meta

FORMAT = "edgeprune-csr"
SUPPORTED_VERSIONS = (1, 2, 3, 4)
PACKED_VERSION = 3  # meta + one blob member (runtime/packed.py)
SHAPNET_VERSION = 4  # version-1 layers plus meta.shapnet and its arrays (a compiled ShapNet)
CODED_VERSIONS = (2, 3)  # layers name their codings (weights, indices, rowlen)

DATA_DTYPE = np.dtype(np.float32)
CSR_INDEX_DTYPE = np.dtype(np.int32)
MAP_INDEX_DTYPE = np.dtype(np.int64)
QDATA_DTYPE = np.dtype(np.int8)
CODING_KEYS = {"weights": WEIGHT_CODINGS, "indices": INDEX_CODINGS, "rowlen": ROWLEN_DTYPES}
V1_CODINGS = {"weights": "float32", "indices": "int32", "rowlen": None}


def map_dtype(meta: dict[str, Any], dim_key: str) -> np.dtype:
    """An index map's dtype: the narrowest that holds dim - 1 in version 3, else int64."""
    if meta["version"] != PACKED_VERSION:
        return MAP_INDEX_DTYPE
    return narrowest_uint(max(int(meta[dim_key]) - 1, 0))


def declared_arrays(meta: dict[str, Any]) -> dict[str, tuple[np.dtype, int, bool]]:
    """Each array's dtype and length (exact, or an upper bound: ``True``) as ``meta`` allows."""
    out = {
        "input_index": (map_dtype(meta, "input_dim"), int(meta["input_dim"]), True),
        "output_index": (map_dtype(meta, "output_dim"), int(meta["output_dim"]), True),
        "output_const": (DATA_DTYPE, int(meta["output_dim"]), False),
    }
    if meta.get("latent_layer") is not None:
        out["latent_index"] = (map_dtype(meta, "latent_dim"), int(meta["latent_dim"]), True)
        out["latent_const"] = (DATA_DTYPE, int(meta["latent_dim"]), False)
    for prefix, entry in layer_entries(meta):
        rows, cols = int(entry["shape"][0]), int(entry["shape"][1])
        nnz = min(int(entry["nnz"]), rows * cols)
        for name, spec in layer_arrays(entry, rows, cols, nnz).items():
            out[f"{prefix}.{name}"] = spec
        out[f"{prefix}.bias"] = (DATA_DTYPE, rows, False)
    if meta["version"] == SHAPNET_VERSION:
        out.update(declared_shapnet_arrays(meta))
    return out


def layer_entries(meta: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(array prefix, meta entry) of every CSR layer: ``layerK``, then a VAE's ``logvar``."""
    out = [(f"layer{k}", entry) for k, entry in enumerate(meta["layers"], start=1)]
    if meta.get("logvar") is not None:
        out.append(("logvar", meta["logvar"]))
    return out


def layer_codings(entry: dict[str, Any]) -> dict[str, str | None]:
    """The (checked) codings of a layer: weights, indices, rowlen (None: an int32 indptr)."""
    return {key: entry.get(key, default) for key, default in V1_CODINGS.items()}


def layer_arrays(
    entry: dict[str, Any], rows: int, cols: int, nnz: int
) -> dict[str, tuple[np.dtype, int, bool]]:
    """A layer's weight and index arrays: dtype, length and whether the length is a bound."""
    codings = layer_codings(entry)
    out: dict[str, tuple[np.dtype, int, bool]] = {}
    if codings["weights"] == "int8":
        out["qdata"] = (QDATA_DTYPE, nnz, True)
        out["scale"] = (DATA_DTYPE, rows, False)
    elif codings["weights"] in CODEBOOK_SIZES:
        out["codes"] = (np.dtype(np.uint8), nnz, True)
        out["codebook"] = (DATA_DTYPE, CODEBOOK_SIZES[str(codings["weights"])], True)
    else:
        out["data"] = (DATA_DTYPE, nnz, True)
    if codings["indices"] == "delta8":
        out["indices"] = (np.dtype(np.uint8), delta8_max_codes(nnz, rows, cols), True)
    elif codings["indices"] == "bitmask":
        out["indices"] = (np.dtype(np.uint8), bitmask_bytes(rows, cols), True)
    else:
        out["indices"] = (np.dtype(str(codings["indices"])), nnz, True)
    if codings["rowlen"] is None:
        out["indptr"] = (CSR_INDEX_DTYPE, rows + 1, False)
    else:
        out["rowlen"] = (np.dtype(str(codings["rowlen"])), rows, False)
    return out


def parse_meta(arrays: dict[str, np.ndarray], check: Checker) -> dict[str, Any]:
    if "meta" not in arrays:
        raise check.fail("meta", "is missing", "this is not an edgeprune bundle; re-export it")
    raw = arrays["meta"]
    if not isinstance(raw, np.ndarray) or raw.dtype.kind != "U" or raw.ndim != 0:
        shape = getattr(raw, "shape", None)
        dtype = getattr(raw, "dtype", type(raw).__name__)
        raise check.fail("meta", f"must be a 0-d unicode array, got dtype {dtype} shape {shape}")
    try:
        meta = json.loads(str(raw.item()))
    except json.JSONDecodeError as err:
        raise check.fail("meta", f"is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise check.fail("meta", f"must be a JSON object, got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise check.fail(
            "meta.format",
            f"is {meta.get('format')!r}, expected {FORMAT!r}",
            "this is not an edgeprune CSR bundle; export one with `edgeprune compress`",
        )
    version = meta.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise check.fail("meta.version", f"must be an integer, got {version!r}")
    if version not in SUPPORTED_VERSIONS:
        newest = max(SUPPORTED_VERSIONS)
        fix = (
            "upgrade edgeprune to read it"
            if version > newest
            else "re-export it with `edgeprune compress`"
        )
        raise check.fail(
            "meta.version",
            f"is {version}, this runtime reads version {', '.join(map(str, SUPPORTED_VERSIONS))}",
            fix,
        )
    kind = meta.get("kind")
    if not isinstance(kind, str) or not kind:
        raise check.fail("meta.kind", f"must be a non-empty string, got {kind!r}")
    dim = limits.MAX_DIM
    check.integer(meta.get("input_dim"), "meta.input_dim", 1, dim, "MAX_DIM")
    check.integer(meta.get("output_dim"), "meta.output_dim", 1, dim, "MAX_DIM")
    if meta.get("latent_layer") is not None:
        check.integer(meta["latent_layer"], "meta.latent_layer", 1)
        check.integer(meta.get("latent_dim"), "meta.latent_dim", 1, dim, "MAX_DIM")
    elif meta.get("latent_dim") is not None:
        check.integer(meta["latent_dim"], "meta.latent_dim", 1, dim, "MAX_DIM")
    for key in ("provenance", "report"):
        if key in meta and not isinstance(meta[key], dict):
            raise check.fail(
                f"meta.{key}", f"must be a JSON object, got {type(meta[key]).__name__}"
            )
    layers = meta.get("layers")
    if not isinstance(layers, list):
        raise check.fail("meta.layers", f"must be a list, got {type(layers).__name__}")
    if len(layers) > limits.MAX_LAYERS:
        raise check.fail(
            "meta.layers",
            f"declares {len(layers)} layers, over the bound of {limits.MAX_LAYERS} "
            "(edgeprune.runtime.limits.MAX_LAYERS)",
        )
    for k, entry in enumerate(layers, start=1):
        check_layer_entry(entry, f"meta.layers[{k}]", version, check)
    check_logvar_entry(meta, version, check)
    if version == SHAPNET_VERSION:
        parse_shapnet_meta(meta, check, dim)
    elif "shapnet" in meta:
        raise check.fail("meta.shapnet", f"is a version-{SHAPNET_VERSION} field in a "
                         f"version-{version} bundle", "re-export it with edgeprune")
    return meta


def check_layer_entry(entry: Any, field: str, version: int, check: Checker) -> None:
    """One layer's meta entry: activation, shape within the bounds, nnz, its codings."""
    dim = limits.MAX_DIM
    if not isinstance(entry, dict):
        raise check.fail(field, f"must be a JSON object, got {type(entry).__name__}")
    act = entry.get("activation")
    if act not in ACTIVATIONS:
        raise check.fail(
            f"{field}.activation",
            f"is {act!r}, expected one of {', '.join(ACTIVATIONS)}",
            "re-export it with `edgeprune compress` or upgrade edgeprune",
        )
    slope = entry.get("negative_slope")
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not np.isfinite(slope):
        raise check.fail(f"{field}.negative_slope", f"must be a finite number, got {slope!r}")
    shape = entry.get("shape")
    if not isinstance(shape, list) or len(shape) != 2:
        raise check.fail(f"{field}.shape", f"must be [rows, cols], got {shape!r}")
    rows = check.integer(shape[0], f"{field}.shape[0]", 0, dim, "MAX_DIM")
    cols = check.integer(shape[1], f"{field}.shape[1]", 0, dim, "MAX_DIM")
    if rows * cols > limits.MAX_LAYER_ELEMENTS:
        raise check.fail(
            f"{field}.shape",
            f"is {rows} x {cols} = {rows * cols} weights, over the bound of "
            f"{limits.MAX_LAYER_ELEMENTS} (edgeprune.runtime.limits.MAX_LAYER_ELEMENTS: a "
            "dense float32 weight of at most "
            f"{limits.format_bytes(4 * limits.MAX_LAYER_ELEMENTS)})",
        )
    check.integer(entry.get("nnz"), f"{field}.nnz", 0)
    for key, allowed in CODING_KEYS.items():
        if key not in entry:
            if version in CODED_VERSIONS:
                raise check.fail(f"{field}.{key}", "is missing")
            continue
        if version not in CODED_VERSIONS:
            raise check.fail(
                f"{field}.{key}",
                f"is a version-2 field in a version-{version} bundle",
                "re-export it with `edgeprune compress`",
            )
        if entry[key] not in allowed:
            raise check.fail(
                f"{field}.{key}", f"is {entry[key]!r}, expected one of {', '.join(allowed)}"
            )
        if version < PACKED_VERSION and entry[key] in VERSION_3_CODINGS:
            raise check.fail(
                f"{field}.{key}",
                f"is {entry[key]!r}, a version-3 coding in a version-{version} bundle",
            )
    if version in CODED_VERSIONS and entry["indices"] not in ("int32", "delta8", "bitmask"):
        bound = np.iinfo(np.dtype(entry["indices"])).max
        if cols - 1 > bound:
            raise check.fail(
                f"{field}.indices",
                f"is {entry['indices']} but {cols} columns need indices up to {cols - 1}",
            )


def check_logvar_entry(meta: dict[str, Any], version: int, check: Checker) -> None:
    """``meta.logvar``: a VAE's log-variance head, an optional field of version 3 (packed) bundles,
    beside a latent (mu) layer."""
    if "logvar" not in meta or meta["logvar"] is None:
        return
    if version != PACKED_VERSION:
        raise check.fail("meta.logvar", f"is a version-{PACKED_VERSION} field in a "
                         f"version-{version} bundle", "re-export it with `edgeprune compress`")
    if meta.get("latent_layer") is None:
        raise check.fail("meta.logvar", "needs meta.latent_layer (the mu layer it sits beside)")
    check_layer_entry(meta["logvar"], "meta.logvar", version, check)


def refuse_unexpected(names: Any, meta: dict[str, Any], check: Checker) -> None:
    """Every array name must belong to the bundle ``meta`` describes."""
    n_layers = len(meta["layers"])
    latent_layer = meta.get("latent_layer")
    expected = {"meta", "input_index", "output_index", "output_const"}
    for prefix, entry in layer_entries(meta):
        parts = {*layer_arrays(entry, 0, 0, 0), "bias"}
        expected |= {f"{prefix}.{part}" for part in parts}
    if latent_layer is not None:
        expected |= {"latent_index", "latent_const"}
    if meta["version"] == SHAPNET_VERSION:
        expected |= set(declared_shapnet_arrays(meta))
    unexpected = sorted(set(names) - expected)
    if unexpected:
        raise check.fail(
            unexpected[0],
            f"is not part of a bundle with {n_layers} layer(s)"
            + ("" if latent_layer is not None else " and no latent layer"),
        )
