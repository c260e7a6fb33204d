"""The compacted network: what is left after pruning, with dead units physically removed.

numpy-only; produced by :func:`edgeprune.prune.compact_network` and consumed by the exporters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CompactLayer:
    """A dense layer restricted to its live units; ``weight`` keeps zeros where links are pruned."""

    weight: np.ndarray  # (rows, cols) float32, rows = live units of this layer, cols = live inputs
    bias: np.ndarray  # (rows,) float32 (constants of dead predecessors already folded in)
    activation: str
    negative_slope: float
    unit_index: np.ndarray  # (rows,) int64: original indices of the live units of this layer

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(self.weight))


@dataclass
class CompactNetwork:
    """Live layers plus the bookkeeping needed to reproduce the full-width input/output.

    ``input_index`` lists the original input features the network still reads (ascending);
    ``output_index`` the original output units that are still computed (the last layer's rows);
    ``output_const`` has the full output width: the constant value of every output unit that has
    no link left (entries at live positions are 0 and ignored). For autoencoders ``latent_layer``
    is L (1-based) and ``latent_const`` holds the constant value of latent units that are gone.
    A VAE's ``logvar`` is its log-variance head: every latent unit's row, its columns the live
    inputs of layer L (the rows of layer L-1, or ``input_index`` when L = 1).
    """

    layers: list[CompactLayer]
    input_dim: int
    output_dim: int
    input_index: np.ndarray
    output_index: np.ndarray
    output_const: np.ndarray
    kind: str = "autoencoder"
    latent_layer: int | None = None
    latent_dim: int | None = None
    latent_const: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    logvar: CompactLayer | None = None

    @property
    def nnz(self) -> int:
        return sum(layer.nnz for layer in self.layers)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Reference NumPy forward pass (dense), full-width in and out."""
        from edgeprune.runtime.activations import apply_activation

        h = np.asarray(x, dtype=np.float32)[:, self.input_index]
        for layer in self.layers:
            h = apply_activation(h @ layer.weight.T + layer.bias, layer.activation, layer.negative_slope)
        out = np.broadcast_to(self.output_const, (h.shape[0], self.output_dim)).copy()
        out[:, self.output_index] = h
        return out
