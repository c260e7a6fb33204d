"""``edgeprune bench`` as a library call: artifacts x backends x batch sizes, reports, plot.

Everything heavy is optional: the numpy/scipy runtime always runs ``.npz`` bundles; ONNX
Runtime, LiteRT and torch run ``.onnx``, ``.tflite`` and ``.pt`` files when installed (else
they are listed as skipped, with the reason), and the plot needs matplotlib.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeprune.bench.backends import resolve_backends
from edgeprune.bench.plot import write_plot
from edgeprune.bench.report import artifact_labels, to_json, to_markdown, unstable_note
from edgeprune.errors import EdgepruneError
from edgeprune.fileio import write_text_atomic
from edgeprune.inspector import layer_source
from edgeprune.runtime.bench.energy import load_energy_profile
from edgeprune.runtime.bench.harness import discover_artifacts, run_benchmark
from edgeprune.runtime.kernel_profile import (
    builtin_kernel_profile,
    default_profile_path,
    load_kernel_profile,
)

__all__ = [
    "BenchOptions",
    "kernel_profile_summary",
    "parse_batches",
    "calibrate_device",
    "run",
    "summary_lines",
    "write_outputs",
    "write_plot",
]


def parse_batches(text: str | Sequence[int]) -> list[int]:
    """``"1,32,256"`` -> ``[1, 32, 256]``; anything else is a one-line ValueError."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            value = int(str(item).strip())
        except ValueError:
            raise EdgepruneError(
                f"--batch {text!r}: {str(item).strip()!r} is not an integer; "
                "give sizes like 1,32,256"
            ) from None
        if value < 1:
            raise EdgepruneError(f"--batch {text!r}: batch sizes must be >= 1, got {value}")
        out.append(value)
    if not out:
        raise EdgepruneError("--batch is empty; give sizes like 1,32,256")
    return list(dict.fromkeys(out))


def kernel_profile_summary(path: str | os.PathLike[str] | None) -> tuple[Any, dict[str, Any]]:
    """``(profile argument for the runtime, summary for the results)``.

    ``path`` None: the default location if a profile is there, else this architecture's
    built-in default, else the static rule.
    """
    from edgeprune.runtime import kernels

    if path is not None:
        profile = load_kernel_profile(path)
    else:
        default = default_profile_path()
        profile = load_kernel_profile(default) if default.is_file() else builtin_kernel_profile()
    if profile is None:
        return kernels.STATIC, {"source": f"static: csr when density < {kernels.DENSITY_THRESHOLD}"}
    return profile, {"source": profile.source, "created": profile.created,
                     "crossover": [{"batch": b, "density": d} for b, d in profile.crossover]}


@dataclass
class BenchOptions:
    """The knobs of one benchmark run (CLI flags of the same names)."""

    batches: Sequence[int] = (1, 32, 256)
    backends: str | Sequence[str] = "auto"
    warmup: int = 10
    runs: int = 100
    min_time: float = 0.5
    max_time: float | None = None
    threads: int = 1
    energy_profile: str | None = "generic45nm"
    kernel_profile: str | os.PathLike[str] | None = None
    seed: int = 0
    skip_thresholds: Sequence[float] = ()  # ShapNet bundles: dynamic pruning, per input
    skip_inputs: str | os.PathLike[str] | None = None  # the .npy samples it is measured on

    def validate(self) -> None:
        if self.warmup < 0 or self.runs < 1 or self.min_time < 0 or self.threads < 1:
            raise EdgepruneError("need --warmup >= 0, --runs >= 1, --min-time >= 0, --threads >= 1")
        parse_batches(self.batches)
        if self.skip_thresholds and self.skip_inputs is None:
            raise EdgepruneError("--skip-threshold needs --inputs FILE.npy: how many modules "
                                 "are skipped depends on the inputs, so give real samples")
        if self.skip_inputs is not None and not self.skip_thresholds:
            raise EdgepruneError("--inputs is the data of --skip-threshold; give a threshold")


def run(
    artifacts: Sequence[str | os.PathLike[str]],
    options: BenchOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Benchmark ``artifacts`` (files or ``compress`` output directories); return the results."""
    opts = options or BenchOptions()
    opts.validate()
    batches = parse_batches(opts.batches)
    energy = load_energy_profile(opts.energy_profile)  # bad profile: fail before any timing
    found = discover_artifacts(artifacts)
    runtime_profile, summary = kernel_profile_summary(opts.kernel_profile)
    backends = resolve_backends(opts.backends, runtime_profile)
    formats = {fmt for _, fmt in found}
    skipped = [{"backend": b.name, "reason": f"no .{'/.'.join(b.formats)} artifact given"}
               for b in backends if not formats & set(b.formats)]
    backends = [b for b in backends if formats & set(b.formats)]
    results = run_benchmark(
        found, backends, batches=batches, warmup=opts.warmup, runs=opts.runs,
        min_time=opts.min_time, max_time=opts.max_time, threads=opts.threads,
        energy_profile=energy, kernel_profile=summary, layer_source=layer_source,
        skipped=skipped, seed=opts.seed, progress=progress,
    )
    if opts.skip_thresholds:
        _bench_dynamic(results, found, opts, progress or (lambda _msg: None))
    return results


def _bench_dynamic(results: dict[str, Any], found: list, opts: BenchOptions,
                   say: Callable[[str], None]) -> None:
    """``results["dynamic_pruning"]``: per ShapNet bundle, latency per input by threshold."""
    from edgeprune.runtime.bench.dynamic import bench_dynamic_pruning
    from edgeprune.runtime.bench.harness import blas_threads
    from edgeprune.runtime.bundle import read_bundle
    from edgeprune.runtime.shapnet import ShapNetModel
    from edgeprune.workflows import read_samples

    rows = results.setdefault("dynamic_pruning", [])
    for path, fmt in found:
        bundle = read_bundle(path) if fmt == "npz" else None
        if bundle is None or bundle.shapnet is None:
            results["skipped"].append({"backend": "dynamic-pruning", "artifact": str(path),
                                       "reason": "--skip-threshold applies to ShapNet bundles"})
            continue
        model = ShapNetModel(bundle)
        x = read_samples(opts.skip_inputs, model.input_dim, model.chain.buffer_widths())
        say(f"{path.name} dynamic pruning at {len(opts.skip_thresholds)} thresholds")
        with blas_threads(opts.threads):
            res = bench_dynamic_pruning(model, x, opts.skip_thresholds, warmup=opts.warmup,
                                        runs=opts.runs, min_time=opts.min_time,
                                        max_time=opts.max_time)
        rows.append({"artifact": str(path), "inputs_file": str(opts.skip_inputs), **res})


def write_outputs(results: dict[str, Any], json_path: str | None = None,
                  md_path: str | None = None,
                  plot_path: str | None = None) -> tuple[list[str], list[str]]:
    """Write the requested files; returns (paths written, one-line notes such as no matplotlib)."""
    written, notes = [], []
    if json_path:
        written.append(str(write_text_atomic(json_path, to_json(results))))
    if md_path:
        written.append(str(write_text_atomic(md_path, to_markdown(results))))
    if plot_path:
        note = write_plot(results, plot_path)
        if note:
            notes.append(note)
        else:
            written.append(str(plot_path))
    return written, notes


def _static_lines(results: dict[str, Any], name: dict[str, str], width: int) -> list[str]:
    """Per artifact: MACs per sample, weight bytes (CSR), file bytes and the energy proxy."""
    lines = [f"{'artifact':<{width}} {'format':<6} {'MACs/sample':>12} {'bytes CSR':>12} "
             f"{'bytes file':>12} {'energy nJ':>10}"]
    for a in results["artifacts"]:
        total, energy = a["static"].get("total"), a.get("energy")
        macs = f"{total['macs_effective']:,}" if total else "–"
        csr = f"{total['bytes_csr']:,}" if total else "–"
        nj = f"{energy['csr']['total_pj'] / 1e3:,.1f}" if energy else "–"
        on_disk = a["static"]["file"]["bytes_on_disk"]
        lines.append(f"{name[a['path']]:<{width}} {a['format']:<6} {macs:>12} {csr:>12} "
                     f"{on_disk:>12,} {nj:>10}")
    return lines


def summary_lines(results: dict[str, Any]) -> str:
    """For the terminal: per artifact its MACs, bytes and energy proxy; per (artifact, backend,
    batch) p50/p99 and throughput, unstable measurements marked; the skipped backends."""
    name = artifact_labels(results)
    width = max([24, *(len(v) for v in name.values())])
    lines = _static_lines(results, name, width)
    lines.append("")
    lines.append(f"{'artifact':<{width}} {'backend':<16} {'batch':>5} {'p50 µs':>10} "
                 f"{'p99 µs':>10} {'samples/s':>12}")
    for r in results["latency"]:
        lines.append(f"{name[r['artifact']]:<{width}} {r['backend']:<16} {r['batch']:>5} "
                     f"{r['p50_us']:>10.1f} {r['p99_us']:>10.1f} {r['throughput_sps']:>12.0f}"
                     + ("  UNSTABLE" if r["unstable"] else ""))
    if any(r["unstable"] for r in results["latency"]):
        lines.append(unstable_note())
    # edgeprune-auto against ONNX Runtime on the same directory's model (the pruned one) and on
    # ONNX files that stand alone (e.g. the unpruned model given for reference)
    with_npz = {Path(a["path"]).parent for a in results["artifacts"] if a["format"] == "npz"}
    for r in results["comparisons"]["vs_onnxruntime"]:
        ref_dir = Path(r["reference_artifact"]).parent
        if r["backend"] == "edgeprune-auto" and (r["same_directory"] or ref_dir not in with_npz):
            lines.append(f"{name[r['artifact']]} edgeprune-auto / onnxruntime "
                         f"{name[r['reference_artifact']]} p50 at batch {r['batch']}: "
                         f"{r['p50_ratio']:.2f}")
    for d in results.get("dynamic_pruning", []):
        base = d["baseline"]
        lines.append(f"{name[d['artifact']]} dynamic pruning, batch 1, {d['inputs']} inputs: "
                     f"chain p50 {base['chain_p50_us']:.1f} µs, per-module path without "
                     f"skipping {base['no_skip_p50_us']:.1f} µs")
        for r in d["thresholds"]:
            lines.append(f"  --skip-threshold {r['threshold']:g}: skipped "
                         f"{r['skipped_fraction']:.1%} of modules ({r['macs_skipped_fraction']:.1%}"
                         f" of MACs), p50 {r['p50_us']:.1f} µs, saved {r['latency_saved_us']:.1f}"
                         f" µs per input, max prediction change {r['max_prediction_change']:.3g}"
                         + ("  UNSTABLE" if r["unstable"] else ""))
    for s in results["skipped"]:
        where = f" ({name.get(s['artifact'], s['artifact'])})" if s.get("artifact") else ""
        lines.append(f"skipped {s['backend']}{where}: {s['reason']}")
    lines.append("energy nJ: the proxy per inference for the CSR layers, not a measurement "
                 "(dense variant, coefficients and words read in --md/--json)")
    return "\n".join(lines)


def calibrate_device(
    artifacts: Sequence[str | os.PathLike[str]],
    options: BenchOptions,
    profile_out: str | os.PathLike[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """``--calibrate``: time dense vs CSR on this device and save the kernel profile.

    Uses the layer shapes of the ``.npz`` bundles among ``artifacts`` (else the standard grid)
    and the batch sizes of the calibration grid plus ``options.batches``.
    """
    from edgeprune.runtime.bench.calibrate import DEFAULT_BATCHES, calibrate_and_save
    from edgeprune.runtime.bundle import read_bundle

    shapes = []
    if artifacts:
        for path, fmt in discover_artifacts(artifacts):
            if fmt == "npz":
                shapes += [layer.shape for layer in read_bundle(path).layers]
    batches = sorted({*DEFAULT_BATCHES, *parse_batches(options.batches)})
    _, target = calibrate_and_save(profile_out, shapes=shapes or None, batches=batches,
                                   threads=options.threads, progress=progress)
    return target
