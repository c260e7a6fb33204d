"""Pruning a VAE: the link game of its log-variance head, and what ``compress`` supports.

The chain ``trunk → μ head → decoder`` is scored and pruned exactly as an autoencoder whose
latent code is ``z = μ`` (docs/architecture.md, "VAEs"). The log-variance head is one more
output layer of the encoder: its links play the same link game on the same inputs (the trunk's
output on the explanation set, the same reference), under the same score rule, and keep the
support set of the same importance level m as the chain (the m that ``--sparsity`` solved for
the chain). Links from trunk units the chain's cascade removed are then folded into its bias
(:func:`edgeprune.prune.cascade.fold_logvar_inputs`), so the head never keeps a unit alive.
"""

from __future__ import annotations

import numpy as np

from edgeprune.network import ModelError, Network
from edgeprune.prune.cascade import fold_logvar_inputs
from edgeprune.prune.support import support_mask


def check_vae_options(net: Network, opts) -> None:
    """Refuse the ``compress`` options that are not built for VAEs (one line each)."""
    if net.kind != "vae":
        if getattr(opts, "likelihood", None) is not None:
            raise ModelError("--likelihood applies to VAEs; this model is "
                             f"{net.kind!r}")
        return
    refused = [("--granularity neuron", "neuron" in opts.granularities()),
               ("--steps N", opts.steps != 1),
               ("--target-macs/--target-size", opts.target_macs is not None
                or opts.target_size is not None),
               ("--quantize", opts.export_options.quantize != "none"),
               ("--reconstruct", getattr(opts, "reconstruct", None) is True)]
    for option, given in refused:
        if given:
            raise ModelError(f"{option} is not built for VAEs yet; prune a VAE with -m or "
                             "--sparsity (float32 artifacts)")
    if opts.likelihood is not None and net.logvar is None:
        raise ModelError("--likelihood sets the ELBO of the fine-tuning, which needs the "
                         "log-variance head; this VAE has none (mu only)")


def head_inputs(net: Network, x: np.ndarray) -> np.ndarray:
    """What the mu and log-variance heads read on ``x``: the trunk's output."""
    return net.forward(x, upto=net.latent - 1)


def logvar_scores(net: Network, x_explain: np.ndarray, opts, alpha) -> tuple[np.ndarray, dict]:
    """Link scores of ``net``'s log-variance head for ``opts.method`` (SHAP-SAE: the link game
    on the trunk's output over the explanation set, with ``opts``' estimator, reference and
    score rule; ``alpha``: the hybrid's α, chosen for the chain when ``--alpha auto``)."""
    from edgeprune.prune import baseline_scores
    from edgeprune.scoring import rule_scores, score_network

    head = Network([net.logvar], kind="mlp")
    if opts.method != "shap-sae":  # the head with the layer before it, for lap's norms
        prev = net.layers[net.latent - 2: net.latent - 1]
        return baseline_scores(opts.method, Network(prev + [net.logvar], kind="mlp"),
                               seed=opts.seed)[-1], {"method": opts.method}
    scores = score_network(head, head_inputs(net, x_explain), estimator=opts.estimator,
                           reference=opts.reference, seed=opts.seed + len(net.layers),
                           memory_budget=opts.memory_budget, quiet=opts.quiet)
    summary = scores.summary()["layers"][0]
    summary.pop("layer")
    return rule_scores(scores, head, opts.score_rule, alpha)[0], summary


def prune_logvar_head(pruned: Network, scores: np.ndarray, m: float) -> tuple[Network, dict]:
    """``pruned`` (its chain already pruned and cascaded) with its log-variance head cut to the
    support set of ``scores`` at level ``m``, then folded onto the chain's live units."""
    out = pruned.copy()
    head = out.logvar
    head.mask = support_mask(scores, m, head.mask)
    kept_by_rule = head.n_active
    folded = fold_logvar_inputs(out)
    return out, {"links": head.n_links, "links_kept": head.n_active,
                 "sparsity": 1.0 - head.n_active / head.n_links, "importance_level": m,
                 "links_kept_by_support_set": kept_by_rule, "links_folded": folded}


def prune_vae_head(original: Network, pruned: Network, x_explain: np.ndarray, opts,
                   scoring: dict | None, m: float) -> tuple[Network, dict]:
    """Score the log-variance head of ``original`` and prune ``pruned``'s at level ``m``;
    returns the network and the head's record for report.json."""
    alpha = (scoring or {}).get("alpha", opts.alpha)
    scores, summary = logvar_scores(original, x_explain, opts, alpha)
    out, record = prune_logvar_head(pruned, scores, m)
    return out, {**record, "scoring": summary}


def vae_report(pruned: Network, head: dict | None, opts) -> dict:
    """The ``vae`` section of report.json."""
    from edgeprune.vae_network import vae_beta

    return {"likelihood": pruned.likelihood, "mu_layer": pruned.latent,
            "latent_dim": pruned.layers[pruned.latent - 1].out_dim,
            "beta": vae_beta(pruned, getattr(opts, "beta", None)),
            "logvar_head": head, "logvar_in_artifacts": (pruned.logvar is not None
                                                         and not opts.export_options.drop_logvar),
            "game": "chain scored as an autoencoder with z = mu; log-variance head scored as "
                    "one more encoder output on the trunk's output, pruned at the chain's m"}
