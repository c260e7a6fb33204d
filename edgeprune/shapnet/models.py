"""Shallow and Deep ShapNets (Wang et al., ICLR 2021, §2.2-2.3) in plain PyTorch.

Both return ``(prediction, explanation)`` from one forward pass; the explanation has shape
(batch, in_dim, out_dim) and ``explanation.sum(1) == prediction - prediction(reference)``
(local accuracy; ``prediction(reference)`` is the learned ``bias``).

- :class:`ShallowShapNet`: Shapley modules over active sets that cover the input, summed into a
  (batch, in_dim, channels) Shapley representation, then one linear map per feature
  (Lemma 1: a linear map of Shapley values is the Shapley values of the mapped function).
  Its explanation is the exact Shapley value vector of the model (Thm. 2).
- :class:`DeepShapNet`: a cascade of Shapley transforms; transform ``l`` groups the features
  into disjoint active sets of ``k`` (pairs by default) along a radix-k butterfly (stride
  ``k**(l mod stages)``, as in the FFT), so after ``stages = log_k(D)`` transforms every feature
  has interacted with every other. The input is zero-padded to ``D = k**stages`` features (the
  padding is at its reference 0, so it is a null player everywhere). Reference: the given one
  for the first transform, 0 for the later ones (Def. 8). Its explanation satisfies local
  accuracy and missingness (Thm. 3), and a feature at its reference stays 0 in every later
  representation (Cor. 4), which is what dynamic pruning skips.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from edgeprune.shapnet.modules import (
    ShapleyModule,
    ShapNetError,
    _check_k,
    shapley_modules_forward,
)


def _reference(reference, in_dim: int) -> np.ndarray:
    ref = np.zeros(in_dim, np.float32) if reference is None else np.asarray(
        reference, dtype=np.float32).reshape(-1)
    if ref.shape != (in_dim,) or not np.all(np.isfinite(ref)):
        raise ShapNetError(f"the reference must be {in_dim} finite values, got shape {ref.shape}")
    return ref


def covering_active_sets(in_dim: int, k: int, n_modules: int | None = None,
                         seed: int = 0) -> list[list[int]]:
    """Active sets for a Shallow ShapNet: first ``ceil(in_dim / k)`` sets partition a seeded
    permutation of the features (the last one topped up with other features to size k), then
    distinct random k-subsets up to ``n_modules`` (default ``2 * ceil(in_dim / k)``; capped at
    the number of k-subsets)."""
    _check_k(k)
    if in_dim < 1:
        raise ShapNetError("a ShapNet needs at least one input feature")
    k = min(k, in_dim)
    rng = np.random.default_rng(seed)
    cover = -(-in_dim // k)
    n_modules = 2 * cover if n_modules is None else int(n_modules)
    total = math.comb(in_dim, k)
    if n_modules < cover:
        raise ShapNetError(f"--modules {n_modules}: {cover} modules of {k} inputs are needed to "
                           f"cover {in_dim} features; use at least {cover}")
    n_modules = min(n_modules, total)
    perm = rng.permutation(in_dim)
    sets, seen = [], set()
    for start in range(0, in_dim, k):
        chunk = list(perm[start:start + k])
        others = [int(f) for f in rng.permutation(in_dim) if f not in chunk]
        chunk += others[:k - len(chunk)]
        key = tuple(sorted(int(c) for c in chunk))
        if key not in seen:
            seen.add(key)
            sets.append(list(key))
    while len(sets) < n_modules:
        key = tuple(sorted(int(c) for c in rng.choice(in_dim, size=k, replace=False)))
        if key not in seen:
            seen.add(key)
            sets.append(list(key))
    return sets


class ShallowShapNet(nn.Module):
    """Sum of Shapley modules + a linear transform (paper Def. 5, eq. 5).

    ``modules_list[j]`` computes the Shapley values of its inner MLP (``channels`` outputs)
    for its active set; they are added into ``Z`` (batch, in_dim, channels), and
    ``phi = Z @ linear.weight.T`` is the explanation (batch, in_dim, out_dim);
    ``prediction = phi.sum(1) + linear.bias``. The explanation is exactly the Shapley value
    vector of ``prediction`` w.r.t. ``reference`` (Thm. 2)."""

    def __init__(self, in_dim: int, out_dim: int, active_sets: list[list[int]], reference=None,
                 *, channels: int = 8, hidden=(32,), activation: str = "relu"):
        super().__init__()
        ref = _reference(reference, in_dim)
        covered = {int(i) for s in active_sets for i in s}
        if not active_sets or covered != set(range(in_dim)):
            missing = sorted(set(range(in_dim)) - covered)[:5]
            raise ShapNetError(f"active sets must cover every feature 0..{in_dim - 1} and no other "
                               f"(missing e.g. {missing}); use covering_active_sets")
        self.in_dim, self.out_dim, self.channels = int(in_dim), int(out_dim), int(channels)
        self.hidden, self.activation = [int(h) for h in hidden], activation
        self.register_buffer("reference", torch.from_numpy(ref))
        self.modules_list = nn.ModuleList(
            ShapleyModule(s, ref[list(s)], in_channels=1, out_channels=channels,
                          hidden=self.hidden, activation=activation) for s in active_sets)
        self.linear = nn.Linear(channels, out_dim)

    def config(self) -> dict:
        """Everything but the weights needed to rebuild the model (see :mod:`.checkpoint`)."""
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "channels": self.channels,
                "hidden": self.hidden, "activation": self.activation,
                "active_sets": [m.active.tolist() for m in self.modules_list]}

    def representations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[phi]: the one Shapley representation (batch, in_dim, out_dim)."""
        z = x.new_zeros(x.shape[0], self.in_dim, self.channels)
        for group, index in self._groups():
            phi = shapley_modules_forward(group, x[:, :, None])  # (batch, M, k, channels)
            z = z.index_add(1, index, phi.reshape(x.shape[0], -1, self.channels))
        return [z @ self.linear.weight.T]

    def _groups(self):
        """The modules by active-set size (alike modules run as one batch), with the features
        their outputs go to, in order."""
        by_k: dict[int, list[ShapleyModule]] = {}
        for module in self.modules_list:
            by_k.setdefault(module.k, []).append(module)
        return [(group, torch.cat([m.active for m in group])) for group in by_k.values()]

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """``(prediction, explanation, representations)`` of one pass (training uses all)."""
        reps = self.representations(_check_input(x, self.in_dim))
        return reps[-1].sum(1) + self.linear.bias, reps[-1], reps

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.outputs(x)[:2]


def butterfly_groups(width: int, k: int, stage: int) -> list[list[int]]:
    """Disjoint active sets of ``k`` features for butterfly stage ``stage`` of a ``width`` =
    ``k**n`` wide layer: members ``i + j * k**stage`` (j < k) for every ``i`` whose base-k digit
    ``stage`` is 0."""
    stride = k ** stage
    return [[i + j * stride for j in range(k)] for i in range(width) if (i // stride) % k == 0]


class DeepShapNet(nn.Module):
    """Cascaded Shapley transforms over disjoint groups of ``k`` features (paper Def. 8).

    ``transforms[l]`` is an ``nn.ModuleList`` of :class:`ShapleyModule` whose active sets
    (:func:`butterfly_groups` at stage ``l mod stages``) partition the ``width`` features.
    Transform 0 reads the (zero-padded) input, one channel per feature, with ``reference``;
    later ones read the previous representation (``channels`` per feature) with reference 0;
    the last one outputs ``out_dim`` channels per feature. ``forward(x)`` returns
    ``(prediction, explanation)``: explanation = the last representation restricted to the
    ``in_dim`` real features (batch, in_dim, out_dim), prediction = its sum + ``bias``."""

    def __init__(self, in_dim: int, out_dim: int, reference=None, *, k: int = 2,
                 n_transforms: int | None = None, channels: int = 8, hidden=(32,),
                 activation: str = "relu"):
        super().__init__()
        _check_k(k)
        if k < 2 or in_dim < 2:
            raise ShapNetError("a Deep ShapNet needs --active-size >= 2 and at least 2 features")
        ref = _reference(reference, in_dim)
        stages = max(1, math.ceil(math.log(in_dim, k) - 1e-9))
        width = k ** stages
        n_transforms = stages if n_transforms is None else int(n_transforms)
        if n_transforms < 1:
            raise ShapNetError(f"--transforms {n_transforms}: a Deep ShapNet needs at least one")
        self.in_dim, self.out_dim, self.k, self.width = int(in_dim), int(out_dim), int(k), width
        self.stages, self.channels = stages, int(channels)
        self.hidden, self.activation = [int(h) for h in hidden], activation
        padded = np.zeros(width, np.float32)
        padded[:in_dim] = ref
        self.register_buffer("reference", torch.from_numpy(ref))
        self.transforms = nn.ModuleList()
        for layer in range(n_transforms):
            groups = butterfly_groups(width, k, layer % stages)
            c_in = 1 if layer == 0 else self.channels
            c_out = out_dim if layer == n_transforms - 1 else self.channels
            self.transforms.append(nn.ModuleList(
                ShapleyModule(g, padded[g] if layer == 0 else None, in_channels=c_in,
                              out_channels=c_out, hidden=self.hidden, activation=activation)
                for g in groups))
            order = torch.tensor([i for g in groups for i in g])
            self.register_buffer(f"_inverse{layer}", torch.argsort(order), persistent=False)
        self.bias = nn.Parameter(torch.zeros(out_dim))

    @property
    def n_transforms(self) -> int:
        return len(self.transforms)

    def config(self) -> dict:
        """Everything but the weights needed to rebuild the model (see :mod:`.checkpoint`)."""
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "k": self.k,
                "n_transforms": self.n_transforms, "channels": self.channels,
                "hidden": self.hidden, "activation": self.activation}

    def representations(self, x: torch.Tensor, skip_threshold: float | None = None,
                        skipped: list | None = None) -> list[torch.Tensor]:
        """The Shapley representations Z^(1..L), each (batch, width, channels_l).

        With ``skip_threshold`` t, a module whose inputs are all within t of its reference
        (max |z - r| over players and channels <= t) outputs 0 for that sample, the dynamic
        pruning of §2.5 emulated in PyTorch (every module is still evaluated; a (batch,
        modules) bool tensor per transform is appended to ``skipped``)."""
        z = torch.zeros(x.shape[0], self.width, 1, dtype=x.dtype, device=x.device)
        z[:, :self.in_dim, 0] = x
        out = []
        for layer, modules in enumerate(self.transforms):
            phi = shapley_modules_forward(list(modules), z)  # (batch, M, k, c_out)
            if skip_threshold is not None:
                active = torch.stack([m.active for m in modules])
                ref = torch.stack([m.reference for m in modules])
                dist = (z[:, active] - ref[None, :, :, None]).abs().amax(dim=(2, 3))
                skip = dist <= skip_threshold  # (batch, M)
                phi = torch.where(skip[:, :, None, None], torch.zeros_like(phi), phi)
                if skipped is not None:
                    skipped.append(skip)
            z = phi.reshape(z.shape[0], self.width, -1)[:, getattr(self, f"_inverse{layer}")]
            out.append(z)
        return out

    def outputs(self, x: torch.Tensor, skip_threshold: float | None = None,
                skipped: list | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """``(prediction, explanation, representations)`` of one pass (see
        :meth:`representations` for ``skip_threshold`` and ``skipped``)."""
        reps = self.representations(_check_input(x, self.in_dim), skip_threshold, skipped)
        h = reps[-1][:, :self.in_dim]
        return h.sum(1) + self.bias, h, reps

    def forward(self, x: torch.Tensor, skip_threshold: float | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.outputs(x, skip_threshold)[:2]


def _check_input(x: torch.Tensor, in_dim: int) -> torch.Tensor:
    if x.dim() != 2 or x.shape[1] != in_dim:
        raise ShapNetError(f"a ShapNet over {in_dim} features got input of shape "
                           f"{tuple(x.shape)}; give (batch, {in_dim})")
    return x
