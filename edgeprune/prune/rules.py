"""Score rules for the SHAP-SAE link game and the gradual (polynomial) sparsity schedule.

The paper scores a link by ``LI_ij = mean_x |phi_ij(x)|`` (eq. 3, rule ``paper``). With the zero
reference that ranks the links of rarely-lit inputs last whatever their weight, so at high
sparsity SHAP-SAE stops reading most of the input (benchmarks/results/paper_mnist). The other
rules (``--score-rule``):

* ``rms``: ``sqrt(mean_x phi_ij(x)^2) = sqrt(var + signed^2)``, which weighs the samples where
  the link matters most more than the mean does.
* ``hybrid``: ``LI^alpha * |w|^(1 - alpha)`` (alpha in [0, 1], ``--alpha``, default 0.25). For
  a unit that is linear on the explanation set, with the zero reference ``phi_ij(x) = w_ij x_j``,
  so ``LI = |w_ij| E|x_j|`` and the hybrid is ``|w_ij| (E|x_j|)^alpha``: alpha is the exponent
  of the data term, between magnitude (0) and the paper (1); 0.5 is the geometric mean of the two
  scores. 0.25 is the default because it was the best fixed alpha measured
  (benchmarks/results/high_sparsity: 0.5 drops too many rarely-lit inputs at eta 0.95).

  ``--alpha auto`` picks alpha from :data:`ALPHA_GRID` by the validation loss of the network
  pruned (not fine-tuned) at the requested eta or m with each candidate
  (:func:`choose_alpha`): the data decide how much the data term should count, at the price of
  one forward pass of the validation split per candidate. alpha = 0 (magnitude) and 1 (paper)
  are candidates, so auto is never worse than either on that loss.

``polynomial_schedule`` is TF Model Optimization's ``PolynomialDecay`` with power 3 from 0 to
eta in ``steps`` equal steps: ``eta_k = eta * (1 - (1 - k / steps)^3)``.

numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edgeprune.choices import SCORE_RULES
from edgeprune.errors import EdgepruneError

#: The candidates of ``--alpha auto``.
ALPHA_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def check_score_rule(rule: str, alpha: float | str) -> None:
    """Validate ``--score-rule`` and ``--alpha`` (a number in [0, 1] or ``auto``)."""
    if rule not in SCORE_RULES:
        raise EdgepruneError(f"--score-rule {rule!r}: use one of {', '.join(SCORE_RULES)}")
    if alpha == "auto":
        return
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise EdgepruneError(f"--alpha must be a number in [0, 1] or auto, got {alpha!r}") from None
    if not np.isfinite(a) or not 0.0 <= a <= 1.0:
        raise EdgepruneError(f"--alpha must be in [0, 1], e.g. 0.5; got {alpha!r}")


def hybrid_scores(li: Sequence[np.ndarray], weights: Sequence[np.ndarray],
                  alpha: float) -> list[np.ndarray]:
    """``LI^alpha * |w|^(1 - alpha)`` per layer; alpha = 0 is exactly ``|w|`` (magnitude)."""
    out = []
    for s, w in zip(li, weights, strict=True):
        s = np.asarray(s, dtype=np.float64)
        aw = np.abs(np.asarray(w, dtype=np.float64))
        out.append(np.power(s, alpha) * np.power(aw, 1.0 - alpha))
    return out


def rms_scores(signed: Sequence[np.ndarray], var: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``sqrt(mean_x phi^2)`` per layer from the mean and the population variance of phi."""
    return [np.sqrt(np.maximum(np.asarray(v, dtype=np.float64), 0.0)
                    + np.asarray(m, dtype=np.float64) ** 2) for m, v in zip(signed, var,
                                                                           strict=True)]


def polynomial_schedule(eta: float, steps: int, power: float = 3.0) -> list[float]:
    """Target sparsities of the ``steps`` pruning steps towards ``eta`` (the last is ``eta``)."""
    if int(steps) != steps or steps < 1:
        raise EdgepruneError(f"--steps must be a whole number >= 1, got {steps!r}")
    steps = int(steps)
    return [float(eta * (1.0 - (1.0 - k / steps) ** power)) for k in range(1, steps + 1)]


def choose_alpha(li: Sequence[np.ndarray], weights: Sequence[np.ndarray],
                 prune: Callable, loss: Callable,
                 grid: Sequence[float] = ALPHA_GRID) -> tuple[float, list[dict]]:
    """The alpha of ``grid`` whose hybrid scores give the lowest ``loss(prune(scores))``
    (ties: the first in the grid), and every candidate's loss. ``prune(scores) -> Network``,
    ``loss(network) -> float`` (e.g. validation MSE)."""
    tried = []
    for a in grid:
        tried.append({"alpha": float(a), "val_loss": float(loss(prune(hybrid_scores(
            li, weights, float(a)))))})
    best = min(tried, key=lambda t: t["val_loss"])
    return best["alpha"], tried
