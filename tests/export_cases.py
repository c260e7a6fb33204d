"""Networks and inputs shared by the exporter parity tests (ONNX and TFLite run the same cases)."""

from __future__ import annotations

import numpy as np

from edgeprune.prune import cascade_dead_units, compact_network
from tests.factories import make_network

ACTIVATION_SETS = {
    "relu": ["relu"] * 3,
    "leaky_relu": ["leaky_relu"] * 3,
    "sigmoid": ["sigmoid"] * 3,
    "tanh": ["tanh"] * 3,
    "identity": ["identity"] * 3,
    "mixed": ["relu", "leaky_relu", "tanh", "identity", "sigmoid"],
}


def pruned_network(acts: list[str], seed: int = 0, keep: float = 0.6):
    """A masked, cascaded network with unused inputs and constant outputs, and its compact form."""
    dims = [14] + [10, 6, 8, 9][: len(acts) - 1] + [12]
    net = make_network(acts, dims, seed=seed, weak_inputs=(0, 5), weak_outputs=(2, 7))
    rng = np.random.default_rng(seed + 1)
    for layer in net.layers:
        layer.mask = (np.abs(layer.weight) > 1e-3) & (rng.random(layer.weight.shape) < keep)
    pruned = cascade_dead_units(net).network
    small = compact_network(pruned)
    assert small.layers and small.input_index.size < 14 and small.output_index.size < 12
    return pruned, small


def batch(n: int, width: int, seed: int = 3) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, width), dtype=np.float32) * 4 - 2)


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def pruned_torch_sequential():
    """A user's own ``nn.Sequential`` autoencoder, pruned (unused inputs, constant outputs) with
    the pruned links zeroed in the module itself: its compact form, inputs and the module's
    outputs on them (checked against our torch forward of the pruned network)."""
    import torch

    from edgeprune.checkpoint import network_from_module
    from edgeprune.torch_network import torch_forward

    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(16, 12), torch.nn.ReLU(), torch.nn.Linear(12, 6),
                              torch.nn.Tanh(), torch.nn.Linear(6, 12), torch.nn.LeakyReLU(0.2),
                              torch.nn.Linear(12, 16), torch.nn.Sigmoid())
    net = network_from_module(seq, latent=2)
    rng = np.random.default_rng(0)
    for layer in net.layers:
        layer.mask = rng.random(layer.weight.shape) < 0.5
    net.layers[0].mask[:, [1, 9]] = False  # unused inputs
    net.layers[-1].mask[[0, 4], :] = False  # constant outputs
    pruned = cascade_dead_units(net).network
    with torch.no_grad():  # the user's own module with the pruned links zeroed
        for lin, layer in zip([m for m in seq if isinstance(m, torch.nn.Linear)], pruned.layers):
            lin.weight.copy_(torch.from_numpy(layer.masked_weight))
            lin.bias.copy_(torch.from_numpy(layer.bias))
    x = batch(64, 16)
    with torch.no_grad():
        ref = seq(torch.from_numpy(x)).numpy()
    assert max_diff(ref, torch_forward(pruned, x)) <= 1e-5
    return compact_network(pruned), x, ref
