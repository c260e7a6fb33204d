"""The Network IR as a torch module (training, masked fine-tuning, PyTorch reference outputs)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeprune.errors import EdgepruneError
from edgeprune.network import Layer, Network
from edgeprune.runtime.activations import ACTIVATIONS

#: The IR's elementwise activations as torch module classes ("identity" has none: no module), in
#: the registry's order; the one table for every torch chain built from the IR (VAEs, ShapNets).
ACTIVATION_MODULES = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "sigmoid": nn.Sigmoid,
                      "tanh": nn.Tanh}


def torch_activation(name: str, negative_slope: float = 0.01, *, inplace: bool = False):
    """The torch function for an IR activation name (one of
    :data:`edgeprune.runtime.activations.ACTIVATIONS`); ``inplace`` gives the in-place variant
    (same values, bit for bit), which overwrites its argument."""
    if name == "identity":
        return lambda z: z
    if name == "relu":
        return torch.relu_ if inplace else torch.relu
    if name == "leaky_relu":
        slope = float(negative_slope)
        return lambda z: torch.nn.functional.leaky_relu(z, slope, inplace=inplace)
    if name == "sigmoid":
        return torch.sigmoid_ if inplace else torch.sigmoid
    if name == "tanh":
        return torch.tanh_ if inplace else torch.tanh
    raise EdgepruneError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")


def linear_from_layer(layer: Layer) -> nn.Linear:
    """An ``nn.Linear`` holding ``layer``'s masked weight and bias."""
    lin = nn.Linear(layer.in_dim, layer.out_dim)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(layer.masked_weight))
        lin.bias.copy_(torch.from_numpy(layer.bias))
    return lin


class MaskedMLP(nn.Module):
    """A chain of masked dense layers; pruned weights are multiplied by a fixed 0/1 mask."""

    def __init__(self, net: Network):
        super().__init__()
        self.linears = nn.ModuleList()
        self.acts = []
        self.latent = net.latent
        for k, layer in enumerate(net.layers):
            self.linears.append(linear_from_layer(layer))
            self.register_buffer(f"mask{k}", torch.from_numpy(layer.mask.astype(np.float32)))
            self.acts.append(torch_activation(layer.activation, layer.negative_slope))

    def masks(self) -> list[torch.Tensor]:
        return [getattr(self, f"mask{k}") for k in range(len(self.linears))]

    def activations(self, x: torch.Tensor, upto: int | None = None) -> list[torch.Tensor]:
        """Every layer's output (the hidden codes, then the network's output), in order."""
        n = len(self.linears) if upto is None else upto
        outs = []
        for lin, act, mask in list(zip(self.linears, self.acts, self.masks()))[:n]:
            x = act(nn.functional.linear(x, lin.weight * mask, lin.bias))
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        outs = self.activations(x, upto)
        return outs[-1] if outs else x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x, upto=self.latent)

    @torch.no_grad()
    def apply_masks_(self) -> None:
        """Set pruned weights to exactly zero (after an optimizer step)."""
        for lin, mask in zip(self.linears, self.masks()):
            lin.weight.mul_(mask)

    def to_network(self, template: Network) -> Network:
        """Copy the trained weights back into a Network shaped like ``template``."""
        layers = []
        for lin, mask, old in zip(self.linears, self.masks(), template.layers):
            m = mask.detach().numpy().astype(bool)
            w = (lin.weight.detach() * mask).numpy()
            layers.append(Layer(w, lin.bias.detach().numpy(), old.activation, old.negative_slope, m))
        head = None if template.logvar is None else template.logvar.__class__(
            template.logvar.weight.copy(), template.logvar.bias.copy(),
            template.logvar.activation, template.logvar.negative_slope,
            template.logvar.mask.copy())  # a VAE's head is not trained here: kept as it was
        return Network(layers, latent=template.latent, kind=template.kind, meta=dict(template.meta),
                       logvar=head, likelihood=template.likelihood)


def torch_forward(net: Network, x: np.ndarray) -> np.ndarray:
    """PyTorch reference output of the masked network (float32)."""
    model = MaskedMLP(net).eval()
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(x, dtype=np.float32))).numpy()
