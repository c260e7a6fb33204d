"""``edgeprune info`` for ONNX and TFLite files: format, layers, shapes, non-zeros, bytes.

Both are read with their schema libraries only (no session or interpreter is created), so
``info`` works on any artifact, whatever runtime is installed.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from edgeprune.network import ModelError


def file_sizes(path: Path) -> dict:
    raw = path.read_bytes()
    return {"bytes_on_disk": len(raw), "gzip_bytes": len(gzip.compress(raw, 9))}


def describe_onnx(path: Path) -> dict:
    """Gemm layers of an edgeprune (or any Gemm/MatMul chain) ONNX file."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ModelError("reading .onnx needs onnx: pip install 'edgeprune[export]'") from None
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise ModelError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    graph = model.graph
    dense = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    sparse = {}
    for st in graph.sparse_initializer:
        sparse[st.values.name] = (list(st.dims), int(np.prod(st.values.dims)))
    for node in graph.node:  # edgeprune stores sparse weights in Constant(sparse_value=...)
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "sparse_value":
                    st = attr.sparse_tensor
                    sparse[node.output[0]] = (list(st.dims), int(np.prod(st.values.dims)))
                elif attr.name == "value":
                    dense[node.output[0]] = numpy_helper.to_array(attr.t)
    layers, k = [], 0
    for node in graph.node:
        if node.op_type not in ("Gemm", "MatMul") or len(node.input) < 2:
            continue
        k += 1
        name = node.input[1]
        if name in dense:
            w = dense[name]
            row = {"shape": list(w.shape), "nnz": int(np.count_nonzero(w)), "storage": "dense"}
        elif name in sparse:
            row = {"shape": sparse[name][0], "nnz": sparse[name][1], "storage": "sparse"}
        else:
            row = {"shape": [], "nnz": 0, "storage": "computed"}
        layers.append({"layer": k, "op": node.op_type, "activation": "", **row})
    ops = [n.op_type for n in graph.node]
    for row, nxt in zip(layers, _next_ops(ops, ("Gemm", "MatMul"))):
        row["activation"] = nxt
    return {"path": str(path), "format": "onnx", "kind": "graph",
            "opset": max((o.version for o in model.opset_import), default=None),
            "metadata": {p.key: p.value for p in model.metadata_props},
            "layers": layers, "nnz": sum(r["nnz"] for r in layers),
            "operators": sorted(set(ops)), **file_sizes(path)}


def _next_ops(ops: list[str], layer_ops: tuple[str, ...]) -> list[str]:
    """The activation op following each layer op (or 'identity')."""
    out = []
    for i, op in enumerate(ops):
        if op in layer_ops:
            nxt = ops[i + 1] if i + 1 < len(ops) else ""
            out.append(nxt.lower() if nxt in ("Relu", "Sigmoid", "Tanh", "LeakyRelu")
                       else "identity")
    return out


def describe_tflite(path: Path) -> dict:
    """FULLY_CONNECTED layers of a TFLite flatbuffer, read with the official schema bindings."""
    try:
        import tflite
    except ImportError:
        raise ModelError("reading .tflite needs tflite: pip install 'edgeprune[export]'") from None
    buf = path.read_bytes()
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        sub = model.Subgraphs(0)
        names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        layers, ops = [], []
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            opname = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            ops.append(opname)
            if opname != "FULLY_CONNECTED":
                continue
            t = sub.Tensors(op.Inputs(1))
            data = model.Buffers(t.Buffer()).DataAsNumpy()
            values = np.frombuffer(data.tobytes(), np.float32) if not isinstance(data, int) \
                else np.zeros(0, np.float32)
            fused = op.BuiltinOptions()
            opts = tflite.FullyConnectedOptions()
            opts.Init(fused.Bytes, fused.Pos)
            layers.append({"layer": len(layers) + 1, "shape": t.ShapeAsNumpy().tolist(),
                           "nnz": int(np.count_nonzero(values)),
                           "storage": "sparse" if t.Sparsity() is not None else "dense",
                           "activation": "relu" if opts.FusedActivationFunction() == 1
                           else "identity"})
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - flatbuffers raises on malformed input
        raise ModelError(f"{path}: not a readable TFLite file ({type(exc).__name__})") from None
    for row, nxt in zip(layers, _after_fc(ops)):
        if nxt:
            row["activation"] = nxt
    return {"path": str(path), "format": "tflite", "kind": "graph", "layers": layers,
            "nnz": sum(r["nnz"] for r in layers), "operators": sorted(set(ops)),
            **file_sizes(path)}


def _after_fc(ops: list[str]) -> list[str]:
    acts = {"LOGISTIC": "sigmoid", "TANH": "tanh", "LEAKY_RELU": "leaky_relu"}
    return [acts.get(ops[i + 1], "") if i + 1 < len(ops) else ""
            for i, op in enumerate(ops) if op == "FULLY_CONNECTED"]
