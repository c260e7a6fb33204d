"""All-or-nothing output directories (standard library only).

``compress``, ``export`` and ``explain`` write a directory of files that belong together. A
reader must see either the previous run's directory, untouched, or the new run's, complete —
never a mix of two runs, never a stale artifact of another model, never half a file:

1. :func:`staged_output_dir` checks ``-o`` first (before any long work): it must be a new
   path, an empty directory, or a directory this same command wrote before (it has our
   ``manifest.json`` naming the command, or holds only file names that command writes). A
   directory with anything else in it is refused, so a typo never deletes a user's files.
2. Everything is written into a hidden staging directory beside ``-o``
   (``.NAME.staging-PID-XXXX``); ``manifest.json`` (files, sizes, SHA-256) is written last.
3. The staging directory then *replaces* ``-o`` as one unit: a rename when ``-o`` does not exist,
   else an atomic exchange of the two directories (Linux ``renameat2(RENAME_EXCHANGE)``; the
   standard library has no exchange, hence the ctypes call) and the old one is deleted. Where the
   exchange is unavailable, ``-o`` is first renamed aside (``.NAME.old-PID-XXXX``) and the new
   directory renamed in; a crash between the two renames is repaired by the next run.
4. Any exception, Ctrl-C or SIGTERM (the CLI turns it into KeyboardInterrupt) removes the
   staging directory. A run killed outright (SIGKILL, power loss) leaves it behind; the next
   run over the same ``-o`` removes staging directories whose process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from edgeprune import __version__
from edgeprune.choices import PATH_SPECS
from edgeprune.errors import EdgepruneError
from edgeprune.fileio import write_text_atomic

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "edgeprune-output"

#: File names each command writes; a directory holding only these (and no manifest, e.g. one
#: written before manifests existed) is taken as an earlier output of that command.
COMMAND_FILES: dict[str, tuple[str, ...]] = {
    "compress": ("pruned.pt", "model.npz", "model.onnx", "model.tflite", "report.json",
                 "report.md"),
    "export": ("model.npz", "model.onnx", "model.tflite"),
    "explain": ("explain.json", "explain.md", "input_importance.png", "pruned_inputs.png",
                "li_layer*.png", "shapley_values.png", "layer_importance.png",
                "shapley_values.npy", "explained_inputs.npy"),
}

__all__ = ["MANIFEST", "check_output_dir", "check_output_file", "clean_stale", "read_manifest",
           "staged_output_dir"]


def _fail(outdir: Path, problem: str, fix: str) -> EdgepruneError:
    return EdgepruneError(f"-o {outdir}: {problem}; {fix}")


def read_manifest(directory: str | os.PathLike) -> dict | None:
    """The manifest of an output directory, or None when it has none (or an unreadable one)."""
    try:
        data = json.loads((Path(directory) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == MANIFEST_FORMAT else None


def _owned_by(outdir: Path, command: str) -> bool:
    """Whether ``outdir`` (an existing directory) may be replaced by a run of ``command``."""
    manifest = read_manifest(outdir)
    if manifest is not None:
        return manifest.get("command") == command
    patterns = COMMAND_FILES.get(command, ())
    return all(any(fnmatch.fnmatchcase(entry.name, p) for p in patterns) and entry.is_file()
               for entry in outdir.iterdir())


def check_output_dir(outdir: str | os.PathLike, command: str,
                     inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an ``-o`` that cannot be written or must not be replaced; create its parent.

    ``inputs`` are paths the command reads: ``-o`` may not be one of them or contain one."""
    outdir = Path(outdir)
    for source in inputs:
        source = Path(source)
        if source.exists() and outdir.exists() and (
                _same(source, outdir) or _inside(source, outdir)):
            raise _fail(outdir, f"holds the input {source} that this command reads",
                        "write to another directory")
    if outdir.exists() or outdir.is_symlink():
        if not outdir.is_dir() or outdir.is_symlink():
            raise _fail(outdir, "exists and is not a directory", "choose another path")
        if any(outdir.iterdir()) and not _owned_by(outdir, command):
            raise _fail(outdir, f"is a non-empty directory that is not an earlier `{command}` "
                        "output (replacing it would delete its files)",
                        "choose a new or empty directory")
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _fail(outdir, f"cannot create its parent directory ({exc.strerror})",
                    "choose a writable path") from None
    if not os.access(outdir.parent, os.W_OK | os.X_OK):
        raise _fail(outdir, f"its parent {outdir.parent} is not writable",
                    "choose a writable path")
    return outdir


@contextlib.contextmanager
def staged_output_dir(outdir: str | os.PathLike, command: str,
                      inputs: Iterable[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield an empty staging directory; when the block succeeds, write the manifest and make
    it ``outdir`` as one unit. On any exception (Ctrl-C included) ``outdir`` stays as it was."""
    outdir = check_output_dir(outdir, command, inputs)
    clean_stale(outdir)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.staging-{os.getpid()}-",
                                        dir=outdir.parent))
    except OSError as exc:
        raise _fail(outdir, f"cannot write beside it ({exc.strerror})",
                    "choose a writable path") from None
    try:
        yield staging
        _write_manifest(staging, command)
        _replace_dir(staging, outdir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_manifest(staging: Path, command: str) -> None:
    files = {}
    for item in sorted(staging.iterdir()):
        digest = hashlib.sha256()
        with item.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        files[item.name] = {"bytes": item.stat().st_size, "sha256": digest.hexdigest()}
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "command": command,
                "edgeprune_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": files}
    write_text_atomic(staging / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    os.chmod(staging, 0o755)  # mkdtemp makes it 0700; the published directory is ordinary


def _replace_dir(staging: Path, outdir: Path) -> None:
    """Make ``staging`` become ``outdir``; afterwards ``staging`` is gone or holds the old one."""
    if not outdir.exists():
        try:
            os.rename(staging, outdir)
            return
        except OSError as exc:  # created meanwhile by someone else: do not clobber it
            raise _fail(outdir, f"appeared while this run was writing ({exc.strerror})",
                        "run again") from None
    if not any(outdir.iterdir()):
        os.rmdir(outdir)
        os.rename(staging, outdir)
        return
    if _exchange(staging, outdir):
        return  # staging now holds the old directory; the caller removes it
    aside = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old-{os.getpid()}-",
                                  dir=outdir.parent))
    os.rmdir(aside)
    os.rename(outdir, aside)
    os.rename(staging, outdir)
    shutil.rmtree(aside, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories with Linux renameat2(RENAME_EXCHANGE); False where the
    platform or file system cannot (then the caller falls back to two renames)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def clean_stale(outdir: str | os.PathLike) -> list[Path]:
    """Remove staging directories of ``outdir`` left by runs that no longer exist, and finish a
    replacement that was cut between its two renames. Returns what was removed."""
    outdir = Path(outdir)
    removed = []
    try:
        siblings = list(outdir.parent.iterdir())
    except OSError:
        return removed
    for entry in siblings:
        for kind in ("staging", "old"):
            prefix = f".{outdir.name}.{kind}-"
            if not entry.name.startswith(prefix) or not entry.is_dir():
                continue
            pid = entry.name[len(prefix):].split("-", 1)[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            if kind == "old" and not outdir.exists():
                os.rename(entry, outdir)  # the new one never arrived: the old one comes back
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def check_output_file(output: str | os.PathLike, inputs: dict[str, object],
                      option: str = "-o") -> None:
    """Refuse a single-file output (``train``/``score``/``run -o``) that is one of the files
    the command reads — it would be replaced by the result. ``inputs`` maps a description
    ("model file") to a path; a data spec such as ``npy:PATH`` counts by its path."""
    output = Path(output)
    for what, source in inputs.items():
        if source is None:
            continue
        source = str(source)
        for prefix in PATH_SPECS:
            source = source.removeprefix(prefix)
        if output.exists() and Path(source).exists() and _same(output, Path(source)) or \
                output.resolve() == Path(source).resolve():
            raise EdgepruneError(f"{option} {output}: is the {what} this command reads; write "
                                 "the result to another file")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, directory: Path) -> bool:
    try:
        return path.resolve().is_relative_to(directory.resolve())
    except OSError:
        return False
