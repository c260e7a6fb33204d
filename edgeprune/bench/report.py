"""Benchmark results: their JSON layout and the Markdown report (stdlib; the comparisons are
derived by :func:`edgeprune.runtime.bench.harness.add_comparisons`).

Results layout (``schema_version`` 2; every number is a JSON number, absent values ``null``)::

    {
      "schema_version": 2,
      "environment": {created, python, implementation, platform, machine, cpu_count,
                      cpu_model?, board?, soc?, libraries: {name: version|null},
                      timer: {function, resolution_s}, blas: {threads, libraries, note?}},
      "settings": {batches, warmup, runs, min_time_s, max_time_s, threads, backends, seed},
      "energy_profile": {name, e_mult_pj, e_add_pj, e_sram_pj, e_dram_pj, cache_bytes,
                         idle_w, load_w, source, notes, note,
                         measured_on_profiled_board?, board_energy_note?},
      "kernel_profile": {source, ...} | null,      # what edgeprune-auto used
      "artifacts": [{path, format, notes: [str],
                     static: {layers: [per-layer figures] | null, total: {...} | null,
                              file: {bytes_on_disk, gzip_bytes}},
                     energy: {profile, per_inference, dense: {...}, csr: {...},
                              csr_over_dense, note} | null}],
      "latency": [{artifact, backend, batch, runs, p10_us, p50_us, p90_us, p99_us, mean_us,
                   std_us, throughput_sps, cv, unstable, kernels?: [str],
                   board_energy_uj_per_sample? (measured on the profile's board) |
                   proxy_board_energy_uj_per_sample? (anywhere else)}],
      "comparisons": {"vs_onnxruntime": [{artifact, backend, batch, reference_artifact,
                                          same_directory, p50_ratio}],
                      "auto_vs_forced": [{artifact, batch, auto_p50_us, best_forced,
                                          best_forced_p50_us, ratio, within_10pct}]},
      "skipped": [{backend, reason, artifact?}]
    }

Per-layer and total static figures are those of :mod:`edgeprune.runtime.bench.costs` (per-layer
rows numbered by ``layer``, 1-based, as in ``edgeprune info``); the energy variants those of
:mod:`edgeprune.runtime.bench.energy`. ``p50_ratio`` < 1 means edgeprune is faster than ONNX
Runtime on the reference artifact at the same batch size. ``unstable`` flags a measurement whose
``cv`` (std / mean) or p99 / p50 exceeds :data:`~edgeprune.runtime.bench.harness.UNSTABLE_CV` /
:data:`~edgeprune.runtime.bench.harness.UNSTABLE_TAIL`. Version 2 added ``p10_us``, ``cv`` and
``unstable`` and renamed the per-layer ``index`` to ``layer``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from edgeprune.runtime.bench.harness import UNSTABLE_CV, UNSTABLE_TAIL

__all__ = [
    "LATENCY_KEYS",
    "TOP_LEVEL_KEYS",
    "artifact_labels",
    "to_json",
    "to_markdown",
    "unstable_note",
]

TOP_LEVEL_KEYS = ("schema_version", "environment", "settings", "energy_profile",
                  "kernel_profile", "artifacts", "latency", "comparisons", "skipped")
LATENCY_KEYS = ("artifact", "backend", "batch", "runs", "p10_us", "p50_us", "p90_us", "p99_us",
                "mean_us", "std_us", "throughput_sps", "cv", "unstable")


def artifact_labels(results: dict[str, Any]) -> dict[str, str]:
    """Shortest unique trailing path of every artifact (``eta0.9/model.npz`` when names clash)."""
    paths = [a["path"] for a in results["artifacts"]]
    parts = {p: Path(p).parts for p in paths}
    depth = 1
    while depth < max((len(v) for v in parts.values()), default=1):
        labels = ["/".join(v[-depth:]) for v in parts.values()]
        if len(set(labels)) == len(labels):
            break
        depth += 1
    return {p: "/".join(v[-depth:]) for p, v in parts.items()}


def unstable_note() -> str:
    """One line on what an ``unstable`` measurement means, with the thresholds."""
    return (f"unstable = std/mean > {UNSTABLE_CV} or p99/p50 > {UNSTABLE_TAIL}: the machine "
            "was busy or the run too short; re-run with more --runs / --min-time")


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) if not isinstance(c, str) else c for c in row) + " |"
              for row in rows]
    return lines + [""]


def _static_section(artifact: dict[str, Any]) -> list[str]:
    static, energy = artifact["static"], artifact["energy"]
    lines = [f"### `{artifact['path']}` ({artifact['format']})", ""]
    lines += [f"- {note}" for note in artifact.get("notes", [])]
    file = static.get("file") or {}
    lines.append(f"- file: {_fmt(file.get('bytes_on_disk'))} bytes on disk, "
                 f"{_fmt(file.get('gzip_bytes'))} gzip")
    total = static.get("total")
    if total is None:
        return lines + [""]
    lines.append(f"- parameters: {_fmt(total['params_nnz'])} non-zero of "
                 f"{_fmt(total['params_dense'])} dense (sparsity {total['sparsity']:.4f})")
    lines += [""]
    header = ["layer", "shape", "act", "nnz / dense", "MACs dense", "MACs eff.",
              "bytes fp32", "bytes CSR", "words dense", "words CSR"]
    rows = [[str(r["layer"]), f"{r['shape'][0]}x{r['shape'][1]}", r["activation"],
             f"{r['params_nnz']:,} / {r['params_dense']:,}", r["macs_dense"],
             r["macs_effective"], r["bytes_dense_fp32"], r["bytes_csr"],
             r["words_read_dense"], r["words_read_csr"]] for r in static["layers"]]
    rows.append(["total", "", "", f"{total['params_nnz']:,} / {total['params_dense']:,}",
                 total["macs_dense"], total["macs_effective"], total["bytes_dense_fp32"],
                 total["bytes_csr"], total["words_read_dense"], total["words_read_csr"]])
    lines += _table(header, rows)
    if energy is not None:
        d, c = energy["dense"], energy["csr"]
        lines.append(
            f"Energy proxy per inference ({energy['profile']}): dense {d['total_pj'] / 1e3:,.1f} "
            f"nJ ({d['memory']}), CSR {c['total_pj'] / 1e3:,.1f} nJ ({c['memory']}), "
            f"CSR/dense {_fmt(energy['csr_over_dense'], 3)}."
        )
        lines.append("")
    return lines


def _dynamic_section(results: dict[str, Any]) -> list[str]:
    """ShapNet dynamic pruning (``bench --skip-threshold``): batch 1, per input."""
    if not results.get("dynamic_pruning"):
        return []
    name = artifact_labels(results)
    lines = ["## ShapNet dynamic pruning (batch 1, µs per input, measured on this host)", "",
             "Modules whose inputs are all within the threshold of their reference are not "
             "computed. *saved* = p50 of the chain without skipping minus p50 with the "
             "threshold; the bound is the runtime's worst case for the prediction change.", ""]
    for d in results["dynamic_pruning"]:
        base = d["baseline"]
        lines.append(f"`{name[d['artifact']]}` on {d['inputs']} inputs of `{d['inputs_file']}`, "
                     f"{d['modules']} modules: chain {base['chain_p50_us']:,.1f} µs, "
                     f"per-module path without skipping {base['no_skip_p50_us']:,.1f} µs.")
        lines.append("")
        lines += _table(["threshold", "modules skipped", "MACs skipped", "p50", "saved",
                         "saved vs no-skip path", "p50 new patterns", "max pred. change",
                         "bound", "stable"],
                        [[f"{r['threshold']:g}", f"{r['skipped_fraction']:.1%}",
                          f"{r['macs_skipped_fraction']:.1%}", r["p50_us"],
                          r["latency_saved_us"], r["saved_vs_no_skip_us"],
                          r["p50_first_pattern_us"],
                          f"{r['max_prediction_change']:.3g}", f"{r['bound']:.3g}",
                          "**unstable**" if r["unstable"] else "yes"]
                         for r in d["thresholds"]])
    return lines


def to_markdown(results: dict[str, Any]) -> str:
    """A Markdown report of ``results``: environment, static figures, latency, comparisons."""
    env, prof = results["environment"], results["energy_profile"]
    libs = ", ".join(f"{k} {v}" for k, v in env["libraries"].items() if v)
    cpu = env.get("cpu_model") or env.get("board") or env.get("machine")
    settings = results["settings"]
    blas = ", ".join(env.get("blas", {}).get("libraries", [])) or "not controlled"
    rule = (results.get("kernel_profile") or {}).get("source", "n/a")
    lines = [
        "# edgeprune bench", "",
        f"- {env['created']}, Python {env['python']} on {env['platform']}, {cpu}, "
        f"{env['cpu_count']} CPUs",
        f"- libraries: {libs}",
        f"- threads {settings['threads']} (BLAS: {blas}), "
        f"warm-up {settings['warmup']}, at least {settings['runs']} runs and "
        f"{settings['min_time_s']} s per measurement",
        f"- kernel rule of edgeprune-auto: {rule}",
        "",
        "## Static figures and energy proxy", "",
        f"**The energy figure is a proxy, not a measurement.** Profile `{prof['name']}`: "
        f"E_mult {prof['e_mult_pj']} pJ, E_add {prof['e_add_pj']} pJ, E_SRAM {prof['e_sram_pj']} "
        f"pJ, E_DRAM {prof['e_dram_pj']} pJ per 32-bit word, cache {prof['cache_bytes']:,} bytes"
        + (f", board {prof['idle_w']} W idle / {prof['load_w']} W load"
           if prof.get("load_w") is not None else "")
        + f". Source: {prof['source']}. {prof.get('notes', '')} ({prof['note']}; words read = "
        "weights (CSR: values + column indices + indptr) + biases + each layer's input vector.)",
        "",
    ]
    if prof.get("board_energy_note"):
        lines += [f"**Board energy per sample is a proxy here:** {prof['board_energy_note']}.",
                  ""]
    for artifact in results["artifacts"]:
        lines += _static_section(artifact)
    name = artifact_labels(results)
    lines += ["## Latency (µs per call)", ""]
    header = ["artifact", "backend", "batch", "runs", "p10", "p50", "p90", "p99", "mean", "std",
              "samples/s", "kernels", "stable"]
    rows = [[name[r["artifact"]], r["backend"], r["batch"], r["runs"], r["p10_us"], r["p50_us"],
             r["p90_us"], r["p99_us"], r["mean_us"], r["std_us"], r["throughput_sps"],
             ",".join(r.get("kernels", [])) or "–", "**unstable**" if r["unstable"] else "yes"]
            for r in results["latency"]]
    lines += _table(header, rows) if rows else ["(nothing measured)", ""]
    if any(r["unstable"] for r in results["latency"]):
        lines += [f"**Note:** {unstable_note()}.", ""]
    comp = results.get("comparisons", {})
    if comp.get("vs_onnxruntime"):
        lines += ["## edgeprune vs ONNX Runtime (p50 ratio, < 1: edgeprune faster)", ""]
        lines += _table(["artifact", "backend", "batch", "ONNX artifact", "ratio"],
                        [[name[r["artifact"]], r["backend"], r["batch"],
                          name[r["reference_artifact"]], f"{r['p50_ratio']:.3f}"]
                         for r in comp["vs_onnxruntime"]])
    if comp.get("auto_vs_forced"):
        lines += ["## auto vs the better forced kernel (p50)", ""]
        lines += _table(["artifact", "batch", "auto", "best forced", "ratio", "within 10 %"],
                        [[name[r["artifact"]], r["batch"], r["auto_p50_us"],
                          f"{r['best_forced']} {r['best_forced_p50_us']:,.1f}",
                          f"{r['ratio']:.3f}", "yes" if r["within_10pct"] else "no"]
                         for r in comp["auto_vs_forced"]])
    lines += _dynamic_section(results)
    if results["skipped"]:
        lines += ["## Skipped", ""]
        lines += [f"- {s['backend']}"
                  + (f" ({name.get(s['artifact'], s['artifact'])})" if s.get("artifact") else "")
                  + f": {s['reason']}" for s in results["skipped"]]
        lines.append("")
    return "\n".join(lines)


def to_json(results: dict[str, Any]) -> str:
    """The results as indented JSON (non-finite floats become null)."""
    def clean(obj: Any) -> Any:
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else None
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        return obj

    return json.dumps(clean(results), indent=2) + "\n"
