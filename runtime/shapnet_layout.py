"""The layout of a compiled ShapNet in a bundle (version 4), its structures and their checks.

numpy only, like the rest of :mod:`edgeprune.runtime`. A ShapNet (Wang, Wang & Inouye, ICLR
2021) is a cascade of Shapley transforms; each transform is a set of Shapley modules, module
``j`` reading the ``k`` features ``active[j]`` of the transform's input (``in_features`` x
``in_channels``, feature-major: feature ``i`` channel ``c`` is position ``i * C + c``) with a
reference ``reference[j]`` (``k * C`` values) and an inner MLP ``f_j``. A transform compiles
into consecutive layers of the ordinary CSR chain:

1. **copies** (identity): the ``M = 2**k`` masked copies of every module's inputs, rows ordered
   (module, mask, feature, channel); mask ``s`` keeps feature ``a`` when bit ``a`` of ``s`` is
   set: a row with weight 1 on that input, bias 0; a removed feature is a row without entries
   whose bias is the reference value.
2. **inner** layers (the inner MLP's activations): block diagonal, one block per (module, mask),
   the ``M`` blocks of a module identical: ``f_j`` applied to every copy.
3. **difference** (identity): for every module, feature ``a`` and coalition ``S`` without ``a``
   (in increasing mask order), ``f(S + a) - f(S)`` per output channel: entries -1, +1.
4. **mixing** (identity): the Shapley representation ``Z[i, c] = sum over (j, a, S) with
   active[j, a] = i of w(|S|) * difference`` with ``w(s) = s! (k - s - 1)! / k!``. The last
   transform's mixing layer is the *output* layer instead: ``prediction_dim`` prediction rows,
   then ``features * explanation_channels`` explanation rows (the output transform folded in).

A module whose inputs equal its reference has identical copies, so its differences are exactly
zero, and so are its Shapley values (Cor. 4 of the paper): that is what dynamic pruning skips.
:func:`validate_shapnet` checks that a bundle's chain has exactly this structure (copies and
differences entry by entry, inner layers block diagonal with identical blocks) before anything
runs it, so the skip rule holds for every bundle the runtime accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial
from typing import Any

import numpy as np

from .checks import Checker

__all__ = [
    "MAX_K",
    "ShapnetLayout",
    "TransformLayout",
    "copies_layer",
    "declared_shapnet_arrays",
    "difference_layer",
    "difference_pairs",
    "parse_shapnet_meta",
    "shapley_weights",
    "validate_shapnet",
]

#: The largest active set a bundle may declare: 2**k masked copies per module (the paper: k <= 4).
MAX_K = 8
_IDENTITY = "identity"


def shapley_weights(k: int) -> np.ndarray:
    """``w(s) = s! (k - s - 1)! / k!`` for coalition sizes ``s = 0 .. k - 1`` (float64)."""
    return np.array([factorial(s) * factorial(k - s - 1) / factorial(k) for s in range(k)])


def difference_pairs(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(without, with_, sizes)``, each ``(k, 2**(k-1))``: for feature ``a`` the masks ``S``
    without bit ``a`` in increasing order, ``S | bit a`` and ``|S|``."""
    masks = np.arange(2**k)
    without = np.stack([masks[(masks >> a) & 1 == 0] for a in range(k)])
    with_ = without | (1 << np.arange(k))[:, None]
    sizes = np.array([[bin(int(s)).count("1") for s in row] for row in without]).reshape(
        without.shape)
    return without, with_, sizes


def coalition_bits(k: int) -> np.ndarray:
    """``(2**k, k)`` 0/1: row ``s`` keeps feature ``a`` when bit ``a`` of ``s`` is set."""
    return ((np.arange(2**k)[:, None] >> np.arange(k)) & 1).astype(np.int8)


@dataclass(frozen=True)
class TransformLayout:
    """One Shapley transform: its modules and where its layers sit in the chain."""

    in_features: int
    in_channels: int
    out_channels: int
    k: int
    inner_widths: tuple[int, ...]  # the inner MLP's layer widths; the last is out_channels
    inner_activations: tuple[str, ...]
    first_layer: int  # 0-based index of the copies layer in the chain
    active: np.ndarray  # (modules, k) int64
    reference: np.ndarray  # (modules, k * in_channels) float32

    @property
    def n_modules(self) -> int:
        return int(self.active.shape[0])

    @property
    def n_masks(self) -> int:
        return 2**self.k

    @property
    def n_layers(self) -> int:
        """copies + inner layers + difference + mixing."""
        return len(self.inner_widths) + 3

    @property
    def mixing_layer(self) -> int:
        return self.first_layer + self.n_layers - 1

    def module_rows(self) -> list[int]:
        """Rows per module of each layer that is computed per module (copies, inner, diff)."""
        m = self.n_masks
        rows = [m * self.k * self.in_channels]
        rows += [m * width for width in self.inner_widths]
        rows.append(self.k * (m // 2) * self.out_channels)
        return rows

    def input_positions(self) -> np.ndarray:
        """``(modules, k * in_channels)``: the transform-input position of each module input."""
        c = self.in_channels
        return (self.active[:, :, None] * c + np.arange(c)).reshape(self.n_modules, -1)


@dataclass(frozen=True)
class ShapnetLayout:
    """A bundle's ShapNet section: the outputs' split and the transforms.

    ``features`` is the width of every Shapley representation, ``inputs`` (<= features) the
    model's inputs: features ``inputs ..`` are padding, 0 in the input and at their reference
    0 everywhere (a Deep ShapNet pads to ``k**stages``); only real features are explained."""

    variant: str
    features: int
    inputs: int
    prediction_dim: int
    explanation_channels: int
    transforms: tuple[TransformLayout, ...]

    @property
    def n_modules(self) -> int:
        return sum(t.n_modules for t in self.transforms)

    @property
    def output_dim(self) -> int:
        return self.prediction_dim + self.inputs * self.explanation_channels

    def split(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Chain output ``(..., output_dim)`` -> prediction ``(..., P)``, explanation
        ``(..., inputs, explanation_channels)`` (views)."""
        p = self.prediction_dim
        expl = y[..., p:].reshape(*y.shape[:-1], self.inputs, self.explanation_channels)
        return y[..., :p], expl


def copies_layer(active: np.ndarray, reference: np.ndarray, available: int,
                 in_channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR ``(indptr, indices, data, bias)`` of the copies layer (see the module docstring).

    Features ``available ..`` are padding: not in the layer's input, constant 0 (a kept
    padding feature is a row without entries and bias 0)."""
    n, k = active.shape
    c = in_channels
    bits = coalition_bits(k).astype(bool)  # (M, k)
    kept = np.broadcast_to(bits[None, :, :, None], (n, 2**k, k, c)).reshape(-1)
    real = np.broadcast_to((active < available)[:, None, :, None], (n, 2**k, k, c)).reshape(-1)
    cols = (active[:, None, :, None] * c + np.arange(c)).astype(np.int64)
    cols = np.broadcast_to(cols, (n, 2**k, k, c)).reshape(-1)
    ref = np.broadcast_to(reference.reshape(n, 1, k, c), (n, 2**k, k, c)).reshape(-1)
    entry = kept & real
    indptr = np.zeros(entry.shape[0] + 1, dtype=np.int32)
    np.cumsum(entry, out=indptr[1:])
    indices = cols[entry].astype(np.int32)
    data = np.ones(indices.shape[0], dtype=np.float32)
    bias = np.where(kept, np.float32(0), ref).astype(np.float32)
    return indptr, indices, data, bias


def difference_layer(n_modules: int, k: int, out_channels: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR ``(indptr, indices, data)`` of the difference layer (bias 0)."""
    without, with_, _ = difference_pairs(k)
    m, c = 2**k, out_channels
    j = np.arange(n_modules)[:, None, None, None]
    ch = np.arange(c)[None, None, None, :]
    lo = ((j * m + without[None, :, :, None]) * c + ch)  # (n, k, M/2, C)
    hi = ((j * m + with_[None, :, :, None]) * c + ch)
    rows = lo.size
    indices = np.stack([lo.reshape(-1), hi.reshape(-1)], axis=1).reshape(-1).astype(np.int32)
    data = np.tile(np.array([-1.0, 1.0], dtype=np.float32), rows)
    indptr = (2 * np.arange(rows + 1)).astype(np.int32)
    return indptr, indices, data


# -- meta ------------------------------------------------------------------------------------
def _transforms_meta(meta: dict[str, Any]) -> list[dict[str, Any]]:
    return meta["shapnet"]["transforms"]


def parse_shapnet_meta(meta: dict[str, Any], check: Checker, max_dim: int) -> None:
    """Check ``meta.shapnet`` (types, bounds, chaining) before any array is read."""
    sec = meta.get("shapnet")
    if not isinstance(sec, dict):
        raise check.fail("meta.shapnet", f"must be a JSON object, got {type(sec).__name__}")
    if not isinstance(sec.get("variant"), str):
        raise check.fail("meta.shapnet.variant", f"must be a string, got {sec.get('variant')!r}")
    d = check.integer(sec.get("features"), "meta.shapnet.features", 1, max_dim, "MAX_DIM")
    n_in = check.integer(sec.get("inputs"), "meta.shapnet.inputs", 1, d, "shapnet.features")
    p = check.integer(sec.get("prediction_dim"), "meta.shapnet.prediction_dim", 1, max_dim,
                      "MAX_DIM")
    o = check.integer(sec.get("explanation_channels"), "meta.shapnet.explanation_channels", 1,
                      max_dim, "MAX_DIM")
    if meta["input_dim"] != n_in:
        raise check.fail("meta.shapnet.inputs", f"is {n_in} but meta.input_dim is "
                         f"{meta['input_dim']}")
    if meta["output_dim"] != p + n_in * o:
        raise check.fail("meta.output_dim", f"is {meta['output_dim']}, a ShapNet with "
                         f"{p} prediction and {n_in} x {o} explanation outputs has "
                         f"{p + n_in * o}")
    transforms = sec.get("transforms")
    if not isinstance(transforms, list) or not transforms:
        raise check.fail("meta.shapnet.transforms", "must be a non-empty list")
    channels, n_layers = 1, 0
    for t, entry in enumerate(transforms, start=1):
        field = f"meta.shapnet.transforms[{t}]"
        if not isinstance(entry, dict):
            raise check.fail(field, f"must be a JSON object, got {type(entry).__name__}")
        c_in = check.integer(entry.get("in_channels"), f"{field}.in_channels", 1, max_dim,
                             "MAX_DIM")
        if c_in != channels:
            raise check.fail(f"{field}.in_channels", f"is {c_in}, the transform before it "
                             f"gives {channels} channels per feature")
        check.integer(entry.get("k"), f"{field}.k", 1, min(MAX_K, d), "shapnet_layout.MAX_K")
        check.integer(entry.get("modules"), f"{field}.modules", 1, max_dim, "MAX_DIM")
        widths = entry.get("inner_widths")
        if not isinstance(widths, list) or not widths:
            raise check.fail(f"{field}.inner_widths", "must be a non-empty list of widths")
        for w, width in enumerate(widths):
            check.integer(width, f"{field}.inner_widths[{w}]", 1, max_dim, "MAX_DIM")
        channels = check.integer(entry.get("out_channels"), f"{field}.out_channels", 1,
                                 max_dim, "MAX_DIM")
        if widths[-1] != channels:
            raise check.fail(f"{field}.inner_widths", f"ends at {widths[-1]}, expected "
                             f"out_channels={channels}")
        n_layers += len(widths) + 3
    if n_layers != len(meta["layers"]):
        raise check.fail("meta.shapnet.transforms", f"describe {n_layers} layers, the bundle "
                         f"has {len(meta['layers'])}")
    for field in ("latent_layer", "latent_dim"):
        if meta.get(field) is not None:
            raise check.fail(f"meta.{field}", "must be null in a ShapNet bundle")


def declared_shapnet_arrays(meta: dict[str, Any]) -> dict[str, tuple[np.dtype, int, bool]]:
    """``shapnet.tT.active`` (int64, modules * k) and ``.reference`` (float32, * channels)."""
    out: dict[str, tuple[np.dtype, int, bool]] = {}
    for t, entry in enumerate(_transforms_meta(meta), start=1):
        n, k = int(entry["modules"]), int(entry["k"])
        out[f"shapnet.t{t}.active"] = (np.dtype(np.int64), n * k, False)
        out[f"shapnet.t{t}.reference"] = (np.dtype(np.float32), n * k * int(entry["in_channels"]),
                                          False)
    return out


# -- the chain against the layout --------------------------------------------------------------
def _expect_shape(layer: Any, shape: tuple[int, int], act: str | None, name: str,
                  check: Checker) -> None:
    if tuple(layer.shape) != shape:
        raise check.fail(f"meta.layers[{name}].shape", f"is {list(layer.shape)}, the ShapNet "
                         f"layout needs {list(shape)}")
    if act is not None and layer.activation != act:
        raise check.fail(f"meta.layers[{name}].activation", f"is {layer.activation!r}, the "
                         f"ShapNet layout needs {act!r}")


def _expect_csr(layer: Any, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                bias: np.ndarray, name: str, what: str, check: Checker) -> None:
    same = (np.array_equal(layer.indptr, indptr) and np.array_equal(layer.indices, indices)
            and np.array_equal(layer.data, data) and np.array_equal(layer.bias, bias))
    if not same:
        raise check.fail(f"layer{name}", f"is not the {what} layer its ShapNet layout "
                         "describes")


def _check_inner(layer: Any, n: int, m: int, width_in: int, name: str, check: Checker) -> None:
    """Block diagonal with one block per (module, mask) and identical blocks per module."""
    rows = layer.shape[0]
    per_block = rows // (n * m)
    block = np.repeat(np.arange(n * m), per_block)  # row -> (module, mask) block
    rowlen = np.diff(layer.indptr)
    start = np.repeat(block * width_in, rowlen)
    local = layer.indices.astype(np.int64) - start
    if local.size and (local.min() < 0 or local.max() >= width_in):
        raise check.fail(f"layer{name}", "reads outside its (module, copy) block; a ShapNet "
                         "inner layer must be block diagonal")
    if not np.array_equal(layer.bias.reshape(n, m, per_block),
                          np.broadcast_to(layer.bias.reshape(n, m, per_block)[:, :1], (n, m,
                                                                                     per_block))):
        raise check.fail(f"layer{name}.bias", "differs between the copies of a module")
    lens = rowlen.reshape(n, m, per_block)
    if not (lens == lens[:, :1]).all():
        raise check.fail(f"layer{name}", "has copies of a module with different links")
    # Each non-zero against the same position in its module's first copy (copy blocks of a
    # module are contiguous and equally long: q[j] non-zeros each).
    q = lens[:, 0].sum(axis=1)  # (n,)
    nnz_module = np.repeat(block // m, rowlen)
    nnz_copy = np.repeat(block % m, rowlen)
    first = np.arange(local.shape[0]) - nnz_copy * q[nnz_module]
    differs = (layer.data != layer.data[first]) | (local != local[first])
    if differs.any():
        j = int(nnz_module[int(np.argmax(differs))])
        raise check.fail(f"layer{name}", f"has copies of module {j} with different "
                         "weights; every copy must apply the same inner function")


def validate_shapnet(meta: dict[str, Any], arrays: dict[str, np.ndarray], layers: tuple,
                     input_index: np.ndarray, output_index: np.ndarray,
                     check: Checker) -> ShapnetLayout:
    """The checked :class:`ShapnetLayout` of a version-4 bundle whose layers are validated."""
    sec = meta["shapnet"]
    d, out_dim = int(sec["features"]), int(meta["output_dim"])
    n_in = int(sec["inputs"])
    if not np.array_equal(input_index, np.arange(n_in)):
        raise check.fail("input_index", "must list every input in a ShapNet bundle")
    if not np.array_equal(output_index, np.arange(out_dim)):
        raise check.fail("output_index", "must list every output in a ShapNet bundle")
    transforms: list[TransformLayout] = []
    first = 0
    entries = _transforms_meta(meta)
    for t, entry in enumerate(entries, start=1):
        n, k, c_in = int(entry["modules"]), int(entry["k"]), int(entry["in_channels"])
        c_out, widths = int(entry["out_channels"]), tuple(int(w) for w in entry["inner_widths"])
        active = check.array(arrays, f"shapnet.t{t}.active", np.dtype(np.int64), n * k)
        reference = check.array(arrays, f"shapnet.t{t}.reference", np.dtype(np.float32),
                                n * k * c_in)
        bad = (active < 0) | (active >= d)
        if bad.any():
            pos = int(np.argmax(bad))
            raise check.fail(f"shapnet.t{t}.active", f"holds feature {active[pos]} at position "
                             f"{pos}, outside [0, features={d})")
        check.finite(reference, f"shapnet.t{t}.reference")
        active = active.reshape(n, k)
        if k > 1:
            ordered = np.sort(active, axis=1)
            dup = (np.diff(ordered, axis=1) == 0).any(axis=1)
            check.none_of(dup, f"shapnet.t{t}.active",
                          lambda pos: f"repeats a feature in module {pos}")
        m = 2**k
        chain = layers[first:first + len(widths) + 3]
        base = first + 1  # 1-based layer numbers in messages
        available = n_in if t == 1 else d
        _expect_shape(chain[0], (n * m * k * c_in, available * c_in), _IDENTITY, str(base),
                      check)
        _expect_csr(chain[0], *copies_layer(active, reference.reshape(n, -1), available, c_in),
                    str(base), "masked-copies", check)
        width_in = k * c_in
        acts = []
        for w, width in enumerate(widths, start=1):
            layer = chain[w]
            _expect_shape(layer, (n * m * width, n * m * width_in), None, str(base + w), check)
            _check_inner(layer, n, m, width_in, str(base + w), check)
            acts.append(layer.activation)
            width_in = width
        diff = chain[len(widths) + 1]
        name = str(base + len(widths) + 1)
        _expect_shape(diff, (n * k * (m // 2) * c_out, n * m * c_out), _IDENTITY, name, check)
        _expect_csr(diff, *difference_layer(n, k, c_out),
                    np.zeros(diff.shape[0], np.float32), name, "difference", check)
        mix = chain[-1]
        rows = out_dim if t == len(entries) else d * c_out
        _expect_shape(mix, (rows, n * k * (m // 2) * c_out), _IDENTITY,
                      str(base + len(widths) + 2), check)
        transforms.append(TransformLayout(d, c_in, c_out, k, widths, tuple(acts), first,
                                          active, reference.reshape(n, -1)))
        first += len(widths) + 3
    last = transforms[-1]
    if last.out_channels < 1:  # pragma: no cover - parse_shapnet_meta bounds it
        raise check.fail("meta.shapnet", "has no output channels")
    return ShapnetLayout(str(sec["variant"]), d, n_in, int(sec["prediction_dim"]),
                         int(sec["explanation_channels"]), tuple(transforms))
