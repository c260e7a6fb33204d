"""Latency benchmark library (numpy + stdlib): timing, statistics, environment, the bench loop.

A board with only numpy/scipy benches a bundle with :func:`run_benchmark` and the
:class:`RuntimeBackend` s; the host side, :mod:`edgeprune.bench.backends`, adds ONNX Runtime,
LiteRT and torch as
objects with the same interface (:class:`Backend`), and ``edgeprune bench`` is the CLI.

Timing: ``warmup`` untimed calls, then timed calls (``time.perf_counter_ns`` around each call)
until *both* ``runs`` calls were timed and ``min_time`` seconds have passed (``max_time``, when
given, stops earlier). Statistics in microseconds: p50/p90/p99 by ``numpy.percentile`` with
``method="linear"``, mean, sample standard deviation (``ddof=1``; 0 for a single run) and
throughput = batch / mean latency (samples per second). The results layout is documented in
:mod:`edgeprune.bench.report`.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import math
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeprune.runtime.errors import EdgepruneError, first_line
from edgeprune.runtime.limits import check_batch_sizes

from .costs import LayerShape, bundle_layer_shapes, static_figures
from .energy import (
    PROXY_NOTE,
    EnergyProfile,
    energy_proxy,
    load_energy_profile,
    on_profiled_board,
)

SCHEMA_VERSION = 2
#: A measurement is flagged ``unstable`` when its coefficient of variation (std / mean) or its
#: tail ratio (p99 / p50) exceeds these: the numbers then say more about the machine's load
#: than about the model (re-run with more --runs / --min-time, or on a quieter machine).
UNSTABLE_CV = 1.0
UNSTABLE_TAIL = 5.0
FORMATS = {".npz": "npz", ".onnx": "onnx", ".tflite": "tflite", ".pt": "pt", ".pth": "pt"}
LIBRARIES = ("numpy", "scipy", "onnxruntime", "ai-edge-litert", "tflite-runtime", "torch",
             "edgeprune")

__all__ = [
    "FORMATS",
    "SCHEMA_VERSION",
    "UNSTABLE_CV",
    "UNSTABLE_TAIL",
    "Backend",
    "LoadedModel",
    "RuntimeBackend",
    "add_comparisons",
    "artifact_format",
    "blas_threads",
    "discover_artifacts",
    "environment",
    "latency_stats",
    "percentiles",
    "run_benchmark",
    "time_calls",
]


# -- statistics -------------------------------------------------------------------------------
def percentiles(
    samples: Sequence[float] | np.ndarray, qs: Sequence[float] = (50, 90, 99)
) -> list[float]:
    """Percentiles ``qs`` (0-100) of ``samples`` by linear interpolation (numpy ``"linear"``)."""
    arr = np.asarray(samples, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("no samples")
    return [float(v) for v in np.percentile(arr, qs, method="linear")]


def latency_stats(samples_ns: Sequence[int] | np.ndarray,
                  batch: int) -> dict[str, float | int | bool]:
    """``runs``, ``p10_us``, ``p50_us``, ``p90_us``, ``p99_us``, ``mean_us``, ``std_us``,
    ``throughput_sps``, ``cv`` (std / mean) and ``unstable`` (``cv`` > :data:`UNSTABLE_CV` or
    p99 / p50 > :data:`UNSTABLE_TAIL`)."""
    us = np.asarray(samples_ns, dtype=np.float64) / 1e3
    p10, p50, p90, p99 = percentiles(us, (10, 50, 90, 99))
    mean = float(us.mean())
    std = float(us.std(ddof=1)) if us.size > 1 else 0.0
    cv = std / mean if mean > 0 else 0.0
    return {
        "runs": int(us.size),
        "p10_us": p10,
        "p50_us": p50,
        "p90_us": p90,
        "p99_us": p99,
        "mean_us": mean,
        "std_us": std,
        "throughput_sps": batch / (mean * 1e-6) if mean > 0 else float("inf"),
        "cv": cv,
        "unstable": bool(cv > UNSTABLE_CV or (p50 > 0 and p99 / p50 > UNSTABLE_TAIL)),
    }


def time_calls(
    fn: Callable[[Any], Any], x: Any, *, warmup: int = 10, runs: int = 100,
    min_time: float = 0.5, max_time: float | None = None,
) -> list[int]:
    """Per-call durations in ns: ``warmup`` untimed calls, then until ``runs`` and ``min_time``."""
    for _ in range(warmup):
        fn(x)
    clock = time.perf_counter_ns
    need_ns = int(min_time * 1e9)
    stop_ns = None if max_time is None else int(max_time * 1e9)
    samples: list[int] = []
    start = clock()
    while True:
        t0 = clock()
        fn(x)
        t1 = clock()
        samples.append(t1 - t0)
        elapsed = t1 - start
        if len(samples) >= runs and elapsed >= need_ns:
            return samples
        if stop_ns is not None and elapsed >= stop_ns:
            return samples


# -- environment ------------------------------------------------------------------------------
def _cpu_model() -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for key, name in (("model name", "cpu_model"), ("Model", "board"), ("Hardware", "soc")):
        match = re.search(rf"^{key}\s*:\s*(.+)$", text, flags=re.MULTILINE)
        if match:
            found[name] = match.group(1).strip()
    try:
        found.setdefault(
            "board", Path("/proc/device-tree/model").read_text(errors="replace").strip("\0\n ")
        )
    except OSError:
        pass
    if "cpu_model" not in found and platform.processor():
        found["cpu_model"] = platform.processor()
    return found


def environment() -> dict[str, Any]:
    """Python, OS, CPU and library versions (read from package metadata, nothing imported)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    clock = time.get_clock_info("perf_counter")
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        **_cpu_model(),
        "libraries": versions,
        "timer": {"function": "time.perf_counter_ns", "resolution_s": clock.resolution},
    }


_BLAS_FUNCS = (
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
)


def _openblas_handles() -> list[tuple[str, Any, Any]]:
    try:
        maps = Path("/proc/self/maps").read_text(errors="replace")
    except OSError:
        return []
    handles = []
    for path in sorted(set(re.findall(r"(/\S*openblas\S*\.so[\w.]*)", maps))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _BLAS_FUNCS:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                handles.append((Path(path).name, getattr(lib, set_name), getattr(lib, get_name)))
                break
    return handles


@contextmanager
def blas_threads(n: int) -> Iterator[dict[str, Any]]:
    """Limit the OpenBLAS libraries loaded by numpy/scipy to ``n`` threads, restore on exit.

    Uses the libraries' own ``*_set_num_threads`` through ctypes (Linux, found in
    ``/proc/self/maps``). Yields ``{"libraries": [...], "threads": n}``; ``libraries`` is
    empty (and a note says so) where nothing could be controlled, e.g. another BLAS.
    """
    handles = _openblas_handles()
    before = []
    for _, setter, getter in handles:
        try:
            before.append(int(getter()))
            setter(ctypes.c_int(int(n)))
        except Exception:  # noqa: BLE001 - never fail a benchmark over thread control
            before.append(None)
    info: dict[str, Any] = {"threads": int(n), "libraries": [name for name, _, _ in handles]}
    if not handles:
        info["note"] = "no OpenBLAS found to control; numpy/scipy may use several threads"
    try:
        yield info
    finally:
        for (_, setter, _), old in zip(handles, before):
            if old is not None:
                setter(ctypes.c_int(old))


# -- artifacts --------------------------------------------------------------------------------
def artifact_format(path: str | os.PathLike[str]) -> str:
    """``npz``/``onnx``/``tflite``/``pt`` from the file suffix; anything else is a ValueError."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{path}: unknown artifact type; expected one of {', '.join(sorted(FORMATS))} "
            "or a `compress` output directory"
        )
    return fmt


def discover_artifacts(paths: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """Expand directories (every known artifact directly inside) and check every path exists."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FORMATS
            )
            if not inside:
                raise ValueError(f"{path}: directory holds no .npz/.onnx/.tflite/.pt artifact")
            found += [(p, artifact_format(p)) for p in inside]
        elif path.is_file():
            found.append((path, artifact_format(path)))
        else:
            raise ValueError(f"{path}: no such file or directory")
    if not found:
        raise ValueError("no artifact given")
    return found


# -- backends ---------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A loaded artifact: ``run(x)`` on a ``(batch, input_dim)`` float32 array."""

    run: Callable[[np.ndarray], Any]
    input_dim: int
    kernels: Callable[[int], list[str]] | None = None  # per-layer kernels at a batch size
    info: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] | None = None  # called when its measurements are done


class Backend(Protocol):
    """What :func:`run_benchmark` needs of a backend."""

    name: str
    formats: tuple[str, ...]

    def available(self) -> tuple[bool, str]: ...

    def load(self, path: Path, threads: int) -> LoadedModel: ...


class RuntimeBackend:
    """The edgeprune runtime with a fixed kernel choice, ``edgeprune-auto|csr|dense``, or the
    optional compiled engine, ``edgeprune-numba`` (auto kernels; needs numba)."""

    formats = ("npz",)

    def __init__(self, kernel: str = "auto", kernel_profile: Any = None,
                 engine: str = "numpy") -> None:
        if kernel not in ("auto", "csr", "dense"):
            raise EdgepruneError(f"unknown kernel {kernel!r}; expected auto, csr or dense")
        self.kernel = kernel
        self.engine = engine
        self.name = "edgeprune-numba" if engine == "numba" else f"edgeprune-{kernel}"
        self.kernel_profile = kernel_profile

    def available(self) -> tuple[bool, str]:
        if self.engine == "numba":
            import importlib.util

            if importlib.util.find_spec("numba") is None:
                return False, "numba is not installed (pip install 'edgeprune[fast]')"
        return True, ""

    def load(self, path: Path, threads: int) -> LoadedModel:
        from ..model import load

        model = load(path, kernel=self.kernel, profile=self.kernel_profile, engine=self.engine)
        info = {"kernel_rule": model.kernel_rule, "engine": self.engine}
        return LoadedModel(model, model.input_dim, model.kernels_for, info)


# -- the bench loop ---------------------------------------------------------------------------
def npz_layers(path: Path, fmt: str) -> tuple[list[LayerShape] | None, str]:
    """Layer shapes of a bundle; other formats: ``(None, note)`` (see edgeprune.bench.runner)."""
    if fmt != "npz":
        return None, f"layer figures for .{fmt} need the full install (edgeprune bench)"
    from ..bundle import read_bundle

    return bundle_layer_shapes(read_bundle(path)), ""


def _artifact_entry(path: Path, fmt: str, layer_source: Callable, profile: EnergyProfile) -> dict:
    notes: list[str] = []
    try:
        layers, note = layer_source(path, fmt)
    except Exception as err:  # noqa: BLE001 - static figures are best effort for foreign formats
        if fmt == "npz" or isinstance(err, EdgepruneError):  # a bad or refused file: say so
            raise
        layers, note = None, f"layer figures unavailable: {first_line(err)}"
    if note:
        notes.append(note)
    static = static_figures(layers, path)
    energy = energy_proxy(static["total"], profile) if static["total"] is not None else None
    return {"path": str(path), "format": fmt, "static": static, "energy": energy, "notes": notes}


def run_benchmark(
    artifacts: Sequence[tuple[Path, str]],
    backends: Sequence[Backend],
    *,
    batches: Sequence[int] = (1,),
    warmup: int = 10,
    runs: int = 100,
    min_time: float = 0.5,
    max_time: float | None = None,
    threads: int = 1,
    energy_profile: EnergyProfile | str | None = None,
    kernel_profile: dict[str, Any] | None = None,
    layer_source: Callable[[Path, str], tuple[list[LayerShape] | None, str]] = npz_layers,
    skipped: Sequence[dict[str, str]] = (),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Static figures + energy proxy per artifact, latency per (artifact, backend, batch).

    Each backend runs the artifacts of its ``formats``; an unavailable backend, or one that
    cannot load or run an artifact, becomes a ``skipped`` entry with a one-line reason.
    Returns the results dict (layout in :mod:`edgeprune.bench.report`).
    """
    profile = load_energy_profile(energy_profile)
    say = progress or (lambda _msg: None)
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "environment": environment(),
        "settings": {"batches": list(batches), "warmup": warmup, "runs": runs,
                     "min_time_s": min_time, "max_time_s": max_time, "threads": threads,
                     "backends": [b.name for b in backends], "seed": seed},
        "energy_profile": {**profile.to_json(), "note": PROXY_NOTE},
        "kernel_profile": kernel_profile,
        "artifacts": [_artifact_entry(p, f, layer_source, profile) for p, f in artifacts],
        "latency": [],
        "skipped": [dict(s) for s in skipped],
    }
    ready = []
    for backend in backends:
        ok, note = backend.available()
        if ok:
            ready.append(backend)
        else:
            results["skipped"].append({"backend": backend.name, "reason": note})
    rng = np.random.default_rng(seed)
    with blas_threads(threads) as blas:
        results["environment"]["blas"] = blas
        for path, fmt in artifacts:
            for backend in (b for b in ready if fmt in b.formats):
                _bench_one(results, backend, path, batches, rng, threads, profile, say,
                           dict(warmup=warmup, runs=runs, min_time=min_time, max_time=max_time))
    _label_board_energy(results, profile)
    add_comparisons(results)
    return results


def _label_board_energy(results: dict[str, Any], profile: EnergyProfile) -> None:
    """The profile's board power x *this* machine's latency is board energy only on that board;
    elsewhere the figure is renamed ``proxy_board_energy_uj_per_sample`` and a note says why."""
    if profile.load_w is None:
        return
    on_board = on_profiled_board(profile, results["environment"])
    results["energy_profile"]["measured_on_profiled_board"] = on_board
    if on_board:
        return
    results["energy_profile"]["board_energy_note"] = (
        f"proxy only: {profile.name}'s published load power x the latency of this machine "
        f"({results['environment'].get('board') or results['environment'].get('cpu_model') or results['environment'].get('machine')}), "
        "which is not that board")
    for row in results["latency"]:
        if "board_energy_uj_per_sample" in row:
            row["proxy_board_energy_uj_per_sample"] = row.pop("board_energy_uj_per_sample")


def _bench_one(results: dict, backend: Backend, path: Path, batches: Sequence[int],
               rng: np.random.Generator, threads: int, profile: EnergyProfile,
               say: Callable[[str], None], timing: dict[str, Any]) -> None:
    try:
        loaded = backend.load(path, threads)
    except EdgepruneError:  # the user's file is bad or refused (e.g. code without consent)
        raise
    except Exception as err:  # noqa: BLE001 - a backend failing to load is reported, not fatal
        results["skipped"].append({"backend": backend.name, "artifact": str(path),
                                   "reason": f"cannot load: {first_line(err)}"})
        return
    try:
        _measure(results, backend.name, loaded, path, batches, rng, profile, say, timing)
    finally:
        if loaded.close is not None:
            loaded.close()


def _measure(results: dict, name: str, loaded: LoadedModel, path: Path, batches: Sequence[int],
             rng: np.random.Generator, profile: EnergyProfile, say: Callable[[str], None],
             timing: dict[str, Any]) -> None:
    for batch in batches:
        check_batch_sizes([batch], loaded.input_dim)  # before allocating the inputs
        x = rng.random((batch, loaded.input_dim), dtype=np.float32)
        say(f"{path.name} {name} batch {batch}")
        try:
            samples = time_calls(loaded.run, x, **timing)
        except Exception as err:  # noqa: BLE001
            results["skipped"].append({"backend": name, "artifact": str(path),
                                       "reason": f"failed at batch {batch}: {first_line(err)}"})
            continue
        row: dict[str, Any] = {"artifact": str(path), "backend": name, "batch": batch,
                               **latency_stats(samples, batch)}
        if loaded.kernels is not None:
            row["kernels"] = loaded.kernels(batch)
        if profile.load_w is not None:
            row["board_energy_uj_per_sample"] = profile.load_w * row["p50_us"] / batch
        results["latency"].append(row)


def add_comparisons(results: dict[str, Any]) -> None:
    """Fill ``results["comparisons"]`` from the latency rows (see the module docstring)."""
    rows = results["latency"]
    ours = [r for r in rows if r["backend"].startswith("edgeprune")]
    ort = [r for r in rows if r["backend"] == "onnxruntime"]
    vs_ort = [
        {"artifact": r["artifact"], "backend": r["backend"], "batch": r["batch"],
         "reference_artifact": ref["artifact"],
         "same_directory": Path(ref["artifact"]).parent == Path(r["artifact"]).parent,
         "p50_ratio": r["p50_us"] / ref["p50_us"]}
        for r in ours for ref in ort if ref["batch"] == r["batch"] and ref["p50_us"] > 0
    ]
    by_key = {(r["artifact"], r["backend"], r["batch"]): r for r in ours}
    auto_rows = []
    for (artifact, backend, batch), row in by_key.items():
        if backend != "edgeprune-auto":
            continue
        forced = [by_key.get((artifact, f"edgeprune-{k}", batch)) for k in ("csr", "dense")]
        forced = [f for f in forced if f is not None]
        if not forced:
            continue
        best = min(forced, key=lambda f: f["p50_us"])
        ratio = row["p50_us"] / best["p50_us"] if best["p50_us"] > 0 else math.inf
        auto_rows.append({"artifact": artifact, "batch": batch, "auto_p50_us": row["p50_us"],
                          "best_forced": best["backend"].removeprefix("edgeprune-"),
                          "best_forced_p50_us": best["p50_us"], "ratio": ratio,
                          "within_10pct": ratio <= 1.10})
    results["comparisons"] = {"vs_onnxruntime": vs_ort, "auto_vs_forced": auto_rows}
