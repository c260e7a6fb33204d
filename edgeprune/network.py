"""The Network IR: a chain of dense layers ``y = act(W x + b)`` with per-link masks.

This module is numpy-only on purpose: the exporters, the report and the pruning rules work on
the IR without importing torch. Torch conversion lives in :mod:`edgeprune.torch_network`.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.runtime.activations import ACTIVATIONS, apply_activation


class ModelError(EdgepruneError):
    """A one-line, user-facing problem with a model file or a model description."""


@dataclass
class Layer:
    """One dense layer ``y = act(W x + b)``; ``mask`` marks the links that are still present."""

    weight: np.ndarray  # (out, in) float32
    bias: np.ndarray  # (out,) float32
    activation: str = "identity"
    negative_slope: float = 0.01
    mask: np.ndarray | None = None  # (out, in) bool; None means every link is present

    def __post_init__(self) -> None:
        self.weight = np.ascontiguousarray(self.weight, dtype=np.float32)
        self.bias = np.ascontiguousarray(self.bias, dtype=np.float32).reshape(-1)
        if self.weight.ndim != 2:
            raise ModelError(f"layer weight must be 2-D (out, in), got shape {self.weight.shape}")
        if self.bias.shape != (self.weight.shape[0],):
            raise ModelError(
                f"layer bias has shape {self.bias.shape}, expected ({self.weight.shape[0]},)"
            )
        if self.activation not in ACTIVATIONS:
            raise ModelError(
                f"unsupported activation {self.activation!r}; use one of {', '.join(ACTIVATIONS)}"
            )
        if self.mask is None:
            self.mask = np.ones(self.weight.shape, dtype=bool)
        else:
            self.mask = np.asarray(self.mask, dtype=bool)
            if self.mask.shape != self.weight.shape:
                raise ModelError(f"mask shape {self.mask.shape} != weight shape {self.weight.shape}")

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def masked_weight(self) -> np.ndarray:
        """The weights with pruned links set to exactly zero."""
        return np.where(self.mask, self.weight, np.float32(0.0)).astype(np.float32)

    @property
    def n_links(self) -> int:
        return int(self.weight.size)

    @property
    def n_active(self) -> int:
        return int(self.mask.sum())

    def forward(self, x: np.ndarray) -> np.ndarray:
        z = x @ self.masked_weight.T + self.bias
        return apply_activation(z, self.activation, self.negative_slope)


#: The likelihoods a VAE's decoder can model (edgeprune.vae_training).
VAE_LIKELIHOODS = ("gaussian", "bernoulli")


@dataclass
class Network:
    """A chain of dense layers. ``latent`` is L for an autoencoder (layers 1..L encode, L+1..2L
    decode, as in the SHAP-SAE paper) and ``None`` for a plain MLP.

    A VAE (``kind="vae"``) is the chain ``x → trunk → μ head (layer L) → decoder`` (the
    deterministic path that is deployed: ``decode(μ)``) plus ``logvar``, the log σ² head, which
    reads the same input as layer L and is not part of the chain (``None`` once dropped).
    ``likelihood`` names the decoder's likelihood (fine-tuning by the ELBO needs it)."""

    layers: list[Layer]
    latent: int | None = None
    kind: str = "autoencoder"  # "autoencoder" | "mlp" | "classifier" | "vae"
    meta: dict = field(default_factory=dict)
    logvar: Layer | None = None  # VAE only: the log-variance head
    likelihood: str | None = None  # VAE only: "gaussian" or "bernoulli"

    def __post_init__(self) -> None:
        if not self.layers:
            raise ModelError("a network needs at least one Linear layer")
        for k in range(1, len(self.layers)):
            prev, cur = self.layers[k - 1], self.layers[k]
            if cur.in_dim != prev.out_dim:
                raise ModelError(
                    f"layer {k + 1} expects {cur.in_dim} inputs but layer {k} gives {prev.out_dim}"
                )
        if self.latent is not None and not (1 <= self.latent < len(self.layers)):
            raise ModelError(
                f"latent layer {self.latent} is out of range 1..{len(self.layers) - 1}; "
                "pass --latent with the index of the bottleneck layer"
            )
        if self.latent is None and self.kind == "autoencoder":
            self.kind = "mlp"
        self._check_vae()

    def _check_vae(self) -> None:
        if self.kind != "vae":
            if self.logvar is not None or self.likelihood is not None:
                raise ModelError(f"only a VAE has a log-variance head or a likelihood; this "
                                 f"network is {self.kind!r}")
            return
        if self.latent is None:
            raise ModelError("a VAE needs its latent layer (the mu head); pass --latent L")
        if self.likelihood not in VAE_LIKELIHOODS:
            raise ModelError(f"VAE likelihood {self.likelihood!r}: use one of "
                             f"{', '.join(VAE_LIKELIHOODS)}")
        if self.logvar is not None:
            mu = self.layers[self.latent - 1]
            if self.logvar.weight.shape != mu.weight.shape:
                raise ModelError(f"the log-variance head has shape "
                                 f"{list(self.logvar.weight.shape)} but the mu head (layer "
                                 f"{self.latent}) {list(mu.weight.shape)}; both read the same "
                                 "input and give one value per latent unit")

    # -- shape ---------------------------------------------------------------------------------
    @property
    def in_dim(self) -> int:
        return self.layers[0].in_dim

    @property
    def out_dim(self) -> int:
        return self.layers[-1].out_dim

    @property
    def dims(self) -> list[int]:
        return [self.in_dim] + [layer.out_dim for layer in self.layers]

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """Every layer's weight shape (out, in): what a masked copy of this network shares."""
        return [layer.weight.shape for layer in self.layers]

    @property
    def activations(self) -> list[str]:
        return [layer.activation for layer in self.layers]

    # -- sparsity ------------------------------------------------------------------------------
    @property
    def n_links(self) -> int:
        return sum(layer.n_links for layer in self.layers)

    @property
    def n_active(self) -> int:
        return sum(layer.n_active for layer in self.layers)

    @property
    def sparsity(self) -> float:
        """Achieved sparsity eta (paper eq. 9): the fraction of links that are masked."""
        return 1.0 - self.n_active / self.n_links

    # -- compute -------------------------------------------------------------------------------
    def forward(self, x: np.ndarray, upto: int | None = None) -> np.ndarray:
        """Run layers 1..upto (all by default) on a batch ``x`` of shape (N, in_dim)."""
        h = np.asarray(x, dtype=np.float32)
        for layer in self.layers[: upto if upto is not None else len(self.layers)]:
            h = layer.forward(h)
        return h

    def layer_inputs(self, x: np.ndarray) -> list[np.ndarray]:
        """The input activations of every layer (index k-1 holds the input of layer k)."""
        acts = [np.asarray(x, dtype=np.float32)]
        for layer in self.layers[:-1]:
            acts.append(layer.forward(acts[-1]))
        return acts

    def encode(self, x: np.ndarray) -> np.ndarray:
        if self.latent is None:
            raise ModelError("this network has no latent layer (not an autoencoder)")
        return self.forward(x, upto=self.latent)

    def encode_logvar(self, x: np.ndarray) -> np.ndarray:
        """A VAE's log σ² head on a batch (it reads the input of the mu head)."""
        if self.logvar is None:
            raise ModelError("this network has no log-variance head (not a VAE, or dropped)")
        return self.logvar.forward(self.forward(x, upto=self.latent - 1))

    def without_zero_links(self) -> Network:
        """A copy whose masks also drop every zero weight: a link whose weight is exactly 0 is
        not a link (docs/architecture.md, deliberate difference 3)."""
        net = self.copy()
        for layer in net.layers + ([net.logvar] if net.logvar is not None else []):
            layer.mask &= layer.weight != 0
        return net

    def copy(self) -> Network:
        return copy.deepcopy(self)

    def fingerprint(self) -> str:
        """A short SHA-256 over weights, biases and masks (provenance of exported artifacts)."""
        h = hashlib.sha256()
        for layer in self.layers + ([self.logvar] if self.logvar is not None else []):
            for arr in (layer.weight, layer.bias, layer.mask):
                h.update(np.ascontiguousarray(arr).tobytes())
            h.update(layer.activation.encode())
        return h.hexdigest()[:16]

    def describe(self) -> str:
        acts = ",".join(self.activations)
        dims = "-".join(str(d) for d in self.dims)
        lat = f", latent layer {self.latent}" if self.latent else ""
        if self.kind == "vae":
            lat += (f", {self.likelihood} likelihood, "
                    + ("log-variance head" if self.logvar is not None else "mu only"))
        return f"{self.kind} {dims} [{acts}]{lat}"


def parse_activations(spec: str | list[str], n_layers: int) -> list[str]:
    """Parse ``relu,relu,sigmoid`` (one per layer, or one name for every layer)."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n.strip().lower().replace("-", "_") for n in names if n.strip()]
    aliases = {"linear": "identity", "none": "identity", "leakyrelu": "leaky_relu"}
    names = [aliases.get(n, n) for n in names]
    if len(names) == 1:
        names = names * n_layers
    if len(names) != n_layers:
        raise ModelError(
            f"--activations names {len(names)} activations but the model has {n_layers} "
            f"Linear layers; give one per layer, e.g. {','.join(['relu'] * (n_layers - 1) + ['sigmoid'])}"
        )
    for n in names:
        if n not in ACTIVATIONS:
            raise ModelError(
                f"--activations: unknown activation {n!r}; use one of {', '.join(ACTIVATIONS)}"
            )
    return names
