"""Shapley link scores of dense layers (SHAP-SAE paper section 2, DESIGN section 4).

Each unit ``i`` of a layer ``y = act(W a + b)`` plays, on every explanation sample ``x``, a game
whose players are its incoming links ``j``: ``v(J) = act(b_i + sum_{j in J} W_ij a_j(x) +
sum_{j not in J} W_ij r_j)``. :func:`score_layer` estimates every ``phi_ij(x)`` with one of
:data:`ESTIMATORS` (vectorized over units and samples in torch, float64, chunked to a memory
budget, seeded) and reduces them to link importances ``LI_ij = mean_x |phi_ij(x)|`` and unit
importances ``UI_j = mean_i LI_ij``.

Modules: :mod:`.game` (the game, chunking), :mod:`.exact` (linear closed form, enumeration),
:mod:`.permutation` (antithetic permutation sampling), :mod:`.kernel` (KernelSHAP with one shared
coalition design), :mod:`.analytic` (DASP's Gaussian approximation), :mod:`.auto` (the pilot
behind ``auto``), :mod:`.live_inputs` (each sample's live inputs), :mod:`.aggregate` (per-link reductions), :mod:`.layer` (the public API).
"""

from edgeprune.runtime.activations import ACTIVATIONS
from edgeprune.shapley.aggregate import LinkSummary, summarize
from edgeprune.shapley.analytic import DEFAULT_SIZES, analytic_phi, gaussian_marginal
from edgeprune.shapley.auto import choose_estimator, pilot
from edgeprune.shapley.exact import (
    MAX_EXACT_PLAYERS,
    coalition_values,
    exact_phi,
    linear_phi,
    shapley_weight_matrix,
)
from edgeprune.shapley.game import (
    BLOCK,
    Estimate,
    LinkGame,
    get_activation,
    make_game,
)
from edgeprune.shapley.kernel import kernel_phi, kkt_solver
from edgeprune.shapley.kernel_design import Design, RowGroup, default_budget, kernel_design
from edgeprune.shapley.layer import (
    AUTO_EXACT_MAX_FAN_IN,
    AUTO_TARGET_REL_ERROR,
    DEFAULT_MEMORY_BUDGET,
    ESTIMATORS,
    LayerScores,
    resolve_estimator,
    score_layer,
    shapley_values,
)
from edgeprune.shapley.permutation import (
    DEFAULT_MAX_PERMUTATIONS,
    DEFAULT_PERMUTATIONS,
    DEFAULT_ROUND,
    pair_sums,
    permutation_phi,
)

__all__ = [
    "DEFAULT_SIZES",
    "analytic_phi",
    "choose_estimator",
    "gaussian_marginal",
    "pilot",
    "ACTIVATIONS",
    "AUTO_EXACT_MAX_FAN_IN",
    "AUTO_TARGET_REL_ERROR",
    "BLOCK",
    "DEFAULT_MAX_PERMUTATIONS",
    "DEFAULT_MEMORY_BUDGET",
    "DEFAULT_PERMUTATIONS",
    "DEFAULT_ROUND",
    "ESTIMATORS",
    "MAX_EXACT_PLAYERS",
    "Design",
    "RowGroup",
    "Estimate",
    "LayerScores",
    "LinkGame",
    "LinkSummary",
    "coalition_values",
    "default_budget",
    "exact_phi",
    "get_activation",
    "kernel_design",
    "kernel_phi",
    "kkt_solver",
    "linear_phi",
    "make_game",
    "pair_sums",
    "permutation_phi",
    "resolve_estimator",
    "score_layer",
    "shapley_values",
    "shapley_weight_matrix",
    "summarize",
]
