"""``BundleModel``: run a validated CSR bundle on one sample or a batch (numpy/scipy only).

Execution plans. The first call with a given batch size (and mode: forward, encode, decode)
builds a *plan*: one float32 input buffer, one output buffer per layer (plus a scratch buffer
for leaky_relu) and the list of ops of :meth:`LayerOps.ops` bound to them, with each layer's
kernel chosen for that batch size. Later calls with the same batch size reuse it: a call copies
the used input features into the input buffer, runs the ops and writes the result into a fresh
array (or into ``out=``); no intermediate is allocated. One-sample calls (1-D input, or a batch
of one) share the mat-vec plan. At most :data:`MAX_PLANS` plans are kept per route, holding
together at most :data:`~edgeprune.runtime.limits.MAX_RUN_BYTES` (the oldest are dropped), which
bounds memory for callers that vary the batch size; a batch whose own buffers would exceed that
bound is refused with a :class:`~edgeprune.runtime.limits.LimitError` naming the largest batch
that fits.

Thread safety: because the buffers are reused, one ``BundleModel`` must not be called from two
threads at once. Give each thread its own :meth:`BundleModel.clone` (which shares the read-only
weights and has its own buffers) or guard the calls with a lock.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import fused as _fused
from . import kernels as _kernels
from . import limits
from .bundle import Bundle, read_bundle
from .errors import EdgepruneError
from .kernel_profile import KernelProfile
from .kernels import KERNELS, LayerOps, Op, resolve_profile
from .plan import SamplePlan, sample_plan

__all__ = ["ENGINES", "MAX_PLANS", "BundleModel", "LayerInfo", "load"]

MAX_PLANS = 8
_F32 = np.dtype(np.float32)
_NDARRAY = np.ndarray


@dataclass(frozen=True)
class LayerInfo:
    """What one layer of a loaded model is and how it runs (``kernel``: at batch size 1)."""

    index: int  # 1-based
    shape: tuple[int, int]
    nnz: int
    density: float
    activation: str
    negative_slope: float
    kernel: str


@dataclass
class _Plan:
    """Buffers and bound ops of one route at one batch size (0: a single sample, 1-D)."""

    inbuf: np.ndarray
    last: np.ndarray
    ops: list[Op]
    kernels: list[str]
    nbytes: int = 0
    assembled: np.ndarray | None = None  # batch: (outputs, B), the result before its transpose


@dataclass
class _Route:
    """A way through the model (forward, encode or decode) and its plans per batch size."""

    what: str  # "input" or "latent", for error messages
    width: int  # full input width
    index: np.ndarray  # used input features
    gather_all: bool  # index == arange(width): a plain copy replaces the gather
    start: int
    stop: int
    const: np.ndarray  # full-width output, constants at dead positions
    out_index: np.ndarray  # live output positions
    scatter_all: bool  # out_index == arange(len(const)): a plain copy replaces the scatter
    perm: np.ndarray  # output position -> row of the last buffer (live values, then constants)
    dead_const: np.ndarray  # the constant outputs, in the order they sit below the live ones
    plans: dict[int, _Plan]
    widths: list[int]  # float32 buffer widths per sample: gathered input, layers, scratch, result
    vec: _Plan | None = None
    fused: Any = None  # a fused.FusedForward for one-sample calls (engine="numba")
    sample: SamplePlan | None = None  # the one-sample functions (engine="numpy"; see plan.py)
    fast: dict[tuple[int, ...], Any] | None = None  # float32 input shape -> its one-sample call


def _is_arange(index: np.ndarray, width: int) -> bool:
    return index.shape[0] == width and bool(np.array_equal(index, np.arange(width)))


def _output_perm(out_index: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each output position reads from a last buffer holding ``[live; constants]``."""
    dead = np.setdiff1d(np.arange(width), out_index)
    perm = np.empty(width, dtype=np.intp)
    perm[out_index] = np.arange(out_index.shape[0])
    perm[dead] = out_index.shape[0] + np.arange(dead.shape[0])
    return perm, dead


ENGINES = ("numpy", "numba")


def load(
    path: str | os.PathLike[str],
    kernel: str | Sequence[str] = "auto",
    profile: KernelProfile | str | os.PathLike[str] | None = None,
    engine: str = "numpy",
) -> BundleModel:
    """Load and validate the bundle at ``path``; see :class:`BundleModel` for the options."""
    return BundleModel(read_bundle(path), kernel=kernel, profile=profile, engine=engine)


class BundleModel:
    """A pruned network ready to run.

    ``kernel`` is ``"dense"``, ``"csr"``, ``"auto"`` or one such name per layer. ``auto``
    chooses per layer *and batch size*: CSR when the layer's density is below the crossover of
    ``profile`` at that batch size. ``profile`` is a :class:`KernelProfile`, a path to one,
    ``"static"`` (always :data:`~edgeprune.runtime.kernels.DENSITY_THRESHOLD`) or None (the
    calibrated profile at the default location when it exists, else the static threshold).

    ``engine`` is ``"numpy"`` (the default, always available) or ``"numba"``: one-sample calls
    then run as one compiled call (:mod:`edgeprune.runtime.fused`, needs the optional numba);
    batches keep the NumPy/SciPy plans.

    ``model(x)`` maps ``(input_dim,)`` to ``(output_dim,)`` and ``(B, input_dim)`` to
    ``(B, output_dim)`` in float32: it gathers the used inputs, runs the layers and scatters the
    live outputs into a row pre-filled with the constant outputs. Autoencoders also have
    :meth:`encode` (full ``latent_dim`` width; dead latent units hold their constant) and
    :meth:`decode`. See the module docstring for buffer reuse and thread safety.
    """

    def __init__(
        self,
        bundle: Bundle,
        kernel: str | Sequence[str] = "auto",
        profile: KernelProfile | str | os.PathLike[str] | None = None,
        engine: str = "numpy",
    ) -> None:
        if engine not in ENGINES:
            raise EdgepruneError(f"unknown engine {engine!r}; expected 'numpy' or 'numba'")
        if engine == "numba":
            _fused.require()
        self.engine = engine
        self.bundle = bundle
        n_layers = len(bundle.layers)
        names = [kernel] * n_layers if isinstance(kernel, str) else list(kernel)
        if not isinstance(kernel, str) and len(names) != n_layers:
            raise ValueError(f"got {len(names)} kernel names for {n_layers} layers")
        for name in names:
            if name not in (*KERNELS, "auto"):
                raise ValueError(f"unknown kernel {name!r}; expected 'dense', 'csr' or 'auto'")
        self._names = names
        self.profile = resolve_profile(profile) if "auto" in names else None
        self._static = float(_kernels.DENSITY_THRESHOLD)
        lowest = self.profile.min_threshold if self.profile is not None else self._static
        self._ops = [
            LayerOps(layer, name == "dense" or (name == "auto" and layer.density >= lowest))
            for layer, name in zip(bundle.layers, names, strict=True)
        ]
        self.layers: list[LayerInfo] = [
            LayerInfo(
                index=k,
                shape=layer.shape,
                nnz=layer.nnz,
                density=layer.density,
                activation=layer.activation,
                negative_slope=layer.negative_slope,
                kernel=kern,
            )
            for k, (layer, kern) in enumerate(zip(bundle.layers, self.kernels_for(1)), 1)
        ]
        self._input_index = bundle.input_index
        self._output_index = bundle.output_index
        self._output_const = bundle.output_const
        self._latent_layer = bundle.latent_layer
        self._routes = self._make_routes()
        self._fused_forward = self._routes["forward"].fused
        self._fast = self._routes["forward"].fast or {}
        self._logvar_model = self._make_logvar_model(names, profile)

    def _make_logvar_model(self, names: list[str], profile: Any) -> BundleModel | None:
        """A VAE's ``x → log σ²``: the trunk's layers (shared, read-only) and the head, as one
        more chain run by its own plans."""
        b = self.bundle
        if b.logvar is None:
            return None
        split = int(b.latent_layer) - 1 if b.layers else 0
        dim = int(b.latent_dim or 0)
        layers = (*b.layers[:split], b.logvar) if b.layers else ()
        head = Bundle(
            source=b.source,
            meta={"kind": "vae-logvar", "input_dim": b.input_dim, "output_dim": dim},
            layers=layers,
            input_index=b.input_index,
            output_index=np.arange(dim if layers else 0, dtype=np.int64),
            output_const=(np.zeros(dim, np.float32) if layers
                          else b.logvar.bias.astype(np.float32)),  # no column: act(b) = b
        )
        return BundleModel(head, kernel=[*names[:split], "auto"] if layers else "auto",
                           profile=self.profile if self.profile is not None else profile,
                           engine=self.engine)

    def _make_routes(self) -> dict[str, _Route]:
        b, n = self.bundle, len(self._ops)

        def route(what: str, width: int, index: np.ndarray, start: int, stop: int,
                  const: np.ndarray, out_index: np.ndarray) -> _Route:
            # Per sample: each layer's input with its row of ones (the folded bias), a scratch
            # for leaky_relu, the last buffer (live outputs, then the constant ones), the result.
            scatter_all = _is_arange(out_index, const.shape[0])
            perm, dead = _output_perm(out_index, const.shape[0])
            widths = [index.shape[0] + 1]
            for ops in self._ops[start:stop - 1]:
                widths.append(ops.shape[0] + 1)
            for ops in self._ops[start:stop]:
                if ops.layer.activation == "leaky_relu" and ops.layer.negative_slope >= 0:
                    widths.append(ops.shape[0])
            widths += [out_index.shape[0] + (0 if scatter_all else dead.shape[0]),
                       const.shape[0]]
            if not scatter_all:  # batches assemble the outputs feature-major, then transpose
                widths.append(const.shape[0])
            r = _Route(what, width, index, _is_arange(index, width), start, stop, const,
                       out_index, scatter_all, perm, const[dead].astype(np.float32), {}, widths)
            if self.engine == "numba" and stop > start:
                kerns = self.kernels_for(1)[start:stop]
                before = self._ops[start - 1].layer.activation if start else None
                r.fused = _fused.FusedForward(
                    self._ops[start:stop], kerns, index, perm, r.dead_const,
                    _fused.dense_layouts(self._ops[start:stop], kerns, before), width)
            else:
                r.sample = sample_plan(self._ops[start:stop], self.kernels_for(1)[start:stop],
                                       index, r.gather_all, out_index, perm, r.dead_const,
                                       scatter_all)
                if r.sample is not None:
                    r.fast = {(width,): r.sample.one, (1, width): r.sample.row}
            return r

        routes = {"forward": route("input", b.input_dim, b.input_index, 0, n, b.output_const,
                                   b.output_index)}
        if b.latent_layer is not None:
            assert b.latent_index is not None and b.latent_const is not None
            split = int(b.latent_layer) if n else 0
            routes["encode"] = route("input", b.input_dim, b.input_index, 0, split,
                                     b.latent_const, b.latent_index)
            routes["decode"] = route("latent", int(b.latent_dim or 0), b.latent_index, split, n,
                                     b.output_const, b.output_index)
        return routes

    # -- description ----------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        return self.bundle.meta

    @property
    def kind(self) -> str:
        return self.bundle.kind

    @property
    def input_dim(self) -> int:
        return self.bundle.input_dim

    @property
    def output_dim(self) -> int:
        return self.bundle.output_dim

    @property
    def latent_dim(self) -> int | None:
        return self.bundle.latent_dim

    @property
    def latent_layer(self) -> int | None:
        return self._latent_layer

    @property
    def is_autoencoder(self) -> bool:
        return self._latent_layer is not None

    @property
    def kernels(self) -> list[str]:
        """The kernel of each layer at batch size 1 (see :meth:`kernels_for`)."""
        return [info.kernel for info in self.layers]

    def kernels_for(self, batch: int) -> list[str]:
        """The kernel each layer runs with at batch size ``batch``."""
        out = []
        for name, ops in zip(self._names, self._ops, strict=True):
            if name == "auto":
                limit = self.profile.threshold(batch) if self.profile is not None else self._static
                name = "csr" if ops.density < limit else "dense"
            out.append(name)
        return out

    @property
    def kernel_rule(self) -> str:
        """How ``auto`` decides here: the profile's source or the static threshold."""
        if "auto" not in self._names:
            return "forced"
        if self.profile is not None:
            return f"profile {self.profile.source}"
        return f"static: csr when density < {self._static}"

    @property
    def nnz(self) -> int:
        return sum(info.nnz for info in self.layers)

    @property
    def input_index(self) -> np.ndarray:
        return self._input_index

    @property
    def output_index(self) -> np.ndarray:
        return self._output_index

    @property
    def sparsity(self) -> float | None:
        """The sparsity reported by the pruning run (``meta.report.sparsity``), if recorded."""
        report = self.meta.get("report")
        for source in (report if isinstance(report, dict) else {}, self.meta):
            value = source.get("sparsity")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return None

    def clone(self) -> BundleModel:
        """A model sharing this one's (read-only) weights, with its own buffers: one per thread."""
        twin = copy.copy(self)
        twin._routes = twin._make_routes()
        twin._fused_forward = twin._routes["forward"].fused
        twin._fast = twin._routes["forward"].fast or {}
        if self._logvar_model is not None:
            twin._logvar_model = self._logvar_model.clone()
        return twin

    def __repr__(self) -> str:
        shapes = ", ".join(f"{i.shape[0]}x{i.shape[1]}:{i.kernel}" for i in self.layers)
        return (
            f"BundleModel({self.kind}, {self.input_dim}->{self.output_dim}, nnz={self.nnz}, "
            f"layers=[{shapes}])"
        )

    # -- running --------------------------------------------------------------------------------
    def __call__(self, x: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Forward pass: ``(input_dim,)`` -> ``(output_dim,)``, batches ``(B, input_dim)`` too.

        ``out``: an optional C-contiguous float32 array of the result's shape to write into.
        """
        fused = self._fused_forward
        if fused is None:
            if out is None and type(x) is _NDARRAY and x.dtype is _F32:
                # One float32 sample, (input_dim,) or (1, input_dim): straight to the route's
                # generated one-sample function (plan.py); anything else is checked by _run.
                fast = self._fast.get(x.shape)
                if fast is not None:
                    return fast(x)
        elif (out is None and type(x) is np.ndarray and x.dtype == _F32
                and x.shape == fused.in_shape and x.flags.c_contiguous):
            # engine="numba", one float32 sample: straight to the compiled call (each check
            # and view of the general path costs ~0.1-0.3 µs, on a ~15 µs call)
            result = np.empty(fused.out_len, _F32)
            fused.fn(x, result, fused.floats, fused.meta, fused.ints)
            return result
        return self._run(self._routes["forward"], x, out)

    def encode(self, x: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Input -> latent code, full ``latent_dim`` wide (dead latent units = their constant)."""
        self._require_latent("encode")
        return self._run(self._routes["encode"], x, out)

    def decode(self, z: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Latent code (full ``latent_dim`` width; only live latent units are read) -> output."""
        self._require_latent("decode")
        return self._run(self._routes["decode"], z, out)

    @property
    def is_vae(self) -> bool:
        return self.kind == "vae"

    @property
    def has_logvar(self) -> bool:
        """Whether this VAE bundle carries its log-variance head (``--drop-logvar``: not)."""
        return self._logvar_model is not None

    def encode_logvar(self, x: Any, out: np.ndarray | None = None) -> np.ndarray:
        """A VAE's log σ² of the approximate posterior, ``latent_dim`` wide."""
        if self._logvar_model is None:
            raise ValueError(
                "encode_logvar() needs a VAE bundle with its log-variance head; this one has "
                "none" + (" (written with --drop-logvar)" if self.is_vae else "")
            )
        return self._logvar_model(x, out)

    def posterior(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """A VAE's ``(μ, log σ²)`` for ``x``."""
        return self.encode(x), self.encode_logvar(x)

    def sample(self, z: Any, seed: int | None = None) -> np.ndarray:
        """The VAE's generative path: ``decode(z)``. ``z`` is an array of latent codes (e.g.
        draws from N(0, I), or ``μ + σ ε`` from :meth:`posterior`), or a number ``n`` of codes
        to draw from N(0, I) with ``numpy.random.default_rng(seed)``."""
        dim = self._require_latent("sample") and int(self.latent_dim or 0)
        if isinstance(z, (int, np.integer)) and not isinstance(z, bool):
            if z < 0:
                raise ValueError(f"sample(n): n must be >= 0, got {z}")
            z = np.random.default_rng(seed).standard_normal((int(z), dim), dtype=np.float32)
        return self.decode(z)

    def _require_latent(self, what: str) -> int:
        if self._latent_layer is None:
            raise ValueError(
                f"{what}() needs an autoencoder bundle with a latent layer; this one is "
                f"{self.kind!r} without one"
            )
        return int(self._latent_layer)

    def _plan(self, route: _Route, batch: int) -> _Plan:
        """Build (once) the buffers and ops of ``route`` at ``batch`` (0: one sample, 1-D)."""
        plan = route.vec if batch == 0 else route.plans.get(batch)
        if plan is not None:
            return plan
        tail = (batch,) if batch else ()
        layers = self._ops[route.start:route.stop]
        chosen = self.kernels_for(max(batch, 1))[route.start:route.stop]
        # Each layer reads a buffer whose extra last row is 1 and writes straight into the next
        # layer's buffer; the last one writes above the constant outputs, so that one take()
        # assembles the result.
        h = np.empty((route.index.shape[0] + 1, *tail), dtype=np.float32)
        h[-1] = 1.0
        inbuf = h[:-1]
        live = route.out_index.shape[0]
        last = np.empty((live + (0 if route.scatter_all else route.dead_const.shape[0]), *tail),
                        dtype=np.float32)
        last[live:] = route.dead_const.reshape(-1, *([1] * len(tail)))
        ops: list[Op] = []
        for k, (layer, kern) in enumerate(zip(layers, chosen)):
            if k == len(layers) - 1:
                y = last[:live]
            else:
                nxt = np.empty((layer.shape[0] + 1, *tail), dtype=np.float32)
                nxt[-1] = 1.0
                y = nxt[:-1]
            ops += layer.ops(kern, h, y)
            if k < len(layers) - 1:
                h = nxt
        if not layers and live:  # no layer: the live outputs are the gathered inputs
            ops.append(functools.partial(np.copyto, last[:live], inbuf))
        if batch and not route.scatter_all:
            assembled = np.empty((route.const.shape[0], batch), dtype=np.float32)
        else:
            assembled = None
        plan = _Plan(inbuf=inbuf, last=last, ops=ops, assembled=assembled, kernels=list(chosen),
                     nbytes=limits.run_bytes(max(batch, 1), route.widths))
        if batch == 0:
            route.vec = plan
        else:
            # At most MAX_PLANS plans, and together at most MAX_RUN_BYTES beside the new one.
            while route.plans and (
                len(route.plans) >= MAX_PLANS
                or sum(p.nbytes for p in route.plans.values()) + plan.nbytes
                > limits.MAX_RUN_BYTES
            ):
                route.plans.pop(next(iter(route.plans)))
            route.plans[batch] = plan
        return plan

    def buffer_widths(self, mode: str = "forward") -> list[int]:
        """Float32 values per sample that a call in ``mode`` allocates (input copy, layer outputs,
        scratch, result): pass to :func:`~edgeprune.runtime.limits.check_batch_sizes`."""
        if mode == "logvar":
            if self._logvar_model is None:
                self.encode_logvar(np.zeros(self.input_dim, np.float32))  # raises: no head
            return self._logvar_model.buffer_widths("forward")
        if mode not in self._routes:
            self._require_latent(mode)
            raise ValueError(f"unknown mode {mode!r}; expected 'forward', 'encode' or 'decode'")
        return list(self._routes[mode].widths)

    def _check_batch(self, route: _Route, n: int) -> None:
        need = limits.run_bytes(n, route.widths)
        if need > limits.MAX_RUN_BYTES:
            raise limits.LimitError(
                f"a batch of {n} samples needs {limits.format_bytes(need)} of float32 buffers "
                f"({sum(route.widths)} values per sample), over the bound of "
                f"{limits.format_bytes(limits.MAX_RUN_BYTES)} (edgeprune.runtime.limits."
                f"MAX_RUN_BYTES); run it in batches of at most {limits.max_batch(route.widths)} "
                "samples"
            )

    def _run(self, route: _Route, x: Any, out: np.ndarray | None) -> np.ndarray:
        if out is None and route.fast is not None and type(x) is _NDARRAY and x.dtype is _F32:
            fast = route.fast.get(x.shape)
            if fast is not None:
                return fast(x)
        arr = x if type(x) is np.ndarray else np.asarray(x)
        if arr.ndim not in (1, 2) or arr.shape[-1] != route.width:
            raise ValueError(
                f"expected {route.what} of shape ({route.width},) or (batch, {route.width}), "
                f"got {arr.shape}"
            )
        if arr.dtype.kind != "f":
            if arr.dtype.kind not in "iub":
                raise ValueError(f"expected a real numeric {route.what}, got dtype {arr.dtype}")
            arr = arr.astype(np.float32)
        single = arr.ndim == 1
        n = 1 if single else arr.shape[0]
        shape = (route.const.shape[0],) if single else (n, route.const.shape[0])
        if out is not None and (
            out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous
        ):
            raise ValueError(f"out must be a C-contiguous float32 array of shape {shape}")
        if n == 0:
            return np.empty(shape, dtype=np.float32) if out is None else out
        vec = n == 1
        if vec and route.fused is not None:
            if out is None:
                out = np.empty(shape, dtype=np.float32)
            src = arr if single else arr[0]
            if src.dtype != np.float32 or not src.flags.c_contiguous:
                src = np.ascontiguousarray(src, dtype=np.float32)
            route.fused.run(src, out.reshape(-1))
            return out
        if vec and route.sample is not None:  # one sample, not float32 or with out=
            src = (arr if single else arr[0]).astype(np.float32, copy=False)
            if out is None:
                result = route.sample.one(src)
                return result if single else result.reshape(shape)
            route.sample.into(src, out.reshape(-1))
            return out
        if not vec and n not in route.plans:
            self._check_batch(route, n)
        plan = route.vec if vec and route.vec is not None else self._plan(route, 0 if vec else n)
        src = arr if single else (arr[0] if vec else arr.T)
        if route.gather_all:
            plan.inbuf[...] = src  # casts float64 input; a little cheaper than np.copyto
        else:
            np.take(src, route.index, axis=0, out=plan.inbuf, mode="clip")
        for op in plan.ops:
            op()
        h = plan.last
        if route.scatter_all:
            if out is None:  # one allocation + copy, always C-contiguous
                return (h.copy() if vec else h.T.copy()).reshape(shape)
            (out.reshape(-1) if vec else out)[...] = h if vec else h.T
            return out
        if out is None:
            out = np.empty(shape, dtype=np.float32)
        if vec:
            np.take(h, route.perm, out=out.reshape(-1), mode="clip")
        else:  # rows gathered contiguously, then one transposed copy (not a strided gather)
            assert plan.assembled is not None
            np.take(h, route.perm, axis=0, out=plan.assembled, mode="clip")
            out[...] = plan.assembled.T
        return out
