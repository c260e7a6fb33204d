"""The one-sample execution plans (runtime/plan.py): the generated batch-1 functions against
the batch path and the float reference, for every activation, index map, kernel, layout and
input form, and the buffers they must not share."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import pytest

from edgeprune.compacted import CompactNetwork
from edgeprune.exporters.csr import save_bundle
from edgeprune.runtime import load
from edgeprune.runtime import plan as plan_module
from tests.factories import compact_mlp, random_compact_layer

TOL = 1e-5
# (activation, negative slope): every activation, and leaky_relu's three code paths
ACTS = [("identity", 0.0), ("relu", 0.0), ("tanh", 0.0), ("sigmoid", 0.0),
        ("leaky_relu", 0.2), ("leaky_relu", 1.5), ("leaky_relu", -0.3)]


def chain(last: tuple[str, float], hidden: tuple[str, float] = ("relu", 0.0), *,
          gather: bool = True, scatter: bool = True, seed: int = 0) -> CompactNetwork:
    """12 -> 9 -> 7 -> 10 outputs; ``gather``: 3 unused inputs, ``scatter``: 3 constant outputs."""
    rng = np.random.default_rng(seed)
    in_index = np.array([0, 2, 3, 5, 6, 7, 9, 10, 11]) if gather else np.arange(12)
    out_index = np.array([0, 1, 3, 4, 5, 7, 8]) if scatter else np.arange(10)
    layers = [random_compact_layer(rng, 9, len(in_index), hidden[0], 0.5, hidden[1]),
              random_compact_layer(rng, 7, 9, hidden[0], 0.5, hidden[1]),
              random_compact_layer(rng, len(out_index), 7, last[0], 0.5, last[1],
                                   unit_index=out_index)]
    const = np.zeros(10, np.float32)
    if scatter:
        const[[2, 6, 9]] = [0.25, -1.5, 3.0]
    return compact_mlp(layers, 12, 10, input_index=in_index, output_index=out_index,
                       output_const=const)


def check_model(model, net: CompactNetwork, seed: int = 3) -> None:
    """Every one-sample form equals the batch path and the float reference."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(6, net.input_dim)).astype(np.float32)
    batch = model(x)  # the batch plans: a separate implementation
    assert np.abs(batch - net.forward(x)).max() <= TOL
    for i in range(x.shape[0]):
        one, row = model(x[i]), model(x[i:i + 1])
        assert one.shape == (net.output_dim,) and one.dtype == np.float32
        assert row.shape == (1, net.output_dim) and row.dtype == np.float32
        out = np.full(net.output_dim, np.nan, np.float32)
        assert model(x[i], out=out) is out
        out_row = np.full((1, net.output_dim), np.nan, np.float32)
        assert model(x[i:i + 1], out=out_row) is out_row
        wide = np.zeros((net.input_dim, 3), np.float32)
        wide[:, 1] = x[i]
        for got in (one, row[0], out, out_row[0], model(x[i].astype(np.float64)),
                    model(wide[:, 1]), model(x[i].tolist())):  # strided, list
            assert np.abs(got - batch[i]).max() <= TOL


@pytest.mark.parametrize("last", ACTS, ids=[f"{a}{s}" for a, s in ACTS])
@pytest.mark.parametrize("maps", [(True, True), (False, False), (True, False), (False, True)],
                         ids=["gather+scatter", "identity-maps", "gather", "scatter"])
def test_every_activation_and_index_map(tmp_path: Path, last: tuple[str, float],
                                        maps: tuple[bool, bool]) -> None:
    net = chain(last, hidden=last, gather=maps[0], scatter=maps[1])
    path = save_bundle(net, tmp_path / "m.npz")
    for kernel in ("dense", "csr", "auto"):
        model = load(path, kernel=kernel)
        assert model._routes["forward"].sample is not None
        check_model(model, net)


@pytest.mark.parametrize("layout", ["rows", "cols"])
def test_both_dense_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str) -> None:
    monkeypatch.setattr(plan_module, "DENSE_LAYOUT", layout)
    net = chain(("sigmoid", 0.0))
    model = load(save_bundle(net, tmp_path / "m.npz"), kernel=["dense", "csr", "dense"])
    assert model._routes["forward"].sample.layouts == (layout, "csr", layout)
    check_model(model, net)


def test_returned_arrays_are_fresh_and_buffers_private(tmp_path: Path) -> None:
    for scatter in (True, False):
        net = chain(("relu", 0.0), scatter=scatter)
        model = load(save_bundle(net, tmp_path / f"m{scatter}.npz"))
        x = np.random.default_rng(0).normal(size=(2, 12)).astype(np.float32)
        first = model(x[0])
        keep = first.copy()
        second = model(x[1])
        assert not np.shares_memory(first, second)
        np.testing.assert_array_equal(first, keep)  # the second call did not overwrite it
        first[:] = 1e6  # the caller owns it: the next call is unaffected
        np.testing.assert_array_equal(model(x[0]), keep)
        assert not np.shares_memory(model(x[:1]), model(x[:1]))


def test_encode_decode_routes_and_vae_head(tmp_path: Path) -> None:
    from tests.test_runtime import make_autoencoder

    net = make_autoencoder()
    model = load(save_bundle(net, tmp_path / "ae.npz"))
    x = np.random.default_rng(1).normal(size=(4, net.input_dim)).astype(np.float32)
    codes = model.encode(x)
    for i in range(4):
        np.testing.assert_allclose(model.encode(x[i]), codes[i], atol=TOL)
        np.testing.assert_allclose(model.encode(x[i:i + 1])[0], codes[i], atol=TOL)
        np.testing.assert_allclose(model.decode(codes[i]), model.decode(codes)[i], atol=TOL)
        np.testing.assert_allclose(model(x[i]), model(x)[i], atol=TOL)


@pytest.mark.parametrize("quantize", ["int8", "shared5"])
def test_quantized_bundles(tmp_path: Path, quantize: str) -> None:
    net = chain(("sigmoid", 0.0), hidden=("leaky_relu", 0.2))
    model = load(save_bundle(net, tmp_path / "q.npz", quantize=quantize))
    x = np.random.default_rng(2).normal(size=(5, 12)).astype(np.float32)
    batch = model(x)
    assert np.abs(batch - net.forward(x)).max() < 0.1  # quantized: close, not equal
    for i in range(5):
        np.testing.assert_allclose(model(x[i]), batch[i], atol=TOL)


def test_clones_run_concurrently(tmp_path: Path) -> None:
    net = chain(("tanh", 0.0))
    model = load(save_bundle(net, tmp_path / "m.npz"))
    x = np.random.default_rng(4).normal(size=(200, 12)).astype(np.float32)
    expected = model(x)
    errors: list[float] = []

    def work(twin) -> None:
        errors.append(max(float(np.abs(twin(x[i]) - expected[i]).max()) for i in range(200)))

    threads = [threading.Thread(target=work, args=(model.clone(),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4 and max(errors) <= TOL


def test_bad_inputs_still_refused(tmp_path: Path) -> None:
    model = load(save_bundle(chain(("relu", 0.0)), tmp_path / "m.npz"))
    for bad in (np.zeros(11, np.float32), np.zeros((2, 1, 12), np.float32),
                np.zeros((1, 13), np.float32)):
        with pytest.raises(ValueError, match="expected input of shape"):
            model(bad)
    with pytest.raises(ValueError, match="out must be"):
        model(np.zeros(12, np.float32), out=np.zeros(9, np.float32))


def test_generated_source_names_only_its_own_variables(tmp_path: Path) -> None:
    model = load(save_bundle(chain(("sigmoid", 0.0)), tmp_path / "m.npz"), kernel="dense")
    source = model._routes["forward"].sample.source
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", source))
    allowed = {"def", "return", "x", "out", "wrap", "one", "row", "into", "_bind"}
    assert all(n in allowed or re.fullmatch(r"[a-z]+_\d+", n) for n in names), names
    # a sigmoid output layer is three ufuncs after its product, the scatter one take
    one = source.split("def one(x):")[1].split("def row")[0]
    assert re.findall(r"(tanh|multiply|add)_\d+\(", one) == ["tanh", "multiply", "add"]
    assert one.count("take_") == 2  # the input gather and the output scatter


def test_plan_floor_and_any_layout_floor(tmp_path: Path) -> None:
    from edgeprune.runtime.bench.floor import kernel_floor, plan_floor

    model = load(save_bundle(chain(("sigmoid", 0.0)), tmp_path / "m.npz"),
                 kernel=["dense", "csr", "dense"])
    own = plan_floor(model, warmup=0, runs=2, min_time=0.0)
    assert [layer["layout"] for layer in own["layers"]] == list(
        model._routes["forward"].sample.layouts)
    assert own["sum_us"] == pytest.approx(sum(layer["us"] for layer in own["layers"]))
    one = kernel_floor(model, 1, warmup=0, runs=2, min_time=0.0)
    assert all("dense_cols_us" in layer for layer in one["layers"])
    assert one["best_any_sum_us"] <= one["best_sum_us"]
    assert "best_any_sum_us" not in kernel_floor(model, 4, warmup=0, runs=2, min_time=0.0)
    with pytest.raises(ValueError, match="NumPy-engine"):
        plan_floor(load(save_bundle(compact_mlp([], 3, 2), tmp_path / "e.npz")))
