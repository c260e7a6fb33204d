"""Run a compiled ShapNet bundle: prediction and explanation, with dynamic pruning (numpy/scipy).

:class:`ShapNetModel` wraps the bundle's CSR chain. Without a threshold a call runs the chain
(:class:`~edgeprune.runtime.model.BundleModel`, CSR kernels, any batch size) and splits its
output into the prediction ``(B, P)`` and the per-feature explanation ``(B, features, O)``.

**Dynamic pruning** (the paper's Cor. 4, §2.5): with ``skip_threshold=t`` each sample runs
transform by transform, and a Shapley module whose active inputs are all within ``t`` of its
reference (``max |x_A - r| <= t``, over every channel) is skipped: its copies, inner layers
and differences are not computed and its Shapley values are set to exactly 0, which is what
they are when its inputs equal the reference. Per transform and skip pattern the runtime
builds (once, then cached) one CSR matrix per layer holding only the active modules' rows --
the chain's own rows, columns renumbered into compact buffers, so each row sums the same
products in the same order with the same scipy kernel -- and a mixing layer without the skipped
modules' entries. A transform then costs its skip test (six ufunc calls) plus three calls per
layer, and its multiply-adds shrink with the modules skipped. So:

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

#: Skip patterns whose op lists a transform keeps, and the bytes of their arrays (the cache is
#: emptied when either is reached).
MAX_CACHED_PATTERNS = 256
MAX_CACHE_BYTES = 16 * 1024**2
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
    """Load and validate a ShapNet bundle (version 4) at ``path``."""
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
    positions: np.ndarray  # (modules * W,) transform-input positions of the module inputs
    reference: np.ndarray  # (modules * W,); W = k * C rounded up to a multiple of 8
    source: np.ndarray  # the transform's input buffer
    gathered: np.ndarray  # (modules * W,) float32
    real: np.ndarray  # (modules, W) bool: False on the padding
    beyond: np.ndarray  # (modules, W) bool
    skip: np.ndarray  # (modules,) bool
    cache: dict[bytes, list[Op]] = field(default_factory=dict)
    cache_bytes: int = 0


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
        pos = t.input_positions()  # (n, k*C)
        n, width = pos.shape
        # Each module's inputs padded to a multiple of 8: the skip test's booleans of a module
        # are then whole uint64 words (no per-module reduction; padding masked out).
        padded = -(-width // 8) * 8
        real = np.zeros((n, padded), dtype=bool)
        real[:, :width] = True
        positions = np.zeros((n, padded), dtype=np.int64)
        positions[:, :width] = pos
        reference = np.zeros((n, padded), dtype=np.float32)
        reference[:, :width] = t.reference
        return _TransformPlan(per_module, t.module_rows(), t.mixing_layer, positions.reshape(-1),
                              reference.reshape(-1), source,
                              np.empty(n * padded, dtype=np.float32), real,
                              np.empty((n, padded), dtype=bool), np.empty(n, dtype=bool))

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
            g = plan.gathered
            np.take(plan.source, plan.positions, out=g)
            np.subtract(g, plan.reference, out=g)
            np.abs(g, out=g)
            # skip <=> no real input deviates by more than t: booleans as uint64 words
            beyond = plan.beyond
            np.greater(g.reshape(beyond.shape), t, out=beyond)
            np.logical_and(beyond, plan.real, out=beyond)
            words = beyond.view(np.uint64)
            if words.shape[1] == 1:
                np.equal(words[:, 0], 0, out=plan.skip)
            else:
                np.equal(np.bitwise_or.reduce(words, axis=1), 0, out=plan.skip)
            if skipped is not None:
                skipped[offset:offset + n] = plan.skip
            if deviations is not None:
                deviations[offset:offset + n] = np.where(plan.real, g.reshape(beyond.shape),
                                                         0).max(axis=1)
            offset += n
            for op in self._ops_for(plan):
                op()
        return self._layers[-1].out

    def _ops_for(self, plan: _TransformPlan) -> list[Op]:
        """The bound ops of ``plan`` for its current skip pattern (cached per pattern, at most
        :data:`MAX_CACHED_PATTERNS` and :data:`MAX_CACHE_BYTES` of arrays per transform)."""
        key = plan.skip.tobytes()
        entry = plan.cache.get(key)
        if entry is None:
            ops, nbytes = self._build_ops(plan, plan.skip.copy())
            if len(plan.cache) >= MAX_CACHED_PATTERNS or plan.cache_bytes + nbytes > \
                    MAX_CACHE_BYTES:
                plan.cache.clear()
                plan.cache_bytes = 0
            plan.cache[key] = entry = ops
            plan.cache_bytes += nbytes
        return entry

    def _build_ops(self, plan: _TransformPlan, skip: np.ndarray) -> tuple[list[Op], int]:
        """Ops for one skip pattern and the bytes of the arrays they hold.

        Nothing skipped: the chain's own layers. Otherwise each per-module layer becomes one
        CSR matrix of the active modules' rows only (the same rows, columns renumbered into the
        compact buffer of the layer before: same products in the same order), and the mixing
        layer keeps only the entries that read active modules' differences (a skipped module's
        differences are 0). Either way a layer is three calls, however the active modules lie.
        """
        active = np.flatnonzero(~skip)
        mix = self._layers[plan.mix]
        if active.size == skip.size:
            ops: list[Op] = []
            src = plan.source
            for index in plan.layers:
                layer = self._layers[index]
                ops += self._csr_ops(layer.indptr, layer.indices, layer.data, layer.bias, src,
                                     layer.out, layer)
                src = layer.out
            return ops + self._csr_ops(mix.indptr, mix.indices, mix.data, mix.bias, src,
                                       mix.out, mix), 0
        if active.size == 0:  # every difference is 0: the mixing layer gives its bias
            return [functools.partial(np.copyto, mix.out, mix.bias)], 0
        position = np.full(skip.size, -1, dtype=np.int64)
        position[active] = np.arange(active.size)
        ops, nbytes, src, prev = [], 0, plan.source, None
        for index, per in zip(plan.layers, plan.rows):
            layer = self._layers[index]
            rows = (active[:, None] * per + np.arange(per)).reshape(-1)
            indptr, pos = _row_subset(layer.indptr, rows)
            cols = layer.indices[pos]
            if prev is not None:  # renumber into the previous compact buffer
                cols = (position[cols // prev] * prev + cols % prev).astype(np.int32)
            y = np.empty(rows.size, dtype=np.float32)
            data, bias = layer.data[pos], layer.bias[rows]
            ops += self._csr_ops(indptr, cols, data, bias, src, y, layer)
            nbytes += indptr.nbytes + cols.nbytes + data.nbytes + bias.nbytes + y.nbytes
            src, prev = y, per
        keep = position[mix.indices // prev] >= 0
        kept_before = np.concatenate([[0], np.cumsum(keep)])
        indptr = kept_before[mix.indptr].astype(np.int32)  # per row: the entries kept
        cols = mix.indices[keep]
        cols = (position[cols // prev] * prev + cols % prev).astype(np.int32)
        data = mix.data[keep]
        nbytes += indptr.nbytes + cols.nbytes + data.nbytes
        return ops + self._csr_ops(indptr, cols, data, mix.bias, src, mix.out, mix), nbytes

    def _csr_ops(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                 bias: np.ndarray, h: np.ndarray, y: np.ndarray, layer: _Layer) -> list[Op]:
        """``y = act(W @ h + bias)`` with the chain's CSR row kernel (``W`` given as CSR)."""
        ops: list[Op] = [functools.partial(np.copyto, y, bias)]
        rows = y.shape[0]
        if self._matvec is not None:
            ops.append(functools.partial(self._matvec, rows, h.shape[0], indptr, indices, data,
                                         h, y))
        else:  # pragma: no cover - scipy without the private kernels
            import scipy.sparse as sp

            sub = sp.csr_matrix((data, indices, indptr), shape=(rows, h.shape[0]))
            ops.append(lambda: np.add(y, sub @ h, out=y))
        return ops + activation_ops(layer.activation, layer.slope, y,
                                    functools.partial(np.empty_like, y))

    def clear_pattern_cache(self) -> None:
        """Forget the ops built per skip pattern (``bench`` times first-seen patterns so)."""
        for plan in self._plans:
            plan.cache.clear()
            plan.cache_bytes = 0

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


def _row_subset(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``indptr`` of the CSR rows ``rows`` and the positions of their entries."""
    starts, lens = indptr[rows], indptr[rows + 1] - indptr[rows]
    sub = np.zeros(rows.size + 1, dtype=np.int32)
    np.cumsum(lens, out=sub[1:])
    pos = np.repeat(starts.astype(np.int64) - sub[:-1], lens) + np.arange(int(sub[-1]))
    return sub, pos
