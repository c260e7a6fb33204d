"""A ShapNet as plain arrays (numpy only): what the compiler reads and the float64 reference.

:class:`ShapnetSpec` is the framework-free description of a trained Shallow or Deep ShapNet
(``compile.spec_from_model`` reads one from the PyTorch models): a cascade of Shapley transforms
over ``features`` explainable positions, each a list of Shapley modules (active features,
reference, inner MLP), and the output transform: ``explanation[i] = A @ Z[i]`` for every
feature ``i`` of the last representation ``Z``, ``prediction = sum_i explanation[i] + bias``.

:meth:`ShapnetSpec.forward` evaluates it in float64 straight from the definition (each module's
inner MLP on its ``2**k`` masked inputs, mixed with the Shapley weights), independently of the
compiled chain: the tests' reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.runtime.activations import ACTIVATIONS, apply_activation
from edgeprune.runtime.shapnet_layout import MAX_K, coalition_bits, shapley_weights

__all__ = ["InnerLayer", "ModuleSpec", "ShapnetSpec", "SpecError", "TransformSpec"]


class SpecError(EdgepruneError):
    """A ShapNet the compiler cannot express (one line: what and where)."""


@dataclass
class InnerLayer:
    """``act(weight @ h + bias)`` of a module's inner MLP."""

    weight: np.ndarray  # (out, in)
    bias: np.ndarray  # (out,)
    activation: str = "identity"
    negative_slope: float = 0.01


@dataclass
class ModuleSpec:
    """A Shapley module: ``k`` active features, their reference (``k * in_channels``), ``f``."""

    active: np.ndarray  # (k,) feature indices of the transform's input
    reference: np.ndarray  # (k * in_channels,)
    layers: list[InnerLayer]


@dataclass
class TransformSpec:
    """A Shapley transform: ``in_channels`` -> ``out_channels`` per feature."""

    in_channels: int
    out_channels: int
    modules: list[ModuleSpec]


@dataclass
class ShapnetSpec:
    """A whole ShapNet; ``output_weight`` ``(outputs, last out_channels)``, ``output_bias``."""

    features: int
    transforms: list[TransformSpec]
    output_weight: np.ndarray
    output_bias: np.ndarray
    variant: str = "shapnet"
    meta: dict = field(default_factory=dict)
    inputs: int | None = None  # the model's inputs (<= features; the rest is zero padding)

    @property
    def n_inputs(self) -> int:
        return self.features if self.inputs is None else int(self.inputs)

    @property
    def outputs(self) -> int:
        return int(self.output_weight.shape[0])

    @property
    def n_modules(self) -> int:
        return sum(len(t.modules) for t in self.transforms)

    def check(self) -> None:
        """:class:`SpecError` unless the transforms chain and every module is expressible."""
        if not self.transforms:
            raise SpecError("a ShapNet needs at least one Shapley transform")
        if not 1 <= self.n_inputs <= self.features:
            raise SpecError(f"{self.n_inputs} inputs for {self.features} features")
        channels = 1
        for t, tr in enumerate(self.transforms, start=1):
            where = f"transform {t}"
            if tr.in_channels != channels:
                raise SpecError(f"{where}: takes {tr.in_channels} channels per feature, the "
                                f"one before gives {channels}")
            if not tr.modules:
                raise SpecError(f"{where}: has no Shapley module")
            ks = {len(m.active) for m in tr.modules}
            if len(ks) != 1:
                raise SpecError(f"{where}: modules of different active-set sizes {sorted(ks)} "
                                "(compile one size per transform)")
            shapes = {tuple((lay.weight.shape, lay.activation, float(lay.negative_slope))
                            for lay in m.layers) for m in tr.modules}
            if len(shapes) != 1:
                raise SpecError(f"{where}: modules with different inner architectures "
                                "(layer widths or activations)")
            k = ks.pop()
            if not 1 <= k <= min(MAX_K, self.features):
                raise SpecError(f"{where}: active sets of {k} features (1..{MAX_K} supported)")
            for j, m in enumerate(tr.modules):
                self._check_module(m, k, tr, f"{where}, module {j}")
            channels = tr.out_channels
        if self.output_weight.ndim != 2 or self.output_weight.shape[1] != channels:
            raise SpecError(f"output transform: weight {self.output_weight.shape} does not take "
                            f"{channels} channels")
        if self.output_bias.shape != (self.outputs,):
            raise SpecError(f"output transform: bias {self.output_bias.shape}, expected "
                            f"({self.outputs},)")
        if not (np.isfinite(self.output_weight).all() and np.isfinite(self.output_bias).all()):
            raise SpecError("output transform: weights hold NaN or inf")

    def _check_module(self, m: ModuleSpec, k: int, tr: TransformSpec, where: str) -> None:
        active = np.asarray(m.active)
        if len(set(active.tolist())) != k or active.min() < 0 or active.max() >= self.features:
            raise SpecError(f"{where}: active features {active.tolist()} must be distinct "
                            f"indices in 0..{self.features - 1}")
        if np.shape(m.reference) != (k * tr.in_channels,):
            raise SpecError(f"{where}: reference has shape {np.shape(m.reference)}, expected "
                            f"({k * tr.in_channels},)")
        if not np.isfinite(m.reference).all():
            raise SpecError(f"{where}: reference holds NaN or inf")
        width = k * tr.in_channels
        if not m.layers:
            raise SpecError(f"{where}: the inner function has no layer")
        for n, lay in enumerate(m.layers, start=1):
            if lay.activation not in ACTIVATIONS:
                raise SpecError(f"{where}, inner layer {n}: activation {lay.activation!r} is "
                                f"not one of {', '.join(ACTIVATIONS)}")
            if lay.weight.ndim != 2 or lay.weight.shape[1] != width:
                raise SpecError(f"{where}, inner layer {n}: weight {lay.weight.shape} does not "
                                f"take {width} inputs")
            if lay.bias.shape != (lay.weight.shape[0],):
                raise SpecError(f"{where}, inner layer {n}: bias {lay.bias.shape}")
            if not (np.isfinite(lay.weight).all() and np.isfinite(lay.bias).all()):
                raise SpecError(f"{where}, inner layer {n}: weights hold NaN or inf")
            width = lay.weight.shape[0]
        if width != tr.out_channels:
            raise SpecError(f"{where}: the inner function gives {width} outputs, the transform "
                            f"{tr.out_channels} channels")

    # -- the reference ----------------------------------------------------------------------
    def forward(self, x: np.ndarray, *, representations: bool = False):
        """``(prediction (B, outputs), explanation (B, inputs, outputs))`` in float64, from
        the definition; with ``representations`` also each transform's ``Z``."""
        x = np.asarray(x, dtype=np.float64).reshape(-1, self.n_inputs)
        z = np.zeros((x.shape[0], self.features, 1))
        z[:, :self.n_inputs, 0] = x
        zs = []
        for tr in self.transforms:
            z = _transform_forward(tr, z)
            zs.append(z)
        expl = z[:, :self.n_inputs] @ np.asarray(self.output_weight, np.float64).T
        pred = expl.sum(axis=1) + np.asarray(self.output_bias, np.float64)
        return (pred, expl, zs) if representations else (pred, expl)


def module_shapley(m: ModuleSpec, inputs: np.ndarray, in_channels: int) -> np.ndarray:
    """Exact Shapley values ``(B, k, out)`` of module ``m`` on ``inputs`` ``(B, k * C)``."""
    k = len(m.active)
    bits = coalition_bits(k).astype(np.float64)
    keep = np.repeat(bits, in_channels, axis=1)  # (M, k*C)
    ref = np.asarray(m.reference, np.float64)
    copies = keep[None] * inputs[:, None, :] + (1 - keep[None]) * ref  # (B, M, k*C)
    h = copies
    for lay in m.layers:
        h = h @ np.asarray(lay.weight, np.float64).T + np.asarray(lay.bias, np.float64)
        h = apply_activation(h, lay.activation, lay.negative_slope)
    w = shapley_weights(k)
    sizes = bits.sum(axis=1).astype(int)
    phi = np.zeros((inputs.shape[0], k, h.shape[-1]))
    for s in range(2**k):
        for a in range(k):
            if not (s >> a) & 1:
                phi[:, a] += w[sizes[s]] * (h[:, s | (1 << a)] - h[:, s])
    return phi


def _transform_forward(tr: TransformSpec, z: np.ndarray) -> np.ndarray:
    out = np.zeros((z.shape[0], z.shape[1], tr.out_channels))
    for m in tr.modules:
        active = np.asarray(m.active)
        inputs = z[:, active, :].reshape(z.shape[0], -1)
        out[:, active, :] += module_shapley(m, inputs, tr.in_channels)
    return out
