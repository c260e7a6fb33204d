"""Interventional SHAP for the link game: the reference is a background *distribution*
(``--reference background``, ``--background K``).

With one reference ``r`` an absent link contributes ``W_ij r_j`` (:mod:`.game`); the zero and the
mean reference are single rows. Interventional SHAP (Janzing et al. 2020; shap's
``Independent`` masker) takes the expectation of the game over a background set ``B`` of K
samples instead, ``v(J) = E_b act(b_i + sum_{j in J} W_ij a_j(x) + sum_{j not in J} W_ij b_j)``.
Shapley values are linear in the game, so

    phi_ij(x) = (1/K) sum_{b in B} phi_ij(x; r = b)

exactly: every background row is one game of :func:`edgeprune.shapley.layer.score_layer` with
that row as the reference, and the per-sample values are averaged before they are reduced to
``LI = mean_x |phi|`` (so a link whose background average cancels scores low, unlike the mean
of ``|phi(x; b)|``). The background rows are K of the explanation samples, drawn seeded, and
each layer's reference rows are those samples' inputs to the layer (the network's own
activations), so every layer plays against the same K data points.

Cost: K games per layer; ``auto`` runs its pilot once, on the first row, and that estimator
scores every row. Memory: units are scored in slices whose values (N x units x in float64,
held twice: the running sum and one row's values) fit the budget. The estimator's standard
error is not carried through the average (``stderr`` is None).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from edgeprune.errors import EdgepruneError
from edgeprune.shapley.aggregate import summarize
from edgeprune.shapley.game import make_game
from edgeprune.shapley.layer import LayerScores, score_layer

#: Background rows by default (``--background``).
DEFAULT_BACKGROUND = 16


def background_rows(n_samples: int, k: int, seed: int) -> np.ndarray:
    """Indices of the K explanation samples that form the background (seeded, no repeats)."""
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= n_samples:
        raise EdgepruneError(f"--background {k}: must be a whole number in [1, {n_samples}] "
                             f"(the explanation set has {n_samples} samples; see --samples)")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_samples, size=int(k), replace=False))


def score_layer_background(weight: np.ndarray, bias: np.ndarray | None, inputs: np.ndarray,
                           activation: str, background: np.ndarray, *,
                           negative_slope: float = 0.01, estimator: str = "auto", seed: int = 0,
                           memory_budget: int, progress: Callable[[int], None] | None = None,
                           **kwargs) -> LayerScores:
    """:func:`edgeprune.shapley.layer.score_layer` with the background rows ``background``
    (K, in) as the reference distribution (module docstring); other keywords go to it."""
    t0 = time.perf_counter()
    background = np.asarray(background, dtype=np.float64)
    inputs = np.asarray(inputs)
    out, n_in = np.shape(weight)
    if background.ndim != 2 or background.shape[1] != n_in or not len(background):
        raise EdgepruneError(f"background has shape {background.shape}, expected (K, {n_in})")
    per_unit = 2 * 8 * len(inputs) * n_in  # the running sum and one row's values
    step = max(1, min(out, (int(memory_budget) // 2) // per_unit))
    name, info, evaluations = estimator, {}, 0
    li, signed, var = (np.empty((out, n_in)) for _ in range(3))
    bias = np.zeros(out) if bias is None else np.asarray(bias)
    for u0 in range(0, out, step):
        units = slice(u0, min(u0 + step, out))
        total = None
        for ref in background:
            s = score_layer(weight[units], bias[units], inputs, activation,
                            negative_slope=negative_slope, reference=ref, estimator=name,
                            seed=seed, memory_budget=memory_budget // 2, return_phi=True,
                            **kwargs)
            if name == "auto":  # the pilot's choice serves every other row and slice
                name, info = s.estimator, dict(s.info)
            evaluations += s.n_evaluations
            total = s.phi if total is None else total + s.phi
            s.phi = None
        phi = torch.from_numpy(total / len(background)).permute(1, 0, 2)  # unit-major
        game = make_game(weight[units], bias[units], inputs, activation,
                         negative_slope=negative_slope)
        summary = summarize(game, lambda p0, p1, phi=phi: (
            phi.reshape(-1, n_in)[p0:p1], None))
        li[units], signed[units] = summary.li.numpy(), summary.signed.numpy()
        var[units] = summary.var.numpy()
        if progress is not None:
            progress(units.stop)
    info.pop("rel_error", None)
    info["background"] = len(background)
    return LayerScores(li=li, ui=li.mean(axis=0), signed=signed, var=var, stderr=None,
                       estimator=name, seconds=time.perf_counter() - t0,
                       n_samples=len(inputs), n_evaluations=evaluations, info=info)
