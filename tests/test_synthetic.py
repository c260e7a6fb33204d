"""SHAP-SAE paper section 3.1 on synthetic6 with a 6-3-6 autoencoder, over 5 seeds.

The paper reports UI(x1) = 0 (x1 is constant), UI(x5) > UI(x2), UI(x6) > UI(x3) and
UI(x6) > UI(x4). Which reference the game uses decides which of these can hold:

* a constant input is a dummy player (exactly 0) only under a data reference such as the mean
  (KernelSHAP with a background set, which the paper used, behaves the same way);
* under any reference that moves with the data, x5 - r5 == x2 - r2 (x5 - x2 is constant), so
  their order is decided by the learned weights alone: we measured it to flip with the training
  recipe (sigmoid 20 epochs: 7/10 seeds, tanh: 1/10, sigmoid 50 epochs at lr 3e-3: 0/10);
* under the zero reference (an absent link is a removed weight: the pruning game) x5's larger
  magnitude makes it reliably more important than x2 (10/10 seeds), but x1 is then not a dummy.

So each claim is asserted under the reference where it is a property of the method, not of
the training run. See docs/architecture.md.
"""

import numpy as np
import pytest

from edgeprune.data import explanation_set, load_dataset
from edgeprune.prune import format_support_set, prune_network, support_pairs
from edgeprune.scoring import score_network
from edgeprune.train import build_autoencoder, train_network

SEEDS = range(5)


def _trained(seed: int):
    ds = load_dataset("synthetic6", seed=seed)
    net = build_autoencoder(6, [3], "sigmoid", "sigmoid", seed=seed)
    net, _ = train_network(net, ds.x_train, ds.x_val, epochs=20, seed=seed, quiet=True)
    return ds, net


@pytest.fixture(scope="module")
def trained():
    return {seed: _trained(seed) for seed in SEEDS}


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_constant_input_is_a_dummy_and_x6_dominates_under_mean_reference(trained, seed):
    ds, net = trained[seed]
    scores = score_network(net, explanation_set(ds, 256, seed), estimator="exact",
                           reference="mean", quiet=True)
    ui = scores.layers[0].ui
    assert ui[0] == 0.0  # x1: exactly zero, not just small
    assert np.all(scores.layers[0].li[:, 0] == 0.0)
    assert ui[5] > ui[2] and ui[5] > ui[3]


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_sum_features_dominate_under_zero_reference(trained, seed, capsys):
    ds, net = trained[seed]
    scores = score_network(net, explanation_set(ds, 256, seed), estimator="exact",
                           reference="zero", quiet=True)
    ui = scores.layers[0].ui
    assert ui[4] > ui[1], f"UI(x5)={ui[4]:.4f} <= UI(x2)={ui[1]:.4f}"
    assert ui[5] > ui[2] and ui[5] > ui[3]
    result = prune_network(net, scores.li(), importance_level=0.8)
    sets = [format_support_set(support_pairs(layer.mask), k)
            for k, layer in enumerate(result.network.layers, start=1)]
    with capsys.disabled():
        print(f"\nseed {seed}: UI = {np.round(ui, 4).tolist()}\n  " + "\n  ".join(sets))
    assert sets[0].startswith("\u0393(1) = {(") and len(result.support_sets) == 2
