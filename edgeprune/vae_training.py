"""Training a :class:`~edgeprune.vae_model.VAE` by the ELBO (dense, or masked for fine-tuning).

Per sample, the loss is the negative ELBO with a β weight on the KL term (β-VAE):

    −log p(x | z)  +  β_t · KL(q(z | x) ‖ N(0, I)),    z = μ + σ ε (one sample per step)

* Gaussian likelihood, unit variance: ``½ Σ_j (x_j − x̂_j)²`` (the constant ``½ D log 2π`` is
  dropped). An observation variance s² is the same objective as β = s² up to a factor, so β is
  the one knob for both.
* Bernoulli likelihood: ``Σ_j BCE(x_j, sigmoid(logit_j))`` from the decoder's logits (stable).
* ``KL = −½ Σ_k (1 + log σ²_k − μ_k² − σ²_k)``.
* KL annealing: ``β_t = β · min(1, epoch / kl_anneal_epochs)`` for epochs 1, 2, …

Every figure in the history is a mean per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from edgeprune.vae_model import LIKELIHOODS, VAE, VAEError


def reconstruction_nll(vae: VAE, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``−log p(x | z)`` per sample (constants dropped), for the VAE's likelihood."""
    if vae.likelihood == "bernoulli":
        logits = vae.decoder_logits(z)
        return torch.nn.functional.binary_cross_entropy_with_logits(
            logits, x, reduction="none").sum(dim=1)
    return 0.5 * ((vae.decode(z) - x) ** 2).sum(dim=1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(μ, σ²) ‖ N(0, I))`` per sample."""
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)


def elbo_terms(vae: VAE, x: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample reconstruction NLL and KL with one reparameterised sample of ``z``."""
    mu, logvar = vae.encode(x)
    z = vae.reparameterize(mu, logvar, generator)
    return reconstruction_nll(vae, x, z), kl_divergence(mu, logvar)


def kl_weight(beta: float, epoch: int, kl_anneal_epochs: int) -> float:
    """β_t for 1-based ``epoch``: a linear warm-up over ``kl_anneal_epochs`` (0: none)."""
    if kl_anneal_epochs <= 0:
        return float(beta)
    return float(beta) * min(1.0, epoch / kl_anneal_epochs)


def _check_options(x: np.ndarray, epochs: int, beta: float, likelihood: str,
                   kl_anneal_epochs: int, lr: float, batch_size: int) -> None:
    if x.ndim != 2 or len(x) == 0:
        raise VAEError(f"VAE training data must be a non-empty (samples, features) matrix, got "
                       f"shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise VAEError("VAE training data holds NaN or infinite values; clean the data")
    if epochs < 0:
        raise VAEError("--epochs must be >= 0")
    if not (np.isfinite(beta) and beta >= 0):
        raise VAEError(f"--beta {beta}: must be a finite number >= 0")
    if likelihood not in LIKELIHOODS:
        raise VAEError(f"--likelihood {likelihood!r}: use one of {', '.join(LIKELIHOODS)}")
    if likelihood == "bernoulli" and (x.min() < 0 or x.max() > 1):
        raise VAEError("--likelihood bernoulli needs data in [0, 1] (got values in "
                       f"[{x.min():.3g}, {x.max():.3g}]); scale the data or use gaussian")
    if kl_anneal_epochs < 0:
        raise VAEError("--kl-anneal-epochs must be >= 0")
    if not (np.isfinite(lr) and lr > 0):
        raise VAEError(f"--lr {lr}: must be a positive number")
    if batch_size < 1:
        raise VAEError("--batch-size must be >= 1")


def fit_vae(vae: VAE, x: np.ndarray, *, epochs: int, beta: float = 1.0,
            kl_anneal_epochs: int = 0, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
            quiet: bool = True, masks: dict[str, torch.Tensor] | None = None,
            x_val: np.ndarray | None = None, desc: str = "train vae") -> dict:
    """Train ``vae`` in place by the β-ELBO with Adam; returns the per-epoch history.

    ``masks`` maps parameter names (``vae.named_parameters()``) to 0/1 tensors of the same
    shape: masked entries get no gradient and are set to exactly zero after every step (masked
    fine-tuning of a pruned VAE). Seeded shuffles and noise: the same seed gives the same
    weights."""
    x = np.asarray(x, dtype=np.float32)
    _check_options(x, epochs, beta, vae.likelihood, kl_anneal_epochs, lr, batch_size)
    xt = torch.from_numpy(x)
    xv = None if x_val is None or not len(x_val) else torch.from_numpy(
        np.asarray(x_val, dtype=np.float32))
    params = dict(vae.named_parameters())
    masks = {name: m.to(params[name].dtype) for name, m in (masks or {}).items()}
    for name, mask in masks.items():
        if mask.shape != params[name].shape:
            raise VAEError(f"mask for {name!r} has shape {tuple(mask.shape)}, the parameter "
                           f"{tuple(params[name].shape)}")
    _apply_masks(params, masks)
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    val_gen_seed = seed + 1
    keys = ("loss", "recon", "kl", "beta") + (("val_loss", "val_recon", "val_kl") if xv is not None
                                              else ())
    history: dict[str, list] = {"epoch": [], **{k: [] for k in keys}}
    bar = tqdm(range(1, epochs + 1), desc=desc, disable=quiet, unit="epoch", leave=False)
    for epoch in bar:
        beta_t = kl_weight(beta, epoch, kl_anneal_epochs)
        vae.train()
        order = torch.randperm(len(xt), generator=gen)
        sums = np.zeros(3)
        for start in range(0, len(xt), batch_size):
            idx = order[start:start + batch_size]
            recon, kl = elbo_terms(vae, xt[idx], gen)
            loss = (recon + beta_t * kl).mean()
            opt.zero_grad()
            loss.backward()
            for name, mask in masks.items():
                params[name].grad.mul_(mask)
            opt.step()
            _apply_masks(params, masks)
            sums += len(idx) * np.array([float(loss.detach()), float(recon.detach().mean()),
                                         float(kl.detach().mean())])
        loss, recon, kl = sums / len(xt)
        if not np.isfinite(loss):
            raise VAEError(f"VAE training diverged: the loss is {loss} in epoch {epoch}; scale "
                           "the data to a small range (e.g. [0, 1]) or lower --lr")
        row = {"epoch": epoch, "loss": loss, "recon": recon, "kl": kl, "beta": beta_t}
        if xv is not None:
            row.update(_validation(vae, xv, beta_t, val_gen_seed))
        for key, value in row.items():
            history[key].append(float(value) if key != "epoch" else int(value))
        bar.set_postfix(loss=f"{loss:.4g}", kl=f"{kl:.3g}")
    bar.close()
    vae.eval()
    return history


@torch.no_grad()
def _validation(vae: VAE, xv: torch.Tensor, beta_t: float, seed: int) -> dict:
    vae.eval()
    recon, kl = elbo_terms(vae, xv, torch.Generator().manual_seed(seed))
    return {"val_loss": float((recon + beta_t * kl).mean()), "val_recon": float(recon.mean()),
            "val_kl": float(kl.mean())}


@torch.no_grad()
def _apply_masks(params: dict, masks: dict) -> None:
    for name, mask in masks.items():
        params[name].mul_(mask)


def build_vae(in_dim: int, *, latent: int, hidden: Sequence[int], activation: str = "relu",
              likelihood: str = "gaussian", output_activation: str | None = None,
              seed: int = 0) -> VAE:
    """A freshly initialised VAE (PyTorch's default init drawn from ``seed``, the global RNG
    untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VAE(in_dim, latent, hidden, activation=activation,
                   output_activation=output_activation, likelihood=likelihood)


def train_vae(x: np.ndarray, *, latent: int, hidden: Sequence[int], epochs: int,
              beta: float = 1.0, likelihood: str = "gaussian", kl_anneal_epochs: int = 0,
              lr: float = 1e-3, batch_size: int = 64, seed: int = 0, quiet: bool = True,
              activation: str = "relu", output_activation: str | None = None,
              x_val: np.ndarray | None = None) -> tuple[VAE, dict]:
    """Build and train a VAE on the rows of ``x``; returns ``(vae, history)`` where ``history``
    holds per-epoch lists ``epoch, loss, recon, kl, beta`` (and ``val_*`` with ``x_val``), each a
    mean per sample. Deterministic for a seed (on one machine and thread count)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise VAEError(f"VAE training data must be a (samples, features) matrix, got shape "
                       f"{x.shape}")
    vae = build_vae(x.shape[1], latent=latent, hidden=hidden, activation=activation,
                    likelihood=likelihood, output_activation=output_activation, seed=seed)
    history = fit_vae(vae, x, epochs=epochs, beta=beta, kl_anneal_epochs=kl_anneal_epochs,
                      lr=lr, batch_size=batch_size, seed=seed, quiet=quiet, x_val=x_val)
    return vae, history
