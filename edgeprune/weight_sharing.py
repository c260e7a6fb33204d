"""Weight sharing with fine-tuned codebooks (Deep Compression, Han et al. 2016, section 3).

Each layer's non-zero weights are clustered into at most ``2**bits`` shared values (k-means,
:func:`edgeprune.exporters.quantize.share_weights`, the same clustering the bundle writer
applies), then the shared values themselves are trained: every weight of a cluster reads its
centroid, so the gradient of a centroid is the sum of its members' gradients (PyTorch's
indexing backward computes exactly that), and one Adam step moves all members together. The
cluster assignment, the pruning mask and the zeros stay fixed; biases are trained alongside.

The result is an ordinary :class:`~edgeprune.network.Network` whose layers hold at most
``2**bits`` distinct non-zero values each, so ``--quantize sharedN`` stores those values
exactly (codebook = the layer's distinct values) and the bundle computes what was trained.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from edgeprune.network import Layer, ModelError, Network
from edgeprune.runtime.quant import CODEBOOK_SIZES
from edgeprune.torch_network import torch_activation

__all__ = ["SHARED_CODINGS", "share_and_finetune"]

SHARED_CODINGS = tuple(CODEBOOK_SIZES)


class _SharedLayer(torch.nn.Module):
    """``act(W x + b)`` with ``W[positions] = codebook[codes]`` and zeros elsewhere."""

    def __init__(self, layer: Layer, size: int) -> None:
        from edgeprune.exporters.quantize import share_weights

        super().__init__()
        weight = layer.masked_weight
        self.shape = weight.shape
        flat = weight.reshape(-1)
        positions = np.flatnonzero(flat)
        codes, codebook = share_weights(flat[positions], size)
        self.codebook = torch.nn.Parameter(torch.from_numpy(codebook.astype(np.float32)))
        self.bias = torch.nn.Parameter(torch.from_numpy(layer.bias.copy()))
        self.register_buffer("positions", torch.from_numpy(positions.astype(np.int64)))
        self.register_buffer("codes", torch.from_numpy(codes.astype(np.int64)))
        self.act = torch_activation(layer.activation, layer.negative_slope)

    def weight(self) -> torch.Tensor:
        flat = torch.zeros(self.shape[0] * self.shape[1], dtype=self.codebook.dtype)
        return flat.index_put((self.positions,), self.codebook[self.codes]).view(self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(torch.nn.functional.linear(x, self.weight(), self.bias))


def _loss_fn(net: Network, ds):
    """The training loss of ``net``'s kind: cross-entropy (classifier) or reconstruction MSE."""
    if net.kind == "classifier":
        from edgeprune.train import _labels_of

        y = torch.from_numpy(np.asarray(_labels_of(ds, "train"), dtype=np.int64))
        return lambda out, x, idx: torch.nn.functional.cross_entropy(out, y[idx])
    return lambda out, x, idx: torch.mean((out - x) ** 2)


def share_and_finetune(net: Network, ds, coding: str = "shared5", *, epochs: int = 5,
                       lr: float = 1e-4, batch_size: int = 64, seed: int = 0,
                       quiet: bool = True) -> tuple[Network, list[dict]]:
    """``net`` with each layer's weights shared (``coding``: shared4/5/6 = at most 16/32/64
    values per layer) and the shared values and biases fine-tuned ``epochs`` epochs on
    ``ds.x_train`` with Adam; returns the network and the per-epoch train loss."""
    if coding not in CODEBOOK_SIZES:
        raise ModelError(f"--quantize {coding}: codebook fine-tuning needs one of "
                         f"{', '.join(SHARED_CODINGS)}")
    if epochs < 0:
        raise ModelError("--codebook-epochs must be >= 0")
    torch.manual_seed(seed)
    layers = torch.nn.ModuleList(_SharedLayer(layer, CODEBOOK_SIZES[coding])
                                 for layer in net.layers)
    x = torch.from_numpy(np.asarray(ds.x_train, dtype=np.float32))
    loss_fn = _loss_fn(net, ds)
    opt = torch.optim.Adam(layers.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in tqdm(range(epochs), desc="codebooks", disable=quiet, unit="epoch", leave=False):
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            out = x[idx]
            for layer in layers:
                out = layer(out)
            loss = loss_fn(out, x[idx], idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        if not np.isfinite(total):
            raise ModelError(f"codebook fine-tuning diverged in epoch {epoch + 1}; lower "
                             "--codebook-lr")
        history.append({"epoch": epoch + 1, "train_loss": total / max(len(x), 1)})
    out_layers = []
    with torch.no_grad():
        for old, shared in zip(net.layers, layers, strict=True):
            weight = shared.weight().numpy().astype(np.float32)
            out_layers.append(Layer(weight, shared.bias.numpy().copy(), old.activation,
                                    old.negative_slope, old.mask.copy()))
    return Network(out_layers, latent=net.latent, kind=net.kind, meta=dict(net.meta)), history
