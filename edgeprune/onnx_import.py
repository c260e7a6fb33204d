"""ONNX models as input: MLP graphs read with the ``onnx`` package into the Network IR.

Users of other frameworks get in this way (Keras through tf2onnx, scikit-learn's MLPs through
skl2onnx, PyTorch through ``torch.onnx.export``). An ONNX file is data (a protobuf), not code,
so reading it needs no consent flag; its declared size is bounded like any model file.

Accepted: one graph input of shape (N, F), a single chain of ``Gemm`` (any transB, alpha,
beta) or ``MatMul`` (+ ``Add`` of a constant bias), ``Relu``, ``LeakyRelu``, ``Sigmoid``,
``Tanh``, ``Identity``, ``BatchNormalization`` (inference form), ``Dropout``, ``Flatten`` and
``Reshape`` to (N, F) — weights as initializers or ``Constant`` nodes. The chain is folded by
:mod:`edgeprune.layer_chain` (BatchNorms into the adjacent Linear) and the result is checked
against ONNX Runtime on random inputs when it is installed. Anything else is refused with the
first unsupported node, its op type and what to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeprune.errors import first_line
from edgeprune.inspector import onnx_constants
from edgeprune.layer_chain import Op, batchnorm_op, build_network, fold_chain
from edgeprune.network import ModelError, Network

_ACTIVATIONS = {"Relu": "relu", "LeakyRelu": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}
_PASS_THROUGH = ("Identity", "Dropout", "Flatten", "Reshape")
SUPPORTED = ("Gemm", "MatMul", "Add", "BatchNormalization", *_ACTIVATIONS, *_PASS_THROUGH)
#: The converted network must match ONNX Runtime to this, relative to the output scale.
PARITY_TOLERANCE = 1e-5


def network_from_onnx(path: str | Path, *, activations: str | None = None,
                      latent: int | None = None) -> Network:
    """Read an ONNX MLP graph; see the module docstring for what is accepted."""
    path = Path(path)
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ModelError("reading .onnx models needs onnx: pip install 'edgeprune[export]'") \
            from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise ModelError(f"{path}: is not a readable ONNX model ({first_line(exc)[:120]}); "
                         "check the file") from None
    graph = model.graph
    consts, _sparse = onnx_constants(graph)  # initializers and Constant(value=...) nodes
    for node in graph.node:  # and Identity copies of them (torch's exporter)
        if node.op_type == "Identity" and node.input and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
    inputs = [i for i in graph.input if i.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ModelError(f"{path}: has {len(inputs)} inputs and {len(graph.output)} outputs; "
                         "edgeprune reads graphs with one (N, features) input and one output")
    ops = _chain_ops(graph, inputs[0].name, consts, path)
    chain = fold_chain(ops, path)
    if activations is not None:
        from edgeprune.network import parse_activations

        for layer, act in zip(chain.layers, parse_activations(activations, len(chain.layers))):
            layer.activation = act
    net = build_network(chain, latent, path)
    _check_against_onnxruntime(path, net, inputs[0].name)
    return net


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            from onnx import helper

            return helper.get_attribute_value(a)
    return default


def _chain_ops(graph, current: str, consts: dict, path: Path) -> list[Op]:
    """Walk the nodes that consume ``current`` one after another, as a single chain."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        if node.op_type == "Constant" or node.output[0] in consts:
            continue
        for name in node.input:
            if name and name not in consts:
                consumers.setdefault(name, []).append(node)
    ops: list[Op] = []
    out_name = graph.output[0].name
    while current != out_name:
        nodes = consumers.get(current, [])
        if len(nodes) != 1:
            raise ModelError(f"{path}: tensor {current!r} feeds {len(nodes)} nodes; edgeprune "
                             "reads a single chain of layers (no branches)")
        node = nodes[0]
        where = f"node {node.name or node.output[0]!r} ({node.op_type})"
        if node.op_type not in SUPPORTED:
            raise ModelError(f"{path}: unsupported {where}; edgeprune reads MLP graphs of "
                             f"{', '.join(SUPPORTED)} — simplify the graph or export the model "
                             "without it")
        op = _node_op(node, where, consts, path)
        if op is not None:
            if op.kind == "bias":  # MatMul + Add: the Add completes the previous Linear
                if not ops or ops[-1].kind != "linear" or ops[-1].bias.any():
                    raise ModelError(f"{path}: {where} adds a constant that is not the bias of "
                                     "a MatMul; edgeprune reads MatMul + Add as one Linear")
                if op.bias.shape != ops[-1].bias.shape:
                    raise ModelError(f"{path}: {where} adds a {op.bias.shape} bias to "
                                     f"{ops[-1].bias.shape[0]} outputs")
                ops[-1].bias = op.bias
            else:
                ops.append(op)
        current = node.output[0]
    return ops


def _const(consts: dict, name: str, where: str, path: Path) -> np.ndarray:
    if name not in consts:
        raise ModelError(f"{path}: {where} takes {name!r} from the graph, not a constant; "
                         "edgeprune needs constant weights")
    return np.asarray(consts[name], dtype=np.float64)


def _node_op(node, where: str, consts: dict, path: Path) -> Op | None:
    t = node.op_type
    name = node.name or node.output[0]
    if t == "Gemm":
        if _attr(node, "transA", 0):
            raise ModelError(f"{path}: {where} transposes its input (transA=1); unsupported")
        w = _const(consts, node.input[1], where, path)
        w = w if _attr(node, "transB", 0) else w.T  # to (out, in)
        w = w * float(_attr(node, "alpha", 1.0))
        b = (_const(consts, node.input[2], where, path) * float(_attr(node, "beta", 1.0))
             if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0]))
        return Op("linear", name, t, w, np.broadcast_to(b.reshape(-1), (w.shape[0],)).copy())
    if t == "MatMul":
        w = _const(consts, node.input[1], where, path)
        if w.ndim != 2:
            raise ModelError(f"{path}: {where} multiplies by a {w.ndim}-D tensor; edgeprune "
                             "reads 2-D weights")
        return Op("linear", name, t, w.T.copy(), np.zeros(w.shape[1]))
    if t == "Add":
        other = [i for i in node.input if i in consts]
        if len(other) != 1:
            raise ModelError(f"{path}: {where} adds two graph tensors; edgeprune reads an Add "
                             "only as the bias of a MatMul")
        return Op("bias", name, t, bias=_const(consts, other[0], where, path).reshape(-1))
    if t == "BatchNormalization":
        gamma, beta, mean, var = (_const(consts, i, where, path) for i in node.input[1:5])
        return batchnorm_op(name, t, mean, var, gamma, beta, _attr(node, "epsilon", 1e-5))
    if t in _ACTIVATIONS:
        return Op("act", name, t, activation=_ACTIVATIONS[t],
                  negative_slope=float(_attr(node, "alpha", 0.01)))
    if t == "Reshape":
        shape = _const(consts, node.input[1], where, path).astype(np.int64).reshape(-1)
        if len(shape) != 2:
            raise ModelError(f"{path}: {where} reshapes to {tuple(shape)}; edgeprune reads "
                             "(N, features) tensors only")
    return None  # Identity, Dropout (inference), Flatten / Reshape of (N, F)


def _check_against_onnxruntime(path: Path, net: Network, input_name: str) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        net.meta.setdefault("import", {})["onnxruntime_check"] = "skipped (not installed)"
        return
    x = np.random.default_rng(0).random((16, net.in_dim), dtype=np.float32)
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ref = np.asarray(session.run(None, {input_name: x})[0], dtype=np.float64)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: ONNX Runtime cannot run it ({first_line(exc)[:120]}); "
                         "check the file") from None
    ref = ref.reshape(len(x), -1)
    got = net.forward(x)
    diff = float(np.max(np.abs(ref - got))) if ref.shape == got.shape else float("inf")
    if not diff <= PARITY_TOLERANCE * max(1.0, float(np.max(np.abs(ref)))):
        raise ModelError(f"{path}: the graph read as a chain differs from ONNX Runtime by "
                         f"{diff:.3g}; it is not a plain chain of supported layers")
    net.meta.setdefault("import", {})["max_abs_diff_vs_original"] = diff
