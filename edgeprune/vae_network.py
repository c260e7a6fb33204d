"""A :class:`~edgeprune.vae_model.VAE` as the IR and back (``kind="vae"`` Networks).

The IR of a VAE is its deployed chain ``x → trunk → μ head (layer L) → decoder`` plus the
log σ² head beside layer L (:class:`~edgeprune.network.Network`'s ``logvar``). This module
converts both ways, fine-tunes a (pruned, masked) VAE Network by the ELBO and gives the PyTorch
reference outputs that every exported artifact is checked against.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgeprune.network import Layer, ModelError, Network
from edgeprune.torch_network import linear_from_layer
from edgeprune.vae_model import ACTIVATION_MODULES, VAE, VAEError
from edgeprune.vae_training import fit_vae

_ACT_NAMES = {cls: name for name, cls in ACTIVATION_MODULES.items()}


def _layers_of(chain: nn.Sequential) -> list[Layer]:
    """The IR layers of a chain of ``nn.Linear`` each followed by at most one activation."""
    layers: list[Layer] = []
    for module in chain:
        if isinstance(module, nn.Linear):
            w = module.weight.detach().to(torch.float32).numpy()
            b = (module.bias.detach().to(torch.float32).numpy() if module.bias is not None
                 else np.zeros(w.shape[0], np.float32))
            layers.append(Layer(w, b, "identity"))
        elif type(module) in _ACT_NAMES and layers and layers[-1].activation == "identity":
            layers[-1].activation = _ACT_NAMES[type(module)]
            layers[-1].negative_slope = float(getattr(module, "negative_slope", 0.01))
        else:
            raise VAEError(f"VAE part {type(module).__name__} is not a Linear or one activation "
                           "after a Linear")
    return layers


def _linear_layer(module: nn.Linear) -> Layer:
    return _layers_of(nn.Sequential(module))[0]


def vae_to_network(vae: VAE, meta: dict | None = None) -> Network:
    """The IR of ``vae``: trunk + μ head + decoder as the chain (latent = the μ head),
    log σ² head beside it."""
    trunk = _layers_of(vae.encoder)
    decoder = _layers_of(vae.decoder)
    return Network(trunk + [_linear_layer(vae.mu)] + decoder, latent=len(trunk) + 1,
                   kind="vae", meta=dict(meta or {}), logvar=_linear_layer(vae.logvar),
                   likelihood=vae.likelihood)


def layers_module(layers: list[Layer], prefix: str, names: dict[str, Layer]) -> nn.Sequential:
    """``layers`` as an ``nn.Sequential`` of ``Linear`` + activation modules (masked weights);
    records in ``names`` which IR layer each ``{prefix}.{i}.weight`` came from."""
    mods: list[nn.Module] = []
    for layer in layers:
        names[f"{prefix}.{len(mods)}.weight"] = layer
        mods.append(linear_from_layer(layer))
        if layer.activation != "identity":
            cls = ACTIVATION_MODULES[layer.activation]
            mods.append(cls(layer.negative_slope) if cls is nn.LeakyReLU else cls())
    return nn.Sequential(*mods)


def network_to_vae(net: Network) -> tuple[VAE, dict[str, torch.Tensor]]:
    """A torch VAE computing ``net`` (masked weights) and the masks of its weights by parameter
    name, for :func:`edgeprune.vae_training.fit_vae`."""
    if net.kind != "vae" or net.logvar is None:
        raise ModelError("the network is not a VAE with a log-variance head")
    names: dict[str, Layer] = {}
    latent = int(net.latent)
    encoder = layers_module(net.layers[:latent - 1], "encoder", names)
    decoder = layers_module(net.layers[latent:], "decoder", names)
    mu, logvar = linear_from_layer(net.layers[latent - 1]), linear_from_layer(net.logvar)
    names["mu.weight"], names["logvar.weight"] = net.layers[latent - 1], net.logvar
    if net.layers[latent - 1].activation != "identity" or net.logvar.activation != "identity":
        raise ModelError("a VAE's mu and log-variance heads must be linear (identity "
                         "activation) to train it by the ELBO")
    out_act = net.layers[-1].activation
    if net.likelihood == "bernoulli" and out_act != "sigmoid":
        raise ModelError(f"a Bernoulli VAE's output activation must be sigmoid, not {out_act!r}")
    vae = VAE.from_modules(encoder, mu, logvar, decoder, likelihood=net.likelihood,
                           output_activation=out_act)
    masks = {name: torch.from_numpy(layer.mask.astype(np.float32))
             for name, layer in names.items() if not layer.mask.all()}
    return vae.eval(), masks


def update_network(net: Network, vae: VAE) -> Network:
    """``net`` with the weights of ``vae`` (same shapes; masks kept, masked weights zero)."""
    trained = vae_to_network(vae)
    out = net.copy()
    pairs = list(zip(out.layers, trained.layers)) + [(out.logvar, trained.logvar)]
    for old, new in pairs:
        old.weight = np.where(old.mask, new.weight, np.float32(0)).astype(np.float32)
        old.bias = new.bias.copy()
    return out


def vae_beta(net: Network, beta: float | None = None) -> float:
    """The β to fine-tune with: ``beta``, else the one the VAE was trained with, else 1."""
    if beta is not None:
        return float(beta)
    recorded = ((net.meta or {}).get("vae") or {}).get("beta")
    ok = isinstance(recorded, (int, float)) and not isinstance(recorded, bool)
    return float(recorded) if ok and np.isfinite(recorded) and recorded >= 0 else 1.0


def finetune_vae(net: Network, x_train: np.ndarray, x_val: np.ndarray | None = None, *,
                 epochs: int, lr: float = 1e-3, seed: int = 0, quiet: bool = True,
                 beta: float | None = None, batch_size: int = 64,
                 desc: str = "fine-tune vae") -> tuple[Network, list[dict]]:
    """Masked fine-tuning of a VAE Network by the β-ELBO (pruned links stay exactly zero);
    returns the network and one history row per epoch."""
    vae, masks = network_to_vae(net)
    history = fit_vae(vae, x_train, epochs=epochs, beta=vae_beta(net, beta), lr=lr,
                      batch_size=batch_size, seed=seed, quiet=quiet, masks=masks,
                      x_val=x_val, desc=desc)
    rows = [{key: values[k] for key, values in history.items()}
            for k in range(len(history["epoch"]))]
    return update_network(net, vae), rows


@torch.no_grad()
def elbo_metrics(net: Network, x: np.ndarray, beta: float | None = None, seed: int = 0
                 ) -> dict[str, float]:
    """Test figures of a VAE Network, per sample: ``test_recon_nll``, ``test_kl`` and
    ``test_neg_elbo`` (β-weighted), one seeded sample of z each."""
    from edgeprune.vae_training import elbo_terms

    if net.logvar is None or not len(x):
        return {}
    vae, _ = network_to_vae(net)
    recon, kl = elbo_terms(vae, torch.from_numpy(np.asarray(x, dtype=np.float32)),
                           torch.Generator().manual_seed(seed))
    b = vae_beta(net, beta)
    return {"test_recon_nll": float(recon.mean()), "test_kl": float(kl.mean()),
            "test_neg_elbo": float((recon + b * kl).mean())}


@torch.no_grad()
def torch_vae_outputs(net: Network, x: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch reference outputs of a VAE Network: ``mu``, ``logvar`` (with the head) and
    ``recon`` = decode(mu), float32."""
    from edgeprune.torch_network import MaskedMLP

    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    chain = MaskedMLP(net).eval()
    mu = chain(xt, upto=net.latent)
    out = {"mu": mu.numpy(), "recon": torch_decode(net, mu.numpy())}
    if net.logvar is not None:
        head = MaskedMLP(Network([net.logvar])).eval()
        out["logvar"] = head(chain(xt, upto=net.latent - 1)).numpy()
    return out


@torch.no_grad()
def torch_decode(net: Network, z: np.ndarray) -> np.ndarray:
    """PyTorch reference of a VAE Network's decoder on latent codes ``z``."""
    from edgeprune.torch_network import MaskedMLP

    decoder = MaskedMLP(Network(net.layers[net.latent:], kind="mlp")).eval()
    return decoder(torch.from_numpy(np.asarray(z, dtype=np.float32))).numpy()
