"""The names a user chooses from, and the shared defaults — defined once, torch-free.

The CLI builds its options from these without importing torch (``edgeprune run`` and ``info``
work on a board that has only numpy, scipy and click), and the library validates against the
same tuples, so a name added here is accepted everywhere at once.
"""

from __future__ import annotations

#: Shapley estimators of the link game (``edgeprune.shapley``).
ESTIMATORS = ("auto", "linear", "exact", "permutation", "kernel", "analytic")
#: Explainers of the input -> latent game of ``explain --loadings`` (``edgeprune.encoder_shap``).
LOADING_EXPLAINERS = ("auto", "exact", "permutation", "shap-permutation", "deep")
#: Rotations of the latent code of ``explain --loadings --rotation``.
LOADING_ROTATIONS = ("none", "varimax")
#: What an absent link is replaced by: 0, its mean, or (interventional SHAP) each of K
#: background samples in turn, the values averaged (``--background K``).
REFERENCES = ("zero", "mean", "background")
#: How links are scored for pruning: Shapley values or a baseline.
METHODS = ("shap-sae", "magnitude", "random", "lap")
#: How SHAP-SAE turns per-sample Shapley values into a link score (``--score-rule``):
#: the paper's mean |phi|, their root mean square, or LI^alpha * |w|^(1 - alpha).
SCORE_RULES = ("paper", "rms", "hybrid")
DEFAULT_SCORE_RULE = "hybrid"  # LI^0.25 * |w|^0.75: benchmarks/results/high_sparsity
DEFAULT_ALPHA = 0.25  # the best fixed alpha in benchmarks/results/high_sparsity
#: What ``compress --distill`` matches of the unpruned teacher (``edgeprune.finetune``): its
#: reconstruction only, or every layer's output (hidden codes and reconstruction).
DISTILL_TARGETS = ("output", "all")
#: The fine-tune's learning-rate schedule (``--finetune-schedule``).
LR_SCHEDULES = ("constant", "cosine")
#: How the link budget is shared between layers (``--allocation``): the paper's per-layer
#: level m (``layer``) or one budget over per-layer-normalised scores (``global``).
ALLOCATIONS = ("layer", "global")
#: ``compress --reconstruct-ridge``: the ridge of the least-squares refit of the kept weights,
#: relative to the mean input Gram diagonal (the lowest validation MSE, docs/architecture.md).
DEFAULT_RECONSTRUCT_RIDGE = 1e-3
#: What is pruned, in the order the stages run.
GRANULARITIES = ("neuron", "link")
#: Estimators of the neuron game (``edgeprune.shapley.neuron_game``).
NEURON_ESTIMATORS = ("auto", "exact", "permutation", "subset")
#: What a unit outside a coalition emits in the neuron game.
SILENCE = ("zero", "mean")

#: Data specs (``--data``) that name a file: ``idx:PATH``, ``npy:PATH``, ``csv:PATH``.
PATH_SPECS = ("idx:", "npy:", "csv:")

#: Memory scoring may hold at once (``--memory-budget``), in GB and in bytes.
DEFAULT_MEMORY_BUDGET_GB = 2.0
DEFAULT_MEMORY_BUDGET = int(DEFAULT_MEMORY_BUDGET_GB * 1024**3)
