"""Run a compiled ShapNet bundle: prediction and explanation, with dynamic pruning (numpy/scipy).

:class:`ShapNetModel` wraps the bundle's CSR chain. Without a threshold a call runs the chain
(:class:`~edgeprune.runtime.model.BundleModel`, CSR kernels, any batch size) and splits its
output into the prediction ``(B, P)`` and the per-feature explanation ``(B, features, O)``.

**Dynamic pruning** (the paper's Cor. 4, §2.5): with ``skip_threshold=t`` each sample runs
transform by transform, and a Shapley module whose active inputs are all within ``t`` of its
reference (``max |x_A - r| <= t``, over every channel) is skipped: its copies, inner layers
and differences are not computed and its Shapley values are set to exactly 0, which is what
they are when its inputs equal the reference. The other modules are computed with the same CSR
row kernels as the chain (consecutive active modules in one call), so:

* ``t = 0`` skips only modules whose inputs equal the reference exactly and changes no output:
  the result equals the chain's bit for bit at batch size 1 (tested; batches use scipy's
  multi-vector kernel, equal in the tests too);
* ``t > 0`` changes each output by at most ``t * skip_gain[o]`` (:meth:`skip_bound`): for a
  skipped module ``|phi| <= |chain| (e + t)`` elementwise, where ``|chain|`` is the module's
  layers with absolute weights and activation slopes at most their Lipschitz constant, and ``e``
  the deviation already in its input; propagated through every later layer this gives
  ``e_l = |chain_l| (e_(l-1) + t)`` per transform. A worst-case bound, loose for deep nets.

The pruned path runs one sample at a time (that is the saving on a board: batch 1); a batch is
run sample by sample. Like :class:`BundleModel`, a model reuses buffers: one per thread.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .activations import apply_activation
from .bundle import Bundle, read_bundle
from .errors import EdgepruneError
from .kernels import _sparsetools
from .model import BundleModel
from .shapnet_layout import ShapnetLayout

__all__ = ["ShapNetModel", "ShapnetOutput", "load_shapnet", "check_skip_threshold"]

_LIPSCHITZ = {"identity": 1.0, "relu": 1.0, "tanh": 1.0, "sigmoid": 0.25}


def check_skip_threshold(value: Any, option: str = "skip_threshold") -> float | None:
    """``None`` or a finite number >= 0, else a one-line :class:`EdgepruneError`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise EdgepruneError(f"{option} {value!r}: must be a number >= 0")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise EdgepruneError(f"{option} {value}: must be a finite number >= 0 (0 skips only "
                             "modules whose inputs equal their reference)")
    return value


@dataclass
class ShapnetOutput:
    """A call's results; ``skipped`` ``(B, modules)`` is None without a threshold."""

    prediction: np.ndarray
    explanation: np.ndarray
    skipped: np.ndarray | None = None

    @property
    def skipped_fraction(self) -> float:
        """Fraction of (sample, module) pairs skipped (0 without a threshold)."""
        return float(self.skipped.mean()) if self.skipped is not None and self.skipped.size \
            else 0.0


def load_shapnet(path: str | os.PathLike[str], kernel: str = "csr") -> ShapNetModel:
    """Load and validate a ShapNet bundle (version 3) at ``path``."""
    return ShapNetModel(read_bundle(path), kernel=kernel)


class _Layer:
    """One chain layer's CSR arrays for row-range calls."""

    def __init__(self, layer: Any) -> None:
        self.indptr, self.indices, self.data = layer.indptr, layer.indices, layer.data
        self.bias, self.rows, self.cols = layer.bias, layer.shape[0], layer.shape[1]
        self.activation, self.slope = layer.activation, layer.negative_slope
        self.out = np.empty(self.rows, dtype=np.float32)


class ShapNetModel:
    """A ShapNet bundle ready to run; see the module docstring.

    ``kernel`` is the chain's kernel when no threshold is given (``"csr"`` by default, which
    makes ``skip_threshold=0`` bit-equal to it; ``"auto"`` lets dense BLAS run dense-enough
    layers, equal to within float32 rounding).
    """

    def __init__(self, bundle: Bundle, kernel: str | Sequence[str] = "csr") -> None:
        if bundle.shapnet is None:
            raise EdgepruneError(f"{bundle.source}: is not a ShapNet bundle (meta.version "
                                 f"{bundle.meta.get('version')}, kind {bundle.kind!r}); run "
                                 "it with edgeprune.runtime.load")
        self.bundle = bundle
        self.layout: ShapnetLayout = bundle.shapnet
        self.chain = BundleModel(bundle, kernel=kernel)
        self._layers = [_Layer(layer) for layer in bundle.layers]
        # features beyond the inputs (padding) stay 0, so every module position is valid
        self._inbuf = np.zeros(self.layout.features, dtype=np.float32)
        fast = _sparsetools()
        self._matvec = fast[0] if fast is not None else None
        self._gain: np.ndarray | None = None
        self._plans = [self._transform_plan(t) for t in self.layout.transforms]

    # -- description --------------------------------------------------------------------------
    @property
    def input_dim(self) -> int:
        return self.layout.inputs

    @property
    def prediction_dim(self) -> int:
        return self.layout.prediction_dim

    @property
    def n_modules(self) -> int:
        return self.layout.n_modules

    def module_macs(self) -> np.ndarray:
        """Multiply-adds of each module's own layers (copies, inner, differences), in module
        order over the transforms: the work a skip saves."""
        out = []
        for t, plan in zip(self.layout.transforms, self._plans):
            ptr = [self._layers[i].indptr for i in plan["layers"]]
            rows = plan["rows"]
            per = sum(np.diff(p[:: r])[: t.n_modules] for p, r in zip(ptr, rows))
            out.append(per.astype(np.int64))
        return np.concatenate(out)

    @property
    def macs(self) -> int:
        """Multiply-adds of the whole chain per sample (its non-zeros)."""
        return int(sum(layer.data.shape[0] for layer in self._layers))

    def _transform_plan(self, t: Any) -> dict[str, Any]:
        first = t.first_layer
        per_module = list(range(first, t.mixing_layer))
        return {"layers": per_module, "rows": t.module_rows(), "mix": t.mixing_layer,
                "positions": t.input_positions(), "reference": t.reference}

    # -- running ------------------------------------------------------------------------------
    def __call__(self, x: Any, skip_threshold: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        """``(prediction, explanation)`` for ``(inputs,)`` or ``(B, inputs)`` inputs."""
        out = self.run(x, skip_threshold)
        return out.prediction, out.explanation

    def run(self, x: Any, skip_threshold: float | None = None) -> ShapnetOutput:
        """Prediction, explanation and (with a threshold) which modules were skipped."""
        t = check_skip_threshold(skip_threshold)
        arr = np.asarray(x)
        single = arr.ndim == 1
        if t is None:
            y = self.chain(arr)
            pred, expl = self.layout.split(y)
            return ShapnetOutput(pred.copy(), expl.copy())
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.input_dim:
            raise ValueError(f"expected input of shape ({self.input_dim},) or (batch, "
                             f"{self.input_dim}), got {arr.shape}")
        rows = arr.reshape(-1, self.input_dim)
        y = np.empty((rows.shape[0], self.layout.output_dim), dtype=np.float32)
        skipped = np.zeros((rows.shape[0], self.n_modules), dtype=bool)
        for b in range(rows.shape[0]):
            self._inbuf[:self.input_dim] = rows[b]
            self._run_one(self._inbuf, t, y[b], skipped[b])
        pred, expl = self.layout.split(y[0] if single else y)
        return ShapnetOutput(pred, expl, skipped[0] if single else skipped)

    def _rows(self, layer: _Layer, r0: int, r1: int, h: np.ndarray) -> None:
        """``out[r0:r1] = act(W[r0:r1] @ h + b[r0:r1])`` with the chain's CSR row kernel."""
        y = layer.out[r0:r1]
        np.copyto(y, layer.bias[r0:r1])
        if self._matvec is not None:
            self._matvec(r1 - r0, layer.cols, layer.indptr[r0:r1 + 1], layer.indices,
                         layer.data, h, y)
        else:  # pragma: no cover - scipy without the private kernels
            import scipy.sparse as sp

            sub = sp.csr_matrix((layer.data, layer.indices, layer.indptr),
                                shape=(layer.rows, layer.cols))[r0:r1]
            y += sub @ h
        if layer.activation != "identity":
            apply_activation(y, layer.activation, layer.slope, out=y)

    def deviations(self, x: Any) -> np.ndarray:
        """``(modules,)`` for one sample: each module's ``max |input - reference|`` in the
        unpruned run (what the skip rule compares with the threshold)."""
        arr = np.asarray(x, dtype=np.float32).reshape(self.input_dim)
        self._inbuf[:self.input_dim] = arr
        dev = np.empty(self.n_modules)
        out = np.empty(self.layout.output_dim, dtype=np.float32)
        self._run_one(self._inbuf, -1.0, out, np.zeros(self.n_modules, dtype=bool), dev)
        return dev

    def _run_one(self, x: np.ndarray, t: float, out: np.ndarray, skipped: np.ndarray,
                 deviations: np.ndarray | None = None) -> None:
        h, offset = x, 0
        for plan in self._plans:
            pos, ref = plan["positions"], plan["reference"]
            n = pos.shape[0]
            dev = np.abs(h[pos] - ref).max(axis=1)
            if deviations is not None:
                deviations[offset:offset + n] = dev
            skip = dev <= t
            skipped[offset:offset + n] = skip
            offset += n
            runs = _runs(~skip)
            src = h
            for index, per in zip(plan["layers"], plan["rows"]):
                layer = self._layers[index]
                for j0, j1 in runs:
                    self._rows(layer, j0 * per, j1 * per, src)
                src = layer.out
            diff = self._layers[plan["layers"][-1]]
            per = plan["rows"][-1]
            for j0, j1 in _runs(skip):  # skipped modules: Shapley values exactly 0
                diff.out[j0 * per:j1 * per] = 0.0
            mix = self._layers[plan["mix"]]
            self._rows(mix, 0, mix.rows, diff.out)
            h = mix.out
        out[...] = h

    # -- the bound ----------------------------------------------------------------------------
    def skip_gain(self) -> np.ndarray:
        """``(output_dim,)``: the worst-case change of each chain output per unit of threshold."""
        if self._gain is None:
            import scipy.sparse as sp

            e = np.zeros(self.input_dim)
            for plan in self._plans:
                e = e + 1.0
                for index in [*plan["layers"], plan["mix"]]:
                    layer = self._layers[index]
                    w = sp.csr_matrix((np.abs(layer.data.astype(np.float64)), layer.indices,
                                       layer.indptr), shape=(layer.rows, layer.cols))
                    lip = _LIPSCHITZ.get(layer.activation, max(1.0, abs(layer.slope)))
                    e = lip * (w @ e)
            self._gain = e
        return self._gain

    def skip_bound(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Worst-case ``|change|`` of the prediction ``(P,)`` and explanation ``(inputs, O)``
        that ``skip_threshold=threshold`` can cause (exact arithmetic; add float32 rounding)."""
        t = check_skip_threshold(threshold)
        return self.layout.split(self.skip_gain() * t)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the runs of True in ``mask``."""
    if not mask.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.view(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))
