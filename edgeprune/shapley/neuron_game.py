"""The neuron game (Stier et al. 2018, section 3; DESIGN section 5) and its Shapley estimators.

Players are the ``h`` units of one hidden layer ``l`` of a :class:`~edgeprune.network.Network`.
A coalition ``S`` keeps its units; every other unit of layer ``l`` is *silenced*: it emits 0
(``silence="zero"``, exactly what removing it does) or its mean activation over the evaluation
set (``silence="mean"``). The payoff is ``v(S) = m(S) - m(empty)`` with the metric ``m`` =
accuracy for a classifier and ``-`` reconstruction MSE otherwise, measured on an evaluation set
(the validation split in the pruning walk).

Evaluation is batched: the activations ``H`` (N, h) of layer ``l`` are computed once; a batch of
C coalition masks ``M`` (C, h) gives the silenced layer output ``r + M[:, None, :] * (H - r)``
(C, N, h), and the rest of the network runs on it as one batched torch computation that yields
C metrics at once (chunked to a memory budget).

Estimators (all seeded, float64 bookkeeping):

- ``exact`` (h <= 12): every coalition, ``phi = V @ Q`` with the Shapley weight matrix.
- ``permutation``: Monte Carlo over permutations (paper eq. 4), in antithetic pairs (a
  permutation and its reverse); each permutation gives every unit's marginal contribution from
  its n + 1 prefix values. Optional truncation (TMC-Shapley, Ghorbani & Zou 2020): once a
  prefix is within ``truncation * |v(all)|`` of the full metric, the remaining prefixes are
  taken to equal it. Because truncated prefixes are set to ``m(all)`` (not dropped), every
  permutation's contributions still add up to ``v(all)`` exactly: efficiency holds.
- ``subset``: random subsets with the Shapley weights (paper eq. 3). A size k is drawn uniformly
  from 0..n, then a uniform subset S of that size; every unit i gets ``v(S + i) - v(S - i)``
  from the n + 1 coalitions S and S with i toggled. For unit i, ``S - i`` is then distributed
  exactly as the Shapley weights ``|T|! (n - |T| - 1)! / n!`` prescribe, so the weighted mean of
  eq. 3 is a plain mean here. Efficiency is restored by spreading the residual
  ``v(all) - sum(phi)`` in proportion to each unit's variance.

Standard errors are reported for the Monte Carlo estimators (0 for exact).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from edgeprune.choices import NEURON_ESTIMATORS, SILENCE
from edgeprune.network import ModelError, Network
from edgeprune.shapley.exact import shapley_weight_matrix
from edgeprune.torch_network import torch_activation

METRICS = ("accuracy", "mse")
MAX_EXACT_UNITS = 12
DEFAULT_PERMUTATIONS = 100
DEFAULT_SUBSETS = 500
DEFAULT_GAME_BUDGET = 256 * 1024**2  # bytes for the (C, N, width) temporaries of one chunk


def game_metric(net: Network) -> str:
    """``accuracy`` for a classifier, ``mse`` (reconstruction error) for a network whose output
    reproduces its input; anything else has no metric to play for."""
    if net.kind == "classifier":
        return "accuracy"
    if net.out_dim == net.in_dim:
        return "mse"
    raise ModelError(f"neuron pruning needs a classifier or an autoencoder; this {net.kind} maps "
                     f"{net.in_dim} inputs to {net.out_dim} outputs")


def hidden_layers(net: Network) -> list[int]:
    """The 1-based indices of the layers whose units can be players (all but the last)."""
    return list(range(1, len(net.layers)))


@dataclass
class NeuronShapley:
    """Shapley values of the units of one layer. ``phi[i]`` is unit i's value in payoff units
    (accuracy, or MSE reduction); ``sum(phi) == total`` (efficiency)."""

    layer: int
    phi: np.ndarray
    stderr: np.ndarray
    estimator: str
    samples: int  # permutations, subsets or 2^n coalitions
    evaluations: int  # coalitions whose metric was computed
    metric: str
    metric_all: float  # the metric with every unit (natural units: accuracy or MSE)
    metric_empty: float  # the metric with every unit silenced
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def total(self) -> float:
        """``v(all) = m(all) - m(empty)`` in payoff units (higher is better)."""
        sign = 1.0 if self.metric == "accuracy" else -1.0
        return sign * (self.metric_all - self.metric_empty)

    def to_dict(self, digits: int = 6) -> dict:
        """JSON-friendly, values rounded to ``digits`` significant digits."""
        def r(v):
            return float(f"{float(v):.{digits}g}")
        return {"layer": self.layer, "estimator": self.estimator, "samples": self.samples,
                "evaluations": self.evaluations, "metric": self.metric,
                "metric_all": r(self.metric_all), "metric_empty": r(self.metric_empty),
                "total": r(self.total), "phi": [r(v) for v in self.phi],
                "stderr": [r(v) for v in self.stderr], "seconds": round(self.seconds, 3),
                **self.info}


class NeuronGame:
    """The coalitional game on the units of hidden layer ``layer`` (1-based) of ``net``.

    ``x`` (N, in) is the evaluation set, ``y`` its labels (classifiers). ``metric`` defaults to
    :func:`game_metric`. ``memory_budget`` bounds the bytes of one chunk's temporaries."""

    def __init__(self, net: Network, layer: int, x: np.ndarray, y: np.ndarray | None = None, *,
                 metric: str | None = None, silence: str = "zero",
                 memory_budget: int = DEFAULT_GAME_BUDGET):
        if layer not in hidden_layers(net):
            raise ModelError(f"--neuron-layers: layer {layer} is not a hidden layer of this "
                             f"{len(net.layers)}-layer network (use 1..{len(net.layers) - 1})")
        if silence not in SILENCE:
            raise ModelError(f"--silence {silence!r}: use one of {', '.join(SILENCE)}")
        self.metric = metric or game_metric(net)
        if self.metric not in METRICS:
            raise ModelError(f"unknown game metric {self.metric!r}; use one of {METRICS}")
        x = np.asarray(x, dtype=np.float32)
        if len(x) == 0:
            raise ModelError("the neuron game needs at least one evaluation sample")
        self.layer, self.silence = layer, silence
        hidden = torch.from_numpy(net.forward(x, upto=layer))
        self.n = int(hidden.shape[1])
        self.reference = hidden.mean(0) if silence == "mean" else torch.zeros(self.n)
        self._delta = hidden - self.reference
        self._rest = [(torch.from_numpy(lay.masked_weight).T.contiguous(),
                       torch.from_numpy(lay.bias), torch_activation(lay.activation,
                                                                    lay.negative_slope))
                      for lay in net.layers[layer:]]
        if self.metric == "accuracy":
            if y is None:
                raise ModelError("the accuracy game needs labels for the evaluation samples")
            self._target = torch.from_numpy(np.asarray(y, dtype=np.int64))
        else:
            self._target = torch.from_numpy(x)
        width = max([self.n] + [lay.out_dim for lay in net.layers[layer:]])
        self.chunk = max(1, int(memory_budget // (3 * 4 * len(x) * width)))
        # The next layer's pre-activation is linear in the mask: base + M @ K with
        # K[j, (s, o)] = delta[s, j] * W[o, j]; one GEMM instead of a (C, N, h) temporary.
        w_t, b, _ = self._rest[0]
        self._kernel = None
        if 4 * self.n * len(x) * w_t.shape[1] <= memory_budget // 2:
            self._kernel = (self._delta.T[:, :, None] * w_t[:, None, :]).reshape(self.n, -1)
            self._base = self.reference @ w_t + b
        self.evaluations = 0
        self._bar = None
        ends = self.scores(torch.stack([torch.ones(self.n), torch.zeros(self.n)]))
        self.score_all, self.score_empty = float(ends[0]), float(ends[1])

    # -- payoffs -------------------------------------------------------------------------------
    @torch.no_grad()
    def scores(self, masks: torch.Tensor) -> torch.Tensor:
        """Score (accuracy, or -MSE) of every coalition in ``masks`` (C, n), float64 (C,)."""
        masks = masks.reshape(-1, self.n).to(torch.float32)
        out = torch.empty(len(masks), dtype=torch.float64)
        for start in range(0, len(masks), self.chunk):
            m = masks[start:start + self.chunk]
            if self._kernel is not None:
                w_t, _, act = self._rest[0]
                h = act((m @ self._kernel).reshape(len(m), -1, w_t.shape[1]) + self._base)
                rest = self._rest[1:]
            else:
                h, rest = self.reference + m[:, None, :] * self._delta[None], self._rest
            for w_t, b, act in rest:
                h = act(torch.matmul(h, w_t) + b)
            if self.metric == "accuracy":
                hits = (h.argmax(-1) == self._target).to(torch.float64)
                out[start:start + len(m)] = hits.mean(-1)
            else:
                err = ((h - self._target) ** 2).mean(-1).to(torch.float64)
                out[start:start + len(m)] = -err.mean(-1)
            if self._bar is not None:
                self._bar.update(len(m))
        self.evaluations += len(masks)
        return out

    def values(self, masks: torch.Tensor) -> torch.Tensor:
        """``v(S) = m(S) - m(empty)`` of every coalition in ``masks`` (C, n)."""
        return self.scores(masks) - self.score_empty

    @property
    def total(self) -> float:
        """``v(all)``."""
        return self.score_all - self.score_empty

    def natural(self, score: float) -> float:
        """A score in the metric's own units (accuracy, or a positive MSE)."""
        return score if self.metric == "accuracy" else -score

    # -- estimators ----------------------------------------------------------------------------
    def shapley(self, estimator: str = "auto", samples: int | None = None, *, seed: int = 0,
                truncation: float | None = None, quiet: bool = True) -> NeuronShapley:
        """Estimate every unit's Shapley value with ``estimator`` (see the module docstring).

        ``samples``: permutations (default 100) or subsets (default 500); ignored by exact."""
        estimator = resolve_neuron_estimator(estimator, self.n)
        t0, ev0 = time.perf_counter(), self.evaluations
        if estimator == "exact":
            samples, total_work = 2 ** self.n, 2 ** self.n
        elif estimator == "permutation":
            samples = check_samples(samples, DEFAULT_PERMUTATIONS, estimator)
            samples += samples % 2  # antithetic pairs
            total_work = samples * max(self.n - 1, 0)
        else:
            samples = check_samples(samples, DEFAULT_SUBSETS, estimator)
            total_work = samples * (self.n + 1)
        if truncation is not None and not 0.0 <= truncation < 1.0:
            raise ModelError(f"--truncation {truncation}: use a fraction in [0, 1), e.g. 0.01")
        self._bar = tqdm(total=total_work, desc=f"neuron game, layer {self.layer}",
                         unit="coalition", disable=quiet, leave=False)
        gen = torch.Generator().manual_seed(int(seed))
        try:
            if estimator == "exact":
                phi, se, info = self._exact()
            elif estimator == "permutation":
                phi, se, info = self._permutation(samples, gen, truncation or 0.0)
            else:
                phi, se, info = self._subset(samples, gen)
        finally:
            self._bar.close()
            self._bar = None
        return NeuronShapley(
            layer=self.layer, phi=phi.numpy(), stderr=se.numpy(), estimator=estimator,
            samples=int(samples), evaluations=self.evaluations - ev0, metric=self.metric,
            metric_all=self.natural(self.score_all), metric_empty=self.natural(self.score_empty),
            seconds=time.perf_counter() - t0, info=info)

    def _exact(self) -> tuple[torch.Tensor, torch.Tensor, dict]:
        n = self.n
        rows = torch.arange(2**n)
        member = ((rows[:, None] >> torch.arange(n)[None, :]) & 1).bool()
        v = self.values(member)
        return v @ shapley_weight_matrix(n), torch.zeros(n, dtype=torch.float64), {}

    def _permutation(self, samples: int, gen: torch.Generator, tol: float
                     ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        n, pairs = self.n, samples // 2
        half = torch.argsort(torch.rand(pairs, n, generator=gen), dim=1)
        perms = torch.stack([half, half.flip(1)], dim=1).reshape(samples, n)
        ranks = torch.argsort(perms, dim=1)  # ranks[p, j]: position of unit j in permutation p
        vals = torch.empty(samples, n + 1, dtype=torch.float64)
        vals[:, 0], vals[:, n] = 0.0, self.total
        skipped = self._prefix_values(ranks, vals, tol)
        diff = vals[:, 1:] - vals[:, :-1]  # diff[p, t]: contribution of unit perms[p, t]
        contrib = torch.zeros(samples, n, dtype=torch.float64).scatter_(1, perms, diff)
        per_pair = contrib.reshape(pairs, 2, n).mean(1)
        phi = per_pair.mean(0)
        se = (per_pair.std(0) / math.sqrt(pairs) if pairs > 1
              else torch.full((n,), float("nan"), dtype=torch.float64))
        info = {"antithetic": True}
        if tol:
            info.update(truncation=tol, truncated_fraction=round(
                skipped / max(samples * (n - 1), 1), 4))
        return phi, se, info

    def _prefix_values(self, ranks: torch.Tensor, vals: torch.Tensor, tol: float) -> int:
        """Fill ``vals[:, 1:n]`` with prefix values; returns how many were truncated."""
        samples, n = ranks.shape
        if n < 2:
            return 0
        if not tol:
            t = torch.arange(1, n)
            masks = ranks[:, None, :] < t[None, :, None]
            vals[:, 1:n] = self.values(masks).reshape(samples, n - 1)
            return 0
        limit = tol * abs(self.total)
        alive = torch.ones(samples, dtype=torch.bool)
        block = max(4, -(-self.chunk // samples))
        skipped, t = 0, 1
        while t < n:
            idx = torch.nonzero(alive).flatten()
            ts = torch.arange(t, min(t + block, n))
            if len(idx):
                masks = ranks[idx][:, None, :] < ts[None, :, None]
                s = self.values(masks).reshape(len(idx), len(ts))
                vals[idx, t:t + len(ts)] = s
                close = (self.total - s).abs() <= limit
                hit = close.any(1)
                first = torch.argmax(close.to(torch.int8), dim=1)
                for row, p in zip(torch.nonzero(hit).flatten().tolist(), idx[hit].tolist()):
                    vals[p, t + int(first[row]) + 1:n] = self.total
                alive[idx[hit]] = False
            dead = samples - len(idx)
            skipped += dead * len(ts)
            if self._bar is not None and dead:
                self._bar.update(dead * len(ts))
            t += len(ts)
        return skipped

    def _subset(self, samples: int, gen: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        n = self.n
        sizes = torch.randint(0, n + 1, (samples,), generator=gen)
        ranks = torch.argsort(torch.argsort(torch.rand(samples, n, generator=gen), dim=1), dim=1)
        member = ranks < sizes[:, None]  # (M, n) uniform subsets of the drawn sizes
        toggled = member[:, None, :] ^ torch.eye(n, dtype=torch.bool)[None]
        vals = self.values(torch.cat([member[:, None, :], toggled], dim=1)).reshape(samples, n + 1)
        v_s, v_t = vals[:, :1], vals[:, 1:]
        delta = torch.where(member, v_s - v_t, v_t - v_s)  # v(S + i) - v(S - i)
        phi = delta.mean(0)
        se = delta.std(0) / math.sqrt(samples)
        residual = self.total - float(phi.sum())
        var = se**2
        share = var / var.sum() if float(var.sum()) > 0 else torch.full((n,), 1.0 / n,
                                                                       dtype=torch.float64)
        phi = phi + share * residual
        return phi, se, {"efficiency_adjustment": float(f"{residual:.6g}")}


def resolve_neuron_estimator(estimator: str, n: int) -> str:
    """``auto`` -> exact for at most 12 units, permutation otherwise; checks the name."""
    if estimator not in NEURON_ESTIMATORS:
        raise ModelError(f"--neuron-estimator {estimator!r}: use one of "
                         f"{', '.join(NEURON_ESTIMATORS)}")
    if estimator == "auto":
        return "exact" if n <= MAX_EXACT_UNITS else "permutation"
    if estimator == "exact" and n > MAX_EXACT_UNITS:
        raise ModelError(f"--neuron-estimator exact: {n} units means 2^{n} coalitions; exact "
                         f"allows at most {MAX_EXACT_UNITS} units, use permutation or subset")
    return estimator


def check_samples(samples: int | None, default: int, estimator: str) -> int:
    """The sample count for a Monte Carlo estimator (at least 2)."""
    if samples is None:
        return default
    if int(samples) < 2:
        raise ModelError(f"--neuron-samples {samples}: the {estimator} estimator needs at "
                         f"least 2 samples (default {default})")
    return int(samples)


def neuron_shapley(net: Network, layer: int, x: np.ndarray, y: np.ndarray | None = None, *,
                   estimator: str = "auto", samples: int | None = None,
                   silence: str = "zero", truncation: float | None = None, seed: int = 0,
                   quiet: bool = True) -> NeuronShapley:
    """Shapley values of the units of ``layer`` of ``net`` on the evaluation set ``x`` (``y``)."""
    game = NeuronGame(net, layer, x, y, silence=silence)
    return game.shapley(estimator, samples, seed=seed, truncation=truncation, quiet=quiet)
