"""One-sample execution plans: a route's batch-1 call as one straight-line Python function.

A one-sample call of the NumPy/SciPy engine is a dozen small numpy calls (the input gather,
one product and one or two activation ufuncs per layer, the output scatter), each costing
0.3-1 µs of fixed overhead on top of its work; the layer products themselves are 2-20 µs. So
whatever Python runs between them shows up directly in the end-to-end latency. At load,
:func:`sample_plan` therefore builds, per route, everything a one-sample call needs:

- float32 buffers: the gathered input, each layer's output written straight into the next
  layer's input buffer (whose extra last element is 1, so a dense product folds the bias in as
  one more weight column or row), and the last layer's output sitting above the constant
  outputs, so that one ``take`` assembles the result;
- the arrays each layer runs with, in the layout the product wants (:meth:`LayerOps.arrays_for`);
  a sigmoid layer's weights and bias are pre-scaled by 1/2 (exact in binary floating point), so
  its activation ``0.5 * tanh(z / 2) + 0.5`` is three in-place ufuncs, not four;
- and a function whose body is the straight list of calls, generated as Python source and
  compiled once (the technique of :mod:`dataclasses`): every array and numpy function it uses
  is a closure variable, so a call runs no loop, attribute or dict lookup, ``functools.partial``
  keyword merging, validation or allocation besides the returned array. The generated source
  holds only names this module makes up (``dot_3``, ``a_0``, ...), never anything read from a
  bundle; the values are bound as closure cells. ``plan.source`` shows it.

The last op writes the result: with an identity output map, the last activation ufunc itself
allocates the returned array (no copy); otherwise the activation runs in place and ``take``
gathers ``[live outputs; constants]`` into a fresh array. Both ``take`` s run with
``mode="wrap"``, the cheapest mode (allocating: 0.86 against 1.00 µs for ``"raise"``); the
indices were validated at load, so nothing ever wraps. Every call returns a new array; the
buffers are the model's own, which is why one model must not run on two threads at once (see
:mod:`edgeprune.runtime.model`: ``clone()`` per thread).

Three functions share one set of buffers: ``one(x)`` for ``x`` of shape ``(width,)``, ``row(x)``
for ``(1, width)`` (the result keeps the leading 1) and ``into(x, out)`` writing a 1-D result
into ``out``. Their input must be a float32 ndarray of that shape (any strides); the caller
checks that (:class:`~edgeprune.runtime.model.BundleModel` does it in a few identity and tuple
comparisons, and sends anything else through its validating path).

Dense layout at batch 1 (:data:`DENSE_LAYOUT`): on x86-64 ``np.dot(h, W_T)`` (OpenBLAS's
column-wise ``sgemv_n``, the bias as W_T's last row) rather than ``np.dot(W, h)`` (row-wise
``sgemv_t``, the bias as W's last column). Per model it is the faster of the two on all five
MNIST autoencoders (summed over their layers: 20.7 vs 29.6 µs unpruned, 15.4 vs 16.2 µs at
η = 0.9; ``dense_us`` and ``dense_cols_us`` per layer in
``benchmarks/results/runtime_latency/latency.json``): clearly faster on tall layers (632x224,
784x225, 224x45) and on the unpruned ones, slower by up to 1.1 µs on some wide pruned layers
(193x464, 111x254), so a per-layer choice would gain a little more ("any layout" in that
benchmark). Other architectures keep the row layout: no board measurement exists here.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .activations import apply_activation
from .kernels import LayerOps, _sparsetools

__all__ = ["DENSE_LAYOUT", "SamplePlan", "sample_plan"]

_F32 = np.float32
#: How the dense product of one sample runs: ``"cols"`` (``np.dot(h, W_T)``) or ``"rows"``.
DENSE_LAYOUT = "cols" if platform.machine().lower() in ("x86_64", "amd64") else "rows"


@dataclass(frozen=True)
class SamplePlan:
    """A route's one-sample functions (see the module docstring) and their generated source."""

    one: Callable[[np.ndarray], np.ndarray]
    row: Callable[[np.ndarray], np.ndarray]
    into: Callable[[np.ndarray, np.ndarray], None]
    layouts: tuple[str, ...]  # per layer: "rows", "cols" or "csr"
    source: str


class _Code(str):
    """A piece of source (a parameter name or a literal), written into a call as it is."""


_X, _OUT, _WRAP = _Code("x"), _Code("out"), _Code("'wrap'")


class _Source:
    """The lines of a generated function and the objects it closes over."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {}
        self.lines: list[str] = []
        self._ids: dict[int, str] = {}

    def name(self, value: Any, hint: str = "a") -> str:
        """The closure variable holding ``value`` (one per object): ``<hint>_<n>``."""
        key = id(value)
        if key not in self._ids:
            self._ids[key] = f"{hint}_{len(self.env)}"
            self.env[self._ids[key]] = value
        return self._ids[key]

    def ref(self, value: Any) -> str:
        return value if isinstance(value, _Code) else self.name(value)

    def call(self, fn: Any, *args: Any, out: Any = None) -> str:
        """Source of ``fn(*args, out)``: ``out`` positional for a ufunc (~30 ns cheaper than the
        keyword), except ``maximum``/``minimum``, where numpy deprecated that."""
        text = ", ".join(self.ref(a) for a in args)
        if out is not None:
            positional = isinstance(fn, np.ufunc) and fn not in (np.maximum, np.minimum)
            text += f", {self.ref(out)}" if positional else f", out={self.ref(out)}"
        hint = "".join(c for c in getattr(fn, "__name__", "f") if c.isalnum() or c == "_")
        return f"{self.name(fn, hint or 'f')}({text})"


def _functions(src: _Source, bodies: dict[str, tuple[str, list[str]]]) -> tuple[dict, str]:
    """Compile one function per ``{name: (parameters, lines)}``, all closing over ``src.env``."""
    params = ", ".join(src.env)
    text = [f"def _bind({params}):"]
    for fname, (args, lines) in bodies.items():
        text.append(f"    def {fname}({args}):")
        text += [f"        {line}" for line in lines]
    text.append("    return {" + ", ".join(f"{n!r}: {n}" for n in bodies) + "}")
    source = "\n".join(text) + "\n"
    scope: dict[str, Any] = {}
    exec(compile(source, "<edgeprune.runtime.plan>", "exec"), scope)  # noqa: S102 - see docstring
    return scope["_bind"](**src.env), source


# Constants as 0-d arrays: a ufunc takes one ~0.15 µs faster than a numpy scalar (measured).
_ZERO = np.zeros((), dtype=_F32)
_HALF = np.full((), 0.5, dtype=_F32)


def _activation_steps(name: str, slope: float, y: np.ndarray,
                      scratch: Callable[[], np.ndarray]) -> list[tuple[Any, tuple, Any]]:
    """In-place steps ``(fn, args, out)`` of an activation (sigmoid: on pre-halved input)."""
    if name == "identity":
        return []
    if name == "relu":
        return [(np.maximum, (y, _ZERO), y)]
    if name == "tanh":
        return [(np.tanh, (y,), y)]
    if name == "sigmoid":  # z / 2 came out of the product: 0.5 * tanh(z / 2) + 0.5
        return [(np.tanh, (y,), y), (np.multiply, (y, _HALF), y), (np.add, (y, _HALF), y)]
    if name == "leaky_relu":
        alpha = np.asarray(slope, dtype=_F32)
        if slope >= 0.0:  # max(z, a z) for 0 <= a <= 1, min(z, a z) for a > 1
            buf = scratch()
            pick = np.maximum if slope <= 1.0 else np.minimum
            return [(np.multiply, (y, alpha), buf), (pick, (y, buf), y)]
        return [(apply_activation, (y, name, slope), y)]
    raise ValueError(f"unknown activation {name!r}")


def _emit_layer(src: _Source, ops: LayerOps, kernel: str, h: np.ndarray, y: np.ndarray) -> str:
    """Lines computing ``y = W @ h[:-1] + b`` (sigmoid layers: halved); returns the layout."""
    scale = 0.5 if ops.layer.activation == "sigmoid" else 1.0
    if kernel == "dense":
        layout = DENSE_LAYOUT
        weight = ops.arrays_for(layout, scale)[0]
        args = (weight, h) if layout == "rows" else (h, weight)
        src.lines.append(src.call(np.dot, *args, y))
        return layout
    data, bias = ops.arrays_for("csr", scale)
    rows, cols = ops.shape
    x = h[:cols]
    src.lines.append(src.call(np.copyto, y, bias))
    fast = _sparsetools()
    if fast is None:  # pragma: no cover - scipy without _sparsetools
        src.lines.append(src.call(_csr_fallback, ops.matrix, data, x, y))
    else:
        m = ops.matrix
        src.lines.append(src.call(fast[0], rows, cols, m.indptr, m.indices, data, x, y))
    return "csr"


def _csr_fallback(matrix: Any, data: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
    import scipy.sparse as sp

    y += sp.csr_matrix((data, matrix.indices, matrix.indptr), shape=matrix.shape) @ x


def sample_plan(layers: Sequence[LayerOps], kernels: Sequence[str], index: np.ndarray,
                gather_all: bool, out_index: np.ndarray, perm: np.ndarray,
                dead_const: np.ndarray, scatter_all: bool) -> SamplePlan | None:
    """The one-sample functions of a route through ``layers`` (None without layers or with an
    empty one: the model's general path runs those). Arguments as in the model's ``_Route``:
    used input features ``index`` (``gather_all``: all of them, in order), live output
    positions ``out_index``, ``perm`` (output position -> row of ``[live; dead_const]``)."""
    if not layers or any(0 in ops.shape for ops in layers) or index.shape[0] == 0:
        return None
    src = _Source()
    h = np.empty(index.shape[0] + 1, dtype=_F32)
    h[-1] = 1.0
    inbuf = h[:-1]
    live = out_index.shape[0]
    ext = np.empty(live + (0 if scatter_all else dead_const.shape[0]), dtype=_F32)
    ext[live:] = dead_const
    body: list[str] = []
    layouts = []
    steps: list[tuple[Any, tuple, Any]] = []
    y = ext[:live]
    for k, ops in enumerate(layers):
        if k < len(layers) - 1:
            nxt = np.empty(ops.shape[0] + 1, dtype=_F32)
            nxt[-1] = 1.0
            y = nxt[:-1]
        else:
            nxt, y = ext, ext[:live]
        layouts.append(_emit_layer(src, ops, kernels[k], h, y))
        layer = ops.layer
        steps = _activation_steps(layer.activation, layer.negative_slope, y,
                                  lambda y=y: np.empty_like(y))
        if k < len(layers) - 1:
            src.lines += [src.call(fn, *args, out=out) for fn, args, out in steps]
        h = nxt
    body = src.lines
    src.lines = []

    def tail(shape: tuple[int, ...] | None) -> list[str]:
        """The last activation and the result: fresh of ``shape``, or into ``out`` (None)."""
        lines = [src.call(fn, *args, out=out) for fn, args, out in steps]
        if not scatter_all:
            if shape is None:
                return [*lines, src.call(np.ndarray.take, ext, perm, None, _OUT, _WRAP)]
            return [*lines, "return " + src.call(np.ndarray.take, ext, perm.reshape(shape),
                                                 None, None, _WRAP)]
        if not steps:  # identity: a copy is the one op
            if shape is None:
                return [src.call(np.copyto, _OUT, y)]
            return ["return " + src.call(np.ndarray.copy, y.reshape(shape))]
        fn, args, _ = steps[-1]
        if shape is None:  # the last activation ufunc writes the result
            return [*lines[:-1], src.call(fn, *args, out=_OUT)]
        # ... or allocates it, shaped like its (reshaped) operands
        args = tuple(a.reshape(shape) if isinstance(a, np.ndarray) and a.shape == y.shape
                     else a for a in args)
        return [*lines[:-1], "return " + src.call(fn, *args)]

    if gather_all:
        def gather(shape: tuple[int, ...]) -> str:
            return f"{src.name(inbuf.reshape(shape))}[...] = x"
    else:
        def gather(shape: tuple[int, ...]) -> str:
            return src.call(np.ndarray.take, _X, index, None, inbuf, _WRAP)
    width = index.shape[0]
    fns, source = _functions(src, {
        "one": ("x", [gather((width,)), *body, *tail(perm.shape)]),
        "row": ("x", [gather((1, width)), *body, *tail((1, perm.shape[0]))]),
        "into": ("x, out", [gather((width,)), *body, *tail(None)]),
    })
    return SamplePlan(fns["one"], fns["row"], fns["into"], tuple(layouts), source)
