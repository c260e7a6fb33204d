"""``--quantize int8`` and ``--max-metric-drop`` on compress and export, through the real CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune.checkpoint import load_network
from edgeprune.cli import main
from edgeprune.exporters.quantize import quantized_network
from edgeprune.runtime import load
from edgeprune.torch_network import torch_forward


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _compress(runner, model, data, outdir, *extra):
    return runner.invoke(main, ["compress", str(model), "--data", data, "--method", "magnitude",
                                "--sparsity", "0.5", "--export", "npz", "-q", "-o", str(outdir),
                                *extra])


def test_compress_quantize_int8_writes_a_verified_packed_bundle(runner, tmp_path, small_model,
                                                           npy_data):
    outdir = tmp_path / "q"
    res = _compress(runner, small_model, npy_data, outdir, "--quantize", "int8",
                    "--max-metric-drop", "0.5")
    assert res.exit_code == 0, res.output
    assert "int8 quantization (pruned model, float32 -> int8):" in res.output
    assert "test_mse drop:" in res.output and "within --max-metric-drop 0.5" in res.output
    report = json.loads((outdir / "report.json").read_text())
    stage = report["quantization"]
    assert stage["metric"] == "test_mse" and set(stage["fp32"]) == set(stage["quantized"])
    assert report["artifacts"]["npz"]["quantize"] == "int8"
    assert "## Quantization" in (outdir / "report.md").read_text()
    # the bundle computes exactly the dequantized pruned model
    pruned = load_network(outdir / "pruned.pt")
    x = np.random.default_rng(1).random((32, 12)).astype(np.float32)
    got = load(outdir / "model.npz")(x)
    assert np.abs(got - torch_forward(quantized_network(pruned), x)).max() < 1e-5
    assert np.abs(got - torch_forward(pruned, x)).max() < 0.05
    info = json.loads(runner.invoke(main, ["info", str(outdir / "model.npz"), "--json"]).output)
    assert info["version"] == 3 and {row["weights"] for row in info["layers"]} == {"int8"}
    assert info["container"] == "packed"
    assert info["stored_array_bytes"] < info["in_memory_bytes"]


def test_max_metric_drop_refuses_and_leaves_no_output(runner, tmp_path, small_model, npy_data,
                                                     monkeypatch):
    import edgeprune.exporters.quantize as quantize

    def lossy(net, quantize="int8"):  # a quantizer that loses much more than int8 does
        out = net.copy()
        for layer in out.layers:
            layer.weight = layer.weight * -4.0
        return out

    monkeypatch.setattr(quantize, "quantized_network", lossy)
    outdir = tmp_path / "refused"
    res = _compress(runner, small_model, npy_data, outdir, "--quantize", "int8",
                    "--max-metric-drop", "0.01")
    assert res.exit_code == 1, res.output
    line = res.output.strip().splitlines()[-1]
    assert "--max-metric-drop 0.01: int8 quantization changes test_mse from" in line
    assert "raise --max-metric-drop" in line
    assert not outdir.exists()


@pytest.mark.parametrize("args, expected", [
    (["--max-metric-drop", "0.01"], "--max-metric-drop guards quantization; add --quantize int8"),
    (["--quantize", "int8", "--max-metric-drop", "-1"], "--max-metric-drop -1.0: must be"),
    (["--quantize", "int8", "--max-metric-drop", "nan"], "--max-metric-drop nan: must be"),
    (["--quantize", "int4"], "Invalid value for '--quantize'"),
])
def test_bad_quantize_options_fail_before_work(runner, tmp_path, small_model, npy_data, args,
                                               expected):
    res = _compress(runner, small_model, npy_data, tmp_path / "o", *args)
    assert res.exit_code != 0 and expected in res.output
    assert not (tmp_path / "o").exists()


def test_export_quantize_int8(runner, tmp_path, small_model, npy_data):
    compressed = tmp_path / "c"
    assert _compress(runner, small_model, npy_data, compressed).exit_code == 0
    out = tmp_path / "e"
    res = runner.invoke(main, ["export", str(compressed), "--format", "npz", "--quantize", "int8",
                               "--max-metric-drop", "1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "int8 quantization" in res.output and "model.npz (int8) vs the float32" in res.output
    fp32 = load(compressed / "model.npz")
    x = np.random.default_rng(2).random((8, 12)).astype(np.float32)
    assert np.abs(load(out / "model.npz")(x) - fp32(x)).max() < 0.05


def test_compress_quantize_writes_int8_onnx_and_tflite_verified_against_fp32(runner, tmp_path,
                                                                 small_model, npy_data):
    pytest.importorskip("onnxruntime.quantization")
    from edgeprune.exporters.onnx import run_onnx

    outdir = tmp_path / "q"
    res = runner.invoke(main, ["compress", str(small_model), "--data", npy_data, "--method",
                               "magnitude", "--sparsity", "0.5", "--export", "onnx,tflite",
                               "--tflite-sparse", "--quantize", "int8", "-q", "-o", str(outdir)])
    assert res.exit_code == 0, res.output
    assert "model.onnx (int8 (onnxruntime static QDQ)) vs the float32" in res.output
    art = json.loads((outdir / "report.json").read_text())["artifacts"]["onnx"]
    pruned = load_network(outdir / "pruned.pt")
    x = np.random.default_rng(4).random((16, 12)).astype(np.float32)
    ref = torch_forward(pruned, x)
    assert np.abs(run_onnx(outdir / "model.onnx", x) - ref).max() <= 0.25 * (ref.max() - ref.min())
    assert art["max_abs_diff_vs_fp32"] == art["max_abs_diff_vs_pytorch"]
    from edgeprune.exporters.tflite import run_tflite

    assert "model.tflite (int8 (full-integer, LiteRT)) vs the float32" in res.output
    assert "tflite: int8 weights written dense" in res.output
    got = run_tflite(outdir / "model.tflite", x)
    assert np.abs(got - ref).max() <= 0.25 * (ref.max() - ref.min())


def test_compress_quantize_shared4(runner, tmp_path, small_model, npy_data):
    outdir = tmp_path / "s"
    res = _compress(runner, small_model, npy_data, outdir, "--quantize", "shared4")
    assert res.exit_code == 0, res.output
    assert "shared4 quantization (pruned model, float32 -> shared4):" in res.output
    pruned = load_network(outdir / "pruned.pt")
    x = np.random.default_rng(1).random((32, 12)).astype(np.float32)
    got = load(outdir / "model.npz")(x)
    assert np.abs(got - torch_forward(quantized_network(pruned, "shared4"), x)).max() < 1e-5
    info = json.loads(runner.invoke(main, ["info", str(outdir / "model.npz"), "--json"]).output)
    assert {row["weights"] for row in info["layers"]} == {"shared4"}
