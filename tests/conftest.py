"""Shared fixtures: small trained models and datasets written to tmp dirs."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.checkpoint import save_checkpoint
from edgeprune.network import Layer, Network


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


@pytest.fixture(autouse=True)
def _isolated_kernel_profile(tmp_path_factory, monkeypatch):
    """Never read a calibrated kernel profile from the developer's real config directory."""
    monkeypatch.setenv("EDGEPRUNE_HOME", str(tmp_path_factory.mktemp("edgeprune_home")))


@pytest.fixture
def npy_data(tmp_path):
    """A 12-feature dataset as npy:PATH (values in [0, 1])."""
    x = np.random.default_rng(5).random((400, 12), dtype=np.float32)
    path = tmp_path / "data.npy"
    np.save(path, x)
    return f"npy:{path}"


@pytest.fixture
def small_model(tmp_path):
    """An edgeprune checkpoint of a 12-6-3-6-12 autoencoder with weak inputs/outputs."""
    net = make_network(["relu", "tanh", "leaky_relu", "sigmoid"], [12, 6, 3, 6, 12], latent=2,
                       weak_inputs=(0, 5), weak_outputs=(3,))
    path = tmp_path / "model.pt"
    save_checkpoint(net, path)
    return path
