"""Shapley values of an encoder's latent units with respect to its input features.

This is the *model-level* game of the vae-shap poster, not the per-layer link game of
:mod:`edgeprune.shapley`: a latent unit ``z_k = f_k(x)`` of a deep encoder is a nonlinear function
of every input, so the players are the input features and the value of a coalition S on a
sample x is the encoder's output with the features outside S replaced by a background row ``b``:

    v_k(S; x) = mean_b f_k(x_S, b_~S)        (interventional SHAP; one row b = a single reference)

``phi`` has shape (N samples, n features, latent) and, per sample, sums over the features to
``f(x) - mean_b f(b)`` (efficiency). With a single reference ``r`` and a linear encoder
``f(x) = W x + c`` every estimator here must give ``phi_jk(x) = W_kj (x_j - r_j)``.

Explainers (:data:`EXPLAINERS`; chosen and measured in ``benchmarks/encoder_explainers.py``):

``exact``
    all 2^n coalitions (n <= :data:`MAX_EXACT_FEATURES`), contracted with the Shapley weight
    matrix of :func:`edgeprune.shapley.exact.shapley_weight_matrix`; the ground truth.
``permutation``
    antithetic permutation sampling, vectorized in torch: every permutation of a sample and its
    reverse is a path of n + 1 encoder rows from each background row ``b`` to ``x``, and all
    paths of a sample are evaluated together; with a first ``nn.Linear`` a path's
    pre-activations are a running sum (:func:`_path_outputs`). Each sample draws its own
    permutations, so errors do not correlate across samples (unlike the link game's shared
    ones); efficiency holds exactly.

Null features (equal to every background row on a sample, or a pruned input) get an exact 0.
``shap-permutation``
    ``shap.PermutationExplainer`` with an ``Independent`` masker (the well-kept reference of the
    same estimator; one sample at a time).
``deep``
    ``shap.DeepExplainer`` (DeepLIFT multipliers averaged over the background; exact for linear
    encoders, an approximation for nonlinear ones; one backward pass per latent unit).

Everything is evaluated in float64 on a copy of the encoder.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from edgeprune.choices import LOADING_EXPLAINERS
from edgeprune.errors import EdgepruneError
from edgeprune.shapley.exact import shapley_weight_matrix

EXPLAINERS = LOADING_EXPLAINERS
#: Largest input the exact explainer enumerates (2^n encoder rows per sample).
MAX_EXACT_FEATURES = 16
#: ``auto`` enumerates up to this many features, else it samples permutations.
AUTO_EXACT_MAX_FEATURES = 12
#: Permutations per sample of the ``permutation`` explainers (antithetic pairs count twice).
DEFAULT_PERMUTATIONS = 10
#: Encoder rows evaluated in one forward call (bounds the memory of the path batches).
ROWS_PER_CALL = 1 << 15
#: Input values built at once for the permutation paths (128 MiB of float64).
VALUES_PER_CALL = 1 << 24


class ExplainerError(EdgepruneError):
    """A one-line problem with the explainer's options or inputs."""


def float64_encoder(encoder: nn.Module) -> nn.Module:
    """A float64, eval-mode copy of ``encoder`` whose parameters need no gradient."""
    enc = copy.deepcopy(encoder).double().eval()
    for p in enc.parameters():
        p.requires_grad_(False)
    return enc


def _run(enc: nn.Module, rows: torch.Tensor) -> torch.Tensor:
    """``enc`` on ``rows`` in calls of at most :data:`ROWS_PER_CALL` rows, as (rows, latent)."""
    with torch.no_grad():
        out = [enc(rows[s:s + ROWS_PER_CALL]) for s in range(0, len(rows), ROWS_PER_CALL)]
    z = torch.cat(out) if len(out) > 1 else out[0]
    return z.reshape(len(rows), -1)


def _checked(x: np.ndarray, background: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    xs = np.asarray(x, dtype=np.float64)
    bg = np.asarray(background, dtype=np.float64)
    if xs.ndim != 2 or xs.shape[0] == 0:
        raise ExplainerError(f"the explanation set must be (samples, features), got {xs.shape}")
    if bg.ndim == 1:
        bg = bg[None, :]
    if bg.ndim != 2 or bg.shape[0] == 0 or bg.shape[1] != xs.shape[1]:
        raise ExplainerError(f"the background must be (rows, {xs.shape[1]}), got {bg.shape}")
    for name, arr in (("explanation set", xs), ("background", bg)):
        if not np.all(np.isfinite(arr)):
            raise ExplainerError(f"the {name} holds non-finite values")
    return torch.from_numpy(xs), torch.from_numpy(bg)


def _null_features(enc: nn.Module, x: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
    """Features that are null players on sample ``x``: equal to every background row, or (for
    a first ``nn.Linear``) with an all-zero weight column (a pruned input). Their Shapley value
    is exactly 0; the estimators write an exact 0 there, since a batched GEMM may round
    identical rows differently (1e-18, measured) and a never-read input must read as 0."""
    null = (x[None, :] == bg).all(dim=0)
    first, _ = split_first_linear(enc)
    if first is not None:
        null |= (first.weight == 0).all(dim=0)
    return null


def exact_shap(encoder: nn.Module, x: np.ndarray, background: np.ndarray,
               progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Every coalition of every sample: (N, n, latent) float64."""
    xs, bg = _checked(x, background)
    n = xs.shape[1]
    if n > MAX_EXACT_FEATURES:
        raise ExplainerError(f"the exact explainer enumerates at most {MAX_EXACT_FEATURES} "
                             f"features, this encoder reads {n}; use --explainer permutation")
    enc = float64_encoder(encoder)
    q = shapley_weight_matrix(n)                                   # (2^n, n), bit j = feature j
    member = ((torch.arange(2**n)[:, None] >> torch.arange(n)[None, :]) & 1).to(torch.float64)
    out = []
    for i in range(len(xs)):
        # (2^n, B, n): x on the coalition's features, background row b elsewhere
        rows = bg[None, :, :] + member[:, None, :] * (xs[i] - bg)[None, :, :]
        v = _run(enc, rows.reshape(-1, n)).reshape(2**n, len(bg), -1).mean(dim=1)
        phi = q.T @ (v - v[:1])                                    # columns of Q sum to 0
        phi[_null_features(enc, xs[i], bg)] = 0.0
        out.append(phi)
        if progress is not None:
            progress(1)
    return torch.stack(out).numpy()


def split_first_linear(enc: nn.Module) -> tuple[nn.Linear | None, nn.Module]:
    """``(first, rest)`` when ``enc`` is an ``nn.Sequential`` that starts with an ``nn.Linear``
    (every encoder edgeprune builds), else ``(None, enc)``."""
    if isinstance(enc, nn.Sequential) and len(enc) and isinstance(enc[0], nn.Linear):
        return enc[0], enc[1:]
    return None, enc


def _path_outputs(enc: nn.Module, x: torch.Tensor, bg: torch.Tensor,
                  orders: torch.Tensor) -> torch.Tensor:
    """``mean_b f(path_k)`` for every order (P, n) and k = 0..n: (P, n + 1, latent), where
    path_k holds x on ``order[:k]`` and the background row b elsewhere.

    With a first ``nn.Linear`` (W, c) a path's pre-activations are a running sum,
    ``W b + c + sum_{t<k} W[:, order[t]] (x - b)[order[t]]``: O(n h) per path instead of the
    O(n^2 h) of n + 1 full rows. Paths are evaluated many at a time, at most
    :data:`VALUES_PER_CALL` values per call."""
    n_paths, n = orders.shape
    first, rest = split_first_linear(enc)
    width = n if first is None else int(first.weight.shape[0])
    per_call = max(1, VALUES_PER_CALL // ((n + 1) * width))           # paths per call
    cb = min(len(bg), per_call)
    cp = max(1, per_call // cb)
    out = None
    for p0 in range(0, n_paths, cp):
        o = orders[p0:p0 + cp]
        total = 0.0
        for b0 in range(0, len(bg), cb):
            b = bg[b0:b0 + cb]
            d = (x - b)[:, o]                                          # (cb, cp, n), path order
            if first is not None:
                w = first.weight
                pre = torch.empty(len(b), len(o), n + 1, width, dtype=torch.float64)
                base = b @ w.T + (0.0 if first.bias is None else first.bias)
                pre[:, :, 0] = base[:, None, :]
                torch.cumsum(d[..., None] * w.T[o][None], dim=2, out=pre[:, :, 1:])
                pre[:, :, 1:] += pre[:, :, :1]
                z = _run(rest, pre.reshape(-1, width))
            else:
                tri = torch.tril(torch.ones(n + 1, n, dtype=torch.float64), diagonal=-1)
                mask = torch.zeros(len(o), n + 1, n, dtype=torch.float64)
                mask.scatter_(2, o[:, None, :].expand(-1, n + 1, -1),
                              tri.expand(len(o), -1, -1))              # row k: x on order[:k]
                rows = b[:, None, None, :] + mask[None] * (x - b)[:, None, None, :]
                z = _run(enc, rows.reshape(-1, n))
            total = total + z.reshape(len(b), len(o), n + 1, -1).sum(dim=0)
        part = total / len(bg)
        out = part if out is None else torch.cat([out, part])
    return out


def permutation_shap(encoder: nn.Module, x: np.ndarray, background: np.ndarray, *,
                     permutations: int = DEFAULT_PERMUTATIONS, seed: int = 0,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Antithetic permutation sampling, per-sample permutations: (N, n, latent) float64.

    Hand-written rather than ``shap.PermutationExplainer`` (also offered, ``shap-permutation``,
    the same estimator): that explainer masks and evaluates one sample and one permutation at a
    time in Python; here all permutation paths of a sample go through the encoder together and
    a first ``nn.Linear`` is a running sum (:func:`_path_outputs`), measured faster in
    ``benchmarks/encoder_explainers.py``. As shap does, every path is averaged over every
    background row.
    """
    if permutations < 2:
        raise ExplainerError(f"--permutations must be at least 2, got {permutations}")
    xs, bg = _checked(x, background)
    enc = float64_encoder(encoder)
    n = xs.shape[1]
    pairs = -(-int(permutations) // 2)
    gen = torch.Generator().manual_seed(int(seed))
    out = []
    for i in range(len(xs)):
        perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(pairs)])
        orders = torch.cat([perms, perms.flip(1)])                  # each with its reverse
        z = _path_outputs(enc, xs[i], bg, orders)                   # (2 pairs, n + 1, latent)
        marg = (z[:, 1:] - z[:, :-1]).reshape(-1, z.shape[2])      # marginals, path order
        phi = torch.zeros(n, z.shape[2], dtype=torch.float64)
        phi.index_add_(0, orders.reshape(-1), marg)                 # to feature order
        phi[_null_features(enc, xs[i], bg)] = 0.0
        out.append(phi / (2 * pairs))
        if progress is not None:
            progress(1)
    return torch.stack(out).numpy()


def _shap():
    """The ``shap`` package (a dev/test peer: ``pip install shap`` for the shap explainers)."""
    try:
        with warnings.catch_warnings():  # its colour maps trip matplotlib deprecations
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            import shap
    except ImportError:
        raise ExplainerError("the shap explainers need the shap package: pip install "
                             "'edgeprune[shap]', or use --explainer permutation or exact") from None
    return shap


def _shap_permutation(encoder: nn.Module, x: np.ndarray, background: np.ndarray, *,
                      permutations: int, seed: int,
                      progress: Callable[[int], None] | None) -> np.ndarray:
    shap = _shap()
    xs, bg = _checked(x, background)
    enc = float64_encoder(encoder)
    n = xs.shape[1]

    def f(a):
        return _run(enc, torch.as_tensor(np.asarray(a, dtype=np.float64))).numpy()

    explainer = shap.explainers.Permutation(
        f, shap.maskers.Independent(bg.numpy(), max_samples=len(bg)), seed=seed)
    # shap spends 2n + 1 evaluations on one permutation and its reverse (one antithetic pair)
    evals = -(-int(permutations) // 2) * (2 * n + 1)
    out = []
    for i in range(len(xs)):  # one sample at a time, for the progress bar
        res = explainer(xs[i:i + 1].numpy(), max_evals=evals, silent=True)
        out.append(np.asarray(res.values, dtype=np.float64).reshape(n, -1))
        if progress is not None:
            progress(1)
    return np.stack(out)


def _deep(encoder: nn.Module, x: np.ndarray, background: np.ndarray,
          progress: Callable[[int], None] | None) -> np.ndarray:
    shap = _shap()
    xs, bg = _checked(x, background)
    enc = float64_encoder(encoder)
    explainer = shap.DeepExplainer(enc, bg)
    out = []
    step = 64
    for s in range(0, len(xs), step):
        vals = explainer.shap_values(xs[s:s + step].clone(), check_additivity=False)
        arr = np.asarray(vals, dtype=np.float64)
        if arr.ndim == 2:                                           # one latent unit
            arr = arr[:, :, None]
        out.append(arr)
        if progress is not None:
            progress(min(step, len(xs) - s))
    return np.concatenate(out)


def resolve_explainer(name: str, n_features: int) -> str:
    """Validate ``name``; ``auto`` becomes ``exact`` up to :data:`AUTO_EXACT_MAX_FEATURES`
    features, else ``permutation``."""
    if name not in EXPLAINERS:
        raise ExplainerError(f"unknown explainer {name!r}; use one of {', '.join(EXPLAINERS)}")
    if name == "auto":
        return "exact" if n_features <= AUTO_EXACT_MAX_FEATURES else "permutation"
    return name


def encoder_shap(encoder: nn.Module, x: np.ndarray, background: np.ndarray, *,
                 explainer: str = "auto", permutations: int = DEFAULT_PERMUTATIONS,
                 seed: int = 0, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """SHAP values of ``encoder``'s outputs w.r.t. its inputs on ``x`` (N, n) against
    ``background`` (B, n) or one reference (n,): (N, n, latent) float64.

    ``progress(k)`` is called as k more samples are done.
    """
    name = resolve_explainer(explainer, np.asarray(x).shape[-1])
    if name == "exact":
        return exact_shap(encoder, x, background, progress)
    if name == "permutation":
        return permutation_shap(encoder, x, background, permutations=permutations, seed=seed,
                                progress=progress)
    if name == "shap-permutation":
        return _shap_permutation(encoder, x, background, permutations=permutations, seed=seed,
                                 progress=progress)
    return _deep(encoder, x, background, progress)


def efficiency_gap(encoder: nn.Module, x: np.ndarray, background: np.ndarray,
                   phi: np.ndarray) -> float:
    """Largest |sum_j phi_j(x) - (f(x) - mean_b f(b))| over samples and latent units."""
    xs, bg = _checked(x, background)
    enc = float64_encoder(encoder)
    total = _run(enc, xs) - _run(enc, bg).mean(dim=0, keepdim=True)
    return float(np.abs(phi.sum(axis=1) - total.numpy()).max())


def relative_l1(estimate: np.ndarray, exact: np.ndarray) -> float:
    """``sum |estimate - exact| / sum |exact|`` (0 when both vanish)."""
    den = float(np.abs(exact).sum())
    num = float(np.abs(estimate - exact).sum())
    return 0.0 if num == 0.0 else num / max(den, math.ulp(1.0))
