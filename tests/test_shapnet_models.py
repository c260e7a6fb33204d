"""ShapNet models: exactness of Shapley modules and Shallow ShapNets (Thm. 2), local accuracy and
missingness of Deep ShapNets (Thm. 3, Cor. 4), against brute-force enumeration."""

from itertools import combinations
from math import factorial

import numpy as np
import pytest
import torch

from edgeprune.shapnet import (
    DeepShapNet,
    ShallowShapNet,
    ShapleyModule,
    ShapNetError,
    butterfly_groups,
    coalition_masks,
    covering_active_sets,
    shapley_mixing_weights,
)


def brute_force_shapley(f, x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exact Baseline Shapley values of ``f`` ((n, d) float64 -> (n, out)) by eq. 1: every
    coalition of every player, absent features at ``ref``. Returns (n, d, out)."""
    n, d = x.shape
    values = {}
    for size in range(d + 1):
        for coal in combinations(range(d), size):
            z = np.broadcast_to(ref, x.shape).copy()
            z[:, list(coal)] = x[:, list(coal)]
            values[frozenset(coal)] = f(z)
    out = values[frozenset()].shape[1]
    phi = np.zeros((n, d, out))
    for i in range(d):
        for coal, v in values.items():
            if i in coal:
                continue
            s = len(coal)
            w = factorial(s) * factorial(d - s - 1) / factorial(d)
            phi[:, i] += w * (values[coal | {i}] - v)
    return phi


def _torch_fn(model):
    def f(z):
        with torch.no_grad():
            return model(torch.from_numpy(z))[0].double().numpy()
    return f


def test_mixing_weights_give_efficiency_and_match_eq1():
    for k in range(1, 5):
        w = shapley_mixing_weights(k)
        masks = coalition_masks(k)
        assert w.shape == (k, 2 ** k) and masks.shape == (2 ** k, k)
        col = w.sum(axis=0)
        assert col[-1] == pytest.approx(1) and col[0] == pytest.approx(-1)
        assert np.allclose(col[1:-1], 0)
        assert np.allclose(w.sum(axis=1), 0)


def test_shapley_module_equals_brute_force_of_its_inner_function():
    torch.manual_seed(0)
    for k in (1, 2, 3, 4):
        ref = np.linspace(-0.3, 0.4, k)
        m = ShapleyModule(range(k), ref, out_channels=3, hidden=[7, 5]).double()
        x = np.random.default_rng(k).normal(size=(6, k))
        with torch.no_grad():
            phi = m(torch.from_numpy(x)).numpy()

        def inner(z, m=m):
            with torch.no_grad():
                return m.inner(torch.from_numpy(z)).numpy()
        assert np.abs(phi - brute_force_shapley(inner, x, m.reference.numpy())).max() < 1e-10


def test_shapley_module_with_channels_masks_whole_players():
    torch.manual_seed(1)
    m = ShapleyModule([0, 1, 2], [0.0, 0.0, 0.0], in_channels=4, out_channels=2)
    x = torch.randn(5, 3, 4)
    phi = m(x)
    assert phi.shape == (5, 3, 2)
    full = m.inner(x.reshape(5, 12))
    empty = m.inner(torch.zeros(5, 12))
    assert torch.allclose(phi.sum(1), full - empty, atol=1e-5)
    x[:, 1] = 0.0  # player 1 at its reference: a null player
    assert torch.equal(m(x)[:, 1], torch.zeros(5, 2))


@pytest.mark.parametrize("k,out", [(2, 1), (3, 2), (4, 3)])
def test_shallow_shapnet_explanations_are_exact_shapley_values(k, out):
    torch.manual_seed(k)
    d = 7
    ref = np.random.default_rng(0).normal(size=d).astype(np.float32)
    sets = covering_active_sets(d, k, n_modules=6, seed=k)
    model = ShallowShapNet(d, out, sets, ref, channels=4, hidden=[16])
    x = np.random.default_rng(1).normal(size=(20, d)).astype(np.float32)
    with torch.no_grad():
        pred, phi = model(torch.from_numpy(x))
    exact = brute_force_shapley(_torch_fn(model.double()), x.astype(np.float64),
                                ref.astype(np.float64))
    assert phi.shape == (20, d, out)
    assert np.abs(phi.numpy() - exact).max() <= 1e-5
    with torch.no_grad():
        pred_ref = model(torch.from_numpy(ref[None]).double())[0].numpy()
    assert np.allclose(phi.numpy().sum(1), pred.numpy() - pred_ref, atol=1e-5)


@pytest.mark.parametrize("d,k,transforms", [(8, 2, None), (5, 2, 4), (9, 3, None)])
def test_deep_shapnet_local_accuracy_and_missingness(d, k, transforms):
    torch.manual_seed(d)
    ref = np.random.default_rng(d).normal(size=d).astype(np.float32)
    model = DeepShapNet(d, 2, ref, k=k, n_transforms=transforms, channels=4, hidden=[8])
    x = torch.from_numpy(np.random.default_rng(2).normal(size=(16, d)).astype(np.float32))
    x[:, 1] = torch.from_numpy(ref)[1]  # feature 1 at its reference in every sample
    x[3] = torch.from_numpy(ref)  # a whole sample at the reference
    with torch.no_grad():
        pred, h = model(x)
        pred_ref, h_ref = model(torch.from_numpy(ref)[None])
        zs = model.representations(x)
    assert h.shape == (16, d, 2)
    assert torch.allclose(h.sum(1), pred - pred_ref, atol=1e-5)  # local accuracy
    assert torch.equal(h[:, 1], torch.zeros(16, 2))  # missingness
    assert torch.equal(h_ref, torch.zeros_like(h_ref)) and torch.equal(pred_ref[0], model.bias)
    for z in zs:  # Cor. 4: feature 1 stays at the reference 0 in every later representation
        assert torch.equal(z[:, 1], torch.zeros_like(z[:, 1]))
        assert torch.equal(z[:, d:], torch.zeros_like(z[:, d:]))  # the padding is null


def test_deep_shapnet_butterfly_connects_every_pair():
    for k, width in ((2, 16), (3, 9)):
        stages = round(np.log(width) / np.log(k))
        reach = np.eye(width, dtype=bool)
        for s in range(stages):
            groups = butterfly_groups(width, k, s)
            assert sorted(i for g in groups for i in g) == list(range(width))
            step = np.zeros_like(reach)
            for g in groups:
                step[np.ix_(g, g)] = True
            reach = (reach.astype(int) @ step.astype(int)) > 0
        assert reach.all()


def test_dynamic_skip_at_threshold_zero_changes_nothing():
    torch.manual_seed(3)
    model = DeepShapNet(6, 1, np.zeros(6), channels=4, hidden=[8])
    x = torch.randn(10, 6)
    x[:, :3] = 0.0
    skipped: list = []
    with torch.no_grad():
        plain = model.representations(x)
        pruned = model.representations(x, skip_threshold=0.0, skipped=skipped)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, pruned))
    assert skipped[0].shape == (10, 4) and bool(skipped[0][:, 0].all())


def test_bad_architectures_are_one_line_errors():
    with pytest.raises(ShapNetError, match="1..4"):
        ShapleyModule(range(5))
    with pytest.raises(ShapNetError, match="cover"):
        ShallowShapNet(4, 1, [[0, 1]])
    with pytest.raises(ShapNetError, match="use at least 3"):
        covering_active_sets(5, 2, n_modules=2)
    with pytest.raises(ShapNetError, match="input of shape"):
        DeepShapNet(4, 1)(torch.zeros(3, 5))


def test_batched_modules_equal_each_module_alone():
    torch.manual_seed(5)
    model = DeepShapNet(8, 3, np.linspace(-1, 1, 8), channels=4, hidden=[8, 6])
    x = torch.randn(7, 8)
    with torch.no_grad():
        zs = model.representations(x)
        z = torch.zeros(7, 8, 1)
        z[:, :, 0] = x
        for layer, modules in enumerate(model.transforms):
            new = torch.zeros(7, 8, modules[0].out_channels)
            for m in modules:
                new[:, m.active] = m(z[:, m.active])
            assert torch.allclose(new, zs[layer], atol=1e-6)
            z = new
