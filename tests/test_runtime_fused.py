"""The optional compiled engine (engine="numba"): parity with the NumPy/SciPy path and with the
reference forward pass for every kernel path, and a one-line error without numba."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeprune.exporters.csr import save_bundle
from edgeprune.runtime import fused as fused_module
from edgeprune.runtime import load, window_pack
from edgeprune.runtime.errors import EdgepruneError
from tests.test_runtime import NETS, make_empty

PARITY = 1e-6
KERNELS = ("dense", "csr", "auto", ["csr", "dense", "csr", "dense"])


@pytest.fixture(params=sorted(NETS))
def net_and_path(request: pytest.FixtureRequest, tmp_path: Path):
    net = NETS[request.param]()
    return net, save_bundle(net, tmp_path / "model.npz")


@pytest.mark.parametrize("kernel", KERNELS, ids=str)
def test_fused_matches_numpy_path_and_reference(net_and_path, kernel) -> None:
    pytest.importorskip("numba")
    net, path = net_and_path
    if isinstance(kernel, list):
        kernel = (kernel * 2)[: len(net.layers)]
    plain = load(path, kernel=kernel)
    fast = load(path, kernel=kernel, engine="numba")
    assert fast.engine == "numba" and fast.kernels == plain.kernels
    x = np.random.default_rng(11).normal(size=(8, net.input_dim)).astype(np.float32)
    expected = net.forward(x)
    for i in range(len(x)):
        one = fast(x[i])
        assert one.shape == (net.output_dim,) and one.dtype == np.float32
        assert np.abs(one - plain(x[i])).max() <= PARITY
        assert np.abs(one - expected[i]).max() <= 1e-5
        assert np.abs(fast(x[i : i + 1])[0] - one).max() == 0.0  # a batch of one: same path
    assert np.abs(fast(x.astype(np.float64)[0]) - plain(x[0])).max() <= PARITY
    strided = np.repeat(x, 2, axis=1)[:, ::2]  # rows that are not contiguous: the general path
    assert not strided[0].flags.c_contiguous
    assert np.abs(fast(strided[0]) - plain(x[0])).max() <= PARITY
    # batches run the NumPy/SciPy plans: identical to the numpy engine
    np.testing.assert_array_equal(fast(x), plain(x))
    out = np.empty(net.output_dim, np.float32)
    assert fast(x[2], out=out) is out
    if net.kind == "autoencoder":
        z = plain.encode(x[1])
        assert np.abs(fast.encode(x[1]) - z).max() <= PARITY
        assert np.abs(fast.decode(z) - plain.decode(z)).max() <= PARITY


def test_fused_activation_edges(tmp_path: Path) -> None:
    """Large magnitudes through sigmoid/tanh/leaky_relu stay finite and match the numpy path."""
    pytest.importorskip("numba")
    net = NETS["mlp"]()
    path = save_bundle(net, tmp_path / "m.npz")
    plain, fast = load(path, kernel="dense"), load(path, kernel="dense", engine="numba")
    for scale in (1e-3, 1.0, 1e3):
        x = (np.random.default_rng(2).normal(size=net.input_dim) * scale).astype(np.float32)
        got, want = fast(x), plain(x)
        assert np.isfinite(got).all()
        assert np.abs(got - want).max() <= PARITY * max(1.0, float(np.abs(want).max()))


def test_fused_on_an_all_constant_network(tmp_path: Path) -> None:
    pytest.importorskip("numba")
    net = make_empty()
    model = load(save_bundle(net, tmp_path / "e.npz"), engine="numba")
    np.testing.assert_array_equal(model(np.zeros(net.input_dim)), net.output_const)


def test_engine_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_bundle(NETS["mlp"](), tmp_path / "m.npz")
    with pytest.raises(ValueError, match="unknown engine 'jit'"):
        load(path, engine="jit")
    fused_module._compiled.cache_clear()
    monkeypatch.setattr(fused_module, "_compiled", lambda: "ModuleNotFoundError: no numba")
    assert not fused_module.available()
    with pytest.raises(EdgepruneError) as info:
        load(path, engine="numba")
    assert "pip install numba" in str(info.value) and "\n" not in str(info.value)
    assert load(path)(np.zeros(12, np.float32)).shape == (9,)  # the default engine still works


def test_builtin_default_per_architecture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No calibrated file: x86-64 uses its measured crossover, other machines the static rule;
    a calibrated file or profile="static" still wins."""
    from edgeprune.runtime import kernel_profile as kp
    from edgeprune.runtime.bench.calibrate import random_layer
    from edgeprune.runtime.bundle import Bundle

    rng = np.random.default_rng(0)
    layers = (random_layer(40, 30, 0.2, rng), random_layer(20, 40, 0.02, rng))
    bundle = Bundle("mem", {"kind": "mlp", "input_dim": 30, "output_dim": 20}, layers,
                    np.arange(30), np.arange(20), np.zeros(20, np.float32))
    from edgeprune.runtime.model import BundleModel

    monkeypatch.setattr(kp, "MACHINE", "x86_64")
    model = BundleModel(bundle)
    assert model.kernels_for(1) == ["dense", "csr"] == model.kernels_for(256)
    assert model.kernel_rule == "profile built-in x86_64 default"
    assert BundleModel(bundle, profile="static").kernels == ["csr", "csr"]
    kp.save_kernel_profile([(1, 0.5)])
    assert BundleModel(bundle).kernels == ["csr", "csr"]  # the calibrated file wins
    kp.default_profile_path().unlink()
    monkeypatch.setattr(kp, "MACHINE", "aarch64")
    model = BundleModel(bundle)
    assert model.kernels == ["csr", "csr"] and model.kernel_rule.startswith("static")
    assert kp.builtin_kernel_profile("aarch64") is None


def test_kernel_floor_structure(tmp_path: Path) -> None:
    """The floor times each layer's dense and CSR product alone; sums add up (no timing bound)."""
    from edgeprune.runtime.bench.floor import kernel_floor

    net = NETS["autoencoder"]()
    model = load(save_bundle(net, tmp_path / "ae.npz"), kernel="csr")
    for batch in (1, 4):
        floor = kernel_floor(model, batch, warmup=0, runs=2, min_time=0.0)
        assert floor["batch"] == batch and len(floor["layers"]) == len(net.layers)
        assert [row["chosen"] for row in floor["layers"]] == model.kernels_for(batch)
        assert [row["shape"] for row in floor["layers"]] == [list(i.shape) for i in model.layers]
        assert floor["best_sum_us"] == pytest.approx(
            sum(min(r["dense_us"], r["csr_us"]) for r in floor["layers"]))
        assert floor["chosen_sum_us"] == pytest.approx(sum(r["csr_us"] for r in floor["layers"]))
    np.testing.assert_allclose(model(np.ones(net.input_dim, np.float32)),
                               net.forward(np.ones((1, net.input_dim), np.float32))[0], atol=1e-5)


def test_numba_engine_from_the_cli_run_and_bench(tmp_path):
    """The compiled engine is reachable from the CLI: `run --engine numba` gives the numpy
    engine's outputs, and `bench --backends edgeprune-numba` measures it."""
    import json

    from click.testing import CliRunner

    from edgeprune.cli import main

    pytest.importorskip("numba")
    net = NETS["mlp"]()
    bundle = save_bundle(net, tmp_path / "m.npz")
    np.save(tmp_path / "x.npy",
            np.random.default_rng(0).random((5, net.input_dim), dtype=np.float32))
    runner = CliRunner()
    for engine in ("numpy", "numba"):
        result = runner.invoke(main, ["run", str(bundle), str(tmp_path / "x.npy"), "--engine",
                                      engine, "-o", str(tmp_path / f"{engine}.npy")])
        assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(tmp_path / "numba.npy"), np.load(tmp_path / "numpy.npy"),
                               atol=1e-6)
    result = runner.invoke(main, ["bench", str(bundle), "--backends", "edgeprune-numba",
                                  "--batch", "1", "--runs", "3", "--warmup", "1", "--min-time",
                                  "0", "-q", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["latency"]
    assert [r["backend"] for r in rows] == ["edgeprune-numba"]


@pytest.mark.parametrize("min_rows", [1, 10**9], ids=["cols", "rows"])
def test_dense_by_columns_matches_numpy_path(net_and_path, min_rows, monkeypatch) -> None:
    """Dense layers after a relu run by columns, skipping zero inputs (COLS_MIN_ROWS lowered so
    the small test nets take that path); inputs with many exact zeros, every layer dense."""
    pytest.importorskip("numba")
    monkeypatch.setattr(fused_module, "COLS_MIN_ROWS", min_rows)
    # the layouts of hosts without AVX-512 (the kernels stay this host's: same data layout)
    monkeypatch.setattr(window_pack, "avx512_available", lambda: False)
    net, path = net_and_path
    plain, fast = load(path, kernel="dense"), load(path, kernel="dense", engine="numba")
    layouts = fused_module.dense_layouts(fast._ops, fast.kernels, None)
    acts = [None] + [layer.activation for layer in fast.layers[:-1]]
    want = {None: "either", "relu": "cols"}
    assert layouts == [want.get(a, "rows") if min_rows == 1 else "rows" for a in acts]
    rng = np.random.default_rng(5)
    x = rng.normal(size=(16, net.input_dim)).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = 0.0
    x[3] = 0.0
    for row in x:
        assert np.abs(fast(row) - plain(row)).max() <= PARITY
        assert np.abs(fast(row) - net.forward(row[None])[0]).max() <= 1e-5


def test_dense_by_columns_wide_layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relu chain wide enough for the default rule (>= COLS_MIN_ROWS rows): four-column blocks
    and their remainder, all-zero and all-live inputs, against the NumPy path."""
    pytest.importorskip("numba")
    # the layouts of hosts without AVX-512 (the kernels stay this host's: same data layout)
    monkeypatch.setattr(window_pack, "avx512_available", lambda: False)
    from edgeprune.runtime.bench.calibrate import random_layer
    from edgeprune.runtime.bundle import Bundle, LayerArrays
    from edgeprune.runtime.model import BundleModel

    rng = np.random.default_rng(3)
    shapes = [(70, 33), (130, 70), (67, 130)]
    layers = []
    for k, (r, c) in enumerate(shapes):
        lay = random_layer(r, c, 0.3, rng)
        act = "relu" if k < len(shapes) - 1 else "sigmoid"
        scale = np.float32(1 / np.sqrt(c * 0.3))  # unit-variance pre-activations, as trained
        layers.append(LayerArrays(lay.data * scale, lay.indices, lay.indptr, lay.bias * scale,
                                  lay.shape, act, 0.0))
    bundle = Bundle("mem", {"kind": "mlp", "input_dim": 33, "output_dim": 67}, tuple(layers),
                    np.arange(33), np.arange(67), np.zeros(67, np.float32))
    plain = BundleModel(bundle, kernel="dense")
    fast = BundleModel(bundle, kernel="dense", engine="numba")
    assert fused_module.dense_layouts(fast._ops, fast.kernels, None) == ["either", "cols", "cols"]
    sparse = rng.normal(size=33).astype(np.float32)
    sparse[rng.random(33) < 0.7] = 0.0  # the first layer takes its by-columns branch
    for x in (np.zeros(33, np.float32), np.ones(33, np.float32),
              rng.normal(size=33).astype(np.float32), sparse):
        assert np.abs(fast(x) - plain(x)).max() <= PARITY


def test_fused_floor_structure(tmp_path: Path) -> None:
    """The compiled engine's floor times each layer's kernel in the layout the engine runs, on
    the layer inputs of the given sample (no timing bound)."""
    pytest.importorskip("numba")
    from edgeprune.runtime.bench.floor import fused_floor

    net = NETS["autoencoder"]()
    path = save_bundle(net, tmp_path / "ae.npz")
    model = load(path, kernel=["dense", "csr", "dense", "dense"], engine="numba")
    x = np.random.default_rng(4).random(net.input_dim, dtype=np.float32)
    floor = fused_floor(model, x, warmup=0, runs=2, min_time=0.0)
    layouts = model._routes["forward"].fused.layouts
    assert [row["layout"] for row in floor["layers"]] == [
        "rows" if want == "either" else want for want in layouts]  # dense inputs: by rows
    assert [row["shape"] for row in floor["layers"]] == [list(i.shape) for i in model.layers]
    assert all(0.0 <= row["zero_inputs"] <= 1.0 for row in floor["layers"])
    assert floor["sum_us"] == pytest.approx(sum(row["us"] for row in floor["layers"]))
    with pytest.raises(ValueError, match="engine='numba'"):
        fused_floor(load(path), x)
