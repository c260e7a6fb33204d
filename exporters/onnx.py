"""Export a :class:`~edgeprune.compacted.CompactNetwork` to ONNX (opset 17 or newer).

The graph computes exactly :meth:`CompactNetwork.forward`, full width in and out, for any batch
size (the first dimension is the symbolic ``batch``)::

    input [batch, input_dim]
      -> Gather(input_index, axis=1)              (only when some inputs are unused)
      -> Gemm(W_k, b_k, transB=1) -> activation    (per compacted layer; dead units are gone)
      -> Pad(one zero column) -> Gather(perm, axis=1) -> Add(output_const)
                                                   (only when some outputs are constant)
      -> output [batch, output_dim]

Output reassembly: ``perm[j]`` is the column of output ``j`` among the live outputs, or the
padded zero column for a constant output; adding ``output_const`` (zero at live positions)
then puts the constants in place. Every step is exact in float32 (``h + 0`` and ``0 + c``), and
no NaN can leak from a live output into a constant one (nothing is multiplied by zero).
Activations: ``Relu``, ``LeakyRelu(alpha)``, ``Sigmoid``, ``Tanh``; identity adds no node.

A network whose every output is constant (``layers == []``) exports as
``Expand(output_const, [Shape(input)[0], output_dim])``: the input stays a graph input and only
its batch size is read.

``sparse_initializers=True`` stores each weight matrix as a ``SparseTensorProto`` (float32
values plus INT64 linear indices, which the checker requires) in the ``sparse_value`` of a
``Constant`` node. That is 12 bytes per non-zero instead of 4 bytes per entry, so it pays off
above ~67 % sparsity; it saves disk only: ONNX Runtime densifies sparse constants when the
session is created and runs the ordinary dense Gemm (verified: ONNX Runtime runs these files
directly, the write-time check loads the very file that is written). A ``Constant`` node is used
rather than ``GraphProto.sparse_initializer``: ONNX Runtime accepts both, but onnx's strict shape
inference (``check_model(full_check=True)``) types a graph-level sparse initializer as
``sparse_tensor(float)`` and rejects it as a Gemm input, whereas the Constant node's output is
an ordinary dense tensor, so every file passes the full checker.

``metadata_props`` carry ``edgeprune_version``, ``eta``, ``source_fingerprint`` and the other
keys of :func:`~edgeprune.exporters.contract.export_metadata`, plus the caller's ``metadata``.

onnx and onnxruntime are imported lazily; this module never imports torch.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from edgeprune.compacted import CompactNetwork
from edgeprune.exporters.contract import (
    ExportError,
    check_network,
    check_parity,
    describe,
    export_metadata,
    first_line,
    verification_data,
    write_atomic,
)

__all__ = [
    "ONNX_ACTIVATIONS",
    "ExportError",
    "build_onnx_model",
    "export_onnx",
    "onnx_available",
    "onnxruntime_available",
    "run_onnx",
]

#: IR activation -> ONNX operator (None: no node).
ONNX_ACTIVATIONS: dict[str, str | None] = {
    "identity": None,
    "relu": "Relu",
    "leaky_relu": "LeakyRelu",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
}
MIN_OPSET = 17


def onnx_available() -> bool:
    """True when the ``onnx`` package can be imported (needed to build and check models)."""
    return importlib.util.find_spec("onnx") is not None


def onnxruntime_available() -> bool:
    """True when ``onnxruntime`` can be imported (needed for the write-time check)."""
    return importlib.util.find_spec("onnxruntime") is not None


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError(
            "ONNX export needs the onnx package: pip install 'edgeprune[export]'"
        ) from None
    return onnx


def build_onnx_model(net: CompactNetwork, *, sparse_initializers: bool = False,
                     metadata: dict | None = None, opset: int = MIN_OPSET):
    """The ``onnx.ModelProto`` for ``net`` (not checked, not written)."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    check_network(net, "ONNX", ONNX_ACTIVATIONS)
    if not MIN_OPSET <= int(opset) <= onnx.defs.onnx_opset_version():
        raise ExportError(
            f"ONNX opset {opset} is not supported: use {MIN_OPSET}.."
            f"{onnx.defs.onnx_opset_version()}"
        )
    nodes, inits = [], []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    n_in, n_out = int(net.input_dim), int(net.output_dim)
    out_const = np.asarray(net.output_const, dtype=np.float32).reshape(-1)
    if not net.layers:
        # Every output is constant: broadcast the constants over the batch of the input.
        nodes += [
            helper.make_node("Shape", ["input"], ["batch_size"], start=0, end=1),
            helper.make_node("Concat", ["batch_size", const("output_width",
                                                            np.array([n_out], np.int64))],
                             ["output_shape"], axis=0),
            helper.make_node("Expand", [const("output_const", out_const.reshape(1, -1)),
                                        "output_shape"], ["output"]),
        ]
    else:
        h = "input"
        in_idx = np.asarray(net.input_index, dtype=np.int64).reshape(-1)
        if not np.array_equal(in_idx, np.arange(n_in)):
            nodes.append(helper.make_node("Gather", [h, const("input_index", in_idx)],
                                          ["used_inputs"], axis=1))
            h = "used_inputs"
        for k, layer in enumerate(net.layers, start=1):
            w_name = f"layer{k}.weight"
            weight = np.asarray(layer.weight, dtype=np.float32)
            if sparse_initializers:
                flat = np.flatnonzero(weight)  # row-major, ascending: what the checker wants
                values = numpy_helper.from_array(weight.reshape(-1)[flat], w_name)
                indices = numpy_helper.from_array(flat.astype(np.int64), f"{w_name}.indices")
                sparse = helper.make_sparse_tensor(values, indices, list(weight.shape))
                nodes.append(helper.make_node("Constant", [], [w_name], sparse_value=sparse))
            else:
                const(w_name, weight)
            b_name = const(f"layer{k}.bias", np.asarray(layer.bias, np.float32).reshape(-1))
            nodes.append(helper.make_node("Gemm", [h, w_name, b_name], [f"layer{k}.linear"],
                                          transB=1))
            h = f"layer{k}.linear"
            op = ONNX_ACTIVATIONS[layer.activation]
            if op is not None:
                attrs = {"alpha": float(layer.negative_slope)} if op == "LeakyRelu" else {}
                nodes.append(helper.make_node(op, [h], [f"layer{k}.{layer.activation}"],
                                              **attrs))
                h = f"layer{k}.{layer.activation}"
        out_idx = np.asarray(net.output_index, dtype=np.int64).reshape(-1)
        if not np.array_equal(out_idx, np.arange(n_out)):
            perm = np.full(n_out, out_idx.size, dtype=np.int64)  # the padded zero column
            perm[out_idx] = np.arange(out_idx.size)
            placed_const = out_const.copy()
            placed_const[out_idx] = 0.0
            nodes += [
                helper.make_node("Pad", [h, const("output_pad",
                                                  np.array([0, 0, 0, 1], np.int64))],
                                 ["live_padded"], mode="constant"),
                helper.make_node("Gather", ["live_padded", const("output_perm", perm)],
                                 ["output_placed"], axis=1),
            ]
            h = "output_placed"
            if np.any(placed_const != 0):
                nodes.append(helper.make_node(
                    "Add", [h, const("output_const", placed_const)], ["output_full"]))
                h = "output_full"
        nodes[-1].output[0] = "output"  # the last node writes the graph output

    meta = export_metadata(net, metadata)
    graph = helper.make_graph(
        nodes, "edgeprune",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n_out])],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", int(opset))]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="edgeprune",
                              producer_version=meta["edgeprune_version"],
                              doc_string=describe(net, meta))
    model.ir_version = helper.find_min_ir_version_for(opsets)
    helper.set_model_props(model, meta)
    return model


def export_onnx(net: CompactNetwork, path: str | os.PathLike[str], *,
                sparse_initializers: bool = False, metadata: dict | None = None,
                verify_inputs: np.ndarray | None = None,
                verify_reference: np.ndarray | None = None,
                opset: int = MIN_OPSET, verify: bool = True) -> Path:
    """Write ``net`` as an ONNX model at ``path`` (atomically) and return the path.

    The model passes ``onnx.checker.check_model(full_check=True)``. With ``verify`` (the
    default) the written file is run in ONNX Runtime on ``verify_inputs`` (a fixed synthetic
    batch when omitted) and must match ``verify_reference`` (``net.forward(verify_inputs)`` when
    omitted) within 1e-5, otherwise :class:`ExportError` is raised and nothing is left at
    ``path``. ``verify=False`` skips the run (for hosts without onnxruntime).
    """
    check_network(net, "ONNX", ONNX_ACTIVATIONS)
    onnx = _import_onnx()
    data = verification_data(net, verify_inputs, verify_reference, verify)
    if data is not None and not onnxruntime_available():
        raise ExportError("verifying the ONNX export needs onnxruntime: "
                          "pip install 'edgeprune[export]' (or pass verify=False)")
    model = build_onnx_model(net, sparse_initializers=sparse_initializers, metadata=metadata,
                             opset=opset)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - checker and shape-inference errors differ
        raise ExportError(f"ONNX checker rejected the exported model: {first_line(exc)}") from None
    blob = model.SerializeToString()

    def check(tmp: Path) -> None:
        x, ref = data
        check_parity(run_onnx(tmp, x), ref, f"ONNX Runtime run of {Path(path).name}")

    return write_atomic(path, blob, check if data is not None else None)


def run_onnx(path: str | os.PathLike[str] | bytes, x: np.ndarray,
             num_threads: int = 1) -> np.ndarray:
    """Run an exported model (file path or serialized bytes) in ONNX Runtime on a batch."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("running ONNX models needs onnxruntime: "
                          "pip install 'edgeprune[export]'") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(num_threads)
    options.log_severity_level = 3
    model = path if isinstance(path, bytes) else os.fspath(path)
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ExportError(f"ONNX Runtime could not run the model: {first_line(exc)}") from None
