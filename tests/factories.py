"""Hand-built networks for tests: the numpy IR (:class:`Network`) and its compacted form
(:class:`CompactNetwork`), so test files do not each spell out layers, index arrays and
constants."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeprune.compacted import CompactLayer, CompactNetwork
from edgeprune.network import Layer, Network
from edgeprune.runtime.activations import apply_activation


def make_network(activations: list[str], dims: list[int], seed: int = 0, latent: int | None = None,
                 weak_inputs: tuple[int, ...] = (), weak_outputs: tuple[int, ...] = ()) -> Network:
    """A random chain; ``weak_inputs``/``weak_outputs`` get tiny weights so pruning removes them
    (unused inputs / constant outputs)."""
    rng = np.random.default_rng(seed)
    layers = []
    for k, act in enumerate(activations):
        w = rng.normal(0, 1 / np.sqrt(dims[k]), (dims[k + 1], dims[k])).astype(np.float32)
        b = rng.normal(0, 0.1, dims[k + 1]).astype(np.float32)
        if k == 0:
            w[:, list(weak_inputs)] *= 1e-4
        if k == len(activations) - 1:
            w[list(weak_outputs), :] *= 1e-4
        layers.append(Layer(w, b, act, 0.2 if act == "leaky_relu" else 0.01))
    return Network(layers, latent=latent, kind="autoencoder" if latent else "mlp")


def single_layer_network(activation: str, n: int = 3, bias: float = 0.0) -> Network:
    """One ``n x n`` identity layer: the smallest network an exporter accepts."""
    return Network([Layer(np.eye(n, dtype=np.float32), np.full(n, bias, np.float32),
                          activation)])


def compact_layer(weight: np.ndarray, bias: Sequence[float] | np.ndarray, activation: str,
                  negative_slope: float = 0.01,
                  unit_index: np.ndarray | None = None) -> CompactLayer:
    """A :class:`CompactLayer` whose units keep their positions unless ``unit_index`` says."""
    weight = np.asarray(weight, dtype=np.float32)
    rows = weight.shape[0]
    return CompactLayer(weight, np.asarray(bias, dtype=np.float32), activation, negative_slope,
                        np.arange(rows, dtype=np.int64) if unit_index is None
                        else np.asarray(unit_index, dtype=np.int64))


def random_compact_layer(rng: np.random.Generator, rows: int, cols: int, activation: str,
                         density: float = 0.4, negative_slope: float = 0.2,
                         unit_index: np.ndarray | None = None) -> CompactLayer:
    """Random sparse layer; every row keeps at least one non-zero (as after compaction)."""
    weight = rng.normal(scale=1.0 / np.sqrt(cols), size=(rows, cols)).astype(np.float32)
    mask = rng.random((rows, cols)) < density
    mask[np.arange(rows), rng.integers(0, cols, size=rows)] = True
    weight[~mask] = 0.0
    return compact_layer(weight, rng.normal(scale=0.1, size=rows), activation, negative_slope,
                         unit_index)


def compact_mlp(layers: list[CompactLayer], input_dim: int, output_dim: int, *,
                input_index: Sequence[int] | np.ndarray | None = None,
                output_index: Sequence[int] | np.ndarray | None = None,
                output_const: Sequence[float] | np.ndarray | None = None,
                **kwargs) -> CompactNetwork:
    """A :class:`CompactNetwork` (``kind="mlp"`` unless given); every input used and every
    output live unless the index arrays say otherwise, constant outputs 0 unless given."""
    def index(values, n):
        return np.arange(n, dtype=np.int64) if values is None else np.asarray(values, np.int64)

    const = (np.zeros(output_dim, np.float32) if output_const is None
             else np.asarray(output_const, np.float32))
    kwargs.setdefault("kind", "mlp")
    return CompactNetwork(layers=layers, input_dim=input_dim, output_dim=output_dim,
                          input_index=index(input_index, input_dim),
                          output_index=index(output_index, output_dim if layers else 0),
                          output_const=const, **kwargs)


def pre_activations(net: Network, x: np.ndarray) -> list[np.ndarray]:
    """Every layer's pre-activation ``W a + b`` on ``x`` (float64), layer by layer."""
    out, a = [], np.asarray(x, dtype=np.float64)
    for layer in net.layers:
        z = a @ layer.masked_weight.T.astype(np.float64) + layer.bias
        out.append(z)
        a = apply_activation(z, layer.activation, layer.negative_slope)
    return out
