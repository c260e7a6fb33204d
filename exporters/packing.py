"""The bytes of a bundle file: one ``.npy`` member per array (versions 1, 2) or the packed
container of version 3 (``meta`` + one ``blob``; the reading side and the table's rules are
:mod:`edgeprune.runtime.packed`).

Each zip member is stored, deflated or LZMA-compressed, whichever is smallest (``"auto"``),
using the standard library's :mod:`zipfile`, which the runtime also reads them with.
"""

from __future__ import annotations

import io
import json
import lzma
import zipfile
import zlib

import numpy as np

from edgeprune.runtime.packed import BLOB, BLOB_DTYPES, SHUFFLE, shuffle_bytes

COMPRESSIONS = {"stored": zipfile.ZIP_STORED, "deflate": zipfile.ZIP_DEFLATED,
                "lzma": zipfile.ZIP_LZMA}
# Arrays of one kind sit next to each other in the blob (all weight codes, then all index
# codes, ...): a compressor's statistics then describe one kind of data at a time.
_KIND_ORDER = ("data", "qdata", "codes", "indices", "rowlen", "scale", "codebook", "bias",
               "input_index", "output_index", "latent_index", "output_const", "latent_const")

__all__ = ["COMPRESSIONS", "compressed_bytes", "pack_arrays", "zip_members"]

_LZMA_RAW = {"format": lzma.FORMAT_RAW, "filters": [{"id": lzma.FILTER_LZMA1}]}  # as zipfile


def compressed_bytes(raw: bytes, with_lzma: bool = True) -> int:
    """The fewest bytes deflate (level 9) or, with ``with_lzma``, LZMA packs ``raw`` into: the
    measure by which codings are chosen (the container then picks per member)."""
    size = len(zlib.compress(raw, 9))
    return min(size, len(lzma.compress(raw, **_LZMA_RAW))) if with_lzma else size


def _kind(name: str) -> int:
    return _KIND_ORDER.index(name.rsplit(".", 1)[-1])


def _layer(name: str) -> int:
    return int(name.split(".")[0][len("layer"):]) if name.startswith("layer") else 0


def pack_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{"meta", "blob"}`` for the (validated) arrays of a version-3 bundle: every array but
    ``meta`` concatenated little-endian into ``blob``, its place recorded in ``meta["blob"]``.
    A multi-byte array is stored byte-shuffled where that deflates smaller (measured per
    array)."""
    meta = json.loads(str(arrays["meta"].item()))
    names = sorted((n for n in arrays if n != "meta"), key=lambda n: (_kind(n), _layer(n)))
    table, chunks, offset = [], [], 0
    for name in names:
        arr = np.ascontiguousarray(arrays[name]).reshape(-1)
        if arr.dtype.name not in BLOB_DTYPES:
            raise ValueError(f"{name}: dtype {arr.dtype} cannot go into a blob")
        raw = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        entry = [name, arr.dtype.name, offset, int(arr.shape[0])]
        if arr.dtype.itemsize > 1 and arr.size:
            shuffled = shuffle_bytes(raw, arr.dtype.itemsize)
            if len(zlib.compress(shuffled, 9)) < len(zlib.compress(raw, 9)):
                raw = shuffled
                entry.append(SHUFFLE)
        table.append(entry)
        chunks.append(raw)
        offset += len(raw)
    meta["blob"] = {"bytes": offset, "arrays": table}
    blob = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    return {"meta": np.array(json.dumps(meta, allow_nan=False)), BLOB: blob}


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
    return buf.getvalue()


def zip_members(arrays: dict[str, np.ndarray], compression: str = "auto") -> bytes:
    """The ``.npz`` bytes of ``arrays``, each member compressed by ``compression`` (one of
    :data:`COMPRESSIONS`) or, with ``"auto"``, by whichever of them makes it smallest (stored
    on a tie: loading then skips a decompression pass). Fixed timestamps: the same arrays give
    the same bytes."""
    if compression != "auto" and compression not in COMPRESSIONS:
        raise ValueError(f"compression={compression!r}: use auto or one of "
                         f"{', '.join(COMPRESSIONS)}")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, arr in arrays.items():
            data = _npy(arr)
            methods = list(COMPRESSIONS) if compression == "auto" else [compression]
            best = min(methods, key=lambda m: (_compressed_size(name, data, m),
                                               methods.index(m)))
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = COMPRESSIONS[best]
            info.external_attr = 0o644 << 16
            zf.writestr(info, data, compresslevel=9 if best == "deflate" else None)
    return out.getvalue()


def _compressed_size(name: str, data: bytes, method: str) -> int:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo(f"{name}.npy"), data, compress_type=COMPRESSIONS[method],
                    compresslevel=9 if method == "deflate" else None)
    return len(buf.getvalue())
