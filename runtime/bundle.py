"""Reading and validating ``.npz`` CSR bundles (standard library + numpy only).

A bundle is checked completely before any kernel sees it: archive integrity, ``meta`` JSON,
every array's presence, exact dtype and shape, CSR structure (``indptr`` monotone and consistent
with ``nnz``, column indices in range and sorted within each row), finite values, the chaining of
layer shapes and the input/output/latent index maps. Every failure becomes a one-line
:class:`BundleError` naming the file, the field and the fix.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from .activations import ACTIVATIONS
from .checks import BundleError, Checker

FORMAT = "edgeprune-csr"
SUPPORTED_VERSIONS = (1,)

_DATA_DTYPE = np.dtype(np.float32)
_CSR_INDEX_DTYPE = np.dtype(np.int32)
_MAP_INDEX_DTYPE = np.dtype(np.int64)

__all__ = [
    "FORMAT",
    "SUPPORTED_VERSIONS",
    "Bundle",
    "BundleError",
    "LayerArrays",
    "read_arrays",
    "read_bundle",
    "validate_bundle",
]


@dataclass(frozen=True)
class LayerArrays:
    """One validated CSR layer: ``act(W @ x + bias)`` with ``W`` of shape ``(rows, cols)``."""

    data: np.ndarray  # (nnz,) float32
    indices: np.ndarray  # (nnz,) int32, sorted within each row
    indptr: np.ndarray  # (rows + 1,) int32
    bias: np.ndarray  # (rows,) float32
    shape: tuple[int, int]
    activation: str
    negative_slope: float

    @property
    def nnz(self) -> int:
        return int(self.data.shape[0])

    @property
    def density(self) -> float:
        size = self.shape[0] * self.shape[1]
        return self.nnz / size if size else 0.0


@dataclass(frozen=True)
class Bundle:
    """A fully validated bundle: parsed ``meta`` plus the arrays, ready for the kernels."""

    source: str
    meta: dict[str, Any]
    layers: tuple[LayerArrays, ...]
    input_index: np.ndarray  # (used inputs,) int64, strictly increasing
    output_index: np.ndarray  # (live outputs,) int64, unique
    output_const: np.ndarray  # (output_dim,) float32
    latent_index: np.ndarray | None = None  # (live latent units,) int64, unique
    latent_const: np.ndarray | None = None  # (latent_dim,) float32

    @property
    def kind(self) -> str:
        return str(self.meta["kind"])

    @property
    def input_dim(self) -> int:
        return int(self.meta["input_dim"])

    @property
    def output_dim(self) -> int:
        return int(self.meta["output_dim"])

    @property
    def latent_layer(self) -> int | None:
        return self.meta.get("latent_layer")

    @property
    def latent_dim(self) -> int | None:
        return self.meta.get("latent_dim") if self.latent_layer is not None else None


def read_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of the ``.npz`` at ``path`` (no pickle); archive problems -> BundleError."""
    check = Checker(os.fspath(path))
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise check.fail("file", "does not exist", "check the path") from None
    except IsADirectoryError:
        raise check.fail("file", "is a directory", "pass the path of a .npz bundle") from None
    except PermissionError:
        raise check.fail(
            "file", "is not readable (permission denied)", "fix its permissions"
        ) from None
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise check.fail(
            "file",
            f"is truncated or not a valid zip archive ({err})",
            "copy it again or re-export it with `edgeprune compress`",
        ) from None
    except (ValueError, OSError) as err:
        # numpy falls back to unpickling for files that are neither .npy nor .npz; refused.
        raise check.fail(
            "file",
            f"is not an .npz archive ({err})",
            "pass a bundle written by `edgeprune compress`",
        ) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise check.fail(
            "file", "is a single .npy array, not an .npz bundle", "pass the model.npz bundle"
        )
    arrays: dict[str, np.ndarray] = {}
    with npz:
        for name in npz.files:
            try:
                arrays[name] = npz[name]
            except ValueError as err:
                if "allow_pickle" in str(err) or "pickle" in str(err).lower():
                    raise check.fail(
                        name, "is a pickled object array, which is refused (allow_pickle=False)"
                    ) from None
                raise check.fail(name, f"cannot be read ({err})") from None
            except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
                raise check.fail(
                    name,
                    f"cannot be read: the archive is truncated or damaged ({err})",
                    "copy it again or re-export it with `edgeprune compress`",
                ) from None
    return arrays


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and fully validate the bundle at ``path``."""
    return validate_bundle(read_arrays(path), source=os.fspath(path))


def _parse_meta(arrays: dict[str, np.ndarray], check: Checker) -> dict[str, Any]:
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
    check.integer(meta.get("input_dim"), "meta.input_dim", 1)
    check.integer(meta.get("output_dim"), "meta.output_dim", 1)
    if meta.get("latent_layer") is not None:
        check.integer(meta["latent_layer"], "meta.latent_layer", 1)
        check.integer(meta.get("latent_dim"), "meta.latent_dim", 1)
    elif meta.get("latent_dim") is not None:
        check.integer(meta["latent_dim"], "meta.latent_dim", 1)
    for key in ("provenance", "report"):
        if key in meta and not isinstance(meta[key], dict):
            raise check.fail(
                f"meta.{key}", f"must be a JSON object, got {type(meta[key]).__name__}"
            )
    layers = meta.get("layers")
    if not isinstance(layers, list):
        raise check.fail("meta.layers", f"must be a list, got {type(layers).__name__}")
    for k, entry in enumerate(layers, start=1):
        field = f"meta.layers[{k}]"
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
        check.integer(shape[0], f"{field}.shape[0]", 0)
        check.integer(shape[1], f"{field}.shape[1]", 0)
        check.integer(entry.get("nnz"), f"{field}.nnz", 0)
    return meta


def _validate_layer(
    arrays: dict[str, np.ndarray], k: int, entry: dict[str, Any], check: Checker
) -> LayerArrays:
    rows, cols = int(entry["shape"][0]), int(entry["shape"][1])
    nnz = int(entry["nnz"])
    p = f"layer{k}"
    if nnz > rows * cols:
        raise check.fail(f"meta.layers[{k}].nnz", f"is {nnz}, more than rows*cols={rows * cols}")
    if nnz > np.iinfo(np.int32).max:
        raise check.fail(f"meta.layers[{k}].nnz", f"is {nnz}, too large for int32 indices")
    data = check.array(arrays, f"{p}.data", _DATA_DTYPE, nnz)
    indices = check.array(arrays, f"{p}.indices", _CSR_INDEX_DTYPE, nnz)
    indptr = check.array(arrays, f"{p}.indptr", _CSR_INDEX_DTYPE, rows + 1)
    bias = check.array(arrays, f"{p}.bias", _DATA_DTYPE, rows)

    if indptr[0] != 0:
        raise check.fail(f"{p}.indptr", f"starts at {indptr[0]}, expected 0")
    steps = np.diff(indptr) < 0
    if steps.any():
        pos = int(np.argmax(steps)) + 1
        raise check.fail(f"{p}.indptr", f"is not monotone non-decreasing (position {pos})")
    if int(indptr[-1]) != nnz:
        raise check.fail(f"{p}.indptr", f"ends at {indptr[-1]}, expected nnz={nnz}")

    if nnz:
        low = indices < 0
        if low.any():
            pos = int(np.argmax(low))
            raise check.fail(
                f"{p}.indices", f"has negative column index {indices[pos]} at position {pos}"
            )
        high = indices >= cols
        if high.any():
            pos = int(np.argmax(high))
            raise check.fail(
                f"{p}.indices",
                f"has column index {indices[pos]} at position {pos} outside [0, cols={cols})",
            )
        # Strictly increasing within each row; the step across a row boundary is exempt.
        bad = np.diff(indices) <= 0
        starts = indptr[1:-1]
        starts = starts[(starts > 0) & (starts < nnz)]
        bad[starts - 1] = False
        if bad.any():
            pos = int(np.argmax(bad)) + 1
            row = int(np.searchsorted(indptr, pos, side="right")) - 1
            raise check.fail(
                f"{p}.indices",
                f"has unsorted or duplicate column indices in row {row} (position {pos})",
            )
    check.finite(data, f"{p}.data")
    check.finite(bias, f"{p}.bias")
    return LayerArrays(
        data=data,
        indices=indices,
        indptr=indptr,
        bias=bias,
        shape=(rows, cols),
        activation=str(entry["activation"]),
        negative_slope=float(entry["negative_slope"]),
    )


def validate_bundle(arrays: dict[str, np.ndarray], source: str = "bundle") -> Bundle:
    """Validate the arrays of a bundle (as read by :func:`read_arrays`) and assemble a Bundle."""
    check = Checker(source)
    meta = _parse_meta(arrays, check)
    entries: list[dict[str, Any]] = meta["layers"]
    n_layers = len(entries)
    input_dim, output_dim = int(meta["input_dim"]), int(meta["output_dim"])
    latent_layer = meta.get("latent_layer")

    expected = {"meta", "input_index", "output_index", "output_const"}
    for k in range(1, n_layers + 1):
        expected |= {f"layer{k}.{part}" for part in ("data", "indices", "indptr", "bias")}
    if latent_layer is not None:
        expected |= {"latent_index", "latent_const"}
    unexpected = sorted(set(arrays) - expected)
    if unexpected:
        raise check.fail(
            unexpected[0],
            f"is not part of a bundle with {n_layers} layer(s)"
            + ("" if latent_layer is not None else " and no latent layer"),
        )

    layers: list[LayerArrays] = []
    for k, entry in enumerate(entries, start=1):
        layer = _validate_layer(arrays, k, entry, check)
        if layers and layer.shape[1] != layers[-1].shape[0]:
            raise check.fail(
                f"meta.layers[{k}].shape",
                f"has {layer.shape[1]} columns but layer{k - 1} has {layers[-1].shape[0]} rows",
            )
        layers.append(layer)

    input_index = check.array(arrays, "input_index", _MAP_INDEX_DTYPE)
    if input_index.shape[0] > input_dim:
        raise check.fail(
            "input_index", f"has {input_index.shape[0]} entries, input_dim={input_dim}"
        )
    check.index_map(input_index, "input_index", input_dim, "input_dim", increasing=True)
    if layers and layers[0].shape[1] != input_index.shape[0]:
        raise check.fail(
            "input_index",
            f"has {input_index.shape[0]} entries but layer1 has {layers[0].shape[1]} columns",
        )

    n_out = layers[-1].shape[0] if layers else 0
    output_index = check.array(arrays, "output_index", _MAP_INDEX_DTYPE)
    if output_index.shape[0] != n_out:
        where = f"layer{n_layers} has {n_out} rows" if layers else "the bundle has no layers"
        raise check.fail("output_index", f"has {output_index.shape[0]} entries but {where}")
    check.index_map(output_index, "output_index", output_dim, "output_dim", increasing=False)
    output_const = check.array(arrays, "output_const", _DATA_DTYPE, output_dim)
    check.finite(output_const, "output_const")

    latent_index = latent_const = None
    if latent_layer is not None:
        latent_dim = int(meta["latent_dim"])
        if layers and latent_layer > n_layers:
            raise check.fail(
                "meta.latent_layer", f"is {latent_layer}, the bundle has {n_layers} layers"
            )
        n_latent = layers[latent_layer - 1].shape[0] if layers else 0
        latent_index = check.array(arrays, "latent_index", _MAP_INDEX_DTYPE)
        if latent_index.shape[0] != n_latent:
            where = (
                f"layer{latent_layer} has {n_latent} rows" if layers else "the bundle has no layers"
            )
            raise check.fail("latent_index", f"has {latent_index.shape[0]} entries but {where}")
        check.index_map(latent_index, "latent_index", latent_dim, "latent_dim", increasing=False)
        latent_const = check.array(arrays, "latent_const", _DATA_DTYPE, latent_dim)
        check.finite(latent_const, "latent_const")

    return Bundle(
        source=source,
        meta=meta,
        layers=tuple(layers),
        input_index=input_index,
        output_index=output_index,
        output_const=output_const,
        latent_index=latent_index,
        latent_const=latent_const,
    )
