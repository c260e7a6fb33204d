"""Autoencoders trained with an activation regularizer: k-sparse and dropout (numpy IR in/out).

These are the two "sparse autoencoder" baselines of the SHAP-SAE paper (section 3.2):

* **k-sparse autoencoder** (Makhzani & Frey, ICLR 2014): during training only the ``k``
  largest activations of the latent layer are kept in the forward pass, the others are set to
  zero (so only the winners, and the weights into and out of them, get a gradient).
  :func:`train_ksparse_autoencoder`; :func:`ksparse_encode` / :func:`ksparse_reconstruct` run
  the trained network with the same top-k rule in numpy.
* **dropout autoencoder** (Srivastava et al., JMLR 2014): inverted dropout with probability
  ``p`` on the output of every hidden layer (the latent code included) during training; at
  inference the plain network is the expectation, no rescaling needed.
  :func:`train_dropout_autoencoder`.

Both regularize *activations*; neither removes links. The trained network is an ordinary
:class:`~edgeprune.network.Network` (relu/sigmoid layers, masks respected), so it can be pruned,
fine-tuned, exported and run by the edgeprune runtime like any other; the runtime, ONNX and
TFLite exports run the plain forward (no top-k, no dropout). Training is
:func:`edgeprune.train.train_network` (Adam, MSE, seeded shuffles, masked links kept at zero)
with a different forward for the loss; validation MSE in the history is the plain forward.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from edgeprune.network import ModelError, Network
from edgeprune.torch_network import MaskedMLP
from edgeprune.train import train_network

__all__ = [
    "check_k",
    "ksparse_encode",
    "ksparse_reconstruct",
    "topk_mask",
    "train_dropout_autoencoder",
    "train_ksparse_autoencoder",
]


def _latent_width(net: Network) -> int:
    if net.latent is None:
        raise ModelError("k-sparse training needs an autoencoder with a latent layer")
    return net.layers[net.latent - 1].out_dim


def check_k(net: Network, k: int) -> int:
    """``k`` as an int in 1..latent width, or a one-line ModelError."""
    width = _latent_width(net)
    if int(k) != k or not 1 <= int(k) <= width:
        raise ModelError(f"k={k}: the k-sparse latent keeps 1..{width} of its {width} units")
    return int(k)


def topk_mask(z: np.ndarray, k: int) -> np.ndarray:
    """Boolean mask (same shape as ``z``, rows = samples) with exactly ``k`` True per row: the
    ``k`` largest values (ties broken by the lower index, as a stable sort does)."""
    z = np.asarray(z)
    order = np.argsort(-z, axis=1, kind="stable")[:, :k]
    mask = np.zeros(z.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=1)
    return mask


def _topk_torch(h: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest entries of each row of ``h`` (gradient flows through them only)."""
    if k >= h.shape[1]:
        return h
    idx = torch.topk(h, k, dim=1, sorted=False).indices
    keep = torch.zeros_like(h).scatter_(1, idx, 1.0)
    return h * keep


def _forward_with(model: MaskedMLP, x: torch.Tensor, hidden_fn) -> torch.Tensor:
    """The masked forward of ``model`` with ``hidden_fn(layer, h)`` applied to the output of
    every hidden layer (``layer`` is 1-based; the output layer is left alone)."""
    n = len(model.linears)
    for k, (lin, act, mask) in enumerate(zip(model.linears, model.acts, model.masks()), start=1):
        x = act(F.linear(x, lin.weight * mask, lin.bias))
        if k < n:
            x = hidden_fn(k, x)
    return x


def train_ksparse_autoencoder(net: Network, x_train: np.ndarray,
                              x_val: np.ndarray | None = None, *, k: int, epochs: int = 20,
                              lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                              quiet: bool = False,
                              desc: str = "train k-sparse") -> tuple[Network, list[dict]]:
    """Train ``net`` as a k-sparse autoencoder: MSE of the reconstruction through a latent code
    that keeps only its ``k`` largest activations per sample (Makhzani & Frey's training rule,
    constant ``k``). Returns the trained network and the per-epoch history (train MSE under
    the top-k rule, validation MSE of the plain forward)."""
    k = check_k(net, k)
    latent = net.latent

    def forward(model: MaskedMLP, xb: torch.Tensor) -> torch.Tensor:
        return _forward_with(model, xb, lambda layer, h: _topk_torch(h, k) if layer == latent
                             else h)

    return train_network(net, x_train, x_val, epochs=epochs, lr=lr, batch_size=batch_size,
                         seed=seed, quiet=quiet, desc=desc, forward=forward)


def train_dropout_autoencoder(net: Network, x_train: np.ndarray,
                              x_val: np.ndarray | None = None, *, p: float = 0.2,
                              epochs: int = 20, lr: float = 1e-3, batch_size: int = 64,
                              seed: int = 0, quiet: bool = False,
                              desc: str = "train dropout") -> tuple[Network, list[dict]]:
    """Train ``net`` as a dropout autoencoder: inverted dropout with probability ``p`` on every
    hidden layer's output during training (the dropout masks are drawn from the torch RNG that
    the training loop seeds with ``seed``, so a run is reproducible). ``p = 0`` is plain
    :func:`~edgeprune.train.train_network`."""
    if not 0.0 <= p < 1.0:
        raise ModelError(f"dropout p={p}: must be in [0, 1), e.g. 0.2")
    if p == 0.0:
        return train_network(net, x_train, x_val, epochs=epochs, lr=lr, batch_size=batch_size,
                             seed=seed, quiet=quiet, desc=desc)

    def forward(model: MaskedMLP, xb: torch.Tensor) -> torch.Tensor:
        return _forward_with(model, xb, lambda layer, h: F.dropout(h, p, model.training))

    return train_network(net, x_train, x_val, epochs=epochs, lr=lr, batch_size=batch_size,
                         seed=seed, quiet=quiet, desc=desc, forward=forward)


def ksparse_encode(net: Network, x: np.ndarray, k: int) -> np.ndarray:
    """The latent code of ``x`` with all but the ``k`` largest activations per sample zeroed
    (numpy; the inference rule of a k-sparse autoencoder)."""
    k = check_k(net, k)
    z = net.encode(x)
    return np.where(topk_mask(z, k), z, np.float32(0.0)).astype(np.float32)


def ksparse_reconstruct(net: Network, x: np.ndarray, k: int) -> np.ndarray:
    """Reconstruction of ``x`` through the top-``k`` latent code (numpy)."""
    h = ksparse_encode(net, x, k)
    for layer in net.layers[net.latent:]:
        h = layer.forward(h)
    return h
