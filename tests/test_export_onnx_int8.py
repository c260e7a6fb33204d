"""ONNX int8 through onnxruntime's static QDQ tooling: parity with float32, the int8 content of
the file, and the write-time tolerance."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime.quantization")
onnx = pytest.importorskip("onnx")

from edgeprune.exporters import onnx_int8  # noqa: E402
from edgeprune.exporters.contract import ExportError  # noqa: E402
from edgeprune.exporters.onnx import run_onnx  # noqa: E402
from tests.test_csr_bundle import make_net  # noqa: E402

X = np.random.default_rng(3).random((300, 10)).astype(np.float32)


def reference(net, x):
    return net.forward(x)


def test_int8_onnx_matches_float32_within_tolerance(tmp_path):
    net = make_net()
    ref = reference(net, X)
    path = onnx_int8.export_onnx_int8(net, tmp_path / "m.onnx", calibration=X[:200],
                                      verify_inputs=X[200:], verify_reference=ref[200:])
    got = run_onnx(path, X[200:])
    span = ref.max() - ref.min()
    assert np.abs(got - ref[200:]).max() <= onnx_int8.INT8_TOLERANCE * span
    model = onnx.load(path)
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Gemm"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8
                    and len(t.dims) == 2]
    assert len(int8_weights) == len(net.layers)  # every Gemm weight stored as int8


def test_int8_onnx_beyond_tolerance_is_not_written(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_int8, "INT8_TOLERANCE", 1e-9)
    net = make_net()
    with pytest.raises(ExportError, match="int8 output differs from float32"):
        onnx_int8.export_onnx_int8(net, tmp_path / "m.onnx", calibration=X,
                                   verify_inputs=X[:16], verify_reference=net.forward(X[:16]))
    assert not (tmp_path / "m.onnx").exists()
