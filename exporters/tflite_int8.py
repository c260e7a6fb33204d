"""TFLite full-integer int8: int8 weights per output channel, int32 biases, int8 activations whose
ranges are calibrated on real inputs, built with the same schema bindings as
:mod:`edgeprune.exporters.tflite` (no TensorFlow) and run in LiteRT before it is written.

Graph::

    input float [B, input_dim] -> GATHER(input_index)      (float, only when inputs are unused)
      -> QUANTIZE -> int8
      -> FULLY_CONNECTED(int8 W per channel, int32 b, fused RELU or NONE) -> int8
         [-> LOGISTIC | TANH | LEAKY_RELU, int8]
      -> DEQUANTIZE -> float -> PAD / GATHER / ADD(output_const)   (float, as in the fp32 graph)

Quantization (TFLite's int8 scheme): weights symmetric per output row (``scale = max|w| / 127``,
zero point 0, quantized dimension 0); biases int32 with ``scale = input_scale * weight_scale``;
activations asymmetric per tensor from the calibrated min/max (the range always holds 0);
LOGISTIC outputs use the fixed ``1/256, -128`` and TANH ``1/128, 0`` that LiteRT requires.
The written model must match the float32 model within the int8 tolerances of
:func:`edgeprune.exporters.onnx_int8.int8_parity` (max and mean |diff|, fractions of the range).

Sparse int8: the weights are written dense. Measured with ai-edge-litert 2.3.0: the same model
with its int8 weights as CSR sparse tensors (the layout float32 ``--tflite-sparse`` uses) loads,
but FULLY_CONNECTED fails at invoke with "Unsupported sparse fully-connected weight format" for
FC versions 4, 8 and 12 (LiteRT's int8 sparse path takes 1x16 block-sparse weights only, which
unstructured link pruning does not produce); ``tests/test_export_tflite_int8.py`` keeps that
measurement.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgeprune.compacted import CompactNetwork
from edgeprune.exporters.contract import (
    ExportError,
    check_network,
    describe,
    export_metadata,
    write_atomic,
)

from .onnx_int8 import CALIBRATION_SAMPLES, int8_parity
from .tflite import (
    TFLITE_ACTIVATIONS,
    _Graph,
    _import_schema,
    _options,
    invoke,
    load_interpreter,
    place_outputs,
)

__all__ = ["build_tflite_int8_model", "export_tflite_int8"]

INT8_OP_VERSION = 2  # QUANTIZE, DEQUANTIZE, LOGISTIC, TANH, LEAKY_RELU on int8
INT8_FC_VERSION = 4  # FULLY_CONNECTED with int8 inputs and weights


def _activation_params(low: float, high: float) -> tuple[float, int]:
    """Asymmetric int8 ``(scale, zero_point)`` for values in ``[low, high]`` (0 included)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = (high - low) / 255.0 if high > low else 1.0 / 255.0
    zero_point = int(np.clip(np.round(-128 - low / scale), -128, 127))
    return scale, zero_point


def _calibrate(net: CompactNetwork, x: np.ndarray) -> list[dict]:
    """Per layer the float ranges of its input, its FULLY_CONNECTED output and its output."""
    h = np.asarray(x, np.float64)[:, np.asarray(net.input_index, dtype=np.int64)]
    out = []
    for layer in net.layers:
        z = h @ np.asarray(layer.weight, np.float64).T + layer.bias
        act = layer.activation
        if act == "relu":
            z = np.maximum(z, 0)
        y = {"relu": z, "identity": z, "sigmoid": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z),
             "leaky_relu": np.where(z > 0, z, layer.negative_slope * z)}[act]
        out.append({"input": (h.min(), h.max()), "fc": (z.min(), z.max()),
                    "output": (y.min(), y.max())})
        h = y
    return out


def build_tflite_int8_model(net: CompactNetwork, calibration: np.ndarray, *,
                            metadata: dict | None = None) -> bytes:
    """The serialized full-integer ``.tflite`` flatbuffer for ``net`` (not verified)."""
    check_network(net, "TFLite", TFLITE_ACTIVATIONS)
    if not net.layers:
        raise ExportError("TFLite int8: every output is constant, there is no weight to "
                          "quantize; export without --quantize")
    flatbuffers, tfl = _import_schema()
    ops, act_type, int8 = tfl.BuiltinOperator, tfl.ActivationFunctionType, tfl.TensorType.INT8
    ranges = _calibrate(net, np.asarray(calibration[:CALIBRATION_SAMPLES], np.float32))
    g = _Graph(tfl)
    gather = _options(tfl, "GatherOptions", Axis=1)
    n_in = int(net.input_dim)
    h = g.activation("input", n_in)
    in_idx = np.asarray(net.input_index, dtype=np.int64).reshape(-1)
    if not np.array_equal(in_idx, np.arange(n_in)):
        used = g.activation("used_inputs", in_idx.size)
        g.op(ops.GATHER, [h, g.const("input_index", in_idx.astype(np.int32))], [used], gather)
        h = used
    s_h, zp_h = _activation_params(*ranges[0]["input"])
    q = g.activation("input_int8", in_idx.size, int8, quant=([s_h], [zp_h], 0))
    g.op(ops.QUANTIZE, [h], [q], version=INT8_OP_VERSION)
    h = q
    for k, (layer, rng) in enumerate(zip(net.layers, ranges, strict=True), start=1):
        weight = np.asarray(layer.weight, np.float64)
        rows = int(weight.shape[0])
        amax = np.abs(weight).max(axis=1) if weight.size else np.zeros(rows)
        w_scale = np.where(amax > 0, amax / 127.0, 1.0)
        w_q = np.clip(np.rint(weight / w_scale[:, None]), -127, 127).astype(np.int8)
        w = g.const(f"layer{k}.weight", w_q, quant=(w_scale, np.zeros(rows, np.int64), 0))
        b_scale = s_h * w_scale
        b_q = np.rint(np.asarray(layer.bias, np.float64) / b_scale)
        if np.abs(b_q).max(initial=0) >= 2**31:
            raise ExportError(f"TFLite int8: layer {k}'s bias does not fit int32 at its scale; "
                              "export without --quantize")
        b = g.const(f"layer{k}.bias", b_q.astype(np.int32),
                    quant=(b_scale, np.zeros(rows, np.int64), 0))
        fused_name, after = TFLITE_ACTIVATIONS[layer.activation]
        s_z, zp_z = _activation_params(*rng["fc"])
        z = g.activation(f"layer{k}.fc", rows, int8, quant=([s_z], [zp_z], 0))
        g.op(ops.FULLY_CONNECTED, [h, w, b], [z],
             _options(tfl, "FullyConnectedOptions",
                      FusedActivationFunction=getattr(act_type, fused_name)),
             version=INT8_FC_VERSION)
        h, s_h, zp_h = z, s_z, zp_z
        if after is not None:
            s_h, zp_h = {"LOGISTIC": (1 / 256, -128), "TANH": (1 / 128, 0)}.get(
                after, _activation_params(*rng["output"]))
            h = g.activation(f"layer{k}.{layer.activation}", rows, int8,
                             quant=([s_h], [zp_h], 0))
            options = (_options(tfl, "LeakyReluOptions", Alpha=float(layer.negative_slope))
                       if after == "LEAKY_RELU" else None)
            g.op(getattr(ops, after), [z], [h], options, version=INT8_OP_VERSION)
    rows = int(net.layers[-1].weight.shape[0])
    deq = g.activation("last_float", rows)
    g.op(ops.DEQUANTIZE, [h], [deq], version=INT8_OP_VERSION)
    h = deq
    h = place_outputs(g, net, h)
    g.tensors[h]["name"] = "output"
    meta = export_metadata(net, metadata)
    description = describe(net, meta) + ", full-integer int8"
    return g.finish(flatbuffers, [0], [h], description,
                    json.dumps(meta, sort_keys=True).encode("utf-8"))


def export_tflite_int8(net: CompactNetwork, path: str | os.PathLike[str], *,
                       calibration: np.ndarray, verify_inputs: np.ndarray,
                       verify_reference: np.ndarray, metadata: dict | None = None) -> Path:
    """Write the full-integer int8 model at ``path`` after running it in LiteRT (XNNPACK off)
    and checking it against ``verify_reference`` within the int8 tolerances (int8_parity)."""
    blob = build_tflite_int8_model(net, calibration, metadata=metadata)

    def check(tmp: Path) -> None:
        int8_parity(invoke(load_interpreter(tmp), verify_inputs), verify_reference,
                    f"LiteRT run of {Path(path).name}")

    return write_atomic(path, blob, check)
