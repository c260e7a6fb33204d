"""The numpy/scipy runtime: loading bundles and running them dense, CSR and auto."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeprune.compacted import CompactNetwork
from edgeprune.exporters.csr import save_bundle
from edgeprune.runtime import (
    ACTIVATIONS,
    BundleError,
    BundleModel,
    choose_kernel,
    describe,
    load,
)
from edgeprune.runtime import kernels as kernels_module
from tests.factories import compact_mlp, random_compact_layer

TOL = 1e-5
KERNEL_NAMES = ("dense", "csr", "auto")


def make_mlp(seed: int = 0, density: float = 0.4) -> CompactNetwork:
    """Five layers, one per activation; 3 of 12 inputs unused, 3 of 9 outputs constant."""
    rng = np.random.default_rng(seed)
    widths = [9, 11, 8, 10, 6]
    input_index = np.array([0, 1, 3, 4, 6, 7, 8, 10, 11], dtype=np.int64)
    layers = []
    cols = len(input_index)
    for rows, act in zip(widths, ACTIVATIONS, strict=True):
        layers.append(random_compact_layer(rng, rows, cols, act, density))
        cols = rows
    output_const = np.zeros(9, dtype=np.float32)
    output_const[[2, 5, 8]] = [0.5, -1.25, 3.0]
    return compact_mlp(layers, 12, 9, input_index=input_index,
                       output_index=[0, 1, 3, 4, 6, 7], output_const=output_const)


def make_autoencoder(seed: int = 1, density: float = 0.35) -> CompactNetwork:
    """16 -> 10 -> latent (5 of 6 live) -> 10 -> 16; input 4 unused, outputs 4 and 9 constant."""
    rng = np.random.default_rng(seed)
    input_index = np.array([i for i in range(16) if i != 4], dtype=np.int64)
    live_latent = np.array([0, 1, 3, 4, 5], dtype=np.int64)
    output_index = np.array([i for i in range(16) if i not in (4, 9)], dtype=np.int64)
    layers = [
        random_compact_layer(rng, 10, 15, "leaky_relu", density),
        random_compact_layer(rng, 5, 10, "identity", density, unit_index=live_latent),
        random_compact_layer(rng, 10, 5, "tanh", density),
        random_compact_layer(rng, 14, 10, "sigmoid", density, unit_index=output_index),
    ]
    output_const = np.zeros(16, dtype=np.float32)
    output_const[[4, 9]] = [0.25, 0.75]
    latent_const = np.zeros(6, dtype=np.float32)
    latent_const[2] = -0.5
    return compact_mlp(layers, 16, 16, input_index=input_index, output_index=output_index,
                       output_const=output_const, kind="autoencoder", latent_layer=2,
                       latent_dim=6, latent_const=latent_const)


def make_empty(autoencoder: bool = False) -> CompactNetwork:
    """Everything pruned: no layers, every output constant."""
    return compact_mlp(
        [], 5, 4, input_index=[], output_const=[1.0, -2.0, 0.5, 0.0],
        kind="autoencoder" if autoencoder else "mlp",
        latent_layer=1 if autoencoder else None,
        latent_dim=3 if autoencoder else None,
        latent_const=np.array([0.1, 0.2, 0.3], dtype=np.float32) if autoencoder else None,
    )


NETS = {"mlp": make_mlp, "autoencoder": make_autoencoder}


@pytest.fixture(params=sorted(NETS))
def net_and_path(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[CompactNetwork, Path]:
    net = NETS[request.param]()
    path = save_bundle(net, tmp_path / "model.npz", report={"sparsity": 0.6})
    return net, path


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_outputs_match_reference(net_and_path: tuple[CompactNetwork, Path], kernel: str) -> None:
    net, path = net_and_path
    model = load(path, kernel=kernel)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(64, net.input_dim)).astype(np.float32)
    expected = net.forward(x)

    batch = model(x)
    assert batch.shape == (64, net.output_dim) and batch.dtype == np.float32
    assert np.abs(batch - expected).max() <= TOL

    one = model(x[:1])
    assert one.shape == (1, net.output_dim)
    assert np.abs(one - expected[:1]).max() <= TOL

    single = model(x[3])
    assert single.shape == (net.output_dim,) and single.dtype == np.float32
    assert np.abs(single - expected[3]).max() <= TOL

    # Constant outputs are exactly the stored constants.
    dead = np.setdiff1d(np.arange(net.output_dim), net.output_index)
    np.testing.assert_array_equal(
        batch[:, dead], np.broadcast_to(net.output_const[dead], (64, dead.size))
    )
    if kernel != "auto":
        assert model.kernels == [kernel] * len(net.layers)


def test_kernels_agree_and_unused_inputs_are_ignored(tmp_path: Path) -> None:
    net = make_mlp()
    path = save_bundle(net, tmp_path / "m.npz")
    x = np.random.default_rng(3).normal(size=(16, net.input_dim)).astype(np.float32)
    outs = [load(path, kernel=k)(x) for k in KERNEL_NAMES]
    for out in outs[1:]:
        assert np.abs(out - outs[0]).max() <= TOL
    unused = np.setdiff1d(np.arange(net.input_dim), net.input_index)
    x2 = x.copy()
    x2[:, unused] = 1e6
    np.testing.assert_array_equal(load(path, kernel="csr")(x2), outs[1])


def test_per_layer_kernels_and_auto_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(0)
    sparse = random_compact_layer(rng, 20, 30, "relu", density=0.05)
    dense = random_compact_layer(rng, 4, 20, "identity", density=1.0)
    net = compact_mlp([sparse, dense], 30, 4)
    path = save_bundle(net, tmp_path / "m.npz")
    model = load(path)
    assert model.kernels == ["csr", "dense"]
    assert [info.nnz for info in model.layers] == [sparse.nnz, dense.nnz]
    assert model.layers[1].density == pytest.approx(1.0)

    mixed = load(path, kernel=["dense", "csr"])
    assert mixed.kernels == ["dense", "csr"]
    x = rng.normal(size=(5, 30)).astype(np.float32)
    assert np.abs(mixed(x) - net.forward(x)).max() <= TOL

    monkeypatch.setattr(kernels_module, "DENSITY_THRESHOLD", 0.0)
    assert load(path).kernels == ["dense", "dense"]
    assert choose_kernel(model.bundle.layers[0], threshold=0.5) == "csr"

    with pytest.raises(ValueError, match="kernel"):
        load(path, kernel="gpu")
    with pytest.raises(ValueError, match="kernel"):
        load(path, kernel=["dense"])


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_encode_decode(tmp_path: Path, kernel: str) -> None:
    net = make_autoencoder()
    model = load(save_bundle(net, tmp_path / "ae.npz"), kernel=kernel)
    assert model.is_autoencoder and model.latent_dim == 6 and model.latent_layer == 2
    x = np.random.default_rng(5).normal(size=(64, 16)).astype(np.float32)

    z = model.encode(x)
    assert z.shape == (64, 6) and z.dtype == np.float32
    np.testing.assert_array_equal(z[:, 2], np.full(64, -0.5, dtype=np.float32))
    # The live latent units are the latent layer's activations.
    h = x[:, net.input_index]
    for layer in net.layers[:2]:
        h = h @ layer.weight.T + layer.bias
        h = np.where(h >= 0, h, 0.2 * h) if layer.activation == "leaky_relu" else h
    assert np.abs(z[:, net.layers[1].unit_index] - h).max() <= TOL

    y = model.decode(z)
    np.testing.assert_allclose(y, model(x), rtol=0, atol=1e-6)
    assert np.abs(y - net.forward(x)).max() <= TOL

    # decode only reads the live latent units.
    z2 = z.copy()
    z2[:, 2] = 123.0
    np.testing.assert_array_equal(model.decode(z2), y)

    # Single samples.
    assert model.encode(x[0]).shape == (6,)
    np.testing.assert_allclose(model.decode(model.encode(x[0])), y[0], rtol=0, atol=1e-6)

    with pytest.raises(ValueError, match="latent"):
        model.decode(np.zeros((2, 5), dtype=np.float32))


def test_encode_decode_refused_for_mlp(tmp_path: Path) -> None:
    model = load(save_bundle(make_mlp(), tmp_path / "m.npz"))
    assert not model.is_autoencoder
    with pytest.raises(ValueError, match="autoencoder"):
        model.encode(np.zeros(12, dtype=np.float32))
    with pytest.raises(ValueError, match="autoencoder"):
        model.decode(np.zeros(3, dtype=np.float32))


def test_input_shape_and_dtype_handling(tmp_path: Path) -> None:
    net = make_mlp()
    model = load(save_bundle(net, tmp_path / "m.npz"))
    with pytest.raises(ValueError, match=r"\(12,\) or \(batch, 12\)"):
        model(np.zeros((4, 11), dtype=np.float32))
    with pytest.raises(ValueError, match="12"):
        model(np.zeros(13))
    with pytest.raises(ValueError, match="12"):
        model(np.zeros((2, 3, 12)))
    x64 = np.random.default_rng(1).normal(size=(3, 12))
    out = model(x64)
    assert out.dtype == np.float32
    assert np.abs(out - net.forward(x64.astype(np.float32))).max() <= TOL
    assert model(x64.tolist()).shape == (3, 9)
    # Fortran-ordered and strided inputs are fine too.
    np.testing.assert_array_equal(model(np.asfortranarray(x64)), out)
    wide = np.zeros((3, 24))
    wide[:, ::2] = x64
    np.testing.assert_array_equal(model(wide[:, ::2]), out)
    assert model(np.zeros((0, 12), dtype=np.float32)).shape == (0, 9)


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_zero_layer_bundle(tmp_path: Path, kernel: str) -> None:
    net = make_empty()
    model = load(save_bundle(net, tmp_path / "empty.npz"), kernel=kernel)
    assert model.layers == [] and model.nnz == 0
    x = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    np.testing.assert_array_equal(model(x), np.tile(net.output_const, (7, 1)))
    np.testing.assert_array_equal(model(x[0]), net.output_const)
    np.testing.assert_array_equal(model(x), net.forward(x))
    with pytest.raises(ValueError):
        model(np.zeros((2, 4)))

    ae = load(save_bundle(make_empty(autoencoder=True), tmp_path / "empty_ae.npz"), kernel=kernel)
    z = ae.encode(x)
    np.testing.assert_array_equal(z, np.tile(np.float32([0.1, 0.2, 0.3]), (7, 1)))
    np.testing.assert_array_equal(ae.decode(z), np.tile(net.output_const, (7, 1)))
    np.testing.assert_array_equal(ae.decode(z[0]), net.output_const)


def test_model_attributes(tmp_path: Path) -> None:
    net = make_autoencoder()
    path = save_bundle(
        net, tmp_path / "ae.npz", provenance={"source": "model.pt"}, report={"sparsity": 0.8}
    )
    model = load(path, kernel="csr")
    assert isinstance(model, BundleModel)
    assert model.kind == "autoencoder"
    assert (model.input_dim, model.output_dim) == (16, 16)
    assert model.nnz == net.nnz
    assert model.sparsity == pytest.approx(0.8)
    assert model.meta["provenance"] == {"source": "model.pt"}
    assert [info.shape for info in model.layers] == [layer.weight.shape for layer in net.layers]
    assert [info.activation for info in model.layers] == [layer.activation for layer in net.layers]
    assert all(info.kernel == "csr" for info in model.layers)
    np.testing.assert_array_equal(model.input_index, net.input_index)
    assert "BundleModel(autoencoder" in repr(model)
    assert load(save_bundle(net, tmp_path / "b.npz")).sparsity is None


def test_describe(tmp_path: Path) -> None:
    net = make_autoencoder()
    path = save_bundle(net, tmp_path / "ae.npz", report={"sparsity": 0.65})
    info = describe(path)
    json.dumps(info)  # serializable as is
    assert info["format"] == "edgeprune-csr" and info["version"] == 3
    assert info["container"] == "packed"
    assert [m["name"] for m in info["zip_members"]] == ["meta.npy", "blob.npy"]
    assert sum(m["bytes"] for m in info["zip_members"]) < info["bytes_on_disk"]
    assert info["kind"] == "autoencoder"
    assert (info["input_dim"], info["used_inputs"]) == (16, 15)
    assert (info["output_dim"], info["constant_outputs"]) == (16, 2)
    assert info["live_latent"] == 5
    assert info["nnz"] == net.nnz
    assert info["bytes_on_disk"] == os.path.getsize(path)
    assert info["gzip_bytes"] > 0  # members are compressed already: gzip may not help
    rows_cols = [layer.weight.shape for layer in net.layers]
    assert info["dense_fp32_bytes"] == sum(4 * (r * c + r) for r, c in rows_cols)
    expected_csr = sum(
        8 * layer.nnz + 4 * (r + 1) + 4 * r
        for layer, (r, c) in zip(net.layers, rows_cols, strict=True)
    )
    assert info["csr_bytes"] == expected_csr
    model = load(path)
    assert [entry["kernel"] for entry in info["layers"]] == model.kernels
    assert [entry["activation"] for entry in info["layers"]] == [
        layer.activation for layer in net.layers
    ]
    assert info["report"] == {"sparsity": 0.65}
    with pytest.raises(BundleError, match="does not exist"):
        describe(tmp_path / "missing.npz")


#: edgeprune modules outside runtime/ that the runtime may import: stdlib only themselves.
SHARED_STDLIB_MODULES = ("edgeprune.fileio",)


def test_runtime_imports_no_torch_or_click(tmp_path: Path) -> None:
    path = save_bundle(make_autoencoder(), tmp_path / "ae.npz")
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import edgeprune.runtime as r\n"
        f"m = r.load({str(path)!r})\n"
        "m(np.zeros((2, m.input_dim), dtype=np.float32)); m.encode(np.zeros(m.input_dim))\n"
        f"r.describe({str(path)!r})\n"
        f"shared = {sorted(SHARED_STDLIB_MODULES)!r}\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('torch', 'click', 'numba'))\n"
        "assert not bad, bad\n"
        "outside = sorted(n for n in sys.modules if n.startswith('edgeprune.')\n"
        "                 and not n.startswith('edgeprune.runtime') and n not in shared)\n"
        "assert not outside, outside\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_runtime_sources_import_only_stdlib_numpy_scipy() -> None:
    """Static guard: every import under runtime/ is stdlib, numpy, scipy, relative or one of the
    shared stdlib-only modules (atomic writer, message helpers), which import stdlib only."""
    import ast
    import importlib

    import edgeprune.runtime as runtime

    allowed_roots = {"numpy", "scipy", "__future__"} | set(sys.stdlib_module_names)
    root = Path(runtime.__file__).parent
    shared = [Path(importlib.import_module(m).__file__) for m in SHARED_STDLIB_MODULES]
    for source in [*sorted(root.rglob("*.py")), *shared]:
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = (top in allowed_roots or name.startswith("edgeprune.runtime")
                      or (name in SHARED_STDLIB_MODULES and source not in shared)
                      # the optional compiled engine: the modules that import numba, which
                      # only runtime.fused imports, lazily (engine="numba"); _avx512_jit only
                      # from _fused_jit, on AVX-512 hosts; window_pack asks numba's llvmlite
                      # (inside a function, guarded) whether the host has AVX-512
                      or (source.name in ("_fused_jit.py", "_avx512_jit.py")
                          and top in ("numba", "llvmlite"))
                      or (source.name == "window_pack.py" and top == "llvmlite"))
                assert ok, f"{source.name} imports {name}"
