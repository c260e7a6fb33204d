"""What ``deploy`` ships: the artifacts, a wheel of this project, a verification set, a manifest.

Built once on the host, then uploaded to every board as one tar stream. Layout (relative to
the deployment directory, ``~/edgeprune/<name>`` by default)::

    manifest.json                 format edgeprune-deployment: every file with bytes + sha256
    artifacts/model.npz           (model.onnx, model.tflite with --formats)
    verify/inputs.npy             seeded inputs in [0, 1)
    verify/model.npz.out.npy      the host's outputs for them, one file per artifact
    wheels/edgeprune-*.whl        this project (pure Python; numpy/scipy/click from the board)
    wheels/*.whl                  --wheelhouse: e.g. onnxruntime/ai-edge-litert for aarch64
    venv/                         created on the board (not in the manifest)
    verify.json                   the board's verification result (not in the manifest)
    kernel_profile.json           bench --remote --calibrate (kept across redeployments)

The wheel is built reproducibly (``SOURCE_DATE_EPOCH``) so that deploying the same artifact from
the same sources twice produces the same manifest, which is what makes a redeploy a no-op.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune import __version__
from edgeprune.errors import EdgepruneError, first_line

__all__ = ["FORMATS", "MANIFEST_FORMAT", "Package", "build_package", "build_wheel"]

MANIFEST_FORMAT = "edgeprune-deployment"
FORMATS = ("npz", "onnx", "tflite")
VERIFY_ROWS = 32
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_EPOCH = "315532800"  # 1980-01-01, the earliest date a zip can hold


@dataclass
class Package:
    """The files to upload (relative path -> bytes) and their manifest."""

    name: str
    files: dict[str, bytes]
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(len(b) for b in self.files.values())

    def tar(self) -> bytes:
        """One uncompressed tar stream, the manifest last (mode 0644, owner root, mtime 0)."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel, data in [*sorted(self.files.items()), ("manifest.json", self.manifest_bytes)]:
                info = tarfile.TarInfo(rel)
                info.size, info.mode, info.mtime = len(data), 0o644, 0
                tar.addfile(info, io.BytesIO(data))
        return buf.getvalue()

    def write_to(self, directory: str | os.PathLike) -> Path:
        """The deployment's files in a local directory (the host side of ``bench --remote``)."""
        directory = Path(directory)
        for rel, data in [*self.files.items(), ("manifest.json", self.manifest_bytes)]:
            (directory / rel).parent.mkdir(parents=True, exist_ok=True)
            (directory / rel).write_bytes(data)
        return directory

    @property
    def manifest_bytes(self) -> bytes:
        return (json.dumps(self.manifest, indent=2, sort_keys=True) + "\n").encode()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def project_root() -> Path | None:
    """The source tree this package runs from (an editable install or a clone), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "runtime").is_dir() else None


def build_wheel(out_dir: Path) -> Path:
    """Build a wheel of this project (pure Python, no build isolation: offline-safe)."""
    root = project_root()
    if root is None:
        raise EdgepruneError("cannot build a wheel of edgeprune: it is not installed from a "
                             "source tree; build one with `python -m build --wheel` in a clone "
                             "and pass it with --wheel FILE")
    src = out_dir / "src"
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "build",
                                    "dist", "tests", "benchmarks", "docs", ".pytest_cache",
                                    ".ruff_cache", "*.pyc", "demo-out", "out")
    shutil.copytree(root, src, ignore=ignore)
    env = {**os.environ, "SOURCE_DATE_EPOCH": _EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "-w", str(out_dir / "wheels"), str(src)],
        capture_output=True, text=True, env=env, check=False)
    wheels = sorted((out_dir / "wheels").glob("edgeprune-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise EdgepruneError("building the edgeprune wheel failed: "
                             + first_line(proc.stderr or proc.stdout or "no wheel written")
                             + "; install the build tools (pip install setuptools wheel) or "
                             "pass --wheel FILE")
    return wheels[0]


def find_artifacts(source: Path, formats: tuple[str, ...]) -> dict[str, Path]:
    """``{format: path}``: a model file, or ``model.<fmt>`` of a compress/export directory."""
    if source.is_dir():
        found = {fmt: source / f"model.{fmt}" for fmt in formats}
        missing = [fmt for fmt, p in found.items() if not p.is_file()]
        if missing:
            raise EdgepruneError(
                f"{source}: no model.{missing[0]} in this directory; export it first "
                f"(edgeprune export {source} --format {','.join(formats)} -o DIR) or deploy "
                f"--formats {','.join(f for f in formats if f not in missing) or 'npz'}")
        return found
    if source.is_file():
        fmt = source.suffix.lower().lstrip(".")
        if fmt not in FORMATS:
            raise EdgepruneError(f"{source}: not a deployable artifact; give a .npz/.onnx/.tflite "
                                 "file or a compress/export output directory")
        return {fmt: source}
    raise EdgepruneError(f"{source}: no such file or directory")


def deployment_name(source: Path, name: str | None) -> str:
    name = name or (source.name if source.is_dir() else source.stem)
    if not _NAME_RE.match(name):
        raise EdgepruneError(f"deployment name {name!r} is not a plain file name; pass "
                             "--remote-dir ~/edgeprune/NAME with letters, digits, . _ -")
    return name


def host_outputs(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """The host's outputs for ``x`` (float64), by the runtime of the format."""
    if fmt == "npz":
        from edgeprune.runtime import load

        return np.asarray(load(path)(x), dtype=np.float64)
    from edgeprune.bench.backends import LiteRTBackend, OnnxRuntimeBackend

    backend = OnnxRuntimeBackend() if fmt == "onnx" else LiteRTBackend()
    ok, note = backend.available()
    if not ok:
        raise EdgepruneError(f"{path}: cannot compute the host's reference outputs: {note}")
    return np.asarray(backend.load(path, 1).run(x), dtype=np.float64)


def _input_width(artifacts: dict[str, Path]) -> int:
    if "npz" in artifacts:
        from edgeprune.runtime import load

        return load(artifacts["npz"]).input_dim
    from edgeprune.bench.backends import LiteRTBackend, OnnxRuntimeBackend

    fmt, path = next(iter(artifacts.items()))
    backend = OnnxRuntimeBackend() if fmt == "onnx" else LiteRTBackend()
    return backend.load(path, 1).input_dim


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def build_package(source: str | os.PathLike, formats: tuple[str, ...] = ("npz",),
                  name: str | None = None, wheel: str | os.PathLike | None = None,
                  wheelhouse: str | os.PathLike | None = None, tolerance: float = 1e-5,
                  seed: int = 0) -> Package:
    """Everything ``deploy`` uploads, built and checked on the host."""
    source = Path(source)
    artifacts = find_artifacts(source, formats)
    name = deployment_name(source, name)
    files: dict[str, bytes] = {}
    x = np.random.default_rng(seed).random((VERIFY_ROWS, _input_width(artifacts)),
                                           dtype=np.float32)
    files["verify/inputs.npy"] = _npy(x)
    arts, outputs = {}, {}
    for fmt, path in artifacts.items():
        rel = f"artifacts/model.{fmt}"
        files[rel] = path.read_bytes()
        arts[rel] = fmt
        outputs[rel] = f"verify/model.{fmt}.out.npy"
        files[outputs[rel]] = _npy(host_outputs(path, fmt, x))
    with tempfile.TemporaryDirectory(prefix="edgeprune-wheel-") as tmp:
        wheel_path = Path(wheel) if wheel else build_wheel(Path(tmp))
        if not wheel_path.is_file() or wheel_path.suffix != ".whl":
            raise EdgepruneError(f"--wheel {wheel_path}: not a .whl file")
        files[f"wheels/{wheel_path.name}"] = wheel_path.read_bytes()
    if wheelhouse:
        extra = sorted(Path(wheelhouse).glob("*.whl"))
        if not extra:
            raise EdgepruneError(f"--wheelhouse {wheelhouse}: no .whl files in it")
        for path in extra:
            files[f"wheels/{path.name}"] = path.read_bytes()
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "name": name,
        "edgeprune_version": __version__,
        "source": str(source.resolve()),
        "artifacts": arts,
        "verify": {"inputs": "verify/inputs.npy", "outputs": outputs, "tolerance": tolerance,
                   "rows": VERIFY_ROWS, "seed": seed},
        "files": {rel: {"bytes": len(data), "sha256": _sha256(data)}
                  for rel, data in sorted(files.items())},
    }
    return Package(name, files, manifest)
