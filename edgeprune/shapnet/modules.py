"""Shapley modules (Wang et al., ICLR 2021, Def. 7): a small MLP over an active set of k <= 4
inputs whose outputs are the exact Shapley values of those inputs.

A Shapley value is a fixed linear combination of the function's values on the 2^k coalitions
(Def. 1, Baseline Shapley: an absent input is set to its reference value). So a module

1. builds the 2^k masked copies of its k inputs (:func:`coalition_masks`: row ``s`` holds bit
   ``i`` of ``s`` = "input i present"; an absent input takes ``reference[i]``),
2. evaluates its inner MLP ``inner`` on every copy in one batched call, and
3. mixes the 2^k outputs with the fixed weights of :func:`shapley_mixing_weights`
   (``phi[i] = sum_s W[i, s] * f(copy_s)``).

Both tables are plain arrays so that a compiler can turn a module into a structured sparse
feed-forward computation (copies = a gather + select, inner MLP per copy, mixing = a (k, 2^k)
matrix). Everything here is plain PyTorch.
"""

from __future__ import annotations

from math import factorial

import numpy as np
import torch
from torch import nn

from edgeprune.errors import EdgepruneError
from edgeprune.torch_network import ACTIVATION_MODULES  # inner-MLP activations

#: The largest active set a module may have (2^k inner evaluations per sample).
MAX_ACTIVE = 4


class ShapNetError(EdgepruneError):
    """A user-facing problem with a ShapNet's architecture, options or file (one line)."""


def coalition_masks(k: int) -> np.ndarray:
    """The 2^k coalitions of k players as a (2^k, k) bool array: row ``s`` has ``True`` at
    player ``i`` iff bit ``i`` of ``s`` is set (row 0 = nobody present, the reference)."""
    _check_k(k)
    s = np.arange(2 ** k)[:, None]
    return ((s >> np.arange(k)[None, :]) & 1).astype(bool)


def shapley_mixing_weights(k: int) -> np.ndarray:
    """The (k, 2^k) float64 matrix ``W`` with ``phi_i = sum_s W[i, s] f(coalition s)``.

    For player i and coalition S (|S| = size of S): ``W[i, S] = (|S|-1)! (k-|S|)! / k!`` when
    i is in S, ``-|S|! (k-|S|-1)! / k!`` when it is not (eq. 1 of the paper with the two
    terms of every marginal contribution collected per coalition). Every row sums to 0 and
    every column sums to 1 for the grand coalition, -1 for the empty one, 0 otherwise, which
    gives efficiency: ``sum_i phi_i = f(all present) - f(reference)``."""
    masks = coalition_masks(k)
    sizes = masks.sum(axis=1)
    w = np.zeros((k, 2 ** k))
    for i in range(k):
        inside = masks[:, i]
        w[i, inside] = [factorial(n - 1) * factorial(k - n) / factorial(k) for n in sizes[inside]]
        w[i, ~inside] = [-factorial(n) * factorial(k - n - 1) / factorial(k)
                         for n in sizes[~inside]]
    return w


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_ACTIVE:
        raise ShapNetError(f"a Shapley module's active set has 1..{MAX_ACTIVE} inputs, got {k}; "
                           f"choose --active-size between 1 and {MAX_ACTIVE}")


def inner_mlp(in_features: int, hidden: list[int], out_features: int,
              activation: str = "relu") -> nn.Sequential:
    """``Linear -> act -> ... -> Linear``: the inner function of a module (no output act)."""
    if activation not in ACTIVATION_MODULES:
        raise ShapNetError(f"inner activation {activation!r} is not one of "
                           f"{', '.join(ACTIVATION_MODULES)}; pick one of them")
    dims = [in_features, *hidden, out_features]
    layers: list[nn.Module] = []
    for n in range(len(dims) - 1):
        layers.append(nn.Linear(dims[n], dims[n + 1]))
        if n < len(dims) - 2:
            layers.append(ACTIVATION_MODULES[activation]())
    return nn.Sequential(*layers)


class ShapleyModule(nn.Module):
    """Exact Shapley values of a small MLP over ``k = len(active)`` inputs (paper Def. 7).

    Attributes (all part of ``state_dict``):

    - ``active``: LongTensor buffer (k,), the indices of the module's inputs in the layer's
      feature axis (the module's player i is feature ``active[i]``);
    - ``reference``: float buffer (k,), the value an absent player takes; with
      ``in_channels`` > 1 every channel of absent player i is set to ``reference[i]``;
    - ``inner``: ``nn.Sequential`` of ``nn.Linear`` and elementwise activations (``activation``
      names which, one of :data:`ACTIVATION_MODULES`), mapping ``k * in_channels`` inputs to
      ``out_channels`` outputs. Its input is the masked copy flattened player-major:
      ``[p0c0, p0c1, ..., p1c0, ...]`` (``x.reshape(batch, k * in_channels)``).

    ``forward(x_active)``: ``x_active`` is (batch, k) (``in_channels == 1``) or
    (batch, k, in_channels); returns (batch, k, out_channels), the Shapley values of the
    inner function's outputs for the k players, relative to ``reference``."""

    def __init__(self, active, reference=None, *, in_channels: int = 1, out_channels: int = 1,
                 hidden: list[int] | tuple[int, ...] = (32,), activation: str = "relu"):
        super().__init__()
        active = [int(a) for a in active]
        k = len(active)
        _check_k(k)
        if len(set(active)) != k or min(active) < 0:
            raise ShapNetError(f"active set {active} must hold {k} distinct indices >= 0")
        if in_channels < 1 or out_channels < 1 or any(int(h) < 1 for h in hidden):
            raise ShapNetError("a Shapley module's channels and hidden widths must be >= 1")
        ref = torch.zeros(k) if reference is None else torch.as_tensor(
            np.asarray(reference, dtype=np.float32).reshape(-1))
        if ref.shape != (k,):
            raise ShapNetError(f"reference has {ref.numel()} values for an active set of {k}")
        self.k, self.in_channels, self.out_channels = k, int(in_channels), int(out_channels)
        self.activation = activation
        self.register_buffer("active", torch.tensor(active, dtype=torch.long))
        self.register_buffer("reference", ref.to(torch.float32).clone())
        self.inner = inner_mlp(k * self.in_channels, [int(h) for h in hidden], self.out_channels,
                               activation)
        masks = coalition_masks(k)
        self.register_buffer("_masks", torch.from_numpy(masks), persistent=False)
        self.register_buffer("_weights", torch.from_numpy(shapley_mixing_weights(k)),
                             persistent=False)
        # The same weights as marginal contributions: phi_i = sum_S w(|S|) (f(S+i) - f(S))
        # over the 2^(k-1) coalitions S without i. Summed this way a null player (f(S+i) equal
        # to f(S) bit for bit, e.g. an input at its reference) gets exactly 0, which Cor. 4's
        # dynamic pruning relies on; the mixing-matrix form rounds to ~1e-9 instead.
        rows = np.arange(2 ** k)
        without = np.stack([rows[~masks[:, i]] for i in range(k)])  # (k, 2^(k-1))
        sizes = masks[without].sum(axis=2)
        pair_w = np.vectorize(lambda n: factorial(n) * factorial(k - n - 1) / factorial(k))(sizes)
        self.register_buffer("_without", torch.from_numpy(without), persistent=False)
        self.register_buffer("_with", torch.from_numpy(without | (1 << np.arange(k))[:, None]),
                             persistent=False)
        self.register_buffer("_pair_weights", torch.from_numpy(pair_w.astype(np.float64)),
                             persistent=False)

    def coalition_masks(self) -> torch.Tensor:
        """(2^k, k) bool: which players are present in each masked copy (see module doc)."""
        return self._masks

    def shapley_mixing_weights(self) -> torch.Tensor:
        """(k, 2^k) float64: ``phi = W @ f(copies)`` (see :func:`shapley_mixing_weights`);
        ``forward`` computes the same sum as weighted marginal contributions."""
        return self._weights

    def masked_copies(self, x_active: torch.Tensor) -> torch.Tensor:
        """(batch, 2^k, k, in_channels): copy ``s`` keeps the players of coalition ``s`` and
        sets the others to their reference (``torch.where``: kept values are bit-exact)."""
        x = self._as_3d(x_active)
        mask = self._masks[None, :, :, None]
        ref = self.reference.to(x.dtype)[None, None, :, None]
        return torch.where(mask, x[:, None], ref)

    def coalition_values(self, x_active: torch.Tensor) -> torch.Tensor:
        """(batch, 2^k, out_channels): the inner function on every masked copy."""
        copies = self.masked_copies(x_active)
        b = copies.shape[0]
        flat = copies.reshape(b * 2 ** self.k, self.k * self.in_channels)
        return self.inner(flat).reshape(b, 2 ** self.k, self.out_channels)

    def forward(self, x_active: torch.Tensor) -> torch.Tensor:
        values = self.coalition_values(x_active)
        marginal = values[:, self._with] - values[:, self._without]  # (batch, k, 2^(k-1), out)
        return torch.einsum("kp,bkpo->bko", self._pair_weights.to(values.dtype), marginal)

    def _as_3d(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2 and self.in_channels == 1:
            x = x[:, :, None]
        if x.dim() != 3 or x.shape[1] != self.k or x.shape[2] != self.in_channels:
            raise ShapNetError(f"a Shapley module over {self.k} inputs x {self.in_channels} "
                               f"channels got input of shape {tuple(x.shape)}")
        return x

    def extra_repr(self) -> str:
        return (f"active={self.active.tolist()}, in_channels={self.in_channels}, "
                f"out_channels={self.out_channels}")


def shapley_modules_forward(modules: list[ShapleyModule], z: torch.Tensor) -> torch.Tensor:
    """The outputs of several alike Shapley modules (same k, channels, inner widths and
    activation) on the feature tensor ``z`` (batch, features, in_channels) in one batched pass:
    returns (batch, modules, k, out_channels), row m equal to ``modules[m](z[:, active_m])``.

    Per-module calls cost a few small kernels each; a Deep ShapNet has tens of modules per
    transform, so their inner MLPs run as one ``torch.baddbmm`` per layer over weights
    stacked on the fly (the stack is differentiable: training updates each module's own
    ``inner``)."""
    first = modules[0]
    k, c_in, n = first.k, first.in_channels, len(modules)
    active = torch.stack([m.active for m in modules])  # (M, k)
    ref = torch.stack([m.reference for m in modules]).to(z.dtype)  # (M, k)
    x = z[:, active]  # (batch, M, k, c_in)
    copies = torch.where(first._masks[None, None, :, :, None], x[:, :, None],
                         ref[None, :, None, :, None])  # (batch, M, 2^k, k, c_in)
    b = z.shape[0]
    h = copies.permute(1, 0, 2, 3, 4).reshape(n, b * 2 ** k, k * c_in)
    for layer_index, layer in enumerate(first.inner):
        if isinstance(layer, nn.Linear):
            weight = torch.stack([m.inner[layer_index].weight for m in modules])  # (M, out, in)
            bias = torch.stack([m.inner[layer_index].bias for m in modules])  # (M, out)
            h = torch.baddbmm(bias[:, None, :], h, weight.transpose(1, 2))
        else:
            h = layer(h)
    values = h.reshape(n, b, 2 ** k, first.out_channels).permute(1, 0, 2, 3)  # (batch, M, 2^k, o)
    marginal = values[:, :, first._with] - values[:, :, first._without]  # (b, M, k, 2^(k-1), o)
    return torch.einsum("kp,bmkpo->bmko", first._pair_weights.to(values.dtype), marginal)
