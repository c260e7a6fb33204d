"""The VAE model and its ELBO training (edgeprune.vae)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeprune.data import load_dataset
from edgeprune.vae import VAE, VAEError, fit_vae, kl_divergence, train_vae


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def test_training_loss_decreases_gaussian(digits):
    vae, hist = train_vae(digits.x_train, latent=4, hidden=[32], epochs=6, seed=0)
    assert isinstance(vae, VAE)
    assert len(hist["loss"]) == 6 and hist["epoch"] == [1, 2, 3, 4, 5, 6]
    assert hist["loss"][-1] < 0.7 * hist["loss"][0]
    assert hist["recon"][-1] < hist["recon"][0]
    for k in range(6):  # loss = recon + beta * kl, per sample
        assert hist["loss"][k] == pytest.approx(hist["recon"][k] + hist["kl"][k], rel=1e-5)


def test_training_loss_decreases_bernoulli_with_annealing(digits):
    vae, hist = train_vae(digits.x_train, latent=3, hidden=[24, 12], epochs=5, beta=2.0,
                          likelihood="bernoulli", kl_anneal_epochs=4, seed=1,
                          x_val=digits.x_val)
    assert hist["beta"] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0])
    assert hist["recon"][-1] < hist["recon"][0]
    assert len(hist["val_loss"]) == 5
    out = vae.sample(7, generator=torch.Generator().manual_seed(0))
    assert out.shape == (7, 64) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_deterministic_for_a_seed(digits):
    a, ha = train_vae(digits.x_train[:300], latent=2, hidden=[16], epochs=2, seed=3)
    b, hb = train_vae(digits.x_train[:300], latent=2, hidden=[16], epochs=2, seed=3)
    c, _ = train_vae(digits.x_train[:300], latent=2, hidden=[16], epochs=2, seed=4)
    assert ha == hb
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(a.mu.weight, c.mu.weight)


def test_forward_and_api_shapes():
    torch.manual_seed(0)
    vae = VAE(10, 3, [8, 5])
    x = torch.rand(4, 10)
    mu, logvar = vae.encode(x)
    assert mu.shape == logvar.shape == (4, 3)
    vae.eval()
    recon, mu2, _ = vae(x)
    assert torch.equal(mu, mu2) and torch.allclose(recon, vae.decode(mu))
    enc = vae.mu_encoder()
    assert torch.equal(enc(x), mu)
    assert enc[0].weight is vae.encoder[0].weight  # shares the parameters
    assert vae.sample(6).shape == (6, 10)
    assert VAE(**vae.config()).state_dict().keys() == vae.state_dict().keys()


def test_reparameterisation_gradients_flow_through_mu_and_logvar():
    torch.manual_seed(0)
    vae = VAE(6, 2, [5]).train()
    x = torch.rand(16, 6)
    recon, mu, logvar = vae(x, generator=torch.Generator().manual_seed(0))
    recon.sum().backward()
    assert vae.mu.weight.grad is not None and vae.mu.weight.grad.abs().sum() > 0
    assert vae.logvar.weight.grad is not None and vae.logvar.weight.grad.abs().sum() > 0
    assert vae.encoder[0].weight.grad.abs().sum() > 0


def test_reparameterisation_sample_statistics():
    mu = torch.tensor([[1.5, -2.0, 0.0]]).repeat(200_000, 1)
    logvar = torch.log(torch.tensor([[0.25, 4.0, 1.0]])).repeat(200_000, 1)
    z = VAE.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert z.mean(0).numpy() == pytest.approx([1.5, -2.0, 0.0], abs=0.02)
    assert z.std(0).numpy() == pytest.approx([0.5, 2.0, 1.0], rel=0.01)


def test_kl_divergence_matches_torch_distributions():
    mu = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    logvar = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    q = torch.distributions.Normal(mu, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(3), torch.ones(3))
    ref = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(kl_divergence(mu, logvar), ref, atol=1e-6)


def test_masked_fit_keeps_masked_weights_zero(digits):
    vae, _ = train_vae(digits.x_train[:200], latent=2, hidden=[8], epochs=1, seed=0)
    mask = (torch.rand(vae.mu.weight.shape, generator=torch.Generator().manual_seed(0)) < 0.5)
    fit_vae(vae, digits.x_train[:200], epochs=2, masks={"mu.weight": mask.float()})
    assert torch.all(vae.mu.weight[~mask] == 0)
    assert torch.any(vae.mu.weight[mask] != 0)


@pytest.mark.parametrize("kwargs, match", [
    ({"beta": -1.0}, "--beta"),
    ({"likelihood": "poisson"}, "--likelihood"),
    ({"kl_anneal_epochs": -2}, "--kl-anneal-epochs"),
    ({"hidden": []}, "positive sizes"),
    ({"latent": 0}, "positive sizes"),
])
def test_bad_options_are_one_line_errors(kwargs, match):
    args = {"latent": 2, "hidden": [4], "epochs": 1, **kwargs}
    with pytest.raises(VAEError, match=match):
        train_vae(np.random.default_rng(0).random((20, 5)), **args)


def test_bernoulli_refuses_data_outside_unit_interval():
    with pytest.raises(VAEError, match="bernoulli needs data in"):
        train_vae(np.full((10, 3), 2.0), latent=1, hidden=[2], epochs=1, likelihood="bernoulli")
