"""Loading model files: checkpoint, state_dict, TorchScript, pickled modules (opt-in only)."""

import numpy as np
import pytest
import torch
from torch import nn

from edgeprune.checkpoint import load_network, save_checkpoint
from edgeprune.network import ModelError
from edgeprune.train import build_autoencoder


def _seq():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2), nn.Tanh(),
                         nn.Linear(2, 4), nn.LeakyReLU(0.2), nn.Linear(4, 6), nn.Sigmoid())


def _ref(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


X = np.random.default_rng(1).random((16, 6), dtype=np.float32)


def test_checkpoint_round_trip_keeps_masks_and_metadata(tmp_path):
    net = build_autoencoder(6, [4, 2], seed=3)
    net.layers[0].mask[0, :3] = False
    net.meta = {"trained_on": "synthetic6", "test_metrics": {"test_mse": 0.5}}
    save_checkpoint(net, tmp_path / "m.pt")
    back = load_network(tmp_path / "m.pt")
    assert back.latent == 2 and back.activations == net.activations
    assert np.array_equal(back.layers[0].mask, net.layers[0].mask)
    assert back.meta["test_metrics"]["test_mse"] == 0.5
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    # the checkpoint is readable with weights_only=True: no code is unpickled
    torch.load(tmp_path / "m.pt", weights_only=True)


def test_plain_state_dict_needs_activations(tmp_path):
    seq = _seq()
    torch.save(seq.state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelError, match="--activations"):
        load_network(tmp_path / "sd.pt")
    net = load_network(tmp_path / "sd.pt", activations="relu,tanh,leaky_relu,sigmoid", latent=2)
    net.layers[2].negative_slope = 0.2
    assert net.latent == 2
    np.testing.assert_allclose(net.forward(X), _ref(seq, X), atol=1e-6)


def test_wrong_activation_count_is_one_line_error(tmp_path):
    torch.save(_seq().state_dict(), tmp_path / "sd.pt")
    with pytest.raises(ModelError, match="one per layer"):
        load_network(tmp_path / "sd.pt", activations="relu,sigmoid")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_is_walked(tmp_path):
    seq = _seq()
    torch.jit.save(torch.jit.script(seq), tmp_path / "ts.pt")
    net = load_network(tmp_path / "ts.pt", trust_code=True)
    assert net.activations == ["relu", "tanh", "leaky_relu", "sigmoid"]
    assert net.layers[2].negative_slope == pytest.approx(0.2)
    assert net.latent == 2
    np.testing.assert_allclose(net.forward(X), _ref(seq, X), atol=1e-6)


def test_pickled_module_requires_trust_flag(tmp_path):
    seq = _seq()
    torch.save(seq, tmp_path / "pickled.pt")
    with pytest.raises(ModelError, match="--trust-code"):
        load_network(tmp_path / "pickled.pt")
    net = load_network(tmp_path / "pickled.pt", trust_pickle=True)
    np.testing.assert_allclose(net.forward(X), _ref(seq, X), atol=1e-6)


class EncDec(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3), nn.ReLU(),
                                     nn.Linear(3, 2))
        self.decoder = nn.Sequential(nn.Linear(2, 6), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


def test_encoder_decoder_module_gives_latent_index(tmp_path):
    torch.save(EncDec(), tmp_path / "ed.pt")
    net = load_network(tmp_path / "ed.pt", trust_pickle=True)
    assert net.latent == 3 and net.kind == "autoencoder"


class WithConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.conv = nn.Conv1d(1, 1, 3)

    def forward(self, x):
        return self.fc(x)


def test_unsupported_module_named(tmp_path):
    torch.save(WithConv(), tmp_path / "conv.pt")
    with pytest.raises(ModelError, match="unsupported module 'conv' \\(Conv1d\\)"):
        load_network(tmp_path / "conv.pt", trust_pickle=True)


class Reordered(nn.Module):
    def __init__(self):
        super().__init__()
        self.second = nn.Linear(4, 6)
        self.first = nn.Linear(6, 4)

    def forward(self, x):
        return self.second(torch.relu(self.first(x)))


def test_module_whose_forward_is_not_registration_order_is_refused(tmp_path):
    torch.save(Reordered(), tmp_path / "r.pt")
    with pytest.raises(ModelError):
        load_network(tmp_path / "r.pt", trust_pickle=True)


def test_garbage_and_missing_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match="junk.pt"):
        load_network(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="no such model file"):
        load_network(tmp_path / "missing.pt")
