"""Named bounds on what edgeprune reads and allocates, and the header peeks that enforce them.

Every file handed to edgeprune (a bundle, a ``.npy`` of inputs, a dataset) is untrusted: its
headers may declare sizes that its bytes do not hold, or that no machine can allocate. Sizes are
therefore read from headers first (zip central directory, ``.npy`` header, IDX header) and checked
against these bounds *before* anything is decompressed or allocated; a violation is a one-line
error that names the file or option and the bound. Standard library + numpy only, like the rest of
:mod:`edgeprune.runtime`.

The bounds (generous for the networks edgeprune prunes, far below what breaks a board or a laptop):

``MAX_BUNDLE_BYTES`` (2 GiB)
    Uncompressed size of all members of a ``.npz`` bundle together, from the zip headers. A CSR
    bundle of a realistic pruned network is kilobytes to megabytes; a member that inflates to
    gigabytes is a zip bomb and is refused without decompressing it.
``MAX_META_BYTES`` (16 MiB)
    The ``meta`` JSON member (provenance and report included); it is parsed before the arrays.
``MAX_LAYERS`` (1024)
    Layers a bundle may declare.
``MAX_DIM`` (2**24 = 16,777,216)
    Any width a bundle declares: ``input_dim``, ``output_dim``, ``latent_dim`` and each layer's
    rows and columns. Constant outputs and index maps are allocated at these widths.
``MAX_LAYER_ELEMENTS`` (2**28)
    ``rows * cols`` of one layer: the dense kernel materializes the float32 weight, so this caps
    one dense weight at 1 GiB.
``MAX_ARRAY_BYTES`` (2 GiB)
    One array read from a user file: the ``.npy`` inputs of ``edgeprune run`` and the
    ``npy:``/``idx:``/``csv:`` datasets (for CSV: the file size). Checked from the header.
``MAX_RUN_BYTES`` (2 GiB)
    The float32 buffers one model call at one batch size allocates: the gathered input, every
    layer's output (plus leaky-ReLU scratch) and the result. A batch that needs more is refused
    with the largest batch size that fits (run it in smaller batches).
``MAX_MEMORY_BUDGET_GB`` (1024)
    The largest ``--memory-budget`` (GB) accepted; the budget must also be finite and > 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import IO, NamedTuple

import numpy as np

from .errors import EdgepruneError, first_line

__all__ = [
    "MAX_ARRAY_BYTES",
    "MAX_BUNDLE_BYTES",
    "MAX_DIM",
    "MAX_LAYERS",
    "MAX_LAYER_ELEMENTS",
    "MAX_MEMORY_BUDGET_GB",
    "MAX_META_BYTES",
    "MAX_RUN_BYTES",
    "LimitError",
    "NpyHeader",
    "check_batch_sizes",
    "check_npy_file",
    "format_bytes",
    "max_batch",
    "read_npy_header",
    "run_bytes",
]

MAX_BUNDLE_BYTES = 2 * 1024**3
MAX_META_BYTES = 16 * 1024**2
MAX_LAYERS = 1024
MAX_DIM = 2**24
MAX_LAYER_ELEMENTS = 2**28
MAX_ARRAY_BYTES = 2 * 1024**3
MAX_RUN_BYTES = 2 * 1024**3
MAX_MEMORY_BUDGET_GB = 1024

_F32 = 4
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


class LimitError(EdgepruneError):
    """A request beyond one of the bounds above; the message is one line naming it and the fix."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def format_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``; exact powers print without decimals (``'2 GiB'``)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


class NpyHeader(NamedTuple):
    """What a ``.npy`` header declares; ``data_bytes`` = product(shape) * itemsize (exact)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # bytes of magic + header: where the data starts
    data_bytes: int


def read_npy_header(fp: IO[bytes]) -> NpyHeader:
    """Read only the magic and header of the ``.npy`` stream ``fp`` (positioned at its start).

    Raises ``ValueError`` with a short problem description (the caller adds the file name): not a
    ``.npy`` stream, an unsupported format version, or a malformed header. Object dtypes are
    reported as such, never unpickled. Nothing of the data is read.
    """
    start = fp.tell()
    head = fp.read(len(NPY_MAGIC) + 2)
    if len(head) == 0:
        raise ValueError("is empty (0 bytes)")
    if head[:4] == ZIP_MAGIC:
        raise ValueError("is a zip archive (.npz), not a single .npy array")
    if len(head) < len(NPY_MAGIC) + 2 or head[: len(NPY_MAGIC)] != NPY_MAGIC:
        raise ValueError("is not a .npy file (no NUMPY magic)")
    version = (head[-2], head[-1])
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise ValueError(f"uses .npy format version {version[0]}.{version[1]}, which is not "
                             "read here (only 1.0 and 2.0)")
    except ValueError as exc:
        if "format version" in str(exc):
            raise
        raise ValueError(f"has a malformed .npy header ({first_line(exc)[:200]})") from None
    except EOFError:
        raise ValueError("is truncated inside its .npy header") from None
    offset = fp.tell() - start
    if dtype.hasobject:
        raise ValueError("holds pickled Python objects (object dtype), which are refused")
    shape = tuple(int(d) for d in shape)
    return NpyHeader(shape, dtype, bool(fortran), offset, math.prod(shape) * dtype.itemsize)


def check_npy_file(path: str | os.PathLike[str]) -> NpyHeader:
    """Peek at the ``.npy`` file ``path``: a sound header whose data the file holds, within bounds.

    Raises ``ValueError`` with a short problem (the caller names the file): empty, an ``.npz``
    archive, not ``.npy``, a malformed or object-dtype header, declared data larger than the file
    holds (truncated) or than :data:`MAX_ARRAY_BYTES`. ``OSError`` (missing, unreadable) passes.
    """
    with open(path, "rb") as fp:
        header = read_npy_header(fp)
        size = os.fstat(fp.fileno()).st_size
    held = size - header.offset
    if header.data_bytes > held:
        raise ValueError(f"declares shape {header.shape} {header.dtype} "
                         f"({format_bytes(header.data_bytes)}) but holds only {held} bytes of "
                         "data: it is truncated or corrupt")
    if header.data_bytes > MAX_ARRAY_BYTES:
        raise ValueError(f"declares shape {header.shape} {header.dtype} "
                         f"({format_bytes(header.data_bytes)}), over the bound of "
                         f"{format_bytes(MAX_ARRAY_BYTES)} (edgeprune.runtime.limits."
                         "MAX_ARRAY_BYTES) for one array")
    return header


def run_bytes(batch: int, widths: Iterable[int]) -> int:
    """Bytes of float32 buffers a call with ``batch`` samples allocates, ``widths`` per sample."""
    return _F32 * batch * sum(int(w) for w in widths)


def max_batch(widths: Iterable[int]) -> int:
    """The largest batch whose buffers (``widths`` float32 per sample) fit ``MAX_RUN_BYTES``."""
    per_sample = run_bytes(1, widths)
    return MAX_RUN_BYTES // per_sample if per_sample else MAX_RUN_BYTES


def check_batch_sizes(batches: Iterable[object], input_dim: int, *,
                      widths: Iterable[int] = (), option: str = "--batch") -> list[int]:
    """Validate batch sizes for a model with ``input_dim`` inputs; returns them as ints.

    Each batch must be an integer >= 1 whose float32 input (``batch * input_dim``) plus the
    per-sample ``widths`` of the model's buffers (e.g. :meth:`BundleModel.buffer_widths`) fit in
    :data:`MAX_RUN_BYTES`. Raises :class:`LimitError` naming ``option`` and the largest batch
    that fits.
    """
    widths = [int(input_dim), *(int(w) for w in widths)]
    out = []
    for batch in batches:
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)):
            raise LimitError(f"{option} {batch!r}: must be an integer >= 1")
        batch = int(batch)
        if batch < 1:
            raise LimitError(f"{option} {batch}: must be an integer >= 1")
        need = run_bytes(batch, widths)
        if need > MAX_RUN_BYTES:
            raise LimitError(
                f"{option} {batch}: a batch of {batch} samples needs {format_bytes(need)} of "
                f"float32 buffers, over the bound of {format_bytes(MAX_RUN_BYTES)} "
                f"(edgeprune.runtime.limits.MAX_RUN_BYTES); use {option} {max_batch(widths)} "
                "or less")
        out.append(batch)
    return out
