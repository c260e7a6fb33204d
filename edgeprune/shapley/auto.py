"""``auto``: pick each layer's estimator from measured accuracy and cost.

- identity activation: ``linear`` (exact, free);
- fan-in up to :data:`AUTO_EXACT_MAX_FAN_IN`: ``exact`` (2^n evaluations per pair is cheap there);
- otherwise a *pilot* measures, on a seeded subset of the layer's (unit, sample) pairs, the
  relative L1 error of ``analytic`` against a converged permutation reference (256 permutations
  on those pairs only). If that error is within the accuracy target, ``analytic`` is used: it is
  the cheapest estimator by far (2 x (sizes + 2) evaluations per live link against about
  2 x target^-2 for permutation). Otherwise ``permutation`` runs with the target as its
  stopping rule, which meets it by construction (up to its cap).

The measured error includes the reference's own sampling noise (reported beside it), so the test
is conservative. The pilot costs about a second on a 784-input layer and its numbers are kept in
the layer's ``info["auto"]``.
"""

from __future__ import annotations

import time

import torch

from edgeprune.runtime.activations import ACTIVATIONS
from edgeprune.shapley.analytic import DEFAULT_SIZES, analytic_phi
from edgeprune.shapley.game import LinkGame, subgame
from edgeprune.shapley.permutation import permutation_phi

#: ``auto`` enumerates exactly up to this fan-in (2^12 = 4096 evaluations per pair).
AUTO_EXACT_MAX_FAN_IN = 12
#: ``auto``'s accuracy target: relative error of the values (L1 for the pilot, stderr/LI for
#: the permutation estimator's stopping rule).
AUTO_TARGET_REL_ERROR = 0.05
#: Pilot size: units and samples drawn (at most), and the reference's permutations.
PILOT_UNITS = 4
PILOT_SAMPLES = 32
PILOT_PERMUTATIONS = 256
#: Activations the analytic estimator has a closed form (or approximation) for.
ANALYTIC_ACTIVATIONS = ACTIVATIONS  # every one the IR has


def pilot_game(game: LinkGame, seed: int) -> LinkGame:
    """A seeded subset of the layer's games: a few units on a few samples."""
    gen = torch.Generator().manual_seed(int(seed) + 7919)
    units = torch.randperm(game.n_units, generator=gen)[:PILOT_UNITS].sort().values
    samples = torch.randperm(game.n_samples, generator=gen)[:PILOT_SAMPLES].sort().values
    return subgame(game, units, samples)


def pilot(game: LinkGame, *, seed: int, memory_budget: int,
          sizes: int = DEFAULT_SIZES) -> dict:
    """Measure analytic's error and both estimators' cost on a pilot subset of the layer."""
    sub = pilot_game(game, seed)
    t0 = time.perf_counter()
    ref = permutation_phi(sub, seed=seed, memory_budget=memory_budget,
                          n_permutations=PILOT_PERMUTATIONS)
    t1 = time.perf_counter()
    est = analytic_phi(sub, memory_budget=memory_budget, sizes=sizes)
    t2 = time.perf_counter()
    scale = float(ref.phi.abs().sum())
    err = float((est.phi - ref.phi).abs().sum()) / scale if scale > 0 else 0.0
    ref_noise = float(ref.stderr.sum()) / scale if scale > 0 and ref.stderr is not None else 0.0
    return {"pairs": sub.n_pairs, "analytic_rel_l1": err, "reference_rel_stderr": ref_noise,
            "reference_permutations": PILOT_PERMUTATIONS,
            "analytic_seconds_per_pair": (t2 - t1) / max(1, sub.n_pairs),
            "permutation_seconds_per_pair_per_permutation":
                (t1 - t0) / max(1, sub.n_pairs * PILOT_PERMUTATIONS)}


def choose_estimator(game: LinkGame, *, target_rel_error: float, seed: int,
                     memory_budget: int, sizes: int = DEFAULT_SIZES) -> tuple[str, dict]:
    """The estimator ``auto`` uses on this layer, and the measurements behind the choice."""
    if game.activation == "identity":
        return "linear", {"reason": "identity activation: closed form"}
    if game.n_players <= AUTO_EXACT_MAX_FAN_IN:
        return "exact", {"reason": f"fan-in {game.n_players} <= {AUTO_EXACT_MAX_FAN_IN}"}
    if game.activation not in ANALYTIC_ACTIVATIONS:
        return "permutation", {"reason": f"no closed form for {game.activation}"}
    measured = pilot(game, seed=seed, memory_budget=memory_budget, sizes=sizes)
    ok = measured["analytic_rel_l1"] <= target_rel_error
    measured["reason"] = (f"pilot: analytic error {measured['analytic_rel_l1']:.3f} "
                          f"{'<=' if ok else '>'} target {target_rel_error:.3f}")
    return ("analytic" if ok else "permutation"), measured
