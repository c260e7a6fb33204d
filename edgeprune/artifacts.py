"""Writing a pruned network as deployable artifacts (``npz``, ``onnx``, ``tflite``), each one
run in its own runtime on real inputs and checked against the masked PyTorch model."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeprune import __version__
from edgeprune.compacted import CompactNetwork
from edgeprune.errors import first_line
from edgeprune.network import ModelError, Network
from edgeprune.output_dir import check_output_dir, staged_output_dir
from edgeprune.report import resolve_recorded

FORMATS = ("npz", "onnx", "tflite")
QUANTIZE = ("none", "int8", "shared4", "shared5", "shared6")  # = exporters.quantize's choices
NPZ_COMPRESSIONS = ("auto", "stored", "deflate", "lzma")
PARITY_TOLERANCE = 1e-5
VERIFY_SAMPLES = 256


@dataclass
class ExportOptions:
    """How to encode the weights in each format (DESIGN section 6).

    ``quantize="int8"``: model.npz stores per-row int8 weights (bundle v2, compact indices); it
    is verified to 1e-5 against the dequantized model and its distance to the float32 model is
    reported. model.onnx is quantized by ONNX Runtime's static QDQ tooling (int8 weights per
    channel, int8 activations calibrated on the data), checked against float32 within
    ``edgeprune.exporters.onnx_int8.INT8_TOLERANCE`` (max) and ``INT8_MEAN_TOLERANCE`` (mean) of
    the output range; model.tflite is
    full-integer int8 (per-channel int8 weights, int8 activations from the same calibration),
    run in LiteRT and checked the same way.
    ``quantize="shared4"/"shared5"/"shared6"``: model.npz stores codes into a codebook of at
    most 16/32/64 values per layer (k-means weight sharing, or the network's own values after
    codebook fine-tuning), verified the same way; ONNX and TFLite stay float32.
    ``npz_compression``: how the zip members of model.npz are compressed (``auto``: the
    smallest of stored, deflate and LZMA per member; ``deflate`` for runtimes without lzma)."""

    onnx_sparse_initializers: bool = False
    tflite_sparse: bool = False
    quantize: str = "none"
    npz_compression: str = "auto"

    def validate(self) -> None:
        if self.quantize not in QUANTIZE:
            raise ModelError(f"--quantize {self.quantize!r}: use one of {', '.join(QUANTIZE)}")
        if self.npz_compression not in NPZ_COMPRESSIONS:
            raise ModelError(f"--npz-compression {self.npz_compression!r}: use one of "
                             f"{', '.join(NPZ_COMPRESSIONS)}")


def float32_notes(quantize: str, formats: list[str], tflite_sparse: bool = False) -> list[str]:
    """Which formats --quantize leaves in float32 (and int8 TFLite weights left dense)."""
    left = [f for f in formats if f != "npz" and quantize != "int8"]
    notes = [f"{fmt}: written in float32 (--quantize {quantize} is not built for it)"
             for fmt in left]
    if quantize == "int8" and tflite_sparse and "tflite" in formats:
        notes.append("tflite: int8 weights written dense (LiteRT does not run unstructured "
                     "sparse int8 FULLY_CONNECTED weights)")
    return notes


def parse_formats(spec: str | None) -> tuple[list[str], list[str]]:
    """``"onnx,npz"`` -> (formats to write, notes for formats skipped). ``None`` or ``"auto"``
    means every format whose dependencies are installed."""
    if spec is None or spec.strip() == "auto":
        chosen, notes = [], []
        for fmt in FORMATS:
            ok, why = format_available(fmt)
            (chosen.append(fmt) if ok else notes.append(f"{fmt}: skipped ({why})"))
        return chosen, notes
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise ModelError(f"--format/--export {spec!r}: use a comma-separated subset of "
                         f"{','.join(FORMATS)} (or auto)")
    for fmt in names:
        ok, why = format_available(fmt)
        if not ok:
            raise ModelError(f"--format {fmt}: {why}")
    return names, []


def format_available(fmt: str) -> tuple[bool, str]:
    """Whether the exporter and the runtime that verifies ``fmt`` are importable."""
    if fmt == "npz":
        return True, ""
    if fmt == "onnx":
        from edgeprune.exporters.onnx import onnx_available, onnxruntime_available

        if not onnx_available() or not onnxruntime_available():
            return False, "needs onnx and onnxruntime: pip install 'edgeprune[export]'"
        return True, ""
    if fmt == "tflite":
        from edgeprune.exporters.tflite import tflite_available

        if not tflite_available():
            return False, "needs tflite and flatbuffers: pip install 'edgeprune[export]'"
        from edgeprune.exporters.tflite import interpreter_available

        if not interpreter_available():
            return False, "needs a TFLite interpreter: pip install 'edgeprune[litert]'"
        return True, ""
    return False, f"unknown format {fmt!r}"


def bundle_meta(pruned: Network, metadata: dict | None = None) -> tuple[dict, dict]:
    """The provenance (every artifact) and the report (model.npz) recorded for ``pruned``."""
    provenance = {"edgeprune_version": __version__, "source_fingerprint": pruned.fingerprint(),
                  "sparsity": pruned.sparsity, **(metadata or {})}
    report = {"sparsity": pruned.sparsity, "links_total": pruned.n_links,
              "links_kept": pruned.n_active, **(metadata or {}).get("report", {})}
    return provenance, report


def write_artifacts(pruned: Network, compact_net: CompactNetwork, x_verify: np.ndarray,
                    outdir: Path, formats: list[str], options: ExportOptions | None = None,
                    metadata: dict | None = None,
                    x_calibration: np.ndarray | None = None,
                    float32_net: Network | None = None) -> dict[str, dict]:
    """Write ``model.<fmt>`` for each format into ``outdir``; verify each against PyTorch.

    Returns per format: path, bytes on disk, max |artifact - PyTorch| on ``x_verify``; a
    quantized artifact is checked against the dequantized model (``max_abs_diff_vs_pytorch``,
    same tolerance) and also reports ``max_abs_diff_vs_fp32`` against ``float32_net`` (default
    ``pruned``; after codebook fine-tuning, the float32 network the shared one came from)."""
    from edgeprune.torch_network import torch_forward

    options = options or ExportOptions()
    options.validate()
    x = np.ascontiguousarray(x_verify[:VERIFY_SAMPLES], dtype=np.float32)
    reference = torch_forward(pruned, x)
    quantized = options.quantize != "none"
    if quantized:
        from edgeprune.exporters.quantize import quantized_network

        q_reference = torch_forward(quantized_network(pruned, options.quantize), x)
        if float32_net is not None:
            reference = torch_forward(float32_net, x)
    meta, bundle_report = bundle_meta(pruned, metadata)
    written: dict[str, dict] = {}
    extra: dict[str, dict] = {}
    for fmt in formats:
        path = outdir / f"model.{fmt}"
        if fmt == "npz":
            from edgeprune import runtime
            from edgeprune.exporters.csr import save_bundle

            save_bundle(compact_net, path, provenance=meta, quantize=options.quantize,
                        report=bundle_report, compression=options.npz_compression)
            out = runtime.load(path)(x)
            diff = _max_diff(out, q_reference if quantized else reference)
            if quantized:
                extra["npz"] = {"quantize": options.quantize,
                                "max_abs_diff_vs_fp32": _max_diff(out, reference)}
            if not diff <= PARITY_TOLERANCE:
                path.unlink()
                raise ModelError(f"{path.name}: the NumPy runtime differs from PyTorch by "
                                 f"{diff:.3g} (> {PARITY_TOLERANCE}); this is a bug, please "
                                 "report it")
        elif options.quantize == "int8":  # onnx or tflite, checked against fp32 when written
            export, run, how = _int8_exporter(fmt)
            calibration = x_verify if x_calibration is None else x_calibration
            export(compact_net, path, calibration=calibration, verify_inputs=x,
                   verify_reference=reference, metadata=_flat(meta))
            diff = _max_diff(run(path, x), reference)
            extra[fmt] = {"quantize": how, "max_abs_diff_vs_fp32": diff}
        elif fmt == "onnx":
            from edgeprune.exporters.onnx import export_onnx, run_onnx

            export_onnx(compact_net, path, sparse_initializers=options.onnx_sparse_initializers,
                        metadata=_flat(meta), verify_inputs=x, verify_reference=reference)
            diff = _max_diff(run_onnx(path, x), reference)
        elif fmt == "tflite":
            from edgeprune.exporters.tflite import export_tflite, run_tflite

            export_tflite(compact_net, path, sparse=options.tflite_sparse, metadata=_flat(meta),
                          verify_inputs=x, verify_reference=reference)
            diff = _max_diff(run_tflite(path, x), reference)
        else:  # pragma: no cover - parse_formats rejects it
            raise ModelError(f"unknown format {fmt!r}")
        written[fmt] = {"path": str(path), "bytes": path.stat().st_size,
                        "max_abs_diff_vs_pytorch": diff, **extra.get(fmt, {})}
    return written


def _int8_exporter(fmt: str):
    """(export, run, description) of the int8 writer of ``fmt`` (onnx or tflite)."""
    if fmt == "onnx":
        from edgeprune.exporters.onnx import run_onnx
        from edgeprune.exporters.onnx_int8 import export_onnx_int8

        return export_onnx_int8, run_onnx, "int8 (onnxruntime static QDQ)"
    from edgeprune.exporters.tflite import run_tflite
    from edgeprune.exporters.tflite_int8 import export_tflite_int8

    return export_tflite_int8, run_tflite, "int8 (full-integer, LiteRT)"


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b))) if len(b) else 0.0


def _flat(meta: dict) -> dict:
    return {k: (v if isinstance(v, (str, int, float)) else json.dumps(v)) for k, v in meta.items()}


def resolve_pruned(source: str | os.PathLike) -> tuple[Path, dict]:
    """A ``compress`` output directory or a pruned checkpoint -> (checkpoint, its report)."""
    source = Path(source)
    if source.is_dir():
        ckpt = source / "pruned.pt"
        if not ckpt.is_file():
            raise ModelError(f"{source}: no pruned.pt in this directory; give a `compress` "
                             "output directory or a pruned checkpoint")
        report_path = source / "report.json"
        report = {}
        if report_path.is_file():
            try:
                report = json.loads(report_path.read_text())
            except (ValueError, UnicodeDecodeError) as exc:
                raise ModelError(f"{report_path}: is not valid JSON ({first_line(exc)}); "
                                 "re-run `edgeprune compress`") from None
            if not isinstance(report, dict):
                raise ModelError(f"{report_path}: must hold a JSON object; re-run "
                                 "`edgeprune compress`")
        return ckpt, resolve_recorded(report, source)
    if not source.is_file():
        raise ModelError(f"{source}: no such file or directory")
    return source, {}


def export_pruned(source: str | os.PathLike, outdir: str | os.PathLike, *,
                  formats: str | None = None, data_spec: str | None = None, seed: int = 0,
                  options: ExportOptions | None = None, max_metric_drop: float | None = None,
                  **model_opts) -> dict:
    """``edgeprune export``: write the artifacts of a pruned model into ``outdir``.

    Verification inputs come from ``data_spec``, else from the data recorded by ``compress``.
    ``model_opts`` are :func:`edgeprune.checkpoint.load_network`'s keyword options."""
    from edgeprune.checkpoint import load_network
    from edgeprune.data import load_dataset
    from edgeprune.prune import compact_network
    from edgeprune.quantization import check_max_metric_drop, quantization_stage

    options = options or ExportOptions()
    options.validate()
    check_max_metric_drop(max_metric_drop)
    if max_metric_drop is not None and options.quantize == "none":
        raise ModelError("--max-metric-drop guards quantization; add --quantize int8")
    chosen, notes = parse_formats(formats)
    check_output_dir(outdir, "export", inputs=[source])  # before any work
    ckpt, report = resolve_pruned(source)
    net = load_network(ckpt, **model_opts)
    spec = data_spec or (report.get("source") or {}).get("data") or net.meta.get("trained_on")
    if not spec:
        raise ModelError(f"{ckpt}: no record of the data it was pruned on; pass --data SPEC so "
                         "the artifacts can be checked on real inputs")
    ds = load_dataset(spec, seed=seed)
    if ds.dim != net.in_dim:
        raise ModelError(f"data {spec!r} has {ds.dim} features but the model reads "
                         f"{net.in_dim}; pass --data with {net.in_dim}-feature samples")
    quantization = None
    if options.quantize != "none":  # the accuracy guard, before any file is written
        quantization = quantization_stage(net, ds, seed, options.quantize, max_metric_drop)
        notes += float32_notes(options.quantize, chosen, options.tflite_sparse)
    with staged_output_dir(outdir, "export", inputs=[source]) as staging:
        written = write_artifacts(net, compact_network(net), ds.x_test, staging, chosen, options,
                                  x_calibration=ds.x_train)
    for art in written.values():  # where each file lives now that the directory is published
        art["path"] = str(Path(outdir) / Path(art["path"]).name)
    return {"written": written, "notes": notes, "data": spec, "quantization": quantization}
