"""benchmarks/shapnets.py's measuring helpers: the brute-force ground truth, shap's KernelSHAP
wrapper, the paper's eq. 8 metric and the comparable-MLP sizing (fast; the run itself is not)."""

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import shapnets as bench  # noqa: E402

from edgeprune.shapnet import ShallowShapNet, covering_active_sets  # noqa: E402


def _model(d=5):
    torch.manual_seed(0)
    return ShallowShapNet(d, 2, covering_active_sets(d, 2, 4), np.linspace(-1, 1, d),
                          channels=3, hidden=[6]).eval()


def test_brute_force_and_kernel_shap_agree_with_the_shallow_shapnet():
    model = _model()
    f, ref = bench.numpy_fn(model), model.reference.numpy().astype(np.float64)
    x = np.random.default_rng(0).normal(size=(3, 5))
    truth = bench.brute_force(f, x, ref)
    with torch.no_grad():
        ours = model(torch.from_numpy(x.astype(np.float32)))[1].numpy()
    assert np.abs(truth - ours).max() < 1e-5
    kernel = bench.kernel_shap(f, x, ref, 2 ** 5)  # all coalitions: KernelSHAP is exact
    assert kernel.shape == truth.shape and np.abs(kernel - truth).max() < 1e-5


def test_l1_difference_is_eq8_softmax_weighted():
    phi = np.zeros((1, 4, 2))
    gamma = np.zeros((1, 4, 2))
    gamma[0, :, 0] = 1.0  # output 0 off by 1 on every feature: ||.||_1 / d = 1
    assert bench.l1_difference(phi, gamma, None) == 0.5
    assert abs(bench.l1_difference(phi, gamma, np.array([[0.0, 0.0]])) - 0.5) < 1e-12
    assert bench.l1_difference(phi, gamma, np.array([[-50.0, 50.0]])) < 1e-12


def test_comparable_mlps_match_the_target_size():
    for target in (20_000, 77_000):
        width = bench.width_for(target, 16, 1)
        net = bench.mlp(16, 1, width)
        weights = sum(m.weight.numel() for m in net if isinstance(m, torch.nn.Linear))
        assert abs(weights - target) / target < 0.02
    model = _model()
    assert bench.shapnet_macs(model) == 4 * 4 * (2 * 6 + 6 * 3)
