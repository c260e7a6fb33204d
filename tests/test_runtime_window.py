"""The compiled engine's window layout (runtime/window_pack.py, runtime/_avx512_jit.py): the
packing is the matrix, the AVX-512 and the portable kernel agree with a NumPy product, and a
pruned PyTorch model runs in it with PyTorch's outputs, through every activation, reordered rows,
unused inputs and constant outputs (no timing bound: the host is shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from edgeprune.exporters.csr import save_bundle
from edgeprune.runtime import fused as fused_module
from edgeprune.runtime import load
from edgeprune.runtime.window_pack import (
    COLS,
    ROWS,
    avx512_available,
    pack_windows,
    window_lanes,
)
from tests.export_cases import batch, max_diff
from tests.test_runtime import NETS

SHAPES = [(1, 1), (16, 32), (37, 70), (50, 300), (3, 65), (130, 33)]


def random_csr(rows: int, cols: int, density: float, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(rows, cols)).astype(np.float32)
    dense[rng.random((rows, cols)) >= density] = 0.0
    return sp.csr_matrix(dense)


def unpack(pack, rows: int, cols: int) -> np.ndarray:
    """The dense matrix (rows in the packed order) that a window pack holds."""
    out = np.zeros((pack.slices * ROWS, pack.windows * COLS), np.float32)
    for w in range(pack.windows):
        for s in range(pack.slices):
            for q in range(pack.steps[w * pack.slices + s], pack.steps[w * pack.slices + s + 1]):
                for lane in range(ROWS):
                    value = pack.values[q * ROWS + lane]
                    col = COLS * w + int(pack.index[q * ROWS + lane])
                    if value != 0:
                        assert out[ROWS * s + lane, col] == 0  # each entry once
                    out[ROWS * s + lane, col] += value
    assert not out[rows:].any() and not out[:, cols:].any()
    return out[:rows, :cols]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_pack_holds_the_matrix_in_row_order(shape) -> None:
    rows, cols = shape
    m = random_csr(rows, cols, 0.3, seed=rows + cols)
    pack = pack_windows(m)
    assert sorted(pack.order) == list(range(rows))
    counts = np.diff(m.indptr)[pack.order]
    assert (np.diff(counts) <= 0).all()  # longest rows first: they share slices
    np.testing.assert_array_equal(unpack(pack, rows, cols), m.toarray()[pack.order])
    assert pack.lanes == window_lanes(m) == 16 * int(pack.steps[-1])
    assert pack.values.dtype == np.float32 and pack.index.dtype == np.uint8
    assert pack.index.size % 4 == 0 and int(pack.index.max(initial=0)) < COLS
    assert pack.lanes <= pack.slices * ROWS * pack.windows * COLS


def test_kernels_match_a_numpy_product() -> None:
    pytest.importorskip("numba")
    from edgeprune.runtime import _fused_jit as jit

    kernels = [jit.window_matvec_portable]
    if avx512_available():
        from edgeprune.runtime._avx512_jit import window_matvec

        kernels.append(window_matvec)
        assert jit.window_matvec is window_matvec  # what the engine runs here
    rng = np.random.default_rng(1)
    for rows, cols in SHAPES:
        m = random_csr(rows, cols, 0.25, seed=rows * cols)
        pack = pack_windows(m)
        h = np.zeros(pack.windows * COLS, np.float32)
        h[:cols] = rng.normal(size=cols)
        b = np.zeros(pack.slices * ROWS, np.float32)
        b[:rows] = rng.normal(size=rows)
        want = m.toarray()[pack.order].astype(np.float64) @ h[:cols] + b[:rows]
        for kernel in kernels:
            y = np.full(pack.slices * ROWS, np.nan, np.float32)
            kernel(pack.values, pack.index.view(np.int32), pack.steps, h, y, b)
            assert np.abs(y[:rows] - want).max() <= 1e-5 * max(1.0, float(np.abs(want).max()))
            assert not y[rows:].any()  # padding rows: zero weights, zero bias


def pruned_torch_autoencoder(keep: float = 0.2):
    """A PyTorch autoencoder 120-90-40-90-120 (relu, tanh, relu, sigmoid) with 1 - ``keep`` of
    its links zeroed, some inputs unused and some outputs constant: its bundle's compact form,
    inputs, and the module's outputs."""
    import torch

    from edgeprune.checkpoint import network_from_module
    from edgeprune.prune import cascade_dead_units, compact_network

    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(120, 90), torch.nn.ReLU(), torch.nn.Linear(90, 40),
                              torch.nn.Tanh(), torch.nn.Linear(40, 90), torch.nn.ReLU(),
                              torch.nn.Linear(90, 120), torch.nn.Sigmoid())
    net = network_from_module(seq, latent=2)
    rng = np.random.default_rng(0)
    for layer in net.layers:
        layer.mask = rng.random(layer.weight.shape) < keep
    net.layers[0].mask[:, [3, 50, 51]] = False  # unused inputs
    net.layers[-1].mask[[0, 7, 99], :] = False  # constant outputs
    pruned = cascade_dead_units(net).network
    with torch.no_grad():
        for lin, layer in zip([m for m in seq if isinstance(m, torch.nn.Linear)], pruned.layers):
            lin.weight.copy_(torch.from_numpy(layer.masked_weight))
            lin.bias.copy_(torch.from_numpy(layer.bias))
    x = batch(32, 120)
    x[::2][np.random.default_rng(1).random((16, 120)) < 0.85] = 0.0  # mostly-zero inputs too
    with torch.no_grad():
        ref = seq(torch.from_numpy(x)).numpy()
    return compact_network(pruned), x, ref


def test_pruned_pytorch_model_runs_in_the_window_layout(tmp_path: Path) -> None:
    pytest.importorskip("numba")
    pytest.importorskip("torch")
    small, x, ref = pruned_torch_autoencoder()
    path = save_bundle(small, tmp_path / "ae.npz")
    plain, fast = load(path), load(path, engine="numba")
    layouts = fast._routes["forward"].fused.layouts
    if avx512_available():
        # first layer: inputs of unknown zeros; 40 rows: too few to run by columns; after tanh
        assert layouts == ["window_or_cols", "window", "window", "window_or_cols"]
    else:
        assert not any(layout.startswith("window") for layout in layouts)
    for k in range(len(x)):
        got = fast(x[k])
        assert max_diff(got, ref[k]) <= 1e-5
        assert max_diff(got, plain(x[k])) <= 1e-6
    # the encode and decode routes are compiled routes of their own
    z = plain.encode(x[1])
    assert max_diff(fast.encode(x[1]), z) <= 1e-6
    assert max_diff(fast.decode(z), plain.decode(z)) <= 1e-6


@pytest.mark.parametrize("name", sorted(NETS))
def test_forced_window_layout_on_every_activation(tmp_path: Path, name: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every layer in the window layout (the rule relaxed): leaky_relu, tanh, identity and
    sigmoid outputs, unused inputs and constant outputs, against the NumPy path and the
    reference forward pass."""
    pytest.importorskip("numba")
    if not avx512_available():
        pytest.skip("the window layout is chosen on AVX-512 hosts only")
    monkeypatch.setattr(fused_module, "WINDOW_LANE_COST", 0.0)
    monkeypatch.setattr(fused_module, "COLS_MIN_ROWS", 1)  # window_or_cols where allowed
    net = NETS[name]()
    path = save_bundle(net, tmp_path / "m.npz")
    plain, fast = load(path), load(path, engine="numba")
    layouts = fast._routes["forward"].fused.layouts
    assert all(layout.startswith("window") for layout in layouts)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(12, net.input_dim)).astype(np.float32)
    x[::3] = 0.0
    x[1::3][rng.random(x[1::3].shape) < 0.7] = 0.0
    for row in x:
        got = fast(row)
        assert max_diff(got, plain(row)) <= 1e-6
        assert max_diff(got, net.forward(row[None])[0]) <= 1e-5


def test_window_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dense layers never take the window layout, nor does any layer without AVX-512."""
    pytest.importorskip("numba")
    from edgeprune.runtime import window_pack

    small, _, _ = pruned_torch_autoencoder(keep=1.0)
    fast = load(save_bundle(small, tmp_path / "dense.npz"), engine="numba")
    assert not any(fits for fits in map(fused_module.window_fits, fast._ops))
    small, _, _ = pruned_torch_autoencoder(keep=0.2)
    path = save_bundle(small, tmp_path / "sparse.npz")
    monkeypatch.setattr(window_pack, "avx512_available", lambda: False)
    model = load(path, engine="numba")
    layouts = model._routes["forward"].fused.layouts
    assert layouts == fused_module.dense_layouts(model._ops, model.kernels_for(1), None)
    assert not any(layout.startswith("window") for layout in layouts)


def test_fused_floor_times_window_layers(tmp_path: Path) -> None:
    pytest.importorskip("numba")
    pytest.importorskip("torch")
    if not avx512_available():
        pytest.skip("the window layout is chosen on AVX-512 hosts only")
    from edgeprune.runtime.bench.floor import fused_floor

    small, x, _ = pruned_torch_autoencoder()
    model = load(save_bundle(small, tmp_path / "ae.npz"), engine="numba")
    for sample, first in ((np.abs(x[1]), "window"), (x[0], "cols")):  # x[0]: 85 % zeros
        floor = fused_floor(model, sample, warmup=0, runs=2, min_time=0.0)
        assert [row["layout"] for row in floor["layers"]] == [first, "window", "window",
                                                              "window"]
        assert floor["sum_us"] == pytest.approx(sum(row["us"] for row in floor["layers"]))


def test_dense_layers_run_by_columns_in_512_bits(tmp_path: Path) -> None:
    """On AVX-512 hosts every dense layer runs by columns with the 512-bit kernel, whatever its
    input (no zeros, after tanh, a first layer): same outputs as the NumPy path and PyTorch."""
    pytest.importorskip("numba")
    pytest.importorskip("torch")
    if not avx512_available():
        pytest.skip("the 512-bit kernel is bound on AVX-512 hosts only")
    from edgeprune.runtime import _fused_jit as jit
    from edgeprune.runtime._avx512_jit import dense_cols16

    assert jit.cols_kernel is dense_cols16
    small, x, ref = pruned_torch_autoencoder(keep=1.0)
    path = save_bundle(small, tmp_path / "dense.npz")
    plain, fast = load(path), load(path, engine="numba")
    assert fast._routes["forward"].fused.layouts == ["cols"] * 4
    for k in range(len(x)):
        assert max_diff(fast(x[k]), ref[k]) <= 1e-5
        assert max_diff(fast(x[k]), plain(x[k])) <= 1e-6
