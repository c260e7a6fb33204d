"""ShapNet bundles from the CLI: ``run`` (prediction, --explanations, --skip-threshold) and
``bench --skip-threshold`` (modules skipped, latency saved per input), with one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune.cli import main
from edgeprune.exporters.shapnet import save_shapnet_bundle
from edgeprune.runtime.shapnet import load_shapnet
from edgeprune.shapnet.compile import compile_spec
from tests.shapnet_cases import at_reference, random_spec


@pytest.fixture
def files(tmp_path):
    spec = random_spec(features=8, inputs=7, seed=2)
    bundle = save_shapnet_bundle(compile_spec(spec), tmp_path / "model.npz")
    x = np.random.default_rng(3).normal(size=(12, 7)).astype(np.float32)
    x = at_reference(spec, x, slice(0, 6), 3)
    np.save(tmp_path / "x.npy", x)
    return bundle, tmp_path / "x.npy", x


def test_run_writes_prediction_explanations_and_skips(files, tmp_path):
    bundle, inputs, x = files
    runner = CliRunner()
    res = runner.invoke(main, ["run", str(bundle), str(inputs), "-o", str(tmp_path / "y.npy"),
                               "--explanations", str(tmp_path / "e.npy")])
    assert res.exit_code == 0, res.output
    model = load_shapnet(bundle)
    pred, expl = model(x)
    assert np.array_equal(np.load(tmp_path / "y.npy"), pred)
    assert np.array_equal(np.load(tmp_path / "e.npy"), expl)
    res = runner.invoke(main, ["run", str(bundle), str(inputs), "-o", str(tmp_path / "y0.npy"),
                               "--skip-threshold", "0"])
    assert res.exit_code == 0, res.output
    assert "Shapley modules per sample (output change <= 0)" in res.output
    assert np.array_equal(np.load(tmp_path / "y0.npy"), pred)
    res = runner.invoke(main, ["run", str(bundle), str(inputs), "-o", str(tmp_path / "y1.npy")])
    assert res.exit_code == 0 and np.array_equal(np.load(tmp_path / "y1.npy"), pred)


@pytest.mark.parametrize("extra,message", [
    (["--skip-threshold", "-1"], "--skip-threshold -1.0: must be a finite number >= 0"),
    (["--encode"], "--encode needs an autoencoder bundle"),
    (["--decode", "--skip-threshold", "0"], "--decode needs an autoencoder bundle; a ShapNet"),
    (["--explanations", "SAME"], "--explanations"),
])
def test_run_errors_are_one_line(files, tmp_path, extra, message):
    bundle, inputs, _ = files
    out = tmp_path / "y.npy"
    extra = [str(out) if e == "SAME" else e for e in extra]
    res = CliRunner().invoke(main, ["run", str(bundle), str(inputs), "-o", str(out), *extra])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert message in res.output and len(res.output.strip().splitlines()) == 1


def test_skip_threshold_on_a_plain_bundle_is_refused(tmp_path, small_model):
    from edgeprune.exporters.csr import save_bundle
    from tests.factories import compact_mlp, random_compact_layer

    path = tmp_path / "plain.npz"
    save_bundle(compact_mlp([random_compact_layer(np.random.default_rng(0), 2, 3, "relu")], 3,
                            2), path)
    np.save(tmp_path / "x.npy", np.zeros((2, 3), np.float32))
    res = CliRunner().invoke(main, ["run", str(path), str(tmp_path / "x.npy"), "-o",
                                    str(tmp_path / "y.npy"), "--skip-threshold", "0.1"])
    assert res.exit_code == 1 and "need a ShapNet bundle" in res.output


def test_bench_reports_skipped_modules_and_latency_saved(files, tmp_path):
    bundle, inputs, _ = files
    res = CliRunner().invoke(main, [
        "bench", str(bundle), "--batch", "1", "--backends", "edgeprune-csr", "--warmup", "1",
        "--runs", "5", "--min-time", "0", "--skip-threshold", "0", "--skip-threshold", "0.5",
        "--inputs", str(inputs), "--json", str(tmp_path / "b.json"), "--md",
        str(tmp_path / "b.md"), "-q"])
    assert res.exit_code == 0, res.output
    assert "dynamic pruning, batch 1, 12 inputs" in res.output
    results = json.loads((tmp_path / "b.json").read_text())
    (entry,) = results["dynamic_pruning"]
    rows = entry["thresholds"]
    assert [r["threshold"] for r in rows] == [0.0, 0.5]
    assert rows[0]["max_prediction_change"] == 0.0 and rows[0]["skipped_fraction"] > 0
    assert rows[1]["skipped_fraction"] >= rows[0]["skipped_fraction"]
    for r in rows:
        assert r["latency_saved_us"] == pytest.approx(entry["baseline"]["chain_p50_us"]
                                                      - r["p50_us"])
    assert "ShapNet dynamic pruning" in (tmp_path / "b.md").read_text()


def test_bench_skip_threshold_needs_inputs(files):
    bundle, _, _ = files
    res = CliRunner().invoke(main, ["bench", str(bundle), "--skip-threshold", "0.1"])
    assert res.exit_code == 1 and "--skip-threshold needs --inputs FILE.npy" in res.output


def test_info_describes_the_shapnet_layout(files):
    bundle, _, _ = files
    res = CliRunner().invoke(main, ["info", str(bundle)])
    assert res.exit_code == 0, res.output
    assert "ShapNet (shapnet): prediction 2, explanation 7 x 2" in res.output
    assert "transform 3 (layers 11-15): 4 modules of k=2, channels 4 -> 2" in res.output
    res = CliRunner().invoke(main, ["info", str(bundle), "--json"])
    desc = json.loads(res.output)
    assert desc["version"] == 4 and desc["shapnet"]["features"] == 8


@pytest.fixture
def shapnet_checkpoint(tmp_path):
    """A small Deep ShapNet (16 features, k = 4: two transforms of 4 modules) saved as a
    regression checkpoint trained on synthetic16 (random weights: export does not care)."""
    import torch

    from edgeprune.shapnet import DeepShapNet
    from edgeprune.shapnet.checkpoint import save_shapnet

    torch.manual_seed(0)
    model = DeepShapNet(16, 1, k=4, channels=2, hidden=(4,))
    path = tmp_path / "shapnet.pt"
    save_shapnet(model.eval(), path, "regression", {"trained_on": "synthetic16"})
    return path


def test_export_compiles_a_shapnet_checkpoint(shapnet_checkpoint, tmp_path):
    out = tmp_path / "out"
    runner = CliRunner()
    res = runner.invoke(main, ["export", str(shapnet_checkpoint), "-o", str(out), "--format",
                               "npz,onnx", "--inner-sparsity", "0.5"])
    assert res.exit_code == 0, res.output
    assert "pruned " in res.output and "of the inner MLPs' links (test_mse" in res.output
    assert "compiled 2 Shapley transforms, 8 modules" in res.output
    assert (out / "model.npz").is_file() and (out / "model.onnx").is_file()
    x = np.random.default_rng(0).random((5, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    res = runner.invoke(main, ["run", str(out / "model.npz"), str(tmp_path / "x.npy"), "-o",
                               str(tmp_path / "y.npy"), "--explanations", str(tmp_path / "e.npy")])
    assert res.exit_code == 0, res.output
    expl, pred = np.load(tmp_path / "e.npy"), np.load(tmp_path / "y.npy")
    assert expl.shape == (5, 16, 1) and pred.shape == (5, 1)


@pytest.mark.parametrize("extra,message", [
    (["--quantize", "int8"], "a ShapNet is exported in float32"),
    (["--inner-sparsity", "1.5"], "--inner-sparsity 1.5: give a fraction in [0, 1)"),
])
def test_export_shapnet_errors(shapnet_checkpoint, tmp_path, extra, message):
    res = CliRunner().invoke(main, ["export", str(shapnet_checkpoint), "-o",
                                    str(tmp_path / "o"), "--format", "npz", *extra])
    assert res.exit_code == 1 and message in res.output
    assert not (tmp_path / "o").exists()


def test_inner_sparsity_needs_a_shapnet(tmp_path, small_model):
    res = CliRunner().invoke(main, ["export", str(small_model), "-o", str(tmp_path / "o"),
                                    "--inner-sparsity", "0.5"])
    assert res.exit_code == 1 and "PRUNED is not a ShapNet checkpoint" in res.output
