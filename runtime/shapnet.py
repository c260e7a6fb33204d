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

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bundle import Bundle, read_bundle
from .errors import EdgepruneError
from .kernels import Op, _sparsetools, activation_ops
from .model import BundleModel
from .shapnet_layout import ShapnetLayout

__all__ = ["ShapNetModel", "ShapnetOutput", "load_shapnet", "check_skip_threshold"]

#: Skip patterns whose op lists a transform keeps (the cache is emptied when full).
MAX_CACHED_PATTERNS = 256
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


def load_shapnet(path: str | os.PathLike[str], kernel: str = "csr",
                 engine: str = "numpy") -> ShapNetModel:
    """Load and validate a ShapNet bundle (version 3) at ``path``."""
    return ShapNetModel(read_bundle(path), kernel=kernel, engine=engine)


class _Layer:
    """One chain layer's CSR arrays for row-range calls, and its output buffer."""

    def __init__(self, layer: Any) -> None:
        self.indptr, self.indices, self.data = layer.indptr, layer.indices, layer.data
        self.bias, self.rows, self.cols = layer.bias, layer.shape[0], layer.shape[1]
        self.activation, self.slope = layer.activation, layer.negative_slope
        self.out = np.zeros(self.rows, dtype=np.float32)

    def matrix(self) -> Any:
        import scipy.sparse as sp

        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=(self.rows, self.cols))


@dataclass
class _TransformPlan:
    """A transform's layers and the preallocated buffers of its skip test; ``cache`` maps a
    skip pattern (bytes of ``skip``) to its list of bound ops."""

    layers: list[int]  # the per-module layers: copies, inner, differences
    rows: list[int]  # rows per module of each
    mix: int  # the mixing (or output) layer
    positions: np.ndarray  # (modules * k * C,) transform-input positions of the module inputs
    reference: np.ndarray  # (modules * k * C,)
    source: np.ndarray  # the transform's input buffer
    gathered: np.ndarray
    deviation: np.ndarray
    skip: np.ndarray
    cache: dict[bytes, list[Op]] = field(default_factory=dict)


class ShapNetModel:
    """A ShapNet bundle ready to run; see the module docstring.

    ``kernel`` is the chain's kernel when no threshold is given (``"csr"`` by default, which
    makes ``skip_threshold=0`` bit-equal to it; ``"auto"`` lets dense BLAS run dense-enough
    layers, equal to within float32 rounding).
    """

    def __init__(self, bundle: Bundle, kernel: str | Sequence[str] = "csr",
                 engine: str = "numpy") -> None:
        if bundle.shapnet is None:
            raise EdgepruneError(f"{bundle.source}: is not a ShapNet bundle (meta.version "
                                 f"{bundle.meta.get('version')}, kind {bundle.kind!r}); run "
                                 "it with edgeprune.runtime.load")
        self.bundle = bundle
        self.layout: ShapnetLayout = bundle.shapnet
        self.chain = BundleModel(bundle, kernel=kernel, engine=engine)
        self._layers = [_Layer(layer) for layer in bundle.layers]
        # features beyond the inputs (padding) stay 0, so every module position is valid
        self._inbuf = np.zeros(self.layout.features, dtype=np.float32)
        fast = _sparsetools()
        self._matvec = fast[0] if fast is not None else None
        self._gain: np.ndarray | None = None
        self._plans: list[_TransformPlan] = []
        source = self._inbuf
        for t in self.layout.transforms:
            self._plans.append(self._transform_plan(t, source))
            source = self._layers[t.mixing_layer].out

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
            ptr = [self._layers[i].indptr for i in plan.layers]
            rows = plan.rows
            per = sum(np.diff(p[:: r])[: t.n_modules] for p, r in zip(ptr, rows))
            out.append(per.astype(np.int64))
        return np.concatenate(out)

    @property
    def macs(self) -> int:
        """Multiply-adds of the whole chain per sample (its non-zeros)."""
        return int(sum(layer.data.shape[0] for layer in self._layers))

    def _transform_plan(self, t: Any, source: np.ndarray) -> _TransformPlan:
        per_module = list(range(t.first_layer, t.mixing_layer))
        pos = t.input_positions()
        return _TransformPlan(per_module, t.module_rows(), t.mixing_layer, pos.reshape(-1),
                              t.reference.reshape(-1), source,
                              np.empty(pos.size, dtype=np.float32),
                              np.empty(t.n_modules, dtype=np.float32),
                              np.empty(t.n_modules, dtype=bool))

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
            y[b] = self.run_flat(rows[b], t, skipped[b])
        pred, expl = self.layout.split(y[0] if single else y)
        return ShapnetOutput(pred, expl, skipped[0] if single else skipped)

    def run_flat(self, x: np.ndarray, threshold: float | None,
                 skipped: np.ndarray | None = None,
                 deviations: np.ndarray | None = None) -> np.ndarray:
        """One sample ``(inputs,)`` through the per-module path: the chain's output
        ``[prediction, explanation]`` in a reused buffer (copy it to keep it). ``threshold``
        None skips nothing (the path's own cost); it is not validated here (see :meth:`run`).
        ``skipped`` / ``deviations`` ``(modules,)`` receive the skip decisions and each
        module's ``max |input - reference|``."""
        self._inbuf[:self.input_dim] = x
        t = -1.0 if threshold is None else threshold
        offset = 0
        for plan in self._plans:
            n = plan.skip.shape[0]
            np.take(plan.source, plan.positions, out=plan.gathered)
            np.subtract(plan.gathered, plan.reference, out=plan.gathered)
            np.abs(plan.gathered, out=plan.gathered)
            np.max(plan.gathered.reshape(n, -1), axis=1, out=plan.deviation)
            np.less_equal(plan.deviation, t, out=plan.skip)
            if skipped is not None:
                skipped[offset:offset + n] = plan.skip
            if deviations is not None:
                deviations[offset:offset + n] = plan.deviation
            offset += n
            for op in self._ops_for(plan):
                op()
        return self._layers[-1].out

    def _ops_for(self, plan: _TransformPlan) -> list[Op]:
        """The bound ops of ``plan`` for its current skip pattern (cached per pattern)."""
        key = plan.skip.tobytes()
        ops = plan.cache.get(key)
        if ops is None:
            if len(plan.cache) >= MAX_CACHED_PATTERNS:
                plan.cache.clear()
            ops = plan.cache[key] = self._build_ops(plan, plan.skip.copy())
        return ops

    def _build_ops(self, plan: _TransformPlan, skip: np.ndarray) -> list[Op]:
        """Row-range CSR ops for the modules not skipped; zero differences for the skipped."""
        ops: list[Op] = []
        src = plan.source
        active = _runs(~skip)
        for index, per in zip(plan.layers, plan.rows):
            layer = self._layers[index]
            for j0, j1 in active:
                ops += self._row_ops(layer, j0 * per, j1 * per, src)
            src = layer.out
        per = plan.rows[-1]
        for j0, j1 in _runs(skip):  # skipped modules: Shapley values exactly 0
            ops.append(functools.partial(layer.out[j0 * per:j1 * per].fill, 0.0))
        mix = self._layers[plan.mix]
        return ops + self._row_ops(mix, 0, mix.rows, src)

    def _row_ops(self, layer: _Layer, r0: int, r1: int, h: np.ndarray) -> list[Op]:
        """``out[r0:r1] = act(W[r0:r1] @ h + b[r0:r1])`` with the chain's CSR row kernel."""
        y = layer.out[r0:r1]
        ops: list[Op] = [functools.partial(np.copyto, y, layer.bias[r0:r1])]
        if self._matvec is not None:
            ops.append(functools.partial(self._matvec, r1 - r0, layer.cols,
                                         layer.indptr[r0:r1 + 1], layer.indices, layer.data, h,
                                         y))
        else:  # pragma: no cover - scipy without the private kernels
            sub = layer.matrix()[r0:r1]
            ops.append(lambda: np.add(y, sub @ h, out=y))
        return ops + activation_ops(layer.activation, layer.slope, y,
                                    functools.partial(np.empty_like, y))

    def run_unpruned_path(self, x: Any) -> np.ndarray:
        """One sample through the per-module path with nothing skipped (the chain output): what
        the skipping machinery costs on its own (``bench --skip-threshold`` times it)."""
        return self.run_flat(np.asarray(x, dtype=np.float32), None)

    def deviations(self, x: Any) -> np.ndarray:
        """``(modules,)`` for one sample: each module's ``max |input - reference|`` in the
        unpruned run (what the skip rule compares with the threshold)."""
        dev = np.empty(self.n_modules)
        self.run_flat(np.asarray(x, dtype=np.float32).reshape(self.input_dim), None,
                      deviations=dev)
        return dev

    # -- the bound ----------------------------------------------------------------------------
    def skip_gain(self) -> np.ndarray:
        """``(output_dim,)``: the worst-case change of each chain output per unit of threshold."""
        if self._gain is None:
            import scipy.sparse as sp

            e = np.zeros(self.input_dim)
            for plan in self._plans:
                e = e + 1.0
                for index in [*plan.layers, plan.mix]:
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
