"""Compile a ShapNet into the project's sparse IR: a chain of CSR layers plus its layout.

Each Shapley transform becomes four kinds of consecutive layers (the layout and why it is
exact are in :mod:`edgeprune.runtime.shapnet_layout`): the masked copies of every module's
inputs (a 0/1 gather with the reference as bias where a feature is masked), the inner MLP
applied block-diagonally to all ``2**k`` copies, the differences ``f(S + a) - f(S)`` (entries
-1/+1), and the fixed Shapley mixing weights, which for the last transform also fold in the
output transform: its rows are the prediction, then the per-feature explanation.

The chain is an ordinary feed-forward network (``act(W h + b)`` per layer), so the bundle
writer, the ONNX and TFLite exporters and the runtime run it unchanged; the layout
(``meta.shapnet`` and the modules' active features and references) is what the runtime needs
to split the outputs and to skip modules (dynamic pruning). The inner MLPs are stored once per
copy (``2**k`` times); deflate shrinks the repeats on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from edgeprune.compacted import CompactLayer, CompactNetwork
from edgeprune.runtime.shapnet_layout import (
    copies_layer,
    difference_layer,
    difference_pairs,
    shapley_weights,
)

from .spec import InnerLayer, ModuleSpec, ShapnetSpec, SpecError, TransformSpec

__all__ = ["ChainLayer", "CompiledShapnet", "MAX_DENSE_ELEMENTS", "compile_shapnet",
           "compile_spec", "spec_from_model"]

#: The dense exporters (ONNX, TFLite) materialize every layer; above this many weights in all
#: (256 MiB of float32) they refuse with a one-line error. The ``.npz`` bundle stays CSR.
MAX_DENSE_ELEMENTS = 2**26


@dataclass
class ChainLayer:
    """One compiled layer: ``act(weight @ h + bias)`` with a float32 CSR weight."""

    weight: sp.csr_matrix
    bias: np.ndarray
    activation: str = "identity"
    negative_slope: float = 0.01

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weight.shape)  # type: ignore[return-value]


@dataclass
class CompiledShapnet:
    """The compiled chain, its ``meta.shapnet`` section and the layout arrays."""

    layers: list[ChainLayer]
    layout: dict[str, Any]
    arrays: dict[str, np.ndarray]
    meta: dict = field(default_factory=dict)

    @property
    def features(self) -> int:
        return int(self.layout["features"])

    @property
    def prediction_dim(self) -> int:
        return int(self.layout["prediction_dim"])

    @property
    def explanation_channels(self) -> int:
        return int(self.layout["explanation_channels"])

    @property
    def inputs(self) -> int:
        return int(self.layout["inputs"])

    @property
    def output_dim(self) -> int:
        return self.prediction_dim + self.inputs * self.explanation_channels

    @property
    def nnz(self) -> int:
        return sum(int(layer.weight.nnz) for layer in self.layers)

    def split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(B, output_dim)`` -> prediction ``(B, P)``, explanation ``(B, inputs, O)``."""
        p = self.prediction_dim
        return y[:, :p], y[:, p:].reshape(len(y), self.inputs, self.explanation_channels)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The chain in float32 with scipy (a check of the compiled arrays, not the runtime)."""
        from edgeprune.runtime.activations import apply_activation

        h = np.asarray(x, dtype=np.float32).reshape(-1, self.inputs).T
        for layer in self.layers:
            h = np.asarray(layer.weight @ h, dtype=np.float32) + layer.bias[:, None]
            h = apply_activation(h, layer.activation, layer.negative_slope)
        return self.split(np.ascontiguousarray(h.T))

    def to_compact_network(self) -> CompactNetwork:
        """The chain with dense weights, for the ONNX and TFLite exporters."""
        total = sum(r * c for r, c in (layer.shape for layer in self.layers))
        if total > MAX_DENSE_ELEMENTS:
            raise SpecError(f"the compiled ShapNet has {total:,} dense weights, over the "
                            f"{MAX_DENSE_ELEMENTS:,} the ONNX/TFLite exporters materialize "
                            "(edgeprune.shapnet.compile.MAX_DENSE_ELEMENTS); export the .npz "
                            "bundle only (--format npz)")
        layers = [CompactLayer(weight=layer.weight.toarray().astype(np.float32),
                               bias=layer.bias.astype(np.float32), activation=layer.activation,
                               negative_slope=float(layer.negative_slope),
                               unit_index=np.arange(layer.shape[0], dtype=np.int64))
                  for layer in self.layers]
        d, out = self.inputs, self.output_dim
        return CompactNetwork(layers=layers, input_dim=d, output_dim=out,
                              input_index=np.arange(d, dtype=np.int64),
                              output_index=np.arange(out, dtype=np.int64),
                              output_const=np.zeros(out, dtype=np.float32), kind="shapnet",
                              meta=dict(self.meta))


def _csr(matrix: sp.spmatrix) -> sp.csr_matrix:
    out = sp.csr_matrix(matrix, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def _mixing_entries(tr: TransformSpec, active: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """Per difference column ``(j, a, p, c)``: the feature it belongs to, its channel and its
    Shapley weight, flattened in the difference layer's row order."""
    n, k = active.shape
    c = tr.out_channels
    _, _, sizes = difference_pairs(k)
    weight = shapley_weights(k)[sizes]  # (k, M/2)
    half = sizes.shape[1]
    feature = np.broadcast_to(active[:, :, None, None], (n, k, half, c)).reshape(-1)
    channel = np.broadcast_to(np.arange(c), (n, k, half, c)).reshape(-1)
    w = np.broadcast_to(weight[None, :, :, None], (n, k, half, c)).reshape(-1)
    return feature, channel, w


def _transform_layers(tr: TransformSpec, available: int) -> tuple[list[ChainLayer], np.ndarray,
                                                                  np.ndarray]:
    """Copies, inner and difference layers of ``tr``, and its active / reference arrays."""
    active = np.array([np.asarray(m.active, dtype=np.int64) for m in tr.modules])
    reference = np.array([np.asarray(m.reference, dtype=np.float32) for m in tr.modules])
    n, k = active.shape
    m = 2**k
    indptr, indices, data, bias = copies_layer(active, reference, available, tr.in_channels)
    copies = sp.csr_matrix((data, indices, indptr),
                           shape=(len(bias), available * tr.in_channels))
    layers = [ChainLayer(_csr(copies), bias)]
    for depth, first in enumerate(tr.modules[0].layers):
        blocks = [np.asarray(mod.layers[depth].weight, np.float32) for mod in tr.modules]
        weight = sp.block_diag([w for w in blocks for _ in range(m)], format="csr")
        bias = np.concatenate([np.tile(np.asarray(mod.layers[depth].bias, np.float32), m)
                               for mod in tr.modules])
        layers.append(ChainLayer(_csr(weight), bias.astype(np.float32), first.activation,
                                 float(first.negative_slope)))
    indptr, indices, data = difference_layer(n, k, tr.out_channels)
    diff = sp.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, n * m * tr.out_channels))
    layers.append(ChainLayer(diff, np.zeros(diff.shape[0], np.float32)))
    return layers, active, reference


def compile_spec(spec: ShapnetSpec) -> CompiledShapnet:
    """Compile ``spec`` (checked first) into a :class:`CompiledShapnet`."""
    spec.check()
    d, n_in = spec.features, spec.n_inputs
    layers: list[ChainLayer] = []
    arrays: dict[str, np.ndarray] = {}
    transforms_meta = []
    a_out = np.asarray(spec.output_weight, np.float64)
    n_out = spec.outputs
    for t, tr in enumerate(spec.transforms, start=1):
        chain, active, reference = _transform_layers(tr, n_in if t == 1 else d)
        layers += chain
        arrays[f"shapnet.t{t}.active"] = active.reshape(-1)
        arrays[f"shapnet.t{t}.reference"] = reference.reshape(-1).astype(np.float32)
        feature, channel, w = _mixing_entries(tr, active)
        cols = np.arange(feature.shape[0])
        if t < len(spec.transforms):
            mix = sp.coo_matrix((w, (feature * tr.out_channels + channel, cols)),
                                shape=(d * tr.out_channels, cols.shape[0]))
        else:
            # explanation[i, o] = sum_c A[o, c] Z[i, c]; prediction[o] = sum_i explanation[i, o]
            # (+ bias) over the real features: every difference column belongs to one feature,
            # so the prediction row takes the same weight A[o, c] w(|S|) as that feature's
            # explanation row. Padding features (>= inputs) are null players: not read.
            real = feature < n_in
            feature, channel, w, cols = feature[real], channel[real], w[real], cols[real]
            vals = a_out[:, channel] * w  # (O, columns)
            o = np.arange(n_out)[:, None]
            rows_e = n_out + feature[None, :] * n_out + o
            rows_p = np.broadcast_to(o, vals.shape)
            mix = sp.coo_matrix((np.concatenate([vals.reshape(-1), vals.reshape(-1)]),
                                 (np.concatenate([rows_p.reshape(-1), rows_e.reshape(-1)]),
                                  np.concatenate([np.broadcast_to(cols, vals.shape).reshape(-1)]
                                                 * 2))),
                                shape=(n_out + n_in * n_out, len(real)))
        bias = np.zeros(mix.shape[0], np.float32)
        if t == len(spec.transforms):
            bias[:n_out] = np.asarray(spec.output_bias, np.float32)
        layers.append(ChainLayer(_csr(mix), bias))
        transforms_meta.append({"in_channels": int(tr.in_channels),
                                "out_channels": int(tr.out_channels), "k": int(active.shape[1]),
                                "modules": int(active.shape[0]),
                                "inner_widths": [int(lay.weight.shape[0])
                                                 for lay in tr.modules[0].layers]})
    layout = {"variant": spec.variant, "features": d, "inputs": n_in, "prediction_dim": n_out,
              "explanation_channels": n_out, "transforms": transforms_meta}
    return CompiledShapnet(layers, layout, arrays, dict(spec.meta))


# -- from the PyTorch models ----------------------------------------------------------------------
_TORCH_ACTIVATIONS = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "Tanh": "tanh",
                      "Sigmoid": "sigmoid", "Identity": "identity"}


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _inner_layers(inner: Any, where: str) -> list[InnerLayer]:
    """``nn.Sequential`` of ``Linear`` and elementwise activations -> :class:`InnerLayer` s."""
    layers: list[InnerLayer] = []
    for part in inner:
        name = type(part).__name__
        if name == "Linear":
            bias = part.bias if part.bias is not None else None
            layers.append(InnerLayer(_numpy(part.weight).astype(np.float32),
                                     np.zeros(part.out_features, np.float32) if bias is None
                                     else _numpy(bias).astype(np.float32)))
        elif name in _TORCH_ACTIVATIONS and layers and layers[-1].activation == "identity":
            layers[-1].activation = _TORCH_ACTIVATIONS[name]
            layers[-1].negative_slope = float(getattr(part, "negative_slope", 0.01))
        elif name == "Identity" or name == "Dropout":
            continue
        else:
            raise SpecError(f"{where}: inner layer {type(part).__name__} cannot be compiled "
                            "(Linear and elementwise ReLU/LeakyReLU/Tanh/Sigmoid only)")
    return layers


def _module_spec(module: Any, where: str) -> ModuleSpec:
    """A :class:`~edgeprune.shapnet.modules.ShapleyModule` (one reference per player, the
    same for every channel) -> :class:`ModuleSpec`."""
    reference = np.repeat(_numpy(module.reference).astype(np.float32), module.in_channels)
    return ModuleSpec(_numpy(module.active).astype(np.int64), reference,
                      _inner_layers(module.inner, where))


def spec_from_model(model: Any) -> ShapnetSpec:
    """The :class:`ShapnetSpec` of a :class:`~edgeprune.shapnet.models.ShallowShapNet` or
    :class:`~edgeprune.shapnet.models.DeepShapNet`."""
    from edgeprune.shapnet.models import DeepShapNet, ShallowShapNet

    meta = {"config": model.config()} if hasattr(model, "config") else {}
    if isinstance(model, ShallowShapNet):
        modules = [_module_spec(m, f"module {j}") for j, m in enumerate(model.modules_list)]
        return ShapnetSpec(model.in_dim, [TransformSpec(1, model.channels, modules)],
                           _numpy(model.linear.weight).astype(np.float32),
                           _numpy(model.linear.bias).astype(np.float32), variant="shallow",
                           meta=meta)
    if isinstance(model, DeepShapNet):
        transforms = []
        for t, modules in enumerate(model.transforms, start=1):
            specs = [_module_spec(m, f"transform {t}, module {j}") for j, m in enumerate(modules)]
            transforms.append(TransformSpec(int(modules[0].in_channels),
                                            int(modules[0].out_channels), specs))
        out = model.out_dim
        return ShapnetSpec(model.width, transforms, np.eye(out, dtype=np.float32),
                           _numpy(model.bias).astype(np.float32), variant="deep", meta=meta,
                           inputs=model.in_dim)
    raise SpecError(f"cannot compile a {type(model).__name__}: a ShallowShapNet or DeepShapNet "
                    "is needed")


def compile_shapnet(model: Any) -> CompiledShapnet:
    """Compile a PyTorch Shallow/Deep ShapNet (or a :class:`ShapnetSpec`)."""
    spec = model if isinstance(model, ShapnetSpec) else spec_from_model(model)
    return compile_spec(spec)
