"""Tests of edgeprune.prune: support sets, cascade, compaction, m <-> eta, baselines, API."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeprune.network import Layer, Network
from edgeprune.prune import (
    baseline_scores,
    cascade_dead_units,
    check_importance_level,
    check_sparsity,
    compact_network,
    format_support_set,
    is_fixed_point,
    lap_scores,
    magnitude_scores,
    prune_global_magnitude,
    prune_network,
    random_scores,
    solve_importance_level,
    sparsity_curve,
    support_mask,
    support_masks,
    support_pairs,
)
from edgeprune.prune.sparsity import candidate_levels
from edgeprune.prune.support import rank_layers
from edgeprune.runtime.activations import apply_activation

ACTS = ["relu", "sigmoid", "tanh", "leaky_relu", "identity"]


def make_net(dims, acts, seed=0, latent=None, p_mask=0.0):
    """A random chain network with ``dims`` widths; ``p_mask`` masks links at random."""
    rng = np.random.default_rng(seed)
    if isinstance(acts, str):
        acts = [acts] * (len(dims) - 1)
    layers = []
    for k in range(len(dims) - 1):
        w = rng.normal(size=(dims[k + 1], dims[k])).astype(np.float32)
        b = rng.normal(size=dims[k + 1]).astype(np.float32)
        mask = rng.random(w.shape) >= p_mask
        layers.append(Layer(w, b, activation=acts[k], negative_slope=0.1, mask=mask))
    return Network(layers, latent=latent)


def x_batch(n_in, n=64, seed=1):
    return np.random.default_rng(seed).normal(size=(n, n_in)).astype(np.float32)


# -- support sets ---------------------------------------------------------------------------------


def test_support_keeps_smallest_prefix():
    s = np.array([[0.5, 0.3, 0.1, 0.1]])
    assert support_mask(s, 0.8).tolist() == [[True, True, False, False]]
    assert support_mask(s, 0.81).tolist() == [[True, True, True, False]]
    assert support_mask(s, 0.5).tolist() == [[True, False, False, False]]
    assert support_mask(s, 1e-9).tolist() == [[True, False, False, False]]


def test_support_ties_broken_by_flat_index():
    s = np.array([[0.1, 0.3, 0.3, 0.3]])
    assert support_mask(s, 0.5).tolist() == [[False, True, True, False]]
    s2 = np.full((2, 2), 0.25)
    assert support_mask(s2, 0.5).tolist() == [[True, True], [False, False]]
    assert support_mask(s2, 0.75).tolist() == [[True, True], [True, False]]


def test_support_m_equal_one_keeps_positive_scores_only():
    s = np.array([[0.5, 0.0, 0.3, 0.0], [0.2, 0.0, 0.0, 1e-20]])
    mask = support_mask(s, 1.0)
    assert mask.tolist() == (s > 0).tolist()  # zero-score links dropped, tiny ones kept
    # Rounding in the cumulative sum never drops a link at m = 1.
    rng = np.random.default_rng(3)
    r = rng.random((17, 31))
    assert support_mask(r, 1.0).all()
    # All-zero layer: the empty prefix reaches the total, every link goes.
    assert not support_mask(np.zeros((2, 3)), 1.0).any()


def test_support_relative_tolerance():
    s = np.array([[0.1] * 10])  # cumsum 0.1+0.1+0.1 = 0.30000000000000004 etc.
    for k in range(1, 11):
        assert support_mask(s, k / 10).sum() == k


def test_masked_links_never_come_back():
    s = np.array([[0.9, 0.05, 0.05]])
    cur = np.array([[False, True, True]])
    assert support_mask(s, 1.0, cur).tolist() == [[False, True, True]]
    # The total counts active links only: 0.05 reaches half of 0.1.
    assert support_mask(s, 0.5, cur).tolist() == [[False, True, False]]
    net = make_net([5, 4, 3], "relu", p_mask=0.4)
    before = [layer.mask.copy() for layer in net.layers]
    scores = [np.ones(layer.weight.shape) for layer in net.layers]
    res = prune_network(net, scores, importance_level=1.0)
    for old, layer, orig in zip(before, res.network.layers, net.layers, strict=True):
        assert not np.any(layer.mask & ~old)
        assert np.array_equal(orig.mask, old)  # the input network is untouched


def test_support_masks_and_pairs():
    scores = [np.array([[0.5, 0.3], [0.1, 0.1]]), np.array([[1.0, 0.0]])]
    masks = support_masks(scores, 0.8)
    assert masks[0].tolist() == [[True, True], [False, False]]
    assert masks[1].tolist() == [[True, False]]
    assert support_pairs(masks[0]) == [(1, 1), (1, 2)]
    assert format_support_set(support_pairs(masks[0]), 1) == "\u0393(1) = {(1, 1), (1, 2)}"


def test_bad_scores_rejected():
    with pytest.raises(ValueError, match="non-negative"):
        support_mask(np.array([[0.5, -0.1]]), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        support_mask(np.array([[0.5, np.nan]]), 0.5)
    with pytest.raises(ValueError, match="shape"):
        support_mask(np.ones((2, 2)), 0.5, np.ones((2, 3), dtype=bool))


@pytest.mark.parametrize("m", [0.0, -0.1, 1.1, float("nan"), "abc"])
def test_bad_importance_level(m):
    with pytest.raises(ValueError, match="--importance-level") as exc:
        check_importance_level(m)
    assert "(0, 1]" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("eta", [1.0, -0.01, 2, float("inf")])
def test_bad_sparsity(eta):
    with pytest.raises(ValueError, match="--sparsity") as exc:
        check_sparsity(eta)
    assert "[0, 1)" in str(exc.value)
    net = make_net([3, 2], "relu")
    with pytest.raises(ValueError, match="--sparsity"):
        prune_network(net, magnitude_scores(net), sparsity=eta)


# -- cascade --------------------------------------------------------------------------------------


def test_paper_example_support_sets():
    """Section 3.1: z_2 has no outgoing link, so its three incoming pairs leave Gamma(1)."""
    net = make_net([6, 3, 6], ["relu", "sigmoid"], latent=1)
    g1 = [(1, 2), (1, 4), (1, 5), (1, 6), (3, 5), (2, 3), (2, 5), (2, 6)]  # k* = 8 before
    g2 = [(2, 1), (2, 3), (3, 1), (3, 3), (4, 1), (5, 3), (6, 1)]
    for layer, pairs in zip(net.layers, (g1, g2), strict=True):
        layer.mask[:] = False
        for i, j in pairs:
            layer.mask[i - 1, j - 1] = True
    res = cascade_dead_units(net)
    sets = [support_pairs(layer.mask) for layer in res.network.layers]
    assert sets[0] == [(1, 2), (1, 4), (1, 5), (1, 6), (3, 5)]
    assert sets[1] == sorted(g2)
    assert res.removed_units[0] == [1]
    assert res.constant_outputs == pytest.approx(
        {0: float(apply_activation(net.layers[1].bias[:1].astype(np.float64), "sigmoid")[0])}
    )
    assert res.unused_inputs == [0, 2]  # x_1 and x_3 fed only z_2
    assert any("latent units 2 (of" in n for n in res.notes)  # unit index 1, numbered from 1


def test_rule1_unit_without_outgoing_links_loses_incoming():
    net = make_net([3, 4, 3, 2], "relu", seed=2)
    net.layers[1].mask[:, 1] = False  # hidden unit 1 of layer 1 feeds nothing
    res = cascade_dead_units(net)
    assert not res.network.layers[0].mask[1].any()
    assert res.network.layers[0].mask[[0, 2, 3]].all()
    assert res.removed_units[0] == [1] and res.units_kept[0] == 3
    assert res.cut_units == 1 and res.folded_units == 0
    x = x_batch(3)
    np.testing.assert_allclose(res.network.forward(x), net.forward(x), atol=1e-6)


@pytest.mark.parametrize("act", ACTS)
def test_rule2_constant_unit_folded_into_next_bias(act):
    net = make_net([3, 4, 3, 2], act, seed=4)
    net.layers[0].mask[2, :] = False  # hidden unit 2 of layer 1 reads nothing: emits act(b_2)
    net.layers[1].mask[0, 3] = False  # a masked outgoing link must not be folded
    res = cascade_dead_units(net)
    out = res.network
    assert not out.layers[1].mask[:, 2].any()
    const = apply_activation(net.layers[0].bias[2:3].astype(np.float64), act, 0.1)[0]
    w = net.layers[1].masked_weight[:, 2]
    np.testing.assert_allclose(out.layers[1].bias, net.layers[1].bias + w * const, rtol=1e-6)
    x = x_batch(3)
    np.testing.assert_allclose(out.forward(x), net.forward(x), atol=1e-6)
    assert res.folded_units == 1 and is_fixed_point(out)


def test_chain_reaction_reaches_fixed_point():
    net = make_net([4, 3, 3, 3, 2], ["tanh", "relu", "sigmoid", "identity"], seed=5)
    L1, L2, L3, L4 = net.layers
    # Forward chain: unit 0 of layer 1 reads nothing; unit 0 of layer 2 reads only it.
    L1.mask[0, :] = False
    L2.mask[0, 1:] = False
    # Backward chain: unit 2 of layer 3 feeds nothing; unit 2 of layer 2 feeds only it.
    L4.mask[:, 2] = False
    L3.mask[:2, 2] = False
    res = cascade_dead_units(net)
    out = res.network
    assert is_fixed_point(out)
    assert res.removed_units[:3] == [[0], [0, 2], [2]]
    assert res.units_kept == [2, 1, 2, 2]
    assert res.folded_units == 2 and res.cut_units == 2
    x = x_batch(4)
    np.testing.assert_allclose(out.forward(x), net.forward(x), atol=1e-6)
    # Running it again changes nothing.
    again = cascade_dead_units(out)
    assert again.folded_units == again.cut_units == 0
    for a, b in zip(again.network.layers, out.layers, strict=True):
        assert np.array_equal(a.mask, b.mask) and np.array_equal(a.bias, b.bias)


def test_unused_inputs_and_constant_outputs():
    net = make_net([4, 3, 2], ["relu", "sigmoid"], seed=6)
    net.layers[0].mask[:, 0] = False  # input 0 is read by nobody
    net.layers[0].mask[:, 3] = False
    net.layers[1].mask[1, :] = False  # output 1 has no incoming link
    res = cascade_dead_units(net)
    assert res.unused_inputs == [0, 3]
    expected = 1.0 / (1.0 + math.exp(-float(net.layers[1].bias[1])))
    assert res.constant_outputs == {1: pytest.approx(expected, rel=1e-6)}
    x = x_batch(4)
    y = net.forward(x)
    np.testing.assert_allclose(y[:, 1], expected, rtol=1e-6)


# -- compaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_compact_forward_equals_masked_forward(seed):
    acts = [ACTS[(seed + k) % len(ACTS)] for k in range(4)]
    net = make_net([7, 6, 3, 6, 7], acts, seed=seed, latent=2, p_mask=0.6)
    cn = compact_network(net)
    x = x_batch(7, seed=seed + 10)
    np.testing.assert_allclose(cn.forward(x), net.forward(x), atol=1e-6, rtol=1e-6)
    cascaded = cascade_dead_units(net).network
    for layer, cl in zip(cascaded.layers, cn.layers, strict=True):
        assert np.array_equal(cl.unit_index, np.flatnonzero(layer.mask.any(axis=1)))
        assert (cl.weight != 0).any(axis=1).all() or cl.weight.size == 0
    assert cn.latent_layer == 2 and cn.latent_dim == 3
    if cn.layers:
        lat = cascaded.encode(x)
        dead = np.setdiff1d(np.arange(3), cn.layers[1].unit_index)
        np.testing.assert_allclose(
            lat[:, dead], np.broadcast_to(cn.latent_const[dead], lat[:, dead].shape), atol=1e-6
        )
        assert np.all(cn.latent_const[cn.layers[1].unit_index] == 0)
        assert np.array_equal(cn.input_index, np.flatnonzero(cascaded.layers[0].mask.any(axis=0)))


def test_compact_degenerate_network():
    net = make_net([4, 3, 3, 2], ["relu", "tanh", "sigmoid"], seed=8)
    net.layers[1].mask[:] = False  # nothing crosses layer 2
    res = cascade_dead_units(net)
    assert res.degenerate and res.network.n_active == 0
    assert res.unused_inputs == [0, 1, 2, 3] and set(res.constant_outputs) == {0, 1}
    cn = compact_network(net)
    assert cn.layers == [] and cn.input_index.size == 0 and cn.output_index.size == 0
    x = x_batch(4)
    y = net.forward(x)
    np.testing.assert_allclose(cn.forward(x), y, atol=1e-6)
    np.testing.assert_allclose(y, np.broadcast_to(y[0], y.shape), atol=1e-7)
    assert [res.constant_outputs[k] for k in (0, 1)] == pytest.approx(y[0].tolist(), abs=1e-6)


# -- m <-> eta ------------------------------------------------------------------------------------


def test_bisection_single_layer_hits_one_link_step():
    net = make_net([10, 8], "relu", seed=9)
    scores = [np.random.default_rng(0).random((8, 10))]
    for target in np.linspace(0.0, 0.95, 20):
        sol = solve_importance_level(net, scores, target)
        assert abs(sol.sparsity - target) <= 0.5 / 80 + 1e-12
        assert 0.0 < sol.importance_level <= 1.0
        assert (
            sol.sparsity
            == prune_network(net, scores, importance_level=sol.importance_level).sparsity
        )


def test_bisection_finds_closest_achievable_eta_after_cascade():
    net = make_net([6, 5, 3, 5, 6], ["relu", "relu", "relu", "sigmoid"], seed=11, latent=2)
    scores = [
        np.random.default_rng(k).random(layer.weight.shape) ** 3
        for k, layer in enumerate(net.layers)
    ]
    levels = candidate_levels(rank_layers(scores, [layer.mask for layer in net.layers]))
    achievable = np.array([eta for _, eta in sparsity_curve(net, scores, levels)])
    for target in (0.0, 0.2, 0.45, 0.6, 0.8, 0.9, 0.99):
        sol = solve_importance_level(net, scores, target)
        assert abs(sol.sparsity - target) <= np.abs(achievable - target).min() + 1e-12
        assert sol.evaluations <= 2 * math.ceil(math.log2(levels.size)) + 4


def test_eta_decreases_monotonically_with_m():
    net = make_net([8, 6, 4, 6, 8], "tanh", seed=12, latent=2)
    scores = [np.random.default_rng(7).random(layer.weight.shape) for layer in net.layers]
    curve = sparsity_curve(net, scores, np.linspace(0.01, 1.0, 60))
    etas = [eta for _, eta in curve]
    assert all(a >= b for a, b in zip(etas[:-1], etas[1:], strict=True))
    assert etas[0] > etas[-1]
    assert etas[-1] == 0.0  # all scores positive: m = 1 keeps every link


# -- baselines ------------------------------------------------------------------------------------


def test_lap_hand_computed():
    w1 = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    w2 = np.array([[1.0, -2.0]], dtype=np.float32)
    net = Network([Layer(w1, np.zeros(2), "relu"), Layer(w2, np.zeros(1), "identity")])
    s1, s2 = lap_scores(net)
    np.testing.assert_allclose(s1, [[1.0, 2.0], [6.0, 8.0]])  # * ||W2[:, i]|| = 1, 2
    np.testing.assert_allclose(s2, [[math.sqrt(5.0), 10.0]])  # * ||W1[j, :]|| = sqrt5, 5
    net.layers[0].mask[1, 1] = False  # masked weights count as 0
    s1, s2 = lap_scores(net)
    np.testing.assert_allclose(s1, [[1.0, 2.0], [6.0, 0.0]])
    np.testing.assert_allclose(s2, [[math.sqrt(5.0), 6.0]])


@pytest.mark.parametrize("name", ["magnitude", "random", "lap"])
def test_baselines_give_valid_masks(name):
    net = make_net([9, 6, 3, 6, 9], "relu", seed=13, latent=2, p_mask=0.1)
    scores = baseline_scores(name, net, seed=1)
    assert all(
        s.shape == layer.weight.shape and (s >= 0).all()
        for s, layer in zip(scores, net.layers, strict=True)
    )
    assert all((s[~layer.mask] == 0).all() for s, layer in zip(scores, net.layers, strict=True))
    res = prune_network(net, scores, sparsity=0.6)
    assert abs(res.sparsity - 0.6) < 0.1
    for new, old in zip(res.network.layers, net.layers, strict=True):
        assert new.mask.dtype == bool and new.mask.shape == old.mask.shape
        assert not np.any(new.mask & ~old.mask)
    assert is_fixed_point(res.network)
    x = x_batch(9)
    np.testing.assert_allclose(compact_network(res.network).forward(x), res.network.forward(x), atol=1e-6)


def test_random_scores_are_seeded():
    net = make_net([5, 4], "relu")
    assert np.array_equal(random_scores(net, seed=3)[0], random_scores(net, seed=3)[0])
    assert not np.array_equal(random_scores(net, seed=3)[0], random_scores(net, seed=4)[0])
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_scores("nope", net)


def test_global_magnitude():
    net = make_net([10, 8, 10], "relu", seed=14, latent=1)
    res = prune_global_magnitude(net, 0.5)
    assert res.importance_level is None and abs(res.sparsity - 0.5) <= 0.05
    kept = np.concatenate([np.abs(layer.weight[layer.mask]) for layer in res.network.layers])
    gone = np.concatenate([np.abs(layer.weight[~layer.mask]) for layer in res.network.layers])
    # Without cascade losses the global threshold separates kept from pruned links.
    if res.network.n_active == int(round((1 - res.sparsity) * net.n_links)):
        assert kept.min() >= np.percentile(gone, 50)
    assert prune_global_magnitude(net, 0.0).sparsity == 0.0


# -- API ------------------------------------------------------------------------------------------


def test_prune_network_api():
    net = make_net([6, 3, 6], ["relu", "sigmoid"], seed=15, latent=1)
    scores = magnitude_scores(net)
    with pytest.raises(ValueError, match="exactly one"):
        prune_network(net, scores)
    with pytest.raises(ValueError, match="exactly one"):
        prune_network(net, scores, importance_level=0.5, sparsity=0.5)
    with pytest.raises(ValueError, match="layers"):
        prune_network(net, scores[:1], importance_level=0.5)
    res = prune_network(net, scores, importance_level=0.7)
    assert res.importance_level == 0.7
    assert res.sparsity == pytest.approx(res.network.sparsity)
    assert [d["layer"] for d in res.per_layer] == [1, 2]
    d1 = res.per_layer[0]
    assert d1["shape"] == [3, 6] and d1["links"] == 18 and d1["units_in"] == 3
    assert d1["links_kept"] == res.network.layers[0].n_active
    assert d1["sparsity"] == pytest.approx(1 - d1["links_kept"] / 18)
    assert res.support_sets[0] == support_pairs(res.network.layers[0].mask)
    assert sum(len(s) for s in res.support_sets) == res.network.n_active
    res2 = prune_network(net, scores, sparsity=0.5)
    assert res2.target_sparsity == 0.5 and 0.0 < res2.importance_level <= 1.0
    assert isinstance(res2.to_dict()["per_layer"], list)
