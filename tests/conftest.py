"""Shared fixtures: small trained models and datasets written to tmp dirs."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.checkpoint import save_checkpoint
from tests.factories import make_network


@pytest.fixture(autouse=True)
def _isolated_kernel_profile(tmp_path_factory, monkeypatch):
    """Never read a calibrated kernel profile from the developer's real config directory, and
    use the static rule rather than this architecture's built-in default (tests that want one
    set ``kernel_profile.MACHINE``), so kernel choices do not depend on the CPU."""
    monkeypatch.setenv("EDGEPRUNE_HOME", str(tmp_path_factory.mktemp("edgeprune_home")))
    monkeypatch.setattr("edgeprune.runtime.kernel_profile.MACHINE", "test-machine")


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
