"""Per-link reductions over the explanation samples (DESIGN section 4, paper eq. 3-4).

From the per-pair values ``phi_ij(x)`` (unit-major rows, see :mod:`edgeprune.shapley.game`):

- ``li``     = mean_x |phi_ij(x)|            link importance (non-negative);
- ``signed`` = mean_x phi_ij(x);
- ``var``    = mean_x (phi_ij(x) - signed)^2  population variance over samples (ddof = 0);
- ``stderr`` = sqrt(mean_x se_ij(x)^2)       RMS over samples of the estimator's standard error.

The bias of ``li`` under sampling noise. ``li`` averages absolute values, and noise inflates them:
for an estimate ``phi + e`` with ``e ~ N(0, se^2)``, ``E|phi + e| - |phi|`` lies in
``[0, sqrt(2/pi) se]``, largest where the true value is 0 (a link that matters on no sample still
scores ``sqrt(2/pi) se``). With a standard error two more statistics are kept:

- ``li_bias``     = sqrt(2/pi) mean_x se_ij(x)   the bound, per link;
- ``li_debiased`` = mean_x sqrt(max(phi^2 - se^2, 0))   a moment correction (``phi^2 - se^2`` is
  unbiased for the true ``phi^2``), which removes most of the inflation at 0 at the price of a
  small downward bias where ``|phi|`` is comparable to ``se``.

Which of the two ``li`` pruning should rank by was measured against exact enumeration
(``benchmarks/scoring.py``, README).

Reductions run over groups of whole units (:func:`edgeprune.shapley.game.unit_groups`), so the
variance is an exact two-pass variance and no temporary exceeds one group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from edgeprune.shapley.game import DTYPE, LinkGame, unit_groups

#: ``values(first_pair, stop_pair) -> (phi rows, stderr rows or None)``
PairValues = Callable[[int, int], "tuple[torch.Tensor, torch.Tensor | None]"]


@dataclass
class LinkSummary:
    """Per-link statistics of one layer, each (out, in) float64."""

    li: torch.Tensor
    signed: torch.Tensor
    var: torch.Tensor
    stderr: torch.Tensor | None
    li_bias: torch.Tensor | None = None
    li_debiased: torch.Tensor | None = None

    def rel_error(self) -> float:
        """Mean per-link standard error over mean link importance (0 when both vanish)."""
        if self.stderr is None:
            return 0.0
        scale = float(self.li.mean())
        err = float(self.stderr.mean())
        return 0.0 if err == 0.0 else err / max(scale, 1e-300)


def summarize(game: LinkGame, values: PairValues) -> LinkSummary:
    """Reduce per-pair values over samples, one group of units at a time."""
    out, n, n_samples = game.n_units, game.n_players, game.n_samples
    li = torch.empty(out, n, dtype=DTYPE)
    signed = torch.empty(out, n, dtype=DTYPE)
    var = torch.empty(out, n, dtype=DTYPE)
    stderr: torch.Tensor | None = None
    li_bias: torch.Tensor | None = None
    li_debiased: torch.Tensor | None = None
    for u0, u1 in unit_groups(game):
        phi, se = values(u0 * n_samples, u1 * n_samples)
        phi = phi.reshape(u1 - u0, n_samples, n)
        mean = phi.mean(dim=1)
        li[u0:u1] = phi.abs().mean(dim=1)
        signed[u0:u1] = mean
        var[u0:u1] = (phi - mean[:, None, :]).square().mean(dim=1)
        if se is not None:
            if stderr is None or li_bias is None or li_debiased is None:
                stderr = torch.zeros(out, n, dtype=DTYPE)
                li_bias = torch.zeros(out, n, dtype=DTYPE)
                li_debiased = torch.zeros(out, n, dtype=DTYPE)
            se = se.reshape(u1 - u0, n_samples, n)
            stderr[u0:u1] = se.square().mean(dim=1).sqrt()
            li_bias[u0:u1] = se.mean(dim=1).mul_(math.sqrt(2.0 / math.pi))
            li_debiased[u0:u1] = (phi.square() - se.square()).clamp_(min=0.0).sqrt_().mean(dim=1)
    return LinkSummary(li=li, signed=signed, var=var, stderr=stderr, li_bias=li_bias,
                       li_debiased=li_debiased)
