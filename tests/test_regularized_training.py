"""k-sparse and dropout autoencoder training (edgeprune.regularized_training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeprune.network import ModelError
from edgeprune.regularized_training import (
    _topk_torch,
    ksparse_encode,
    ksparse_reconstruct,
    topk_mask,
    train_dropout_autoencoder,
    train_ksparse_autoencoder,
)
from edgeprune.train import build_autoencoder, reconstruction_mse, train_network


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matrices: one torch thread is faster, and much faster on a shared, loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    """400 samples of 16 features, each a non-negative mix of 2 of 8 fixed atoms (data with a
    2-sparse code)."""
    rng = np.random.default_rng(0)
    atoms = rng.random((8, 16)) ** 2
    x = np.zeros((400, 16))
    for row in x:
        row[:] = rng.uniform(0.3, 1.0, 2) @ atoms[rng.choice(8, 2, replace=False)]
    x = (x / x.max()).astype(np.float32)
    return x[:300], x[300:]


def _net(seed=0):
    return build_autoencoder(16, [12, 8], "relu", "sigmoid", seed=seed)


def test_topk_mask_keeps_exactly_k_largest_per_row():
    z = np.array([[0.1, 0.9, 0.5, 0.3], [2.0, 2.0, 2.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    m = topk_mask(z, 2)
    assert (m.sum(axis=1) == 2).all()
    assert m[0].tolist() == [False, True, True, False]
    assert m[1].tolist() == [True, True, False, False]  # ties: lower index first
    h = torch.tensor([[0.1, 0.9, 0.5, 0.3], [4.0, 1.0, 3.0, 2.0]])
    kept = _topk_torch(h, 2)
    assert torch.equal(kept, torch.tensor([[0.0, 0.9, 0.5, 0.0], [4.0, 0.0, 3.0, 0.0]]))


def test_ksparse_code_has_at_most_k_active_units(data):
    x_train, x_test = data
    net, history = train_ksparse_autoencoder(_net(), x_train, x_test, k=3, epochs=3, quiet=True)
    assert len(history) == 3 and "val_mse" in history[-1]
    z = ksparse_encode(net, x_test, 3)
    assert ((z != 0).sum(axis=1) <= 3).all()
    assert np.array_equal(z[z != 0], net.encode(x_test)[z != 0])  # winners keep their value
    assert ksparse_reconstruct(net, x_test, 3).shape == x_test.shape
    with pytest.raises(ModelError, match="k=9"):
        train_ksparse_autoencoder(_net(), x_train, k=9, epochs=1, quiet=True)


def test_ksparse_training_learns_to_reconstruct_through_top_k(data):
    """Trained with the top-k rule, the network reconstructs through a top-k code far better
    than the same network trained densely does when its code is cut to its k largest units."""
    x_train, x_test = data
    k = 2

    def net():
        return build_autoencoder(16, [16], "relu", "sigmoid", seed=0)

    sparse, _ = train_ksparse_autoencoder(net(), x_train, k=k, epochs=60, lr=0.01, seed=1,
                                          quiet=True)
    dense, _ = train_network(net(), x_train, epochs=60, lr=0.01, seed=1, quiet=True)

    def topk_mse(model):
        return float(np.mean((ksparse_reconstruct(model, x_test, k) - x_test) ** 2))

    assert (dense.encode(x_test) > 0).sum(axis=1).mean() > k  # the dense code is wider than k
    assert topk_mse(sparse) < 0.7 * topk_mse(dense)
    assert topk_mse(sparse) < 0.3 * topk_mse(net())


def test_dropout_training_is_seeded_and_differs_from_plain(data):
    x_train, x_test = data
    a, _ = train_dropout_autoencoder(_net(), x_train, x_test, p=0.3, epochs=3, seed=4, quiet=True)
    b, _ = train_dropout_autoencoder(_net(), x_train, x_test, p=0.3, epochs=3, seed=4, quiet=True)
    c, _ = train_dropout_autoencoder(_net(), x_train, x_test, p=0.3, epochs=3, seed=5, quiet=True)
    plain, _ = train_network(_net(), x_train, x_test, epochs=3, seed=4, quiet=True)
    for la, lb in zip(a.layers, b.layers):
        assert np.array_equal(la.weight, lb.weight) and np.array_equal(la.bias, lb.bias)
    assert not np.array_equal(a.layers[0].weight, c.layers[0].weight)
    assert not np.array_equal(a.layers[0].weight, plain.layers[0].weight)
    assert reconstruction_mse(a, x_test) < reconstruction_mse(_net(), x_test)
    zero, _ = train_dropout_autoencoder(_net(), x_train, x_test, p=0.0, epochs=3, seed=4,
                                        quiet=True)
    assert np.array_equal(zero.layers[0].weight, plain.layers[0].weight)
    with pytest.raises(ModelError, match="dropout p=1"):
        train_dropout_autoencoder(_net(), x_train, p=1.0, epochs=1, quiet=True)


@pytest.mark.parametrize("variant", ["ksparse", "dropout"])
def test_masked_links_stay_zero(data, variant):
    x_train, _ = data
    net = _net()
    net.layers[0].mask[:, :5] = False
    net.layers[3].mask[2, :] = False
    if variant == "ksparse":
        out, _ = train_ksparse_autoencoder(net, x_train, k=4, epochs=2, quiet=True)
    else:
        out, _ = train_dropout_autoencoder(net, x_train, p=0.2, epochs=2, quiet=True)
    assert not out.layers[0].masked_weight[:, :5].any()
    assert not out.layers[0].weight[:, :5].any()
    assert not out.layers[3].weight[2, :].any()
    assert out.sparsity == net.sparsity
