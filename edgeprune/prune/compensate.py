"""Bias compensation (``compress --compensate``): a pruned link is replaced by its mean.

The SHAP-SAE link game values link (i, j) against a reference ``r``: a link outside the
coalition contributes ``W_ij r_j`` to unit i, not nothing (:mod:`edgeprune.shapley.game`,
``base_i = b_i + sum_j W_ij r_j``). With the zero reference that is the paper's pruning (a
pruned weight is 0); with the mean reference (``--reference mean``) the game prices a link by
how far its contribution moves from its *mean*, so pruning consistent with that game must keep
the mean: fold ``W_ij E[a_j]`` into ``b_i``. The paper's rule with the mean reference measured
far worse than with zero (docs/architecture.md) precisely because the mean was dropped.

The fold is done as mean pre-activation matching, layer by layer, on data: every live unit
(one with an active incoming link) of the pruned network gets

    b_i' = b_i + mean_x (z_i(x) - z_i'(x))

where ``z`` is the pre-activation of the network before pruning and ``z'`` that of the pruned
network with the layers below already compensated. For the links pruned in the layer itself
this is exactly ``sum_(pruned j) W_ij E[a_j]``; it also absorbs the shift of the mean that
pruning below caused (Nagel et al. 2019 do the same for quantization: "bias correction").
Units without an incoming link are left alone: the dead-unit cascade has already folded their
constant into the next layer (:mod:`edgeprune.prune.cascade`), and the next layer's matching
sees that constant in ``z'``. Fine-tuning trains the biases afterwards as before. numpy only.
"""

from __future__ import annotations

import numpy as np

from edgeprune.network import Network
from edgeprune.runtime.activations import apply_activation


def compensate_biases(original: Network, pruned: Network, x: np.ndarray) -> Network:
    """A copy of ``pruned`` whose live units' biases match ``original``'s mean pre-activation
    on the samples ``x`` (N, in_dim). The networks must have the same shapes."""
    if original.layer_shapes != pruned.layer_shapes:
        raise ValueError("compensate_biases: the networks have different layer shapes")
    out = pruned.copy()
    a_orig = np.asarray(x, dtype=np.float64)
    a_new = a_orig
    for lo, ln in zip(original.layers, out.layers, strict=True):
        z_orig = a_orig @ lo.masked_weight.T.astype(np.float64) + lo.bias
        z_new = a_new @ ln.masked_weight.T.astype(np.float64) + ln.bias
        live = ln.mask.any(axis=1)
        shift = np.where(live, (z_orig - z_new).mean(axis=0), 0.0)
        ln.bias = (ln.bias.astype(np.float64) + shift).astype(np.float32)
        z_new = z_new + shift
        a_orig = apply_activation(z_orig, lo.activation, lo.negative_slope)
        a_new = apply_activation(z_new, ln.activation, ln.negative_slope)
    return out
