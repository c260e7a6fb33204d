"""The single pruning entry point used by the CLI: link scores + m or eta -> PruneResult."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edgeprune.choices import ALLOCATIONS
from edgeprune.errors import EdgepruneError
from edgeprune.network import Network
from edgeprune.prune.cascade import CascadeResult
from edgeprune.prune.sparsity import prune_at_level, solve_importance_level
from edgeprune.prune.support import check_importance_level, rank_layers, support_pairs


@dataclass
class PruneResult:
    """A pruned network and its report.

    ``network`` is masked and cascaded (constants of dead units folded into biases);
    ``sparsity`` is the achieved eta after the cascade (paper eq. 9). ``per_layer`` has one dict
    per layer: ``layer`` (1-based), ``shape`` [out, in], ``links`` / ``links_kept``,
    ``units_in`` (units the layer had, i.e. out) / ``units_kept`` (units with a link left),
    ``inputs_kept`` (input columns with a link left), ``sparsity`` (masked fraction of the
    layer's links). ``unused_inputs``: input features (0-based) no link reads;
    ``constant_outputs``: output unit (0-based) -> its constant value ``act(b)``;
    ``support_sets``: 1-based (i, j) pairs per layer, after the cascade.
    ``network.logvar`` (a VAE's head) is not in these figures: see ``logvar_head``.
    """

    network: Network
    importance_level: float | None
    sparsity: float
    per_layer: list[dict]
    unused_inputs: list[int]
    constant_outputs: dict[int, float]
    support_sets: list[list[tuple[int, int]]]
    target_sparsity: float | None = None
    notes: list[str] = field(default_factory=list)
    logvar_head: dict | None = None  # a VAE: how its log-variance head was pruned (vae_pruning)
    reconstruction: dict | None = None  # --reconstruct: its record (prune.reconstruct)

    def to_dict(self) -> dict:
        """A JSON-friendly summary (without the network and support sets)."""
        return {
            "importance_level": self.importance_level,
            "sparsity": self.sparsity,
            "target_sparsity": self.target_sparsity,
            "per_layer": self.per_layer,
            "unused_inputs": self.unused_inputs,
            "constant_outputs": {str(k): v for k, v in self.constant_outputs.items()},
            "notes": list(self.notes),
            **({"reconstruction": self.reconstruction} if self.reconstruction else {}),
        }


def build_result(
    cascade: CascadeResult,
    importance_level: float | None,
    target_sparsity: float | None = None,
) -> PruneResult:
    """Assemble a :class:`PruneResult` from a cascaded network."""
    net = cascade.network
    per_layer = []
    for k, layer in enumerate(net.layers, start=1):
        kept = layer.n_active
        per_layer.append(
            {
                "layer": k,
                "shape": [layer.out_dim, layer.in_dim],
                "links": layer.n_links,
                "links_kept": kept,
                "units_in": layer.out_dim,
                "units_kept": cascade.units_kept[k - 1],
                "inputs_kept": int(layer.mask.any(axis=0).sum()),
                "sparsity": 1.0 - kept / layer.n_links,
            }
        )
    return PruneResult(
        network=net,
        importance_level=importance_level,
        sparsity=net.sparsity,
        per_layer=per_layer,
        unused_inputs=list(cascade.unused_inputs),
        constant_outputs=dict(cascade.constant_outputs),
        support_sets=[support_pairs(layer.mask) for layer in net.layers],
        target_sparsity=target_sparsity,
        notes=list(cascade.notes),
    )


def prune_network(
    net: Network,
    scores: Sequence[np.ndarray],
    *,
    importance_level: float | None = None,
    sparsity: float | None = None,
    allocation: str = "layer",
) -> PruneResult:
    """Prune ``net`` with the SHAP-SAE support sets of its link ``scores``.

    ``scores``: one non-negative (out, in) array per layer (Shapley link importances or a
    baseline). Give exactly one of ``importance_level`` (m in (0, 1], eq. 8) or ``sparsity``
    (target eta in [0, 1); the m whose eta after the cascade is closest is used). Links already
    masked in ``net`` stay masked. ``net`` itself is not modified.

    ``allocation="global"`` (``--allocation global``, with ``sparsity`` only) replaces the
    per-layer level m by one budget over all layers: each layer's scores are divided by their
    mean over its active links, and the globally highest normalised scores are kept
    (:func:`normalised_scores`, :func:`edgeprune.prune.baselines.prune_global`).
    """
    if (importance_level is None) == (sparsity is None):
        raise EdgepruneError("give exactly one of --importance-level or --sparsity")
    if len(scores) != len(net.layers):
        raise EdgepruneError(
            f"got link scores for {len(scores)} layers but the network has {len(net.layers)}"
        )
    if allocation not in ALLOCATIONS:
        raise EdgepruneError(f"--allocation {allocation!r}: use one of {', '.join(ALLOCATIONS)}")
    if allocation == "global":
        if sparsity is None:
            raise EdgepruneError("--allocation global shares one --sparsity budget over all "
                                 "layers; give --sparsity instead of --importance-level")
        from edgeprune.prune.baselines import prune_global

        return prune_global(net, normalised_scores(net, scores), sparsity)
    if importance_level is not None:
        m = check_importance_level(importance_level)
        ranks = rank_layers(scores, [layer.mask for layer in net.layers])
        return build_result(prune_at_level(net, ranks, m), m)
    sol = solve_importance_level(net, scores, sparsity)
    return build_result(sol.cascade, sol.importance_level, target_sparsity=sol.target)


def normalised_scores(net: Network, scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each layer's scores divided by their mean over the layer's active links (masked links
    score 0), so that one global threshold compares links by how they stand in their own layer
    rather than by each layer's scale. A layer whose active links all score 0 stays 0."""
    out = []
    for s, layer in zip(scores, net.layers, strict=True):
        s = np.where(layer.mask, np.asarray(s, dtype=np.float64), 0.0)
        mean = s[layer.mask].mean() if layer.mask.any() else 0.0
        out.append(s / mean if mean > 0 else s)
    return out
