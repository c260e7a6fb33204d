"""The packed container of a version-3 bundle (standard library + numpy only).

Versions 1 and 2 keep one ``.npy`` member per array; every member costs a zip local header, a
central-directory entry and a 128-byte ``.npy`` header, which on a small model is more than its
weights (a 64-32-8-32-64 autoencoder at η = 0.95: 6,923 B of bundle for 4,460 B of dense fp32
weights, measured). Version 3 holds two members:

``meta.npy``
    the JSON meta as before, plus ``meta["blob"] = {"bytes": N, "arrays": [[name, dtype, offset,
    length], ...]}``: every array of the bundle, its little-endian dtype (one of
    :data:`BLOB_DTYPES`), its byte offset in the blob and its element count. A fifth item
    ``"shuffle"`` says the array's bytes are stored plane by plane (every element's first byte,
    then every second byte, ...: the HDF5/Blosc shuffle filter), which lets deflate/LZMA see the
    slowly varying sign-and-exponent bytes of float32 values side by side (6 % fewer bytes on
    the float32 weights of a digits autoencoder after LZMA, measured).
``blob.npy``
    one 1-D uint8 array of exactly ``N`` bytes: the arrays back to back.

The table is checked completely before any array is cut out of the blob: known dtypes, integer
offsets and lengths, the arrays tiling the blob exactly in order (no overlap, no gap, nothing
beyond its end), each array's dtype and length as ``meta`` declares for it (the same
:func:`Checker.declared` rule as a version-2 member's ``.npy`` header). The arrays come out as
copies (aligned, native byte order) named as in version 2, so one validator serves every
version.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .checks import Checker

BLOB = "blob"
SHUFFLE = "shuffle"
BLOB_DTYPES = ("int8", "uint8", "uint16", "int32", "int64", "float32")

__all__ = ["BLOB", "BLOB_DTYPES", "SHUFFLE", "Entry", "blob_table", "shuffle_bytes",
           "unpack_blob"]

Entry = tuple[str, np.dtype, int, int, bool]  # name, dtype, offset, length, shuffled


def shuffle_bytes(raw: bytes, itemsize: int) -> bytes:
    """The byte planes of ``raw`` (elements of ``itemsize`` bytes): the writer's transform."""
    return np.frombuffer(raw, np.uint8).reshape(-1, itemsize).T.tobytes()


def blob_table(meta: dict[str, Any], check: Checker) -> list[Entry]:
    """``meta["blob"]`` checked for shape and tiling: ``[(name, dtype, offset, length,
    shuffled)]``."""
    spec = meta.get("blob")
    if not isinstance(spec, dict):
        raise check.fail("meta.blob", f"must be a JSON object, got {type(spec).__name__}")
    total = check.integer(spec.get("bytes"), "meta.blob.bytes", 0)
    entries = spec.get("arrays")
    if not isinstance(entries, list):
        raise check.fail("meta.blob.arrays", f"must be a list, got {type(entries).__name__}")
    table: list[Entry] = []
    seen: set[str] = set()
    end = 0
    for i, entry in enumerate(entries):
        field = f"meta.blob.arrays[{i}]"
        if (not isinstance(entry, list) or len(entry) not in (4, 5)
                or not isinstance(entry[0], str) or entry[4:] not in ([], [SHUFFLE])):
            raise check.fail(field, "must be [name, dtype, offset, length] or [name, dtype, "
                             f"offset, length, {SHUFFLE!r}], got {entry!r:.200}")
        name, dtype, offset, length = entry[:4]
        shuffled = len(entry) == 5
        field = f"meta.blob.arrays[{i}] ({name[:100]!r})"
        if name in seen:
            raise check.fail(field, "names an array a second time")
        if name in ("meta", BLOB):
            raise check.fail(field, "names a member, not an array the blob can hold")
        seen.add(name)
        if dtype not in BLOB_DTYPES:
            raise check.fail(f"{field} dtype", f"is {dtype!r:.100}, expected one of "
                             f"{', '.join(BLOB_DTYPES)}")
        if shuffled and np.dtype(dtype).itemsize == 1:
            raise check.fail(field, f"shuffles the bytes of a one-byte dtype ({dtype})")
        offset = check.integer(offset, f"{field} offset", 0)
        length = check.integer(length, f"{field} length", 0)
        nbytes = length * np.dtype(dtype).itemsize
        if offset < end:
            raise check.fail(f"{field} offset", f"is {offset}, overlapping the previous array "
                             f"(which ends at byte {end})")
        if offset > end:
            raise check.fail(f"{field} offset", f"is {offset}, leaving a gap after the previous "
                             f"array (which ends at byte {end})")
        end = offset + nbytes
        if end > total:
            raise check.fail(field, f"ends at byte {end}, beyond the blob's {total} bytes "
                             "(meta.blob.bytes)")
        table.append((name, np.dtype(dtype).newbyteorder("<"), offset, length, shuffled))
    if end != total:
        raise check.fail("meta.blob.bytes", f"is {total} but the arrays end at byte {end}")
    return table


def unpack_blob(blob: np.ndarray, table: list[Entry], check: Checker) -> dict[str, np.ndarray]:
    """The arrays of a checked ``table`` cut out of ``blob`` (uint8, exactly the table's size)."""
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise check.fail(BLOB, f"must be a 1-D uint8 array, got {blob.dtype} {blob.shape}")
    total = table[-1][2] + table[-1][3] * table[-1][1].itemsize if table else 0
    if blob.shape[0] != total:
        raise check.fail(BLOB, f"holds {blob.shape[0]} bytes, the table declares {total}")
    out = {}
    for name, dtype, offset, length, shuffled in table:
        if shuffled:  # planes back to elements: one aligned copy
            planes = blob[offset:offset + length * dtype.itemsize].reshape(dtype.itemsize, length)
            arr = np.ascontiguousarray(planes.T).view(dtype).reshape(length)
        else:  # a (possibly unaligned) view of the blob, copied once below
            arr = np.frombuffer(blob, dtype, length, offset)
        out[name] = arr.astype(dtype.newbyteorder("="), copy=True)
    return out
