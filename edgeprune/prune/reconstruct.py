"""Layer-wise least-squares reconstruction (``compress --reconstruct``) of the kept weights.

Pruning chooses *which* links stay; this refits *their values* so that the pruned network
reproduces the network before pruning, layer by layer (the idea behind OBS/OBC, Frantar &
Alistarh's "Optimal Brain Compression" and SparseGPT, and Kwon et al.'s "A Fast Post-Training
Pruning Framework"; no gradient step, the mask never changes). Layers are refit from the input
to the output. For layer l, with ``a`` the inputs the original network gives layer l and ``a'``
those the *pruned* network gives it (its own, already reconstructed layers below), the target is
the original pre-activation ``z = W a + b`` and every live output unit i solves, over the
calibration samples (the training split),

    min_{w_K, c}  mean_x (w_K . a'_K(x) + c - z_i(x))^2  +  lam * d * ||w_K - w0_K||^2

where K is the unit's kept inputs (its mask row), ``w0`` the kept weights as they were, ``c``
the bias (not penalised) and ``d`` the mean of the diagonal of the layer's input Gram matrix
``mean_x a' a'^T`` (so ``lam``, ``--reconstruct-ridge``, is relative and scale-free, as
SparseGPT's damping). The ridge pulls towards the pruned weights, not towards 0: an input the
calibration data never lights keeps its weight instead of losing it. Every unit is a small
k x k solve from one Gram matrix ``[a', 1]^T [a', 1]`` per layer (batched, rows of similar k
together). With lam = 0 a singular system takes the least-squares solution closest to ``w0``.

This generalises ``--compensate`` (:mod:`edgeprune.prune.compensate`): with no kept weight
free, the bias alone solves the problem by matching the mean pre-activation. Units without an
incoming link are left alone (the cascade folded their constant into the next layer), so the
masks and the cascade's fixed point are unchanged. numpy only.
"""

from __future__ import annotations

import time

import numpy as np

from edgeprune.choices import DEFAULT_RECONSTRUCT_RIDGE
from edgeprune.network import Network
from edgeprune.runtime.activations import apply_activation

#: Stacked k x k systems held at once (float64), bounding the memory of one batch.
_BATCH_BYTES = 64 * 1024**2


def _relative_error(z: np.ndarray, target: np.ndarray, rows: np.ndarray) -> float:
    """Fraction of the target pre-activations' variance (live rows) not reproduced."""
    if not rows.any():
        return 0.0
    t = target[:, rows]
    err = float(((z[:, rows] - t) ** 2).sum())
    var = float(((t - t.mean(axis=0)) ** 2).sum())
    return err / var if var > 0 else err


def _solve_rows(gram: np.ndarray, cross: np.ndarray, w0: np.ndarray, mask: np.ndarray,
                rows: np.ndarray, damping: float, bar) -> np.ndarray:
    """The refit [w | b] of ``rows`` (ascending kept count, batched): for each row the normal
    equations on its kept inputs plus the bias column (index ``in_dim``), solved for the step
    from ``w0`` (so a singular system keeps the weights closest to where they were)."""
    n_in = mask.shape[1]
    out = w0.copy()
    counts = mask[rows].sum(axis=1)
    order = rows[np.argsort(counts, kind="stable")]
    start = 0
    while start < len(order):
        k = int(mask[order[start]].sum()) + 1
        width = max(1, _BATCH_BYTES // (8 * k * k * 4))  # k grows along the batch: margin
        batch = order[start:start + width]
        k = int(mask[batch].sum(axis=1).max()) + 1
        idx = np.full((len(batch), k), n_in, dtype=np.int64)
        valid = np.zeros((len(batch), k), dtype=bool)
        for b, i in enumerate(batch):  # kept inputs, then the bias column
            kept = np.flatnonzero(mask[i])
            idx[b, :kept.size] = kept
            valid[b, :kept.size + 1] = True
            idx[b, kept.size] = n_in
        pair = valid[:, :, None] & valid[:, None, :]
        m = np.where(pair, gram[idx[:, :, None], idx[:, None, :]], 0.0)
        weights = valid & (idx != n_in)
        diag = np.arange(k)
        m[:, diag, diag] += np.where(weights, damping, np.where(valid, 0.0, 1.0))  # pads: 1
        start_w = np.where(valid, w0[batch[:, None], idx], 0.0)
        rhs = np.where(valid, cross[idx, batch[:, None]], 0.0) - np.einsum("bij,bj->bi", m,
                                                                           start_w)
        rhs += np.where(weights, damping * start_w, 0.0)  # the ridge pulls towards w0: no step
        try:
            step = np.linalg.solve(m, rhs[..., None])[..., 0]
        except np.linalg.LinAlgError:  # lam = 0 and a rank-deficient row: least squares
            step = np.einsum("bij,bj->bi", np.linalg.pinv(m, hermitian=True), rhs)
        new = start_w + step
        for b, i in enumerate(batch):
            out[i, idx[b, valid[b]]] = new[b, valid[b]]
        bar.update(len(batch))
        start += len(batch)
    return out


def reconstruct_weights(original: Network, pruned: Network, x: np.ndarray, *,
                        ridge: float = DEFAULT_RECONSTRUCT_RIDGE, quiet: bool = True,
                        ) -> tuple[Network, dict]:
    """A copy of ``pruned`` whose kept weights and live biases are refit, layer by layer, so
    that its pre-activations on the samples ``x`` (N, in_dim) match ``original``'s (module
    docstring). The masks are not changed. Returns the network and a record: ``ridge``,
    ``samples``, ``seconds`` and, per layer, ``units_refit`` and the relative error of the
    pre-activations (unexplained fraction of their variance on ``x``) of the pruned network
    as given (``error_pruned``) and reconstructed (``error_reconstructed``)."""
    from tqdm.auto import tqdm

    if original.layer_shapes != pruned.layer_shapes:
        raise ValueError("reconstruct_weights: the networks have different layer shapes")
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"reconstruct_weights: ridge must be a finite number >= 0, got {ridge}")
    t0 = time.perf_counter()
    out = pruned.copy()
    a = np.asarray(x, dtype=np.float64)
    a_new, a_plain = a, a
    n = len(a)
    per_layer = []
    live_rows = [np.flatnonzero(lay.mask.any(axis=1)) for lay in out.layers]
    bar = tqdm(total=sum(len(r) for r in live_rows), desc="reconstruct", unit="unit",
               disable=quiet, leave=False)
    for k, (lo, ln, lp, rows) in enumerate(zip(original.layers, out.layers, pruned.layers,
                                               live_rows, strict=True), start=1):
        z = a @ lo.masked_weight.T.astype(np.float64) + lo.bias
        z_plain = a_plain @ lp.masked_weight.T.astype(np.float64) + lp.bias
        design = np.hstack([a_new, np.ones((n, 1))])
        gram = design.T @ design / n
        cross = design.T @ z / n
        mean_diag = float(np.mean(np.diag(gram)[:-1]))
        damping = ridge * (mean_diag if mean_diag > 0 else 1.0)
        w0 = np.hstack([ln.weight.astype(np.float64), ln.bias.astype(np.float64)[:, None]])
        mask = ln.mask
        fit = _solve_rows(gram, cross, w0, mask, rows, damping, bar)
        ln.weight = np.where(mask, fit[:, :-1], ln.weight).astype(np.float32)
        ln.bias = fit[:, -1].astype(np.float32)
        z_new = a_new @ ln.masked_weight.T.astype(np.float64) + ln.bias
        live = np.zeros(ln.out_dim, dtype=bool)
        live[rows] = True
        per_layer.append({"layer": k, "units_refit": int(len(rows)),
                          "error_pruned": round(_relative_error(z_plain, z, live), 6),
                          "error_reconstructed": round(_relative_error(z_new, z, live), 6)})
        a = apply_activation(z, lo.activation, lo.negative_slope)
        a_new = apply_activation(z_new, ln.activation, ln.negative_slope)
        a_plain = apply_activation(z_plain, lp.activation, lp.negative_slope)
    bar.close()
    return out, {"ridge": float(ridge), "samples": int(n), "layers": per_layer,
                 "seconds": round(time.perf_counter() - t0, 3)}
