"""Users' VAEs (plain state_dicts, pickled modules, TorchScript) as ``kind="vae"`` Networks.

A VAE's two heads read the same trunk output, so its Linear layers are not one chain. The
log-variance head is found by its name (``logvar``, ``log_var``, ``fc_logvar``, ``log_sigma``,
``logsigma2``, ... — any module/state_dict prefix whose last part matches
:data:`LOGVAR_NAME`) and taken out of the list of operations; the rest is the chain
``trunk → μ head → decoder`` that :mod:`edgeprune.layer_chain` folds as for an autoencoder.
The μ head is the chain Linear of the log-variance head's shape registered next to it (``--latent``
overrides). Its likelihood is not in a user's file: Gaussian is assumed and recorded in
``meta["import"]`` (``compress --likelihood`` says otherwise for the ELBO fine-tuning).
"""

from __future__ import annotations

import re

import numpy as np

from edgeprune.errors import first_line
from edgeprune.layer_chain import Op
from edgeprune.network import Layer, ModelError, Network

#: The last part of a module name that marks a log-variance head.
LOGVAR_NAME = re.compile(r"(?:fc_?|enc_?|z_?)?(?:log_?var|log_?sigma2?|log_?sigma_?sq)(?:_?head)?",
                         re.IGNORECASE)
#: The likelihood assumed for a VAE whose file does not say.
ASSUMED_LIKELIHOOD = "gaussian"


def is_logvar_name(name: str) -> bool:
    return bool(LOGVAR_NAME.fullmatch(str(name).rsplit(".", 1)[-1]))


def split_logvar(ops: list[Op], source) -> tuple[list[Op], Op | None, int | None]:
    """``(chain ops, log-variance Linear or None, 1-based index of the μ head among the chain's
    Linears or None)``."""
    heads = [k for k, op in enumerate(ops) if op.kind == "linear" and is_logvar_name(op.name)]
    if not heads:
        return ops, None, None
    if len(heads) > 1:
        names = ", ".join(repr(ops[k].name) for k in heads)
        raise ModelError(f"{source}: more than one log-variance head ({names}); a VAE has one")
    pos = heads[0]
    head = ops[pos]
    if pos + 1 < len(ops) and ops[pos + 1].kind != "linear":
        raise ModelError(f"{source}: the log-variance head {head.name!r} is followed by "
                         f"{ops[pos + 1].type_name} ({ops[pos + 1].name!r}); edgeprune reads "
                         "a linear log-variance head (no activation or BatchNorm after it)")
    chain = ops[:pos] + ops[pos + 1:]
    linears = [k for k, op in enumerate(chain) if op.kind == "linear"]
    same = [k for k in linears if chain[k].weight.shape == head.weight.shape]
    if not same:
        raise ModelError(f"{source}: no Linear of the log-variance head's shape "
                         f"{list(head.weight.shape)} (the mu head) was found")
    # registration order: the mu head sits next to the log-variance head (before it on ties)
    mu = min(same, key=lambda k: (abs((k if k < pos else k + 1) - pos), k >= pos))
    return chain, head, linears.index(mu) + 1


def as_vae(net: Network, head: Op, mu_index: int, source) -> Network:
    """``net`` (the folded chain) as a VAE with ``head`` beside layer ``net.latent``."""
    if net.latent != mu_index:
        raise ModelError(f"{source}: the latent layer is {net.latent} but the mu head (beside "
                         f"{head.name!r}) is layer {mu_index}; pass --latent {mu_index}")
    logvar = Layer(np.asarray(head.weight, np.float32), np.asarray(head.bias, np.float32),
                   "identity")
    notes = list(((net.meta or {}).get("import") or {}).get("notes") or [])
    notes.append(f"VAE: log-variance head {head.name!r} beside the mu head (layer {mu_index}); "
                 f"likelihood not recorded in the file, {ASSUMED_LIKELIHOOD} assumed")
    meta = {**net.meta, "import": {**(net.meta.get("import") or {}), "notes": notes}}
    try:
        return Network(net.layers, latent=net.latent, kind="vae", meta=meta, logvar=logvar,
                       likelihood=ASSUMED_LIKELIHOOD)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None


def check_vae_module(module, net: Network, source, tolerance: float) -> float:
    """Compare a user's VAE module (eval mode) with ``net``: ``encode(x) → (μ, log σ²)`` and
    ``decode(μ)`` when the module has them, else a forward returning ``(x̂, μ, log σ²)``
    (``x̂`` compared too, so such a forward must use ``z = μ`` in eval mode). Returns the
    largest difference; raises when it is beyond ``tolerance`` of the outputs' scale."""
    import torch

    x = np.random.default_rng(0).random((16, net.in_dim), dtype=np.float32)
    xt = torch.from_numpy(x)
    try:
        module.eval()
        with torch.no_grad():
            if callable(getattr(module, "encode", None)):
                mu, logvar = module.encode(xt)[:2]
                recon = module.decode(mu) if callable(getattr(module, "decode", None)) else None
            else:
                out = module(xt)
                if not isinstance(out, (tuple, list)) or len(out) < 3:
                    raise ModelError(f"{source}: a VAE module needs encode(x) -> (mu, logvar) "
                                     "or a forward returning (reconstruction, mu, logvar)")
                recon, mu, logvar = out[:3]
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{source}: running the VAE module failed ({type(exc).__name__}: "
                         f"{first_line(exc)[:120]}); give encode(x) -> (mu, logvar) and "
                         "decode(z), or save its state_dict") from None
    pairs = [("mu", mu, net.encode(x)), ("logvar", logvar, net.encode_logvar(x))]
    if recon is not None:
        pairs.append(("reconstruction", recon, net.forward(x)))
    worst = 0.0
    for what, ref, got in pairs:
        ref = ref.detach().double().numpy().reshape(len(x), -1)
        if ref.shape != got.shape:
            raise ModelError(f"{source}: the module's {what} has shape {ref.shape[1:]}, the "
                             f"chain of its layers gives {got.shape[1:]}; check --latent")
        diff = float(np.max(np.abs(ref - got)))
        if not diff <= tolerance * max(1.0, float(np.max(np.abs(ref)))):
            raise ModelError(f"{source}: the module's {what} differs from the chain of its "
                             f"layers by {diff:.3g}; a VAE's forward must use z = mu in eval "
                             "mode (or expose encode/decode), with its layers registered in "
                             "forward order")
        worst = max(worst, diff)
    return worst
