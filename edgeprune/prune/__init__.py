"""Pruning: SHAP-SAE support sets, m <-> sparsity, the dead-unit cascade, compaction, baselines.

numpy only; the entry point used by the CLI is :func:`prune_network`.
"""

from edgeprune.prune.api import PruneResult, build_result, prune_network
from edgeprune.prune.baselines import (
    BASELINES,
    baseline_scores,
    lap_scores,
    magnitude_scores,
    prune_global_magnitude,
    random_scores,
)
from edgeprune.prune.cascade import (
    CascadeResult,
    cascade_dead_units,
    compact_network,
    is_fixed_point,
)
from edgeprune.prune.sparsity import (
    LevelSolution,
    check_sparsity,
    prune_at_level,
    solve_importance_level,
    sparsity_curve,
    with_masks,
)
from edgeprune.prune.support import (
    LayerRanking,
    check_importance_level,
    format_support_set,
    rank_layers,
    support_mask,
    support_masks,
    support_pairs,
)

__all__ = [
    "BASELINES",
    "CascadeResult",
    "LayerRanking",
    "LevelSolution",
    "PruneResult",
    "baseline_scores",
    "build_result",
    "cascade_dead_units",
    "check_importance_level",
    "check_sparsity",
    "compact_network",
    "format_support_set",
    "is_fixed_point",
    "lap_scores",
    "magnitude_scores",
    "prune_at_level",
    "prune_global_magnitude",
    "prune_network",
    "random_scores",
    "rank_layers",
    "solve_importance_level",
    "sparsity_curve",
    "support_mask",
    "support_masks",
    "support_pairs",
    "with_masks",
]
