"""Atomic file writing: write to a temporary sibling, then ``os.replace`` it over the target.

Readers see the old file or the complete new one, never a half-written one; on any error
(or Ctrl-C) the temporary file is removed and the target is left as it was. This is the one
implementation used by every writer (checkpoints, scores, reports, bundles, ONNX, TFLite).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; when the block succeeds the file is flushed to
    disk, given ordinary permissions (the old file's, else 0644) and renamed over ``path``.

    ``suffix`` matters for writers that append an extension themselves (``np.save`` adds
    ``.npy`` and ``np.savez`` adds ``.npz`` unless the name already ends with it)."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable where the platform allows it (POSIX); best effort elsewhere."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, check=None) -> Path:
    """Write ``data`` atomically; ``check(tmp_path)`` may veto the file before the rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        if check is not None:
            check(tmp)
    return Path(path)
