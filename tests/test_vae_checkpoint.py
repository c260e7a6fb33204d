"""VAE checkpoints: edgeprune's own (round trip, hostile fields) and users' (state_dict,
pickled module, TorchScript), and `train --task vae` / `info` from the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeprune.checkpoint import load_network, network_state, save_checkpoint
from edgeprune.cli import main
from edgeprune.network import ModelError
from edgeprune.vae import VAE
from edgeprune.vae_network import vae_to_network


def _vae(seed: int = 0, likelihood: str = "gaussian") -> VAE:
    torch.manual_seed(seed)
    return VAE(12, 3, [8, 6], likelihood=likelihood).eval()


def test_vae_checkpoint_round_trip(tmp_path):
    net = vae_to_network(_vae(likelihood="bernoulli"), meta={"vae": {"beta": 0.5}})
    net.logvar.mask[0, :2] = False
    save_checkpoint(net, tmp_path / "vae.pt")
    back = load_network(tmp_path / "vae.pt")
    assert back.kind == "vae" and back.latent == 3 and back.likelihood == "bernoulli"
    assert back.fingerprint() == net.fingerprint()
    assert np.array_equal(back.logvar.mask, net.logvar.mask)
    assert back.meta["vae"]["beta"] == 0.5
    x = np.random.default_rng(0).random((5, 12), dtype=np.float32)
    assert np.array_equal(back.encode_logvar(x), net.encode_logvar(x))


def test_mu_only_vae_round_trips_and_old_checkpoints_stay_version_1(tmp_path, small_model):
    net = vae_to_network(_vae())
    net.logvar = None
    save_checkpoint(net, tmp_path / "mu.pt")
    back = load_network(tmp_path / "mu.pt")
    assert back.kind == "vae" and back.logvar is None
    assert torch.load(small_model, weights_only=True)["version"] == 1
    assert network_state(load_network(small_model))["version"] == 1


def _hostile(tmp_path, edit) -> str:
    state = network_state(vae_to_network(_vae()))
    edit(state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ModelError) as err:
        load_network(path)
    line = str(err.value)
    assert "\n" not in line and str(path) in line
    return line


@pytest.mark.parametrize("edit, match", [
    (lambda s: s["meta"]["vae"].update(likelihood="poisson"), "meta.vae.likelihood"),
    (lambda s: s["meta"]["vae"].update(likelihood=3), "meta.vae.likelihood"),
    (lambda s: s["meta"].pop("vae"), "meta.vae"),
    (lambda s: s["meta"]["vae"].pop("logvar"), "meta.vae.logvar"),
    (lambda s: s["meta"]["vae"].update(logvar="x"), "meta.vae.logvar"),
    (lambda s: s["state_dict"].pop("logvar.bias"), "logvar.bias"),
    (lambda s: s["state_dict"].update({"logvar.weight": torch.zeros(3, 5),
                                       "logvar.mask": torch.ones(3, 5, dtype=torch.bool)}),
     "the log-variance head has shape [3, 5]"),
    (lambda s: s["state_dict"].update({"logvar.mask": torch.ones(2, 2, dtype=torch.bool)}),
     "logvar.mask"),
    (lambda s: s["state_dict"]["logvar.weight"].__setitem__((0, 0), float("nan")),
     "log-variance head weight holds a non-finite"),
    (lambda s: s.update(version=1), "needs checkpoint version 2"),
    (lambda s: s["meta"].update(kind="autoencoder"), "meta.kind is 'autoencoder'"),
    (lambda s: s["meta"].update(latent=None), "needs its latent layer"),
    (lambda s: s["meta"]["vae"].update(logvar=None), "meta.vae.logvar is None"),
])
def test_hostile_vae_fields_are_one_line_errors(tmp_path, edit, match):
    assert match in _hostile(tmp_path, edit)


def test_future_checkpoint_version_is_refused(tmp_path):
    assert "upgrade edgeprune" in _hostile(tmp_path, lambda s: s.update(version=3))


class UserVAE(torch.nn.Module):
    """A user's VAE as often written: fc_mu / fc_logvar, forward samples in training only."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.Tanh())
        self.fc_mu = torch.nn.Linear(8, 3)
        self.fc_logvar = torch.nn.Linear(8, 3)
        self.dec = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(),
                                       torch.nn.Linear(8, 12), torch.nn.Sigmoid())

    def encode(self, x):
        h = self.enc(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z):
        return self.dec(z)

    def forward(self, x):
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode(z), mu, logvar


def _check_user_vae(net, module):
    x = torch.rand(7, 12)
    with torch.no_grad():
        mu, logvar = module.encode(x)
        recon = module.decode(mu)
    assert net.kind == "vae" and net.latent == 2 and net.likelihood == "gaussian"
    assert np.allclose(net.encode(x.numpy()), mu.numpy(), atol=1e-6)
    assert np.allclose(net.encode_logvar(x.numpy()), logvar.numpy(), atol=1e-6)
    assert np.allclose(net.forward(x.numpy()), recon.numpy(), atol=1e-6)
    assert any("fc_logvar" in note for note in net.meta["import"]["notes"])


def test_users_vae_state_dict_loads_with_activations(tmp_path):
    torch.manual_seed(1)
    module = UserVAE().eval()
    torch.save(module.state_dict(), tmp_path / "sd.pt")
    net = load_network(tmp_path / "sd.pt", activations="tanh,identity,relu,sigmoid")
    _check_user_vae(net, module)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit: what users hand us
def test_users_vae_module_and_torchscript_need_trust_code(tmp_path):
    torch.manual_seed(2)
    module = UserVAE().eval()
    torch.save(module, tmp_path / "pickled.pt")
    with pytest.raises(ModelError, match="--trust-code"):
        load_network(tmp_path / "pickled.pt")
    _check_user_vae(load_network(tmp_path / "pickled.pt", trust_code=True), module)
    torch.jit.script(module).save(str(tmp_path / "scripted.pt"))
    with pytest.raises(ModelError, match="--trust-code"):
        load_network(tmp_path / "scripted.pt")
    _check_user_vae(load_network(tmp_path / "scripted.pt", trust_code=True), module)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_our_vae_module_loads_as_torchscript(tmp_path):
    vae = _vae(3)
    torch.jit.trace(vae, torch.rand(2, 12), strict=False).save(str(tmp_path / "traced.pt"))
    net = load_network(tmp_path / "traced.pt", trust_code=True)
    assert net.fingerprint() == vae_to_network(vae).fingerprint()


def test_cli_train_vae_and_info(tmp_path):
    out = tmp_path / "vae.pt"
    res = CliRunner().invoke(main, ["train", "--task", "vae", "--data", "digits",
                                    "--latent-dim", "3", "--hidden", "16", "--epochs", "2",
                                    "--likelihood", "bernoulli", "--beta", "0.5",
                                    "--kl-anneal-epochs", "1", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "vae 64-16-3-16-64" in res.output and "test_neg_elbo" in res.output
    net = load_network(out)
    assert net.likelihood == "bernoulli" and net.layers[-1].activation == "sigmoid"
    assert net.meta["vae"]["beta"] == 0.5
    info = CliRunner().invoke(main, ["info", str(out)])
    assert info.exit_code == 0, info.output
    assert "log-variance head: 3 x 16" in info.output and "bernoulli" in info.output


def test_cli_train_vae_bad_option_is_one_line(tmp_path):
    res = CliRunner().invoke(main, ["train", "--task", "vae", "--data", "digits",
                                    "--hidden", "0", "--epochs", "1", "-o",
                                    str(tmp_path / "v.pt")])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "--hidden" in res.output
    assert not (tmp_path / "v.pt").exists()
