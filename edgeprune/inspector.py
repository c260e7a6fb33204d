"""One inspector for every artifact: ``edgeprune info`` and the layer figures of ``bench``.

Every format is described with the same per-layer schema::

    {"layer": k (1-based), "shape": [rows (outputs), cols (inputs)], "nnz": non-zero weights,
     "activation": IR name (identity, relu, leaky_relu, sigmoid, tanh), ...format extras}

``.npz`` bundles are described by the runtime (:func:`edgeprune.runtime.info.describe`,
numpy/scipy only, so a board without torch runs ``info`` too); ``.onnx`` and ``.tflite`` files
are read with their schema libraries only (no session or interpreter is created), and their
activations are named through the exporters' own op maps
(:data:`~edgeprune.exporters.onnx.ONNX_ACTIVATIONS`,
:data:`~edgeprune.exporters.tflite.TFLITE_ACTIVATIONS`); ``.pt`` checkpoints are loaded as
networks (torch).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.exporters.onnx import ONNX_ACTIVATIONS
from edgeprune.exporters.tflite import TFLITE_ACTIVATIONS
from edgeprune.network import ModelError
from edgeprune.runtime.bench.costs import LayerShape, file_figures

__all__ = [
    "describe",
    "describe_checkpoint",
    "describe_onnx",
    "describe_tflite",
    "format_info",
    "layer_source",
]

#: ONNX operator after a Gemm/MatMul -> IR activation.
_ONNX_OP_ACTIVATION = {op: name for name, op in ONNX_ACTIVATIONS.items() if op is not None}
#: TFLite fused activation of FULLY_CONNECTED -> IR activation (when no op follows).
_TFLITE_FUSED = {fused: name for name, (fused, after) in TFLITE_ACTIVATIONS.items()
                 if after is None}
#: TFLite builtin op after FULLY_CONNECTED -> IR activation.
_TFLITE_AFTER = {after: name for name, (_, after) in TFLITE_ACTIVATIONS.items() if after}


def onnx_constants(graph: Any) -> tuple[dict[str, np.ndarray], dict[str, tuple[list, int]]]:
    """Constant weights of a graph: dense arrays, and sparse ``(dims, non-zeros)``; edgeprune
    stores sparse weights in ``Constant(sparse_value=...)`` nodes, other tools in
    ``graph.sparse_initializer``."""
    from onnx import numpy_helper

    dense = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    sparse: dict[str, tuple[list, int]] = {}

    def add_sparse(name: str, st: Any) -> None:
        sparse[name] = (list(st.dims), int(np.count_nonzero(numpy_helper.to_array(st.values))))

    for st in graph.sparse_initializer:
        add_sparse(st.values.name, st)
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "sparse_value":
                    add_sparse(node.output[0], attr.sparse_tensor)
                elif attr.name == "value":
                    dense[node.output[0]] = numpy_helper.to_array(attr.t)
    return dense, sparse


def describe_onnx(path: Path) -> dict:
    """Gemm/MatMul layers of an edgeprune (or any Gemm/MatMul chain) ONNX file."""
    try:
        import onnx
    except ImportError:
        raise ModelError("reading .onnx needs onnx: pip install 'edgeprune[export]'") from None
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise ModelError(f"{path}: not a readable ONNX file ({type(exc).__name__})") from None
    graph = model.graph
    if not graph.node:  # an empty file parses as an empty model
        raise ModelError(f"{path}: holds no ONNX graph (empty or not a model); check the file")
    dense, sparse = onnx_constants(graph)
    consumers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    layers = []
    for node in graph.node:
        if node.op_type not in ("Gemm", "MatMul") or len(node.input) < 2:
            continue
        # Gemm(transB=1) holds W as (outputs, inputs); MatMul and Gemm(transB=0) as (in, out)
        trans_b = node.op_type == "Gemm" and any(a.name == "transB" and a.i
                                                 for a in node.attribute)
        name = node.input[1]
        if name in dense and dense[name].ndim == 2:
            w = dense[name]
            dims, nnz, storage = list(w.shape), int(np.count_nonzero(w)), "dense"
        elif name in sparse and len(sparse[name][0]) == 2:
            dims, nnz, storage = sparse[name][0], sparse[name][1], "sparse"
        else:
            dims, nnz, storage = [], 0, "computed"
        shape = dims if trans_b or not dims else dims[::-1]
        after = consumers.get(node.output[0], []) if node.output else []
        activation = next((_ONNX_OP_ACTIVATION[op] for op in after if op in _ONNX_OP_ACTIVATION),
                          "identity")
        layers.append({"layer": len(layers) + 1, "shape": shape, "nnz": nnz,
                       "activation": activation, "op": node.op_type, "storage": storage})
    return {"path": str(path), "format": "onnx", "kind": "graph",
            "opset": max((o.version for o in model.opset_import), default=None),
            "metadata": {p.key: p.value for p in model.metadata_props},
            "layers": layers, "nnz": sum(r["nnz"] for r in layers),
            "operators": sorted({n.op_type for n in graph.node}), **file_figures(path)}


def describe_tflite(path: Path) -> dict:
    """FULLY_CONNECTED layers of a TFLite flatbuffer, read with the official schema bindings."""
    try:
        import tflite
    except ImportError:
        raise ModelError("reading .tflite needs tflite: pip install 'edgeprune[export]'") from None
    buf = Path(path).read_bytes()
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        sub = model.Subgraphs(0)
        names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        fused_names = {v: k for k, v in vars(tflite.ActivationFunctionType).items()
                       if not k.startswith("_")}
        ops, fc = [], []  # (name, first input tensor) of every op; FULLY_CONNECTED rows
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            opname = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            ops.append((opname, op.Inputs(0) if op.InputsLength() else -1))
            if opname != "FULLY_CONNECTED":
                continue
            t = sub.Tensors(op.Inputs(1))
            data = model.Buffers(t.Buffer()).DataAsNumpy()
            values = np.frombuffer(data.tobytes(), np.float32) if not isinstance(data, int) \
                else np.zeros(0, np.float32)
            fused = op.BuiltinOptions()
            opts = tflite.FullyConnectedOptions()
            opts.Init(fused.Bytes, fused.Pos)
            fused_name = fused_names.get(opts.FusedActivationFunction(), "?")
            fc.append((op.Outputs(0), {
                "layer": len(fc) + 1, "shape": t.ShapeAsNumpy().tolist(),
                "nnz": int(np.count_nonzero(values)),
                "activation": _TFLITE_FUSED.get(fused_name, fused_name.lower()),
                "storage": "sparse" if t.Sparsity() is not None else "dense"}))
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - flatbuffers raises on malformed input
        raise ModelError(f"{path}: not a readable TFLite file ({type(exc).__name__})") from None
    for output, row in fc:
        if row["activation"] == "identity":
            after = next((name for name, first in ops if first == output), None)
            row["activation"] = _TFLITE_AFTER.get(after, "identity")
    layers = [row for _, row in fc]
    return {"path": str(path), "format": "tflite", "kind": "graph", "layers": layers,
            "nnz": sum(r["nnz"] for r in layers),
            "operators": sorted({name for name, _ in ops}), **file_figures(path)}


def describe_checkpoint(path: Path, **model_opts) -> dict:
    """Layers of a ``.pt`` checkpoint (masks applied), loaded as a network
    (``model_opts``: :func:`edgeprune.checkpoint.load_network`'s keyword options)."""
    from edgeprune.checkpoint import load_network
    from edgeprune.layer_chain import import_notes

    net = load_network(path, **model_opts)
    layers = [{"layer": k, "shape": [layer.out_dim, layer.in_dim], "activation": layer.activation,
               "nnz": int(np.count_nonzero(layer.masked_weight))}
              for k, layer in enumerate(net.layers, start=1)]
    nnz = sum(row["nnz"] for row in layers)
    return {"path": str(path), "format": "pytorch-checkpoint", "kind": net.kind,
            "network": net.describe(), "layers": layers, "nnz": nnz,
            "parameters_dense": net.n_links, "sparsity": 1 - nnz / net.n_links,
            "dense_fp32_bytes": 4 * sum(layer.n_links + layer.out_dim for layer in net.layers),
            "import_notes": import_notes(net), **file_figures(path)}


def describe(path: str | os.PathLike, **model_opts) -> dict:
    """Format, layers, shapes, non-zeros and byte counts of a bundle, graph file, checkpoint or
    ``compress`` output directory (its ``model.npz``)."""
    path = Path(path)
    if path.is_dir():
        if (path / "model.npz").is_file():
            path = path / "model.npz"
        else:
            raise ModelError(f"{path}: directory has no model.npz; give an artifact file")
    if not path.is_file():
        raise ModelError(f"{path}: no such file, or not a regular file; give an artifact file")
    if path.suffix == ".npz":
        from edgeprune.runtime.info import describe as describe_bundle

        return describe_bundle(path)
    if path.suffix == ".onnx":
        return describe_onnx(path)
    if path.suffix == ".tflite":
        return describe_tflite(path)
    return describe_checkpoint(path, **model_opts)


#: What reading each foreign format's layers needs (module, install hint).
_READERS = {"onnx": ("onnx", "the onnx package (pip install onnx)"),
            "tflite": ("tflite", "the tflite package (pip install tflite)"),
            "pt": ("torch", "torch (pip install 'edgeprune[torch]')")}


def layer_source(path: Path, fmt: str) -> tuple[list[LayerShape] | None, str]:
    """Layer figures of any artifact for ``bench``'s static table, or ``(None, note)``."""
    if fmt == "npz":
        from edgeprune.runtime.bench.harness import npz_layers

        return npz_layers(path, fmt)
    if fmt not in _READERS:
        return None, f"layer figures are not read from .{fmt} files (file sizes only)"
    module, what = _READERS[fmt]
    if importlib.util.find_spec(module) is None:
        return None, f"layer figures of .{fmt} need {what}"
    desc = describe(path)
    shapes = [LayerShape(row["shape"][0], row["shape"][1], row["nnz"], row["activation"])
              for row in desc["layers"] if row.get("storage") != "computed"]
    if not shapes:
        raise EdgepruneError(f"{path}: no layer with a constant 2-D weight found; give a model "
                             "edgeprune exported (or any chain of Gemm/MatMul layers)")
    return shapes, ""


def format_info(desc: dict) -> str:
    """Human-readable ``edgeprune info`` output."""
    lines = [f"{desc['path']}: {desc['format']} ({desc.get('kind', '?')})"]
    lines += [f"  model: {note}" for note in desc.get("import_notes", [])]
    for row in desc.get("layers", []):
        extra = f" kernel={row['kernel']}" if "kernel" in row else ""
        extra += f" storage={row['storage']}" if "storage" in row else ""
        extra += "".join(f" {key}={row[key]}" for key in ("weights", "indices") if key in row)
        shape = " x ".join(str(d) for d in row["shape"])
        lines.append(f"  layer {row['layer']}: {shape} "
                     f"{row['activation']:<10} nnz={row['nnz']}{extra}")
    for key in ("nnz", "sparsity", "input_dim", "used_inputs", "output_dim", "constant_outputs",
                "dense_fp32_bytes", "csr_bytes", "stored_array_bytes", "in_memory_bytes",
                "bytes_on_disk", "gzip_bytes"):
        if key in desc:
            val = desc[key]
            if isinstance(val, list):
                val = len(val)
            if isinstance(val, float):
                val = f"{val:.4f}"
            lines.append(f"  {key.replace('_', ' ')}: {val}")
    if "zip_members" in desc:
        lines.append(f"  bundle version {desc['version']}, {desc['container']} ("
                     + ", ".join(f"{m['name']} {m['compression']} {m['bytes']} B"
                                 for m in desc["zip_members"]) + ")")
    shapnet = desc.get("shapnet")
    if shapnet:
        lines.append(f"  ShapNet ({shapnet['variant']}): prediction {shapnet['prediction_dim']}, "
                     f"explanation {shapnet['explanation'][0]} x {shapnet['explanation'][1]}")
        for n, t in enumerate(shapnet["transforms"], start=1):
            lines.append(f"    transform {n} (layers {t['layers'][0]}-{t['layers'][1]}): "
                         f"{t['modules']} modules of k={t['k']}, channels {t['in_channels']} -> "
                         f"{t['out_channels']}, inner {t['inner_widths']}")
    return "\n".join(lines)
