"""ONNX exporter: parity with the NumPy and PyTorch references, structure, checker, failures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgeprune.exporters.contract import ExportError
from edgeprune.exporters.onnx import export_onnx, onnxruntime_available, run_onnx
from edgeprune.prune import cascade_dead_units, compact_network
from tests.export_cases import (
    ACTIVATION_SETS,
    batch,
    max_diff,
    pruned_network,
)
from tests.factories import make_network, single_layer_network

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", list(ACTIVATION_SETS))
def test_parity_structure_and_checker(tmp_path, name, sparse):
    pytest.importorskip("onnxruntime")
    from edgeprune.torch_network import torch_forward

    pruned, small = pruned_network(ACTIVATION_SETS[name])
    x = batch(64, small.input_dim)
    path = export_onnx(small, tmp_path / "m.onnx", sparse_initializers=sparse, verify_inputs=x,
                       verify_reference=torch_forward(pruned, x))
    for n in (1, 64):
        got = run_onnx(path, x[:n])
        assert got.shape == (n, small.output_dim)
        assert max_diff(got, small.forward(x[:n])) <= 1e-5
        assert max_diff(got, torch_forward(pruned, x[:n])) <= 1e-5
        dead = np.setdiff1d(np.arange(small.output_dim), small.output_index)
        assert np.array_equal(got[:, dead], np.broadcast_to(small.output_const[dead],
                                                            (n, dead.size)))  # bit-exact

    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == small.input_dim
    ops = [node.op_type for node in model.graph.node]
    assert ops[0] == "Gather" and ops.count("Gemm") == len(small.layers)
    assert ops[-3:] == ["Pad", "Gather", "Add"]  # constant outputs reassembled
    for act, op in (("relu", "Relu"), ("leaky_relu", "LeakyRelu"), ("sigmoid", "Sigmoid"),
                    ("tanh", "Tanh")):
        assert ops.count(op) == sum(layer.activation == act for layer in small.layers)
    alphas = [a.f for node in model.graph.node if node.op_type == "LeakyRelu"
              for a in node.attribute]
    assert all(abs(a - 0.2) < 1e-7 for a in alphas)
    initializers = {init.name for init in model.graph.initializer}
    constants = [node for node in model.graph.node if node.op_type == "Constant"]
    if sparse:
        assert len(constants) == len(small.layers) and "layer1.weight" not in initializers
        values = constants[0].attribute[0].sparse_tensor
        assert values.indices.data_type == onnx.TensorProto.INT64
        assert values.values.dims[0] == small.layers[0].nnz
    else:
        assert not constants and "layer1.weight" in initializers


def test_all_constant_network(tmp_path):
    pytest.importorskip("onnxruntime")
    from edgeprune.torch_network import torch_forward

    net = make_network(["relu", "tanh", "sigmoid"], [9, 5, 4, 7], seed=4)
    net.layers[1].mask[:] = False  # nothing reaches the last layers: every output is constant
    pruned = cascade_dead_units(net).network
    small = compact_network(pruned)
    assert small.layers == []
    x = batch(64, 9)
    path = export_onnx(small, tmp_path / "const.onnx", verify_inputs=x,
                       verify_reference=torch_forward(net, x))
    onnx.checker.check_model(onnx.load(path), full_check=True)
    for n in (1, 64):
        got = run_onnx(path, x[:n])
        assert got.shape == (n, 7)
        assert max_diff(got, np.broadcast_to(small.output_const, (n, 7))) == 0.0
        assert max_diff(got, torch_forward(net, x[:n])) <= 1e-5
    assert onnx.load(path).graph.input[0].name == "input"


def test_metadata_props(tmp_path):
    net = single_layer_network("relu")
    small = compact_network(net)
    small.meta["provenance"] = {"source_fingerprint": net.fingerprint()}
    path = export_onnx(small, tmp_path / "m.onnx", metadata={"dataset": "digits", "n": 3},
                       verify=onnxruntime_available())
    props = {p.key: p.value for p in onnx.load(path).metadata_props}
    from edgeprune import __version__

    assert props["edgeprune_version"] == __version__
    assert float(props["eta"]) == pytest.approx(0.0)
    assert props["source_fingerprint"] == net.fingerprint()
    assert props["dataset"] == "digits" and props["n"] == "3"
    ops = [node.op_type for node in onnx.load(path).graph.node]
    assert ops == ["Gemm", "Relu"]  # every input used and every output live: no gather/pad


def test_bad_opset_and_shapes(tmp_path):
    _, small = pruned_network(ACTIVATION_SETS["tanh"])
    with pytest.raises(ExportError, match="opset 13"):
        export_onnx(small, tmp_path / "m.onnx", opset=13, verify=False)
    with pytest.raises(ExportError, match="verify_inputs must have shape"):
        export_onnx(small, tmp_path / "m.onnx", verify_inputs=np.zeros((2, 3), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_modules_stay_import_light():
    code = ("import sys, edgeprune.exporters, edgeprune.exporters.onnx, "
            "edgeprune.exporters.tflite; "
            "bad = [m for m in ('onnx', 'onnxruntime', 'tflite', 'flatbuffers', 'torch', "
            "'ai_edge_litert') if m in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)
