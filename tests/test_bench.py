"""edgeprune bench: cost arithmetic, statistics, profiles, backends, results schema and CLI.

Fast and free of timing assertions: every measurement uses a couple of runs and no minimum time.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune import bench as benchmark
from edgeprune.bench.backends import OnnxRuntimeBackend, TorchBackend, resolve_backends
from edgeprune.bench.report import LATENCY_KEYS, TOP_LEVEL_KEYS, to_json, to_markdown
from edgeprune.cli import main
from edgeprune.compacted import CompactNetwork
from edgeprune.exporters.csr import save_bundle
from edgeprune.runtime import load
from edgeprune.runtime.bench.costs import LayerShape, static_figures
from edgeprune.runtime.bench.energy import (
    PROFILES,
    EnergyProfileError,
    energy_proxy,
    load_energy_profile,
)
from edgeprune.runtime.bench.harness import (
    RuntimeBackend,
    artifact_format,
    discover_artifacts,
    latency_stats,
    percentiles,
    run_benchmark,
    time_calls,
)
from edgeprune.runtime.kernel_profile import (
    KernelProfile,
    KernelProfileError,
    default_profile_path,
    load_kernel_profile,
    save_kernel_profile,
)
from tests.factories import compact_layer, compact_mlp

FAST = {"warmup": 1, "runs": 2, "min_time": 0.0}


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No calibrated profile of the machine running the tests leaks in (or gets written)."""
    home = tmp_path / "edgeprune-home"
    monkeypatch.setenv("EDGEPRUNE_HOME", str(home))
    return home


def two_layer_net() -> CompactNetwork:
    """4 -> 3 (relu, 5 non-zeros) -> 2 (identity, 4 non-zeros); figures hand-computed below."""
    w1 = np.array([[1, 0, 2, 0], [0, 3, 0, 0], [0, 0, 0.5, -1]], dtype=np.float32)
    w2 = np.array([[1, -1, 0], [0.5, 0, 2]], dtype=np.float32)
    return compact_mlp([compact_layer(w1, [0.1, -0.2, 0.3], "relu"),
                        compact_layer(w2, [0.0, 1.0], "identity")], 4, 2)


def mixed_net(seed: int = 0) -> CompactNetwork:
    """24 -> 16 (sparse, leaky) -> 12 (half dense, tanh) -> 20 (dense, sigmoid); gaps in io."""
    rng = np.random.default_rng(seed)
    dims, dens, acts = [18, 16, 12, 15], [0.1, 0.5, 1.0], ["leaky_relu", "tanh", "sigmoid"]
    layers = []
    for k in range(3):
        w = rng.normal(size=(dims[k + 1], dims[k])).astype(np.float32)
        mask = rng.random(w.shape) < dens[k]
        mask[np.arange(w.shape[0]), rng.integers(0, w.shape[1], w.shape[0])] = True
        layers.append(compact_layer(w * mask, rng.normal(size=dims[k + 1]), acts[k], 0.2))
    out_index = np.array([i for i in range(20) if i not in (3, 7, 11, 19, 0)], dtype=np.int64)
    const = np.zeros(20, np.float32)
    const[[3, 7, 11, 19, 0]] = [1, 2, 3, 4, 5]
    return compact_mlp(layers, 24, 20, input_index=[i for i in range(24) if i % 4],
                       output_index=out_index, output_const=const)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return save_bundle(two_layer_net(), tmp_path / "model.npz")


# -- static figures and energy ----------------------------------------------------------------
def test_static_figures_hand_computed(bundle: Path) -> None:
    from edgeprune.runtime.bench.costs import bundle_layer_shapes
    from edgeprune.runtime.bundle import read_bundle

    shapes = bundle_layer_shapes(read_bundle(bundle))
    assert shapes == [LayerShape(3, 4, 5, "relu"), LayerShape(2, 3, 4, "identity")]
    static = static_figures(shapes, bundle)
    l1, l2, total = static["layers"][0], static["layers"][1], static["total"]
    assert (l1["macs_dense"], l1["macs_effective"], l2["macs_dense"], l2["macs_effective"]) == (
        12, 5, 6, 4)
    assert l1["bytes_dense_fp32"] == 4 * (12 + 3) and l2["bytes_dense_fp32"] == 4 * (6 + 2)
    assert l1["bytes_csr"] == 4 * (5 + 5 + 4 + 3) and l2["bytes_csr"] == 4 * (4 + 4 + 3 + 2)
    assert l1["words_read_dense"] == 12 + 3 + 4 and l2["words_read_dense"] == 6 + 2 + 3
    assert l1["words_read_csr"] == 10 + 4 + 3 + 4 and l2["words_read_csr"] == 8 + 3 + 2 + 3
    assert total == {
        "params_dense": 18, "params_nnz": 9, "biases": 5, "macs_dense": 18,
        "macs_effective": 9, "bytes_dense_fp32": 92, "bytes_csr": 120,
        "words_read_dense": 30, "words_read_csr": 37, "layers": 2,
        "density": 0.5, "sparsity": 0.5,
    }
    assert static["file"]["bytes_on_disk"] == bundle.stat().st_size
    assert 0 < static["file"]["gzip_bytes"]

    energy = energy_proxy(total, PROFILES["generic45nm"])  # 1 MiB cache: everything in SRAM
    assert energy["dense"]["memory"] == energy["csr"]["memory"] == "sram"
    assert energy["dense"]["total_pj"] == pytest.approx(18 * 4.6 + 30 * 5.0)
    assert energy["csr"]["total_pj"] == pytest.approx(9 * 4.6 + 37 * 5.0)
    assert "proxy" in energy["note"]

    tiny = load_energy_profile_from(dict(base="generic45nm", cache_bytes=100))
    energy = energy_proxy(total, tiny)  # 92 dense bytes fit, 120 CSR bytes do not
    assert (energy["dense"]["memory"], energy["csr"]["memory"]) == ("sram", "dram")
    assert energy["csr"]["total_pj"] == pytest.approx(9 * 4.6 + 37 * 640.0)


def load_energy_profile_from(obj: dict, tmp: Path | None = None):
    from edgeprune.runtime.bench.energy import profile_from_mapping

    return profile_from_mapping(obj, "test.json")


def test_energy_profiles_and_user_file_validation(tmp_path: Path) -> None:
    assert load_energy_profile(None).name == "generic45nm"
    rpi4, rpi5 = load_energy_profile("rpi4"), load_energy_profile("rpi5")
    assert rpi4.cache_bytes == 1 << 20 and rpi5.cache_bytes == 2 << 20
    assert rpi4.load_w > rpi4.idle_w and "Horowitz" in rpi4.source
    good = tmp_path / "board.json"
    good.write_text(json.dumps({"name": "myboard", "e_mult_pj": 1, "e_add_pj": 0.5,
                                "e_sram_pj": 2, "e_dram_pj": 100, "cache_bytes": 4096,
                                "idle_w": 1.0, "load_w": 2.5, "source": "datasheet"}))
    prof = load_energy_profile(str(good))
    assert (prof.name, prof.e_dram_pj, prof.cache_bytes, prof.source) == (
        "myboard", 100.0, 4096, "datasheet")
    based = tmp_path / "based.json"
    based.write_text(json.dumps({"base": "rpi5", "e_dram_pj": 320}))
    assert load_energy_profile(based).cache_bytes == 2 << 20
    cases = {
        "[1, 2]": "JSON object",
        '{"base": "rpi4", "e_dram": 1}': "unknown key",
        '{"e_mult_pj": 1}': "missing",
        '{"base": "rpi4", "e_add_pj": -1}': "e_add_pj",
        '{"base": "rpi4", "cache_bytes": 1.5}': "cache_bytes",
        '{"base": "rpi4", "idle_w": 9}': "load_w",
        '{"base": "rpi9"}': "base",
        "{nope": "not valid JSON",
    }
    for k, (text, match) in enumerate(cases.items()):
        bad = tmp_path / f"bad{k}.json"
        bad.write_text(text)
        with pytest.raises(EnergyProfileError, match=match) as info:
            load_energy_profile(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(EnergyProfileError, match="unknown energy profile"):
        load_energy_profile("rpi9")
    with pytest.raises(EnergyProfileError, match="no such file"):
        load_energy_profile(str(tmp_path / "missing.json"))


# -- statistics -------------------------------------------------------------------------------
def test_percentiles_and_latency_stats() -> None:
    assert percentiles([1, 2, 3, 4, 5]) == [3.0, 4.6, pytest.approx(4.96)]
    assert percentiles(np.arange(101), (50, 90, 99)) == [50.0, 90.0, 99.0]
    assert percentiles([10, 20], (50,)) == [15.0]
    assert percentiles([7], (50, 99)) == [7.0, 7.0]
    with pytest.raises(ValueError):
        percentiles([])
    stats = latency_stats([1000, 2000, 3000, 4000], batch=8)  # ns
    assert stats["runs"] == 4 and stats["p50_us"] == 2.5 and stats["mean_us"] == 2.5
    assert stats["std_us"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert stats["throughput_sps"] == pytest.approx(8 / 2.5e-6)
    assert latency_stats([5000], 1)["std_us"] == 0.0
    calls = []
    samples = time_calls(calls.append, 1, warmup=3, runs=5, min_time=0.0)
    assert len(samples) == 5 and len(calls) == 8 and all(s >= 0 for s in samples)


# -- runtime kernel choice --------------------------------------------------------------------
def test_auto_dense_csr_outputs_identical(tmp_path: Path) -> None:
    net = mixed_net()
    path = save_bundle(net, tmp_path / "mixed.npz")
    x = np.random.default_rng(1).normal(size=(7, net.input_dim)).astype(np.float32)
    models = {k: load(path, kernel=k) for k in ("auto", "dense", "csr")}
    assert models["auto"].kernels == ["csr", "dense", "dense"]  # static rule: density < 0.3
    ref = net.forward(x)
    for batch in (x, x[:1], x[2]):
        outs = {k: m(batch) for k, m in models.items()}
        for out in outs.values():
            assert np.abs(out - ref[: len(batch)] if batch.ndim == 2 else out - ref[2]).max() < 1e-5
        # auto is bit-identical to the same per-layer choice forced
        forced = load(path, kernel=models["auto"].kernels)
        np.testing.assert_array_equal(outs["auto"], forced(batch))
    # results are fresh arrays, not views of reused buffers
    model = models["csr"]
    first = model(x)
    second = model(x * 2)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, model(x))
    out = np.empty((7, net.output_dim), np.float32)
    assert model(x, out=out) is out and np.array_equal(out, first)
    with pytest.raises(ValueError, match="out must be"):
        model(x, out=np.empty((7, 3), np.float32))
    twin = model.clone()
    np.testing.assert_array_equal(twin(x), first)


def test_kernel_profile_batch_dependent_choice(tmp_path: Path) -> None:
    net = mixed_net()
    path = save_bundle(net, tmp_path / "mixed.npz")
    prof = KernelProfile(crossover=((1, 0.8), (64, 0.05)))
    assert prof.threshold(1) == 0.8 and prof.threshold(1000) == 0.05
    assert prof.threshold(8) == pytest.approx(0.8 + (0.05 - 0.8) * 3 / 6)
    model = load(path, profile=prof)
    assert model.kernels_for(1) == ["csr", "csr", "dense"]
    assert model.kernels_for(64) == ["dense", "dense", "dense"]
    x = np.random.default_rng(2).normal(size=(64, net.input_dim)).astype(np.float32)
    np.testing.assert_allclose(model(x), net.forward(x), atol=1e-5)
    np.testing.assert_allclose(model(x[0]), net.forward(x[:1])[0], atol=1e-5)
    assert load(path, profile="static").kernels == ["csr", "dense", "dense"]


def test_calibrate_round_trip(tmp_path: Path, isolated_home: Path) -> None:
    from edgeprune.runtime.bench.calibrate import calibrate_and_save

    net = mixed_net()
    path = save_bundle(net, tmp_path / "mixed.npz")
    prof, target = calibrate_and_save(shapes=[(16, 18), (12, 16)], batches=(1, 8),
                                      densities=(0.1, 0.5, 1.0), warmup=0, runs=2, min_time=0.0)
    assert target == default_profile_path() == isolated_home / "kernel_profile.json"
    back = load_kernel_profile(target)
    assert [b for b, _ in back.crossover] == [1, 8]
    assert all(0.0 <= d <= 1.0 for _, d in back.crossover)
    assert back.crossover == prof.crossover and back.device["shapes"] == [[16, 18], [12, 16]]
    # the runtime reuses the saved profile by default
    model = load(path)
    assert model.profile is not None and model.profile.crossover == back.crossover
    assert "profile" in model.kernel_rule
    # a hand-written profile at the default location decides auto
    save_kernel_profile([(1, 1.0), (8, 0.0)])
    model = load(path)
    assert model.kernels_for(1) == ["csr", "csr", "dense"]
    assert model.kernels_for(8) == ["dense", "dense", "dense"]
    # a corrupt default profile warns and falls back to the static rule
    target.write_text("{broken")
    with pytest.warns(RuntimeWarning, match="ignoring kernel profile"):
        assert load(path).kernels == ["csr", "dense", "dense"]
    with pytest.raises(KernelProfileError, match="not valid JSON"):
        load(path, profile=target)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "edgeprune-kernel-profile", "version": 1,
                               "crossover": [{"batch": 0, "density": 0.3}]}))
    with pytest.raises(KernelProfileError, match="batch"):
        load_kernel_profile(bad)


# -- backends and the results ------------------------------------------------------------------
def test_backend_skipping_when_import_fails(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", None)
    for cached in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):  # earlier tests
        monkeypatch.setitem(sys.modules, cached, None)
    backends = resolve_backends("auto")
    assert [b.name for b in backends] == ["edgeprune-auto", "edgeprune-csr", "edgeprune-dense",
                                          "onnxruntime", "litert", "torch"]
    ok, note = OnnxRuntimeBackend().available()
    assert not ok and "onnxruntime" in note and "\n" not in note
    assert not TorchBackend().available()[0]
    results = run_benchmark([(bundle, "npz")], backends, batches=[1], **FAST)
    skipped = {s["backend"]: s["reason"] for s in results["skipped"]}
    assert set(skipped) == {"onnxruntime", "litert", "torch"}
    assert "pip install" in skipped["litert"]
    assert {r["backend"] for r in results["latency"]} == {
        "edgeprune-auto", "edgeprune-csr", "edgeprune-dense"}
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        resolve_backends("edgeprune,gpu")


def check_schema(results: dict) -> None:
    assert set(TOP_LEVEL_KEYS) <= set(results) and results["schema_version"] == 2
    env = results["environment"]
    assert isinstance(env["python"], str) and isinstance(env["cpu_count"], int)
    assert isinstance(env["libraries"], dict) and env["libraries"]["numpy"]
    for key in ("e_mult_pj", "e_add_pj", "e_sram_pj", "e_dram_pj"):
        assert isinstance(results["energy_profile"][key], float)
    assert "proxy" in results["energy_profile"]["note"]
    for art in results["artifacts"]:
        assert isinstance(art["path"], str) and art["format"] in ("npz", "onnx", "tflite", "pt")
        assert isinstance(art["static"]["file"]["bytes_on_disk"], int)
        if art["static"]["total"] is not None:
            assert isinstance(art["static"]["layers"], list)
            assert isinstance(art["energy"]["csr"]["total_pj"], float)
    for row in results["latency"]:
        assert set(LATENCY_KEYS) <= set(row)
        assert isinstance(row["batch"], int) and isinstance(row["runs"], int)
        for key in LATENCY_KEYS[4:-1]:
            assert isinstance(row[key], float) and row[key] >= 0
        assert isinstance(row["unstable"], bool)
    for row in results["skipped"]:
        assert isinstance(row["backend"], str) and isinstance(row["reason"], str)
    assert set(results["comparisons"]) == {"vs_onnxruntime", "auto_vs_forced"}


def tiny_onnx(net: CompactNetwork, path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, h = [], [], "input"
    for k, layer in enumerate(net.layers):
        inits += [numpy_helper.from_array(layer.weight, f"W{k}"),
                  numpy_helper.from_array(layer.bias, f"b{k}")]
        nodes.append(helper.make_node("Gemm", [h, f"W{k}", f"b{k}"], [f"z{k}"], transB=1))
        h = f"z{k}"
        if layer.activation == "relu":
            nodes.append(helper.make_node("Relu", [h], [f"a{k}"]))
            h = f"a{k}"
    nodes.append(helper.make_node("Identity", [h], ["output"]))
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["B", 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["B", 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_run_benchmark_with_onnx_and_schema(bundle: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    onnx_path = tiny_onnx(two_layer_net(), tmp_path / "model.onnx")
    opts = benchmark.BenchOptions(batches=[1, 3], backends="edgeprune,onnxruntime",
                                  energy_profile="rpi4", **FAST)
    results = benchmark.run([tmp_path], opts)  # a directory: every artifact in it
    check_schema(json.loads(to_json(results)))
    assert [a["format"] for a in results["artifacts"]] == ["npz", "onnx"]
    onnx_static = results["artifacts"][1]["static"]["total"]
    assert onnx_static["macs_dense"] == 18 and onnx_static["macs_effective"] == 9
    rows = {(r["backend"], r["batch"]) for r in results["latency"]}
    assert ("onnxruntime", 3) in rows and ("edgeprune-auto", 1) in rows
    # rpi4's power figures x this host's latency: a proxy, never "board energy", off the board
    on_pi4 = results["energy_profile"]["measured_on_profiled_board"]
    key = "board_energy_uj_per_sample" if on_pi4 else "proxy_board_energy_uj_per_sample"
    assert all(key in r for r in results["latency"])
    assert on_pi4 or "proxy only" in results["energy_profile"]["board_energy_note"]
    ratios = results["comparisons"]["vs_onnxruntime"]
    assert len(ratios) == 6 and all(r["p50_ratio"] > 0 for r in ratios)
    assert len(results["comparisons"]["auto_vs_forced"]) == 2
    loaded = OnnxRuntimeBackend().load(onnx_path, 1)
    x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    np.testing.assert_allclose(loaded.run(x), load(bundle)(x), atol=1e-5)
    md = to_markdown(results)
    assert "proxy, not a measurement" in md and "Horowitz" in md and "| onnxruntime |" in md


def test_litert_backend_if_exporter_available(tmp_path: Path) -> None:
    try:
        from edgeprune.exporters.tflite import export_tflite, tflite_available
    except ImportError:
        pytest.skip("the TFLite exporter is not importable")
    from edgeprune.bench.backends import LiteRTBackend

    if not (tflite_available() and LiteRTBackend().available()[0]):
        pytest.skip("tflite schema bindings or LiteRT not installed")
    net = two_layer_net()
    path = export_tflite(net, tmp_path / "model.tflite")
    results = run_benchmark(discover_artifacts([path]), [LiteRTBackend()], batches=[1, 2], **FAST)
    assert [r["batch"] for r in results["latency"]] == [1, 2], results["skipped"]
    loaded = LiteRTBackend().load(path, 1)
    x = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    np.testing.assert_allclose(loaded.run(x), net.forward(x), atol=1e-5)


def test_torch_backend_on_checkpoint(small_model: Path) -> None:
    pytest.importorskip("torch")
    results = run_benchmark([(small_model, "pt")], [TorchBackend()], batches=[2], **FAST)
    assert [r["backend"] for r in results["latency"]] == ["torch"], results["skipped"]
    from edgeprune.inspector import layer_source

    layers, _ = layer_source(small_model, "pt")
    assert [(s.rows, s.cols) for s in layers] == [(6, 12), (3, 6), (6, 3), (12, 6)]


def test_artifact_discovery_errors(tmp_path: Path, bundle: Path) -> None:
    assert artifact_format("a/b/pruned.pt") == "pt" and artifact_format("x.TFLITE") == "tflite"
    with pytest.raises(ValueError, match="unknown artifact type"):
        artifact_format("model.h5")
    with pytest.raises(ValueError, match="no such file"):
        discover_artifacts([tmp_path / "missing.npz"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no"):
        discover_artifacts([empty])
    assert RuntimeBackend("csr").load(bundle, 1).kernels(1) == ["csr", "csr"]


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_bench(bundle: Path, tmp_path: Path) -> None:
    out_json, out_md, out_png = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"
    runner = CliRunner()
    result = runner.invoke(main, [
        "bench", str(bundle), "--batch", "1,2", "--backends", "edgeprune", "--warmup", "1",
        "--runs", "2", "--min-time", "0", "--json", str(out_json), "--md", str(out_md),
        "--plot", str(out_png), "--profile", "rpi5", "-q"])
    assert result.exit_code == 0, result.output
    assert "edgeprune-auto" in result.output and "proxy" in result.output
    data = json.loads(out_json.read_text())
    check_schema(data)
    assert len(data["latency"]) == 6 and data["energy_profile"]["name"] == "rpi5"
    assert "# edgeprune bench" in out_md.read_text()
    if importlib.util.find_spec("matplotlib") is not None:
        assert out_png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("args", "message"), [
    (["--batch", "1,x"], "not an integer"),
    (["--batch", "0"], ">= 1"),
    (["--backends", "tpu"], "unknown backend"),
    (["--profile", "rpi9"], "unknown energy profile"),
    (["--kernel-profile", "/nonexistent/kp.json"], "no such kernel profile"),
])
def test_cli_one_line_errors(bundle: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["bench", str(bundle), "--runs", "1", *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.startswith("Error")]) == 1


def test_cli_missing_artifact_and_calibrate(tmp_path: Path, bundle: Path) -> None:
    result = CliRunner().invoke(main, ["bench", str(tmp_path / "nope.npz")])
    assert result.exit_code != 0 and "no such file" in result.output
    result = CliRunner().invoke(main, ["bench"])
    assert result.exit_code != 0 and "ARTIFACT" in result.output
    out = tmp_path / "kp.json"
    result = CliRunner().invoke(main, ["bench", "--calibrate", "--profile-out", str(out),
                                       "--batch", "2", str(bundle), "--runs", "1",
                                       "--min-time", "0", "--warmup", "0", "-q"])
    assert result.exit_code == 0, result.output
    prof = load_kernel_profile(out)
    assert {1, 2, 256} <= {b for b, _ in prof.crossover}
    assert prof.device["shapes"] == [[3, 4], [2, 3]]
    assert "wrote kernel profile" in result.output and "edgeprune-auto" in result.output


def test_outputs_and_kernel_profile_use_the_one_atomic_writer(bundle: Path, tmp_path: Path) -> None:
    """bench JSON/Markdown and kernel profiles are written 0644 (fsync + chmod), not mkstemp's
    0600, and leave no temporary file behind."""
    results = benchmark.run([bundle], benchmark.BenchOptions(batches=[1], backends="edgeprune-csr",
                                                             warmup=0, runs=1, min_time=0.0))
    written, _ = benchmark.write_outputs(results, str(tmp_path / "o" / "r.json"),
                                         str(tmp_path / "o" / "r.md"))
    profile = save_kernel_profile([(1, 0.3)], tmp_path / "o" / "kp.json")
    for path in [*map(Path, written), profile]:
        assert path.stat().st_mode & 0o777 == 0o644, path
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["kp.json", "r.json", "r.md"]


def test_latency_stats_flag_unstable_runs() -> None:
    steady = latency_stats([1000] * 50 + [1100] * 50, 1)
    assert not steady["unstable"] and steady["cv"] < 0.1 and steady["p10_us"] == 1.0
    spiky = latency_stats([1000] * 97 + [50_000] * 3, 1)  # p99 / p50 far above 5
    assert spiky["unstable"] and spiky["p50_us"] == 1.0
    rare = latency_stats([1000] * 995 + [1_000_000] * 5, 1)  # p99 = p50, but std / mean ~ 12
    assert rare["unstable"] and rare["p99_us"] == rare["p50_us"] and rare["cv"] > 1
    wide = latency_stats([1000, 3000] * 50, 1)  # std / mean = 0.5, p99 / p50 = 1.5: stable
    assert not wide["unstable"]


def _fake_timings(monkeypatch: pytest.MonkeyPatch, spiky_batch: int) -> None:
    """Replace the clock: steady 1 ms calls, except at ``spiky_batch`` (3 calls of 50 ms)."""
    from edgeprune.runtime.bench import harness

    def fake_time_calls(fn, x, **_timing):
        fn(x)  # the model still runs once
        return [1_000_000] * 97 + [50_000_000] * 3 if len(x) == spiky_batch \
            else [1_000_000] * 50 + [1_100_000] * 50

    monkeypatch.setattr(harness, "time_calls", fake_time_calls)


def test_cli_bench_console_shows_key_figures_and_flags_unstable(
        bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_timings(monkeypatch, spiky_batch=2)
    out_json, out_md = tmp_path / "r.json", tmp_path / "r.md"
    result = CliRunner().invoke(main, ["bench", str(bundle), "--batch", "1,2", "--backends",
                                       "edgeprune-csr", "--json", str(out_json), "--md",
                                       str(out_md), "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    art = data["artifacts"][0]
    energy_nj = art["energy"]["csr"]["total_pj"] / 1e3
    lines = result.output.splitlines()
    static = next(ln for ln in lines if ln.startswith("model.npz") and " npz " in ln)
    # two_layer_net: 5 + 4 non-zeros; CSR bytes 4 * ((2*5 + 4 + 3) + (2*4 + 3 + 2))
    assert static.split()[2:] == ["9", "120", f"{art['static']['file']['bytes_on_disk']:,}",
                                  f"{energy_nj:,.1f}"]
    assert "MACs/sample" in result.output and "energy nJ" in result.output
    rows = [ln.split() for ln in lines if ln.startswith("model.npz") and "edgeprune-csr" in ln]
    assert [(r[2], r[3], r[-1]) for r in rows] == [("1", "1050.0", "952"),
                                                   ("2", "1000.0", "UNSTABLE")]
    assert any(ln.startswith("unstable = std/mean > 1.0 or p99/p50 > 5.0") for ln in lines)
    assert [r["unstable"] for r in data["latency"]] == [False, True]
    assert data["schema_version"] == 2 and data["latency"][1]["cv"] > 1.0
    md = out_md.read_text()
    assert "| **unstable** |" in md and "**Note:** unstable = std/mean" in md


def test_plot_has_error_bars_and_batch_ticks(bundle: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    from edgeprune.bench.plot import latency_figure

    _fake_timings(monkeypatch, spiky_batch=3)
    results = benchmark.run([bundle], benchmark.BenchOptions(batches=[1, 3, 32],
                                                             backends="edgeprune-csr"))
    fig = latency_figure(results, plt)
    ax = fig.axes[0]
    assert list(ax.get_xticks()) == [1, 3, 32]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "3", "32"]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 1 and bars[0].has_yerr
    spans = [tuple(seg[:, 1]) for seg in bars[0].lines[2][0].get_segments()]
    rows = sorted(results["latency"], key=lambda r: r["batch"])
    assert np.allclose(spans, [(r["p10_us"], r["p90_us"]) for r in rows])
    plt.close(fig)


def test_litert_info_line_does_not_leak(tmp_path: Path) -> None:
    """LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate" on fd 2 when its default
    delegate is applied; in a fresh process (it prints once), nothing reaches stderr."""
    import subprocess

    try:
        from edgeprune.exporters.tflite import export_tflite, tflite_available
    except ImportError:
        pytest.skip("the TFLite exporter is not importable")
    from edgeprune.bench.backends import LiteRTBackend

    if not (tflite_available() and LiteRTBackend().available()[0]):
        pytest.skip("tflite schema bindings or LiteRT not installed")
    path = export_tflite(two_layer_net(), tmp_path / "model.tflite", verify=False)
    code = ("import numpy as np\n"
            "from edgeprune.bench.backends import LiteRTBackend\n"
            f"m = LiteRTBackend().load({str(path)!r}, 1)\n"
            "m.run(np.zeros((1, 4), np.float32)); m.run(np.zeros((3, 4), np.float32))\n"
            "print('ran')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout == "ran\n", done.stderr
    assert done.stderr == ""
