"""Per-device kernel profiles: the density below which CSR beats dense, per batch size.

``edgeprune bench --calibrate`` times the runtime's own dense and CSR layer kernels on the device
(:mod:`edgeprune.runtime.bench.calibrate`) and saves the measured crossover densities as a small JSON
file; :func:`edgeprune.runtime.load` reuses it for ``kernel="auto"``. Without a profile the
static rule of :data:`edgeprune.runtime.kernels.DENSITY_THRESHOLD` applies.

File format (``format`` / ``version`` are checked, unknown keys are ignored)::

    {
      "format": "edgeprune-kernel-profile", "version": 1,
      "created": "2026-01-01T00:00:00+00:00",
      "device": {"machine": "aarch64", "cpu": "Cortex-A72", ...},      # informational
      "crossover": [{"batch": 1, "density": 0.42}, {"batch": 32, "density": 0.18}, ...],
      "measurements": [...]                                             # informational
    }

Without a calibrated file, :func:`builtin_kernel_profile` gives the crossovers measured for the
machine's architecture (:data:`BUILTIN_CROSSOVER`), and architectures not listed there keep the
static rule of :data:`~edgeprune.runtime.kernels.DENSITY_THRESHOLD`.

``auto`` runs a layer with CSR when ``density < crossover(batch)``; between the calibrated batch
sizes the crossover is interpolated linearly in ``log2(batch)``, outside them it is clamped.

Default location: ``$EDGEPRUNE_HOME/kernel_profile.json`` when ``EDGEPRUNE_HOME`` is set,
else ``$XDG_CONFIG_HOME/edgeprune/kernel_profile.json``, else
``~/.config/edgeprune/kernel_profile.json``.
Standard library + numpy only.
"""

from __future__ import annotations

import json
import math
import os
import platform
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.fileio import write_text_atomic

from .errors import EdgepruneError

PROFILE_FORMAT = "edgeprune-kernel-profile"
PROFILE_VERSION = 1
PROFILE_NAME = "kernel_profile.json"

__all__ = [
    "BUILTIN_CROSSOVER",
    "MACHINE",
    "PROFILE_FORMAT",
    "PROFILE_VERSION",
    "KernelProfile",
    "KernelProfileError",
    "builtin_kernel_profile",
    "default_kernel_profile",
    "default_profile_path",
    "load_kernel_profile",
    "save_kernel_profile",
]


#: ``platform.machine()`` of this process (what :func:`builtin_kernel_profile` looks up).
MACHINE = platform.machine()

#: Crossover densities measured per architecture, used when no calibrated profile exists.
#: x86-64: an Intel Xeon with AVX-512 (2 cores, one thread, numpy 2.4 / OpenBLAS 0.3.31 /
#: scipy 1.17), the runtime's own dense (bias folded) and CSR layer ops on the shapes of the
#: MNIST autoencoders pruned to eta 0.5-0.95 (167x293 ... 784x256), interleaved medians: CSR is
#: 1.0-1.3x slower than dense at density 0.1, 1.4-2.2x at 0.2, at batch 1 and 32 alike; an AMD
#: EPYC calibrated 0.12 at batch 1 (benchmarks/results/runtime_latency history). Arm (aarch64,
#: Cortex-A72/A76) is not listed: the emulated board gives no timings, so it keeps the static
#: rule (CSR below 0.3) until ``edgeprune bench --calibrate`` runs on the board.
BUILTIN_CROSSOVER: dict[str, tuple[tuple[int, float], ...]] = {
    "x86_64": ((1, 0.1), (32, 0.1)),
    "AMD64": ((1, 0.1), (32, 0.1)),
}


class KernelProfileError(EdgepruneError):
    """A kernel profile file that cannot be used (one-line message: file, problem, fix)."""


@dataclass(frozen=True)
class KernelProfile:
    """Crossover densities per batch size; ``threshold(batch)`` is what ``auto`` compares to."""

    crossover: tuple[tuple[int, float], ...]  # ((batch, density), ...) sorted by batch
    source: str = "calibrated"
    device: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    measurements: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.crossover:
            raise KernelProfileError(f"{self.source}: crossover is empty; re-run --calibrate")
        object.__setattr__(self, "crossover", tuple(sorted(self.crossover)))

    def threshold(self, batch: int = 1) -> float:
        """Crossover density at ``batch``: log2-linear between calibrated sizes, clamped."""
        points = self.crossover
        b = max(int(batch), 1)
        if b <= points[0][0]:
            return points[0][1]
        if b >= points[-1][0]:
            return points[-1][1]
        for (b0, d0), (b1, d1) in zip(points, points[1:]):
            if b0 <= b <= b1:
                t = (math.log2(b) - math.log2(b0)) / (math.log2(b1) - math.log2(b0))
                return d0 + t * (d1 - d0)
        return points[-1][1]  # pragma: no cover - unreachable, the loop covers the range

    @property
    def min_threshold(self) -> float:
        return min(d for _, d in self.crossover)

    @property
    def max_threshold(self) -> float:
        return max(d for _, d in self.crossover)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "created": self.created,
            "device": self.device,
            "crossover": [{"batch": b, "density": d} for b, d in self.crossover],
            "measurements": list(self.measurements),
        }


def default_profile_path() -> Path:
    """Where ``--calibrate`` writes and ``auto`` looks for the profile (see the module doc)."""
    home = os.environ.get("EDGEPRUNE_HOME")
    if home:
        return Path(home).expanduser() / PROFILE_NAME
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".config"
    return base / "edgeprune" / PROFILE_NAME


def _parse(obj: Any, source: str) -> KernelProfile:
    def bad(problem: str) -> KernelProfileError:
        return KernelProfileError(
            f"{source}: {problem}; re-run `edgeprune bench --calibrate` to rewrite it"
        )

    if not isinstance(obj, dict):
        raise bad(f"must be a JSON object, got {type(obj).__name__}")
    if obj.get("format") != PROFILE_FORMAT:
        raise bad(f"format is {obj.get('format')!r}, expected {PROFILE_FORMAT!r}")
    if obj.get("version") != PROFILE_VERSION:
        raise bad(f"version is {obj.get('version')!r}, this runtime reads {PROFILE_VERSION}")
    entries = obj.get("crossover")
    if not isinstance(entries, list) or not entries:
        raise bad("crossover must be a non-empty list of {batch, density}")
    points: dict[int, float] = {}
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise bad(f"crossover[{k}] must be an object with batch and density")
        batch, density = entry.get("batch"), entry.get("density")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise bad(f"crossover[{k}].batch must be an integer >= 1, got {batch!r}")
        if (
            isinstance(density, bool)
            or not isinstance(density, (int, float))
            or not 0.0 <= float(density) <= 1.0
        ):
            raise bad(f"crossover[{k}].density must be a number in [0, 1], got {density!r}")
        if batch in points:
            raise bad(f"crossover lists batch {batch} twice")
        points[batch] = float(density)
    device = obj.get("device") if isinstance(obj.get("device"), dict) else {}
    measurements = obj.get("measurements") if isinstance(obj.get("measurements"), list) else []
    return KernelProfile(
        crossover=tuple(points.items()),
        source=source,
        device=device,
        created=obj.get("created") if isinstance(obj.get("created"), str) else None,
        measurements=tuple(m for m in measurements if isinstance(m, dict)),
    )


def load_kernel_profile(path: str | os.PathLike[str]) -> KernelProfile:
    """Read and validate the profile at ``path``; problems -> one-line KernelProfileError."""
    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KernelProfileError(
            f"{source}: no such kernel profile; create it with `edgeprune bench --calibrate`"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise KernelProfileError(f"{source}: cannot be read ({err})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise KernelProfileError(
            f"{source}: is not valid JSON ({err}); re-run `edgeprune bench --calibrate`"
        ) from None
    return _parse(obj, source)


_cache: dict[str, tuple[int, int, KernelProfile | None]] = {}


def default_kernel_profile() -> KernelProfile | None:
    """The profile at :func:`default_profile_path`, or None when there is none.

    Cached by file modification time, so ``load()`` does not re-read it per model. A profile
    that exists but is invalid gives a warning (once per file version) and None: ``auto`` then
    falls back to the static rule rather than refusing to run.
    """
    path = default_profile_path()
    try:
        stat = path.stat()
    except OSError:
        return None
    key = os.fspath(path)
    cached = _cache.get(key)
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
        return cached[2]
    try:
        profile: KernelProfile | None = load_kernel_profile(path)
    except KernelProfileError as err:
        warnings.warn(f"ignoring kernel profile: {err}", RuntimeWarning, stacklevel=2)
        profile = None
    _cache[key] = (stat.st_mtime_ns, stat.st_size, profile)
    return profile


def builtin_kernel_profile(machine: str | None = None) -> KernelProfile | None:
    """The measured default for ``machine`` (default: this one), or None where there is none."""
    name = MACHINE if machine is None else machine
    points = BUILTIN_CROSSOVER.get(name)
    if points is None:
        return None
    return KernelProfile(crossover=points, source=f"built-in {name} default",
                         device={"machine": name})


def save_kernel_profile(
    crossover: Iterable[tuple[int, float]],
    path: str | os.PathLike[str] | None = None,
    *,
    device: dict[str, Any] | None = None,
    created: str | None = None,
    measurements: Iterable[dict[str, Any]] = (),
) -> Path:
    """Write a profile atomically (:func:`edgeprune.fileio.write_text_atomic`); return its path."""
    target = Path(path) if path is not None else default_profile_path()
    profile = KernelProfile(
        crossover=tuple((int(b), float(min(max(d, 0.0), 1.0))) for b, d in crossover),
        source=os.fspath(target),
        device=dict(device or {}),
        created=created,
        measurements=tuple(measurements),
    )
    return write_text_atomic(target, json.dumps(profile.to_json(), indent=2) + "\n")
