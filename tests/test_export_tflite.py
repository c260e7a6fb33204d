"""TFLite exporter: parity in LiteRT (dense and CSR-sparse weights), structure, failures."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from edgeprune.exporters.contract import ExportError
from edgeprune.exporters.tflite import (
    build_tflite_model,
    export_tflite,
    interpreter_available,
    load_interpreter,
    run_tflite,
    sparse_weight_tensors,
)
from edgeprune.prune import cascade_dead_units, compact_network
from tests.export_cases import (
    ACTIVATION_SETS,
    batch,
    max_diff,
    pruned_network,
)
from tests.factories import make_network, single_layer_network

tflite = pytest.importorskip("tflite")
pytest.importorskip("flatbuffers")
torch = pytest.importorskip("torch")


def model_ops(data: bytes) -> list[tuple[int, object]]:
    """(builtin code, parsed operator) for every operator of the first subgraph."""
    model = tflite.Model.GetRootAs(data, 0)
    graph = model.Subgraphs(0)
    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        out.append((model.OperatorCodes(op.OpcodeIndex()).BuiltinCode(), op))
    return out


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
@pytest.mark.parametrize("name", list(ACTIVATION_SETS))
def test_parity_and_structure(tmp_path, name, sparse):
    pytest.importorskip("ai_edge_litert")
    from edgeprune.torch_network import torch_forward

    pruned, small = pruned_network(ACTIVATION_SETS[name])
    x = batch(64, small.input_dim)
    path = export_tflite(small, tmp_path / "m.tflite", sparse=sparse, verify_inputs=x,
                         verify_reference=torch_forward(pruned, x))
    interpreter = load_interpreter(path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert list(inp["shape"]) == [1, small.input_dim]
    assert list(inp["shape_signature"]) == [-1, small.input_dim]
    assert list(out["shape_signature"]) == [-1, small.output_dim]
    for n in (1, 64):
        interpreter.resize_tensor_input(inp["index"], [n, small.input_dim], strict=True)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x[:n])
        interpreter.invoke()
        got = interpreter.get_tensor(out["index"])
        assert got.shape == (n, small.output_dim)
        assert max_diff(got, small.forward(x[:n])) <= 1e-5
        assert max_diff(got, torch_forward(pruned, x[:n])) <= 1e-5
        dead = np.setdiff1d(np.arange(small.output_dim), small.output_index)
        assert np.array_equal(got[:, dead], np.broadcast_to(small.output_const[dead],
                                                            (n, dead.size)))  # bit-exact
        assert max_diff(run_tflite(path, x[:n]), got) == 0.0

    kept = sparse_weight_tensors(interpreter)
    if sparse:  # loaded as CSR: the runtime holds only the non-zeros
        assert set(kept) == {f"layer{k}.weight" for k in range(1, len(small.layers) + 1)}
        details = {t["name"]: t for t in interpreter.get_tensor_details()}
        for k, layer in enumerate(small.layers, start=1):
            dims = kept[f"layer{k}.weight"]["dim_metadata"]
            assert dims[0]["dense_size"] == layer.weight.shape[0]
            assert list(dims[1]["array_segments"])[-1] == layer.nnz
            assert interpreter.get_tensor(details[f"layer{k}.weight"]["index"]).size == layer.nnz
    else:
        assert kept == {}

    ops = model_ops(path.read_bytes())
    codes = [code for code, _ in ops]
    op = tflite.BuiltinOperator
    assert codes[0] == op.GATHER and codes[-3:] == [op.PAD, op.GATHER, op.ADD]
    assert codes.count(op.FULLY_CONNECTED) == len(small.layers)
    acts = [layer.activation for layer in small.layers]
    assert codes.count(op.LOGISTIC) == acts.count("sigmoid")
    assert codes.count(op.TANH) == acts.count("tanh")
    assert codes.count(op.LEAKY_RELU) == acts.count("leaky_relu")
    fused = []
    for code, operator in ops:
        if code == op.FULLY_CONNECTED:
            options = tflite.FullyConnectedOptions()
            table = operator.BuiltinOptions()
            options.Init(table.Bytes, table.Pos)
            fused.append(options.FusedActivationFunction())
        if code == op.LEAKY_RELU:
            options = tflite.LeakyReluOptions()
            table = operator.BuiltinOptions()
            options.Init(table.Bytes, table.Pos)
            assert options.Alpha() == pytest.approx(0.2)
    relu = tflite.ActivationFunctionType.RELU
    assert fused == [relu if a == "relu" else tflite.ActivationFunctionType.NONE for a in acts]


def test_all_constant_network(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from edgeprune.torch_network import torch_forward

    net = make_network(["relu", "tanh", "sigmoid"], [9, 5, 4, 7], seed=4)
    net.layers[1].mask[:] = False  # nothing reaches the last layers: every output is constant
    small = compact_network(cascade_dead_units(net).network)
    assert small.layers == []
    x = batch(64, 9)
    path = export_tflite(small, tmp_path / "const.tflite", verify_inputs=x,
                         verify_reference=torch_forward(net, x))
    for n in (1, 64):
        got = run_tflite(path, x[:n])
        assert got.shape == (n, 7)
        assert max_diff(got, np.broadcast_to(small.output_const, (n, 7))) == 0.0
        assert max_diff(got, torch_forward(net, x[:n])) <= 1e-5
    interpreter = load_interpreter(path)
    assert list(interpreter.get_input_details()[0]["shape_signature"]) == [-1, 9]


def test_metadata_description_and_signature(tmp_path):
    net = single_layer_network("tanh")
    small = compact_network(net)
    small.meta["provenance"] = {"source_fingerprint": net.fingerprint()}
    path = export_tflite(small, tmp_path / "m.tflite", metadata={"dataset": "digits"},
                         verify=interpreter_available())
    model = tflite.Model.GetRootAs(path.read_bytes(), 0)
    assert model.MetadataLength() == 1 and model.Metadata(0).Name() == b"edgeprune"
    raw = model.Buffers(model.Metadata(0).Buffer()).DataAsNumpy().tobytes()
    meta = json.loads(raw.decode("utf-8"))
    from edgeprune import __version__

    assert meta["edgeprune_version"] == __version__ and meta["dataset"] == "digits"
    assert meta["source_fingerprint"] == net.fingerprint() and float(meta["eta"]) == 0.0
    assert model.Description().startswith(b"edgeprune ")
    assert [code for code, _ in model_ops(path.read_bytes())] == [
        tflite.BuiltinOperator.FULLY_CONNECTED, tflite.BuiltinOperator.TANH]
    if interpreter_available():
        signatures = load_interpreter(path).get_signature_list()
        assert signatures == {"serving_default": {"inputs": ["input"], "outputs": ["output"]}}


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_xnnpack_on(tmp_path, sparse):
    """With XNNPACK on, sparse FULLY_CONNECTED ops stay on the built-in kernel: same result."""
    pytest.importorskip("ai_edge_litert")
    _, small = pruned_network(ACTIVATION_SETS["mixed"])
    x = batch(64, small.input_dim)
    path = export_tflite(small, tmp_path / "m.tflite", sparse=sparse, verify_inputs=x)
    from edgeprune.exporters.tflite import invoke

    got = invoke(load_interpreter(path, num_threads=2, xnnpack=True), x)
    assert max_diff(got, small.forward(x)) <= 1e-5


def test_interpreter_fallback_and_missing_runtime(tmp_path, monkeypatch):
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    blob = build_tflite_model(compact_network(
        single_layer_network("relu", n=2, bias=1.0)))
    fake = types.ModuleType("tflite_runtime.interpreter")
    fake.Interpreter = litert.Interpreter  # no OpResolverType: the plain constructor is used
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.ModuleType("tflite_runtime"))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", fake)
    got = run_tflite(blob, np.array([[1.0, -3.0]], np.float32))
    assert got.tolist() == [[2.0, 0.0]]
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    assert not interpreter_available()
    with pytest.raises(ExportError, match="ai-edge-litert"):
        load_interpreter(blob)
    with pytest.raises(ExportError, match="ai-edge-litert"):
        export_tflite(compact_network(single_layer_network("identity", n=2, bias=1.0)),
                      tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []
