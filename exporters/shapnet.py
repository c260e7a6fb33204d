"""Write a compiled ShapNet: the ``.npz`` bundle (version 4), ONNX and TFLite with two outputs.

The bundle holds the chain as version-1 CSR layers (float32 weights, int32 indices, indptr,
bias), ``meta.version = 3``, ``meta.kind = "shapnet"``, ``meta.shapnet`` (the layout) and per
transform ``shapnet.tT.active`` (int64) and ``shapnet.tT.reference`` (float32); the arrays are
run through the runtime's validator (which checks the chain against the layout) before
anything is written. ONNX and TFLite get the chain from the ordinary exporters and two named
outputs, ``prediction [batch, P]`` and ``explanation [batch, features, O]`` (Slice/Reshape,
SLICE/RESHAPE); each file is run in its own runtime and compared with the reference for both
outputs (max |diff| <= 1e-5) before it replaces the destination.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgeprune.exporters.contract import (
    ExportError,
    check_parity,
    first_line,
    write_atomic,
)
from edgeprune.exporters.csr import FORMAT, _jsonable, check_before_writing, serialize
from edgeprune.fileio import atomic_path
from edgeprune.runtime.bundle import SHAPNET_VERSION
from edgeprune.shapnet.compile import CompiledShapnet

__all__ = ["export_shapnet_onnx", "export_shapnet_tflite", "run_shapnet_onnx",
           "run_shapnet_tflite", "save_shapnet_bundle", "shapnet_bundle_arrays"]


def shapnet_bundle_arrays(compiled: CompiledShapnet, *, provenance: dict | None = None,
                          report: dict | None = None) -> dict[str, np.ndarray]:
    """The validated arrays (``meta`` included) of the version-4 bundle of ``compiled``."""
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for k, layer in enumerate(compiled.layers, start=1):
        w = layer.weight
        arrays[f"layer{k}.data"] = np.ascontiguousarray(w.data, dtype=np.float32)
        arrays[f"layer{k}.indices"] = np.ascontiguousarray(w.indices, dtype=np.int32)
        arrays[f"layer{k}.indptr"] = np.ascontiguousarray(w.indptr, dtype=np.int32)
        arrays[f"layer{k}.bias"] = np.ascontiguousarray(layer.bias, dtype=np.float32)
        layers.append({"activation": layer.activation,
                       "negative_slope": float(layer.negative_slope),
                       "shape": [int(w.shape[0]), int(w.shape[1])], "nnz": int(w.nnz)})
    d, out = compiled.inputs, compiled.output_dim
    arrays["input_index"] = np.arange(d, dtype=np.int64)
    arrays["output_index"] = np.arange(out, dtype=np.int64)
    arrays["output_const"] = np.zeros(out, dtype=np.float32)
    arrays.update({name: np.ascontiguousarray(a) for name, a in compiled.arrays.items()})
    meta = {"format": FORMAT, "version": SHAPNET_VERSION, "kind": "shapnet", "input_dim": d,
            "output_dim": out, "latent_layer": None, "latent_dim": None, "layers": layers,
            "shapnet": compiled.layout,
            "provenance": _jsonable(provenance if provenance is not None
                                    else compiled.meta.get("provenance", {})),
            "report": _jsonable(report if report is not None else compiled.meta.get("report",
                                                                                      {}))}
    arrays["meta"] = np.array(json.dumps(meta, allow_nan=False))
    check_before_writing(arrays, ExportError, "write this ShapNet as a bundle")
    return arrays


def save_shapnet_bundle(compiled: CompiledShapnet, path: str | os.PathLike[str], *,
                        provenance: dict | None = None, report: dict | None = None) -> Path:
    """Write the bundle of ``compiled`` to ``path`` atomically (deflated when smaller)."""
    arrays = shapnet_bundle_arrays(compiled, provenance=provenance, report=report)
    payload = serialize(arrays)
    target = Path(path)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        handle.write(payload)
    return target


def _reference(compiled: CompiledShapnet, inputs: np.ndarray | None,
               reference: tuple[np.ndarray, np.ndarray] | None):
    if inputs is None:
        rng = np.random.default_rng(0)
        inputs = rng.normal(size=(8, compiled.inputs)).astype(np.float32)
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != compiled.inputs:
        raise ExportError(f"verify_inputs must have shape (N, {compiled.inputs}), got "
                          f"{x.shape}")
    pred, expl = compiled.forward(x) if reference is None else reference
    return x, np.asarray(pred, np.float32), np.asarray(expl, np.float32)


def _check_both(got: tuple[np.ndarray, np.ndarray], pred: np.ndarray, expl: np.ndarray,
                what: str) -> None:
    check_parity(got[0], pred, f"{what} (prediction)")
    check_parity(got[1], expl, f"{what} (explanation)")


# -- ONNX -------------------------------------------------------------------------------------
def build_shapnet_onnx(compiled: CompiledShapnet, metadata: dict | None = None):
    """The ONNX model: the chain, then ``prediction`` and ``explanation`` outputs."""
    from onnx import TensorProto, helper, numpy_helper

    from edgeprune.exporters.onnx import build_onnx_model

    # Sparse constants: the chain is block-diagonal (mostly zeros); ONNX Runtime densifies
    # them at load, so this saves disk, not memory.
    model = build_onnx_model(compiled.to_compact_network(), metadata=metadata,
                             sparse_initializers=True)
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["chain_output" if o == "output" else o for o in node.output]
    p, d, o = compiled.prediction_dim, compiled.inputs, compiled.explanation_channels

    def const(name: str, values: list[int]) -> str:
        graph.initializer.append(numpy_helper.from_array(np.array(values, np.int64), name))
        return name

    axes = const("split_axes", [1])
    graph.node.extend([
        helper.make_node("Slice", ["chain_output", const("prediction_start", [0]),
                                   const("prediction_end", [p]), axes], ["prediction"]),
        helper.make_node("Slice", ["chain_output", const("explanation_start", [p]),
                                   const("explanation_end", [p + d * o]), axes],
                         ["explanation_flat"]),
        helper.make_node("Reshape", ["explanation_flat", const("explanation_shape",
                                                               [-1, d, o])], ["explanation"]),
    ])
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["batch", p]),
        helper.make_tensor_value_info("explanation", TensorProto.FLOAT, ["batch", d, o]),
    ])
    helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                   "shapnet": json.dumps(compiled.layout)})
    return model


def export_shapnet_onnx(compiled: CompiledShapnet, path: str | os.PathLike[str], *,
                        metadata: dict | None = None, verify_inputs: np.ndarray | None = None,
                        verify_reference: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Write the ONNX file (checked with the full checker, run in ONNX Runtime, both outputs
    within 1e-5 of ``verify_reference`` or of the compiled chain)."""
    import onnx

    x, pred, expl = _reference(compiled, verify_inputs, verify_reference)
    model = build_shapnet_onnx(compiled, metadata)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - checker and shape-inference errors differ
        raise ExportError(f"ONNX checker rejected the ShapNet model: {first_line(exc)}") from None

    def check(tmp: Path) -> None:
        _check_both(run_shapnet_onnx(tmp, x), pred, expl, f"ONNX Runtime run of {Path(path).name}")

    return write_atomic(path, model.SerializeToString(), check)


def run_shapnet_onnx(path: str | os.PathLike[str] | bytes, x: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``(prediction, explanation)`` of a ShapNet ONNX file in ONNX Runtime."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    model = path if isinstance(path, bytes) else os.fspath(path)
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        pred, expl = session.run(["prediction", "explanation"],
                                 {"input": np.ascontiguousarray(x, dtype=np.float32)})
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ExportError(f"ONNX Runtime could not run the ShapNet: {first_line(exc)}") from None
    return pred, expl


# -- TFLite -----------------------------------------------------------------------------------
def export_shapnet_tflite(compiled: CompiledShapnet, path: str | os.PathLike[str], *,
                          metadata: dict | None = None, verify_inputs: np.ndarray | None = None,
                          verify_reference: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Write the ``.tflite`` file (run in LiteRT, XNNPACK off, both outputs within 1e-5)."""
    from edgeprune.exporters.tflite import build_tflite_model

    x, pred, expl = _reference(compiled, verify_inputs, verify_reference)
    p, d, o = compiled.prediction_dim, compiled.inputs, compiled.explanation_channels
    # CSR weight tensors: LiteRT's FULLY_CONNECTED runs them without densifying.
    blob = build_tflite_model(compiled.to_compact_network(), sparse=True,
                              metadata={**(metadata or {}), "shapnet": compiled.layout},
                              split_outputs=(p, d, o))

    def check(tmp: Path) -> None:
        _check_both(run_shapnet_tflite(tmp, x), pred, expl, f"LiteRT run of {Path(path).name}")

    return write_atomic(path, blob, check)


def run_shapnet_tflite(path: str | os.PathLike[str] | bytes, x: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(prediction, explanation)`` of a ShapNet ``.tflite`` file in LiteRT."""
    from edgeprune.exporters.tflite import load_interpreter

    interpreter = load_interpreter(path)
    x = np.ascontiguousarray(x, dtype=np.float32)
    try:
        inp = interpreter.get_input_details()[0]
        interpreter.resize_tensor_input(inp["index"], list(x.shape), strict=True)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        outs = {t["name"]: interpreter.get_tensor(t["index"]).copy()
                for t in interpreter.get_output_details()}
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"LiteRT could not run the ShapNet: {first_line(exc)}") from None
    return outs["prediction"], outs["explanation"]
