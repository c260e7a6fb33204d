"""A Gaussian variational autoencoder in plain PyTorch (issue 16, the vae-shap poster).

``x → encoder trunk → (μ head, log σ² head) → z = μ + σ·ε → decoder → x̂``. Every part is a chain
of ``nn.Linear`` and elementwise activations, so the trunk + μ head (:meth:`VAE.mu_encoder`) and
the decoder are the same kind of chain as edgeprune's autoencoders and map onto the IR
(:mod:`edgeprune.vae_network`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgeprune.errors import EdgepruneError
from edgeprune.network import VAE_LIKELIHOODS as LIKELIHOODS
from edgeprune.torch_network import ACTIVATION_MODULES


class VAEError(EdgepruneError):
    """A one-line, user-facing problem with a VAE's shape, options or training."""


def _activation_module(name: str) -> nn.Module | None:
    if name == "identity":
        return None
    if name not in ACTIVATION_MODULES:
        raise VAEError(f"unknown activation {name!r}; use one of identity, "
                       f"{', '.join(ACTIVATION_MODULES)}")
    return ACTIVATION_MODULES[name]()


def _chain(dims: Sequence[int], activation: str, last: str) -> nn.Sequential:
    """Linear layers between ``dims`` with ``activation`` after each but the last (``last``)."""
    mods: list[nn.Module] = []
    for k in range(len(dims) - 1):
        mods.append(nn.Linear(dims[k], dims[k + 1]))
        act = _activation_module(activation if k < len(dims) - 2 else last)
        if act is not None:
            mods.append(act)
    return nn.Sequential(*mods)


def default_output_activation(likelihood: str) -> str:
    """Bernoulli means are probabilities (sigmoid); a Gaussian mean is unbounded (identity)."""
    return "sigmoid" if likelihood == "bernoulli" else "identity"


class VAE(nn.Module):
    """Encoder trunk ``in_dim → hidden…`` (``activation`` after every layer), two linear heads
    ``μ`` and ``log σ²`` of size ``latent``, and a mirrored decoder ``latent → reversed(hidden)
    → in_dim`` ending in ``output_activation`` (default: sigmoid for a Bernoulli likelihood,
    identity for a Gaussian one).

    ``forward`` samples ``z`` by the reparameterisation ``z = μ + exp(½ log σ²)·ε`` in training
    mode and uses ``z = μ`` in eval mode (the deterministic reconstruction that is deployed)."""

    def __init__(self, in_dim: int, latent: int, hidden: Sequence[int] = (64,), *,
                 activation: str = "relu", output_activation: str | None = None,
                 likelihood: str = "gaussian"):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if in_dim < 1 or latent < 1 or not hidden or any(h < 1 for h in hidden):
            raise VAEError(f"a VAE needs positive sizes: in_dim={in_dim}, latent={latent}, "
                           f"hidden={hidden}; give e.g. --latent 8 --hidden 64")
        if likelihood not in LIKELIHOODS:
            raise VAEError(f"--likelihood {likelihood!r}: use one of {', '.join(LIKELIHOODS)}")
        output_activation = output_activation or default_output_activation(likelihood)
        if likelihood == "bernoulli" and output_activation != "sigmoid":
            raise VAEError("a Bernoulli likelihood needs probabilities: the output activation "
                           f"must be sigmoid, not {output_activation!r}")
        self.in_dim, self.latent, self.hidden = int(in_dim), int(latent), hidden
        self.activation, self.output_activation = activation, output_activation
        self.likelihood = likelihood
        self.encoder = _chain([in_dim, *hidden], activation, activation)
        self.mu = nn.Linear(hidden[-1], latent)
        self.logvar = nn.Linear(hidden[-1], latent)
        self.decoder = _chain([latent, *reversed(hidden), in_dim], activation, output_activation)

    @classmethod
    def from_modules(cls, encoder: nn.Sequential, mu: nn.Linear, logvar: nn.Linear,
                     decoder: nn.Sequential, *, likelihood: str = "gaussian",
                     activation: str = "relu", output_activation: str = "identity") -> VAE:
        """A VAE around given parts (any chain of Linear + activation modules; e.g. a pruned
        network's layers). ``output_activation`` names the decoder's last module (identity: the
        last module is its Linear), which :meth:`decoder_logits` leaves out."""
        if likelihood not in LIKELIHOODS:
            raise VAEError(f"--likelihood {likelihood!r}: use one of {', '.join(LIKELIHOODS)}")
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        self.in_dim, self.latent = int(encoder[0].in_features if len(encoder) else
                                       mu.in_features), int(mu.out_features)
        self.hidden = [int(m.out_features) for m in encoder if isinstance(m, nn.Linear)]
        self.activation, self.output_activation = activation, output_activation
        self.likelihood = likelihood
        self.encoder, self.mu, self.logvar, self.decoder = encoder, mu, logvar, decoder
        return self

    def config(self) -> dict:
        """The constructor's arguments (JSON-able): ``VAE(**vae.config())`` has the same shape."""
        return {"in_dim": self.in_dim, "latent": self.latent, "hidden": list(self.hidden),
                "activation": self.activation, "output_activation": self.output_activation,
                "likelihood": self.likelihood}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def decoder_logits(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's last pre-activation (the Bernoulli logits; BCE from logits is stable)."""
        body = self.decoder[:-1] if self.output_activation != "identity" else self.decoder
        return body(z)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """``z = μ + σ ε`` with ``ε ~ N(0, I)``: differentiable in ``μ`` and ``log σ²``."""
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator) if self.training else mu
        return self.decode(z), mu, logvar

    def mu_encoder(self) -> nn.Sequential:
        """``x → μ`` as one chain module sharing this VAE's parameters (for explainers and
        exporters; it is the deployed encoder)."""
        return nn.Sequential(*self.encoder, self.mu)

    def logvar_encoder(self) -> nn.Sequential:
        """``x → log σ²``, sharing this VAE's parameters."""
        return nn.Sequential(*self.encoder, self.logvar)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from the generative model: ``z ~ N(0, I)``, returned as ``decode(z)``
        (the likelihood's mean)."""
        param = next(self.parameters())
        z = torch.randn((int(n), self.latent), generator=generator, dtype=param.dtype,
                        device=param.device)
        return self.decode(z)
