"""Reading and validating ``.npz`` CSR bundles (standard library + numpy only).

A bundle is checked completely before any kernel sees it: archive integrity, ``meta`` JSON,
every array's presence, exact dtype and shape, CSR structure (``indptr`` monotone and consistent
with ``nnz``, column indices in range and sorted within each row), finite values, the chaining of
layer shapes and the input/output/latent index maps. Every failure becomes a one-line
:class:`BundleError` naming the file, the field and the fix.
"""

from __future__ import annotations

import os
import re
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

try:  # only for the LZMA-compressed blob of a version-3 bundle
    from lzma import LZMAError
except ImportError:  # pragma: no cover - a Python without liblzma
    class LZMAError(Exception):  # type: ignore[no-redef]
        """Stands in for lzma.LZMAError where the lzma module is missing."""

from . import limits
from .bundle_meta import (
    CSR_INDEX_DTYPE,
    DATA_DTYPE,
    FORMAT,
    MAP_INDEX_DTYPE,
    PACKED_VERSION,
    QDATA_DTYPE,
    SHAPNET_VERSION,
    SUPPORTED_VERSIONS,
    declared_arrays,
    layer_arrays,
    layer_codings,
    map_dtype,
    parse_meta,
    refuse_unexpected,
)
from .checks import BundleError, Checker
from .packed import BLOB, blob_table, unpack_blob
from .quant import (
    CODEBOOK_SIZES,
    QMAX,
    decode_bitmask,
    decode_delta8,
    dequantize,
)
from .shapnet_layout import (
    ShapnetLayout,
    validate_shapnet,
)

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
    shapnet: ShapnetLayout | None = None  # version 4: the compiled ShapNet's layout
    #: a VAE's log-variance head (optional, version 3): latent_dim rows, columns = layer latent_layer's
    logvar: LayerArrays | None = None

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


_MEMBER = re.compile(
    r"(meta|blob|input_index|output_index|output_const|latent_index|latent_const"
    r"|layer[1-9][0-9]{0,5}\.(?:data|qdata|scale|codes|codebook|indices|indptr|rowlen|bias)"
    r"|shapnet\.t[1-9][0-9]{0,5}\.(?:active|reference))"
    r"\.npy"
)
_MEMBER_NAMES = (
    "meta, blob, input_index, output_index, output_const, latent_index, latent_const, "
    "layerK.data/qdata/scale/codes/codebook/indices/indptr/rowlen/bias and "
    "shapnet.tT.active/reference (.npy)"
)
_NOT_A_BUNDLE = "pass a bundle written by `edgeprune compress`"
_DAMAGED = "copy it again or re-export it with `edgeprune compress`"


# LZMA (the packed blob of a version-3 bundle, where it is smallest) needs Python's lzma module,
# present in every CPython build that has liblzma (Debian/Raspberry Pi OS included).
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA)
_NO_LZMA = ("this Python lacks the lzma module; install a Python built with liblzma, or re-export "
            "the bundle with `edgeprune compress --bundle-compression deflate`")


def _open_zip(path: str | os.PathLike[str], check: Checker) -> zipfile.ZipFile:
    magic = b""
    try:
        with open(path, "rb") as fp:
            magic = fp.read(len(limits.NPY_MAGIC))
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise check.fail("file", "does not exist", "check the path") from None
    except IsADirectoryError:
        raise check.fail("file", "is a directory", "pass the path of a .npz bundle") from None
    except PermissionError:
        raise check.fail(
            "file", "is not readable (permission denied)", "fix its permissions"
        ) from None
    except (zipfile.BadZipFile, EOFError, zlib.error, ValueError, OSError) as err:
        if magic == limits.NPY_MAGIC:
            raise check.fail(
                "file", "is a single .npy array, not an .npz bundle", "pass the model.npz bundle"
            ) from None
        if not magic:
            raise check.fail("file", "is truncated to 0 bytes (empty)", _DAMAGED) from None
        if not magic.startswith(limits.ZIP_MAGIC[:2]):
            raise check.fail(
                "file", f"is not an .npz archive (no zip signature: {err})", _NOT_A_BUNDLE
            ) from None
        raise check.fail(
            "file", f"is truncated or not a valid zip archive ({err})", _DAMAGED
        ) from None


def _check_members(zf: zipfile.ZipFile, check: Checker) -> list[zipfile.ZipInfo]:
    """Names, duplicates, compression and declared sizes, from the zip headers alone."""
    members: list[zipfile.ZipInfo] = []
    seen: set[str] = set()
    total = 0
    infos = zf.infolist()
    # maps and constants, then at most 5 arrays per layer and 2 per ShapNet transform
    most = 6 + 7 * limits.MAX_LAYERS
    if len(infos) > most:
        raise check.fail(
            "file",
            f"holds {len(infos)} members, more than a bundle of at most {limits.MAX_LAYERS} "
            f"layers can ({most}; edgeprune.runtime.limits.MAX_LAYERS)",
            _NOT_A_BUNDLE,
        )
    for info in infos:
        name = info.filename
        if not _MEMBER.fullmatch(name):
            raise check.fail(
                f"member {name[:200]!r}",
                f"is not an array a bundle holds (only {_MEMBER_NAMES})",
                _NOT_A_BUNDLE,
            )
        if name in seen:
            raise check.fail(f"member {name!r}", "appears twice in the archive", _NOT_A_BUNDLE)
        seen.add(name)
        if info.flag_bits & 0x1:
            raise check.fail(f"member {name!r}", "is encrypted", _NOT_A_BUNDLE)
        if info.compress_type not in _COMPRESSIONS:
            raise check.fail(
                f"member {name!r}",
                f"uses zip compression method {info.compress_type} (only stored, deflated or "
                "LZMA)",
                _NOT_A_BUNDLE,
            )
        total += info.file_size
        if total > limits.MAX_BUNDLE_BYTES:
            raise check.fail(
                f"member {name!r}",
                f"brings the declared uncompressed size to {limits.format_bytes(total)}, over "
                f"the bound of {limits.format_bytes(limits.MAX_BUNDLE_BYTES)} for a bundle "
                "(edgeprune.runtime.limits.MAX_BUNDLE_BYTES); refused without decompressing it",
                _NOT_A_BUNDLE,
            )
        members.append(info)
    return members


def _read_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, check: Checker) -> limits.NpyHeader:
    """The member's .npy header (a few hundred bytes decompressed), checked against its size."""
    name = info.filename[: -len(".npy")]
    try:
        with zf.open(info) as fp:
            header = limits.read_npy_header(fp)
    except ValueError as err:
        if "object dtype" in str(err):
            raise check.fail(
                name, "is a pickled object array, which is refused (allow_pickle=False)"
            ) from None
        raise check.fail(name, str(err)) from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, LZMAError) as err:
        raise check.fail(
            name, f"cannot be read: the archive is truncated or damaged ({err})", _DAMAGED
        ) from None
    except (RuntimeError, NotImplementedError) as err:
        if "lzma" in str(err).lower():
            raise check.fail(name, "is LZMA-compressed", _NO_LZMA) from None
        raise
    held = info.file_size - header.offset
    if header.data_bytes > held:
        raise check.fail(
            name,
            f"declares shape {header.shape} {header.dtype} ({header.data_bytes} bytes) but its "
            f"member holds {max(held, 0)} bytes of data",
        )
    return header


def _read_member(zf: zipfile.ZipFile, name: str, check: Checker) -> np.ndarray:
    try:
        with zf.open(name + ".npy") as fp:
            return np.lib.format.read_array(fp, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise check.fail(
                name, "is a pickled object array, which is refused (allow_pickle=False)"
            ) from None
        raise check.fail(name, f"cannot be read ({err})") from None
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, LZMAError) as err:
        raise check.fail(
            name, f"cannot be read: the archive is truncated or damaged ({err})", _DAMAGED
        ) from None


def _read_packed(zf: zipfile.ZipFile, headers: dict[str, limits.NpyHeader],
                 meta: dict[str, Any], check: Checker) -> dict[str, np.ndarray]:
    """The arrays of a version-3 bundle, from its table and blob, checked before reading."""
    extra = sorted(set(headers) - {"meta", BLOB})
    if extra:
        raise check.fail(extra[0], f"is a separate member, but a version-{meta['version']} "
                         "bundle packs every array into its blob member")
    if BLOB not in headers:
        raise check.fail(BLOB, "is missing (a version-3 bundle packs its arrays into it)")
    table = blob_table(meta, check)
    header = headers[BLOB]
    check.declared(BLOB, header.dtype, header.shape, np.dtype(np.uint8),
                   int(meta["blob"]["bytes"]))
    refuse_unexpected([entry[0] for entry in table], meta, check)
    declared = declared_arrays(meta)
    for name, dtype, _, length, _ in table:
        want, bound, at_most = declared[name]
        check.declared(name, dtype.newbyteorder("="), (length,), want, bound, at_most)
    return unpack_blob(_read_member(zf, BLOB, check), table, check)


def read_arrays(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read every array of the ``.npz`` bundle at ``path`` (no pickle), bounded in memory.

    Before any array is decompressed: the member names must be names a bundle holds, the declared
    uncompressed sizes must fit :data:`~edgeprune.runtime.limits.MAX_BUNDLE_BYTES`, each member's
    ``.npy`` header (read alone) must be a non-object dtype whose data its member holds, ``meta``
    must parse with its widths within the bounds of :mod:`edgeprune.runtime.limits`, and each
    array may not declare more bytes than ``meta`` allows for it. Every problem -> BundleError.
    """
    check = Checker(os.fspath(path))
    with _open_zip(path, check) as zf:
        members = _check_members(zf, check)
        headers = {info.filename[: -len(".npy")]: _read_header(zf, info, check) for info in members}
        if "meta" not in headers:
            raise check.fail("meta", "is missing", "this is not an edgeprune bundle; re-export it")
        if headers["meta"].data_bytes > limits.MAX_META_BYTES:
            raise check.fail(
                "meta",
                f"declares {limits.format_bytes(headers['meta'].data_bytes)}, over the bound of "
                f"{limits.format_bytes(limits.MAX_META_BYTES)} "
                "(edgeprune.runtime.limits.MAX_META_BYTES)",
            )
        arrays = {"meta": _read_member(zf, "meta", check)}
        meta = parse_meta(arrays, check)
        if meta["version"] == PACKED_VERSION:
            return {**arrays, **_read_packed(zf, headers, meta, check)}
        refuse_unexpected(headers, meta, check)
        declared = declared_arrays(meta)
        for name, header in headers.items():
            if name in declared:
                dtype, length, at_most = declared[name]
                check.declared(name, header.dtype, header.shape, dtype, length, at_most)
        for name in headers:
            if name != "meta":
                arrays[name] = _read_member(zf, name, check)
    return arrays


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and fully validate the bundle at ``path``."""
    return validate_bundle(read_arrays(path), source=os.fspath(path))


def _validate_layer(
    arrays: dict[str, np.ndarray], k: int | str, entry: dict[str, Any], check: Checker
) -> LayerArrays:
    """Layer ``k`` (1-based), or the CSR layer of another prefix (``"logvar"``)."""
    rows, cols = int(entry["shape"][0]), int(entry["shape"][1])
    nnz = int(entry["nnz"])
    p = f"layer{k}" if isinstance(k, int) else k
    field = f"meta.layers[{k}]" if isinstance(k, int) else f"meta.{k}"
    if nnz > rows * cols:
        raise check.fail(f"{field}.nnz", f"is {nnz}, more than rows*cols={rows * cols}")
    if nnz > np.iinfo(np.int32).max:
        raise check.fail(f"{field}.nnz", f"is {nnz}, too large for int32 indices")
    codings = layer_codings(entry)
    specs = layer_arrays(entry, rows, cols, nnz)
    if codings["rowlen"] is None:
        indptr = check.array(arrays, f"{p}.indptr", CSR_INDEX_DTYPE, rows + 1)
    else:
        rowlen = check.array(arrays, f"{p}.rowlen", specs["rowlen"][0], rows)
        if rowlen.dtype.kind == "i" and rowlen.size and int(rowlen.min()) < 0:
            pos = int(np.argmax(rowlen < 0))
            raise check.fail(f"{p}.rowlen", f"has negative length {rowlen[pos]} at row {pos}")
        total = int(rowlen.sum(dtype=np.int64))
        if total != nnz:
            raise check.fail(f"{p}.rowlen", f"sums to {total}, expected nnz={nnz}")
        if rowlen.size and int(rowlen.max()) > cols:
            pos = int(np.argmax(rowlen > cols))
            raise check.fail(
                f"{p}.rowlen", f"has {rowlen[pos]} non-zeros in row {pos}, more than cols={cols}"
            )
        indptr = np.zeros(rows + 1, dtype=np.int32)
        indptr[1:] = np.cumsum(rowlen, dtype=np.int64)  # <= nnz, checked to fit int32
    if codings["indices"] == "delta8":
        codes = check.array(arrays, f"{p}.indices", np.dtype(np.uint8))
        if codes.shape[0] > specs["indices"][1]:
            raise check.fail(
                f"{p}.indices",
                f"holds {codes.shape[0]} delta8 codes, more than {specs['indices'][1]} "
                f"(nnz plus cols // 255 escapes per row)",
            )
        if indptr[0] == 0 and not (np.diff(indptr) < 0).any() and int(indptr[-1]) == nnz:
            decoded, problem = decode_delta8(codes, indptr)
            if decoded is None:
                raise check.fail(f"{p}.indices", problem)
            if decoded.size and int(decoded.max()) >= cols:
                pos = int(np.argmax(decoded >= cols))
                raise check.fail(
                    f"{p}.indices",
                    f"decodes to column index {decoded[pos]} at position {pos} outside "
                    f"[0, cols={cols})",
                )
            indices = decoded.astype(np.int32)
        else:
            indices = np.zeros(nnz, dtype=np.int32)  # the indptr checks below fail first
    elif codings["indices"] == "bitmask":
        codes = check.array(arrays, f"{p}.indices", np.dtype(np.uint8), specs["indices"][1])
        decoded, problem = decode_bitmask(codes, rows, cols)
        if decoded is None:
            raise check.fail(f"{p}.indices", problem)
        indices, counts = decoded
        mismatch = counts != np.diff(indptr)
        if mismatch.any():
            pos = int(np.argmax(mismatch))
            raise check.fail(
                f"{p}.indices",
                f"marks {counts[pos]} positions in row {pos} but {p}.rowlen says "
                f"{int(np.diff(indptr)[pos])}",
            )
        indices = indices.astype(np.int32)
    else:
        indices = check.array(arrays, f"{p}.indices", specs["indices"][0], nnz)
        indices = indices.astype(np.int32)  # unsigned steps below would wrap around
    if codings["weights"] == "int8":
        qdata = check.array(arrays, f"{p}.qdata", QDATA_DTYPE, nnz)
        scale = check.array(arrays, f"{p}.scale", DATA_DTYPE, rows)
        check.finite(scale, f"{p}.scale")
        check.none_of(scale <= 0, f"{p}.scale",
                      lambda pos: f"holds {scale[pos]} at row {pos}; scales must be > 0")
        check.none_of(qdata < -QMAX, f"{p}.qdata",
                      lambda pos: f"holds {qdata[pos]} at position {pos}, outside the "
                                  f"symmetric range [-{QMAX}, {QMAX}]")
    elif codings["weights"] in CODEBOOK_SIZES:
        size = CODEBOOK_SIZES[str(codings["weights"])]
        codes = check.array(arrays, f"{p}.codes", np.dtype(np.uint8), nnz)
        codebook = check.array(arrays, f"{p}.codebook", DATA_DTYPE)
        if not 1 <= codebook.shape[0] <= size:
            raise check.fail(
                f"{p}.codebook", f"has length {codebook.shape[0]}, expected 1..{size}"
            )
        check.finite(codebook, f"{p}.codebook")
        check.none_of(codes >= codebook.shape[0], f"{p}.codes",
                      lambda pos: f"holds code {codes[pos]} at position {pos}, outside the "
                                  f"codebook of {codebook.shape[0]} values")
        data = codebook[codes]
    else:
        data = check.array(arrays, f"{p}.data", DATA_DTYPE, nnz)
    bias = check.array(arrays, f"{p}.bias", DATA_DTYPE, rows)

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
    if codings["weights"] == "int8":
        data = dequantize(qdata, scale, indptr)
        check.finite(data, f"{p}.qdata * {p}.scale")
    check.finite(data, f"{p}.data")
    check.finite(bias, f"{p}.bias")
    return LayerArrays(
        data=data,
        indices=np.ascontiguousarray(indices, dtype=CSR_INDEX_DTYPE),
        indptr=indptr,
        bias=bias,
        shape=(rows, cols),
        activation=str(entry["activation"]),
        negative_slope=float(entry["negative_slope"]),
    )


def validate_bundle(arrays: dict[str, np.ndarray], source: str = "bundle") -> Bundle:
    """Validate the arrays of a bundle (as read by :func:`read_arrays`) and assemble a Bundle."""
    check = Checker(source)
    meta = parse_meta(arrays, check)
    entries: list[dict[str, Any]] = meta["layers"]
    n_layers = len(entries)
    input_dim, output_dim = int(meta["input_dim"]), int(meta["output_dim"])
    latent_layer = meta.get("latent_layer")

    refuse_unexpected(arrays, meta, check)

    layers: list[LayerArrays] = []
    for k, entry in enumerate(entries, start=1):
        layer = _validate_layer(arrays, k, entry, check)
        if layers and layer.shape[1] != layers[-1].shape[0]:
            raise check.fail(
                f"meta.layers[{k}].shape",
                f"has {layer.shape[1]} columns but layer{k - 1} has {layers[-1].shape[0]} rows",
            )
        layers.append(layer)

    input_index = check.array(arrays, "input_index", map_dtype(meta, "input_dim"))
    if input_index.shape[0] > input_dim:
        raise check.fail(
            "input_index", f"has {input_index.shape[0]} entries, input_dim={input_dim}"
        )
    input_index = input_index.astype(MAP_INDEX_DTYPE)  # unsigned steps would wrap around
    check.index_map(input_index, "input_index", input_dim, "input_dim", increasing=True)
    if layers and layers[0].shape[1] != input_index.shape[0]:
        raise check.fail(
            "input_index",
            f"has {input_index.shape[0]} entries but layer1 has {layers[0].shape[1]} columns",
        )

    n_out = layers[-1].shape[0] if layers else 0
    output_index = check.array(arrays, "output_index", map_dtype(meta, "output_dim"))
    output_index = output_index.astype(MAP_INDEX_DTYPE)
    if output_index.shape[0] != n_out:
        where = f"layer{n_layers} has {n_out} rows" if layers else "the bundle has no layers"
        raise check.fail("output_index", f"has {output_index.shape[0]} entries but {where}")
    check.index_map(output_index, "output_index", output_dim, "output_dim", increasing=False)
    output_const = check.array(arrays, "output_const", DATA_DTYPE, output_dim)
    check.finite(output_const, "output_const")

    latent_index = latent_const = None
    if latent_layer is not None:
        latent_dim = int(meta["latent_dim"])
        if layers and latent_layer > n_layers:
            raise check.fail(
                "meta.latent_layer", f"is {latent_layer}, the bundle has {n_layers} layers"
            )
        n_latent = layers[latent_layer - 1].shape[0] if layers else 0
        latent_index = check.array(arrays, "latent_index", map_dtype(meta, "latent_dim"))
        latent_index = latent_index.astype(MAP_INDEX_DTYPE)
        if latent_index.shape[0] != n_latent:
            where = (
                f"layer{latent_layer} has {n_latent} rows" if layers else "the bundle has no layers"
            )
            raise check.fail("latent_index", f"has {latent_index.shape[0]} entries but {where}")
        check.index_map(latent_index, "latent_index", latent_dim, "latent_dim", increasing=False)
        latent_const = check.array(arrays, "latent_const", DATA_DTYPE, latent_dim)
        check.finite(latent_const, "latent_const")

    shapnet = None
    if meta["version"] == SHAPNET_VERSION:
        shapnet = validate_shapnet(meta, arrays, tuple(layers), input_index, output_index, check)
    logvar = None
    if meta.get("logvar") is not None:
        logvar = _validate_layer(arrays, "logvar", meta["logvar"], check)
        cols = layers[latent_layer - 1].shape[1] if layers else 0
        if logvar.shape != (int(meta["latent_dim"]), cols):
            raise check.fail(
                "meta.logvar.shape",
                f"is {list(logvar.shape)}, expected [latent_dim, the columns of layer"
                f"{latent_layer}] = [{meta['latent_dim']}, {cols}]",
            )

    return Bundle(
        source=source,
        meta=meta,
        layers=tuple(layers),
        input_index=input_index,
        output_index=output_index,
        output_const=output_const,
        latent_index=latent_index,
        latent_const=latent_const,
        shapnet=shapnet,
        logvar=logvar,
    )
