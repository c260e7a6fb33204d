"""TFLite full-integer int8 built with the schema bindings and run in LiteRT: parity with float32,
int8 tensors in the file, the write-time tolerance, and what LiteRT does with sparse int8."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.exporters import onnx_int8
from edgeprune.exporters.contract import ExportError
from edgeprune.exporters.tflite import interpreter_available, tflite_available
from tests.test_csr_bundle import make_net

pytestmark = pytest.mark.skipif(not (tflite_available() and interpreter_available()),
                                reason="needs tflite, flatbuffers and ai-edge-litert")

X = np.random.default_rng(3).random((300, 10)).astype(np.float32)


def gentle_net():
    """make_net with weights scaled into the range trained networks have (|w| < 1)."""
    net = make_net()
    for layer in net.layers:
        layer.weight = layer.weight * np.float32(0.3)
    return net


def test_int8_tflite_matches_float32_within_tolerance(tmp_path):
    from edgeprune.exporters.tflite import load_interpreter, run_tflite
    from edgeprune.exporters.tflite_int8 import export_tflite_int8

    net = gentle_net()
    ref = net.forward(X)
    path = export_tflite_int8(net, tmp_path / "m.tflite", calibration=X[:200],
                              verify_inputs=X[200:], verify_reference=ref[200:])
    got = run_tflite(path, X[200:])
    assert np.abs(got - ref[200:]).max() <= onnx_int8.INT8_TOLERANCE * (ref.max() - ref.min())
    details = {t["name"]: t for t in load_interpreter(path).get_tensor_details()}
    for k, layer in enumerate(net.layers, start=1):
        w = details[f"layer{k}.weight"]
        assert w["dtype"] == np.int8 and len(w["quantization_parameters"]["scales"]) == \
            layer.weight.shape[0]  # per output channel
        assert details[f"layer{k}.fc"]["dtype"] == np.int8
        assert details[f"layer{k}.bias"]["dtype"] == np.int32


def test_int8_tflite_beyond_tolerance_is_not_written(tmp_path, monkeypatch):
    from edgeprune.exporters.tflite_int8 import export_tflite_int8

    monkeypatch.setattr(onnx_int8, "INT8_TOLERANCE", 1e-9)
    net = gentle_net()
    with pytest.raises(ExportError, match="int8 output differs from float32"):
        export_tflite_int8(net, tmp_path / "m.tflite", calibration=X, verify_inputs=X[:16],
                           verify_reference=net.forward(X[:16]))
    assert not (tmp_path / "m.tflite").exists()


def test_litert_does_not_run_unstructured_sparse_int8(monkeypatch):
    """The measurement behind writing int8 TFLite weights dense; if a LiteRT release starts to
    run CSR int8 FULLY_CONNECTED weights, this fails and sparse int8 can be enabled."""
    import edgeprune.exporters.tflite_int8 as t8
    from edgeprune.exporters.tflite import _Graph, invoke, load_interpreter

    const = _Graph.const

    def sparse_int8(self, name, array, **extra):
        if not (name.endswith(".weight") and array.dtype == np.int8):
            return const(self, name, array, **extra)
        rows, cols = np.nonzero(array)
        indptr = np.zeros(array.shape[0] + 1, np.int32)
        np.cumsum(np.bincount(rows, minlength=array.shape[0]), out=indptr[1:])
        self.buffers.append(np.ascontiguousarray(array[rows, cols]).tobytes())
        return self._tensor(name, array.shape, self.tfl.TensorType.INT8, len(self.buffers) - 1,
                            csr=(int(array.shape[0]), indptr, cols.astype(np.int32)), **extra)

    monkeypatch.setattr(_Graph, "const", sparse_int8)
    blob = t8.build_tflite_int8_model(gentle_net(), X)
    with pytest.raises(ExportError, match="Unsupported sparse fully-connected weight format"):
        invoke(load_interpreter(blob), X[:4])
