"""The CLI through click's CliRunner: every command end to end, and one-line errors."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from edgeprune import __version__
from edgeprune.cli import main


@pytest.fixture
def runner():
    return CliRunner()


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def _fails(result, *needles):
    assert result.exit_code != 0
    out = result.output.strip()
    assert "Traceback" not in out
    assert out.startswith("Error:"), out
    assert len(out.splitlines()) == 1, out
    for n in needles:
        assert n in out, out
    return out


def test_version_and_help(runner):
    assert __version__ in _ok(runner.invoke(main, ["--version"]))
    for cmd in ([], ["train"], ["score"], ["compress"], ["run"], ["info"]):
        assert "Usage" in _ok(runner.invoke(main, [*cmd, "-h"]))


def test_train_score_compress_run_info(runner, tmp_path):
    model = tmp_path / "m.pt"
    out = _ok(runner.invoke(main, ["train", "--data", "synthetic6", "--hidden", "3", "--activation", "tanh",
                                   "--epochs", "2", "-q", "-o", str(model)]))
    assert "test_mse" in out and model.is_file()
    scores = tmp_path / "s.npz"
    out = _ok(runner.invoke(main, ["score", str(model), "--data", "synthetic6", "--samples", "16",
                                   "--json", "-q", "-o", str(scores)]))
    summary = json.loads(out)
    assert [r["layer"] for r in summary["layers"]] == [1, 2]
    with np.load(scores) as z:
        assert z["li1"].shape == (3, 6) and z["ui1"].shape == (6,) and z["li2"].shape == (6, 3)
        assert {"signed1", "var1", "signed2", "var2"} <= set(z.files)
    outdir = tmp_path / "c"
    out = _ok(runner.invoke(main, ["compress", str(model), "--data", "synthetic6", "-m", "0.8",
                                   "--scores", str(scores), "-q", "-o", str(outdir)]))
    assert "links kept" in out and "runtime vs PyTorch" in out
    rep = json.loads((outdir / "report.json").read_text())
    assert rep["importance_level"] == 0.8 and "sparsity" in rep and "unused_inputs" in rep
    x = np.random.default_rng(0).random((5, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    _ok(runner.invoke(main, ["run", str(outdir / "model.npz"), str(tmp_path / "x.npy"),
                             "-o", str(tmp_path / "y.npy")]))
    assert np.load(tmp_path / "y.npy").shape == (5, 6)
    _ok(runner.invoke(main, ["run", str(outdir / "model.npz"), str(tmp_path / "x.npy"),
                             "--encode", "-o", str(tmp_path / "z.npy")]))
    assert np.load(tmp_path / "z.npy").shape == (5, 3)
    info = json.loads(_ok(runner.invoke(main, ["info", str(outdir / "model.npz"), "--json"])))
    assert info["format"] == "edgeprune-csr" and info["gzip_bytes"] > 0
    assert "layer 1" in _ok(runner.invoke(main, ["info", str(outdir)]))
    assert "pytorch-checkpoint" in _ok(runner.invoke(main, ["info", str(outdir / "pruned.pt")]))


def test_plain_sequential_state_dict_compresses(runner, tmp_path, npy_data):
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3), nn.ReLU(),
                        nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 12), nn.Sigmoid())
    torch.save(seq.state_dict(), tmp_path / "sd.pt")
    _fails(runner.invoke(main, ["compress", str(tmp_path / "sd.pt"), "--data", npy_data,
                                "-m", "0.8", "-o", str(tmp_path / "o")]), "--activations")
    out = _ok(runner.invoke(main, ["compress", str(tmp_path / "sd.pt"), "--data", npy_data,
                                   "--activations", "relu,relu,relu,sigmoid", "--latent", "2",
                                   "--sparsity", "0.5", "--samples", "32", "-q",
                                   "-o", str(tmp_path / "o")]))
    assert "achieved sparsity" in out
    assert (tmp_path / "o" / "model.npz").is_file()


@pytest.mark.parametrize("args,needle", [
    (["--data", "nosuchdata", "-m", "0.8"], "nosuchdata"),
    (["--data", "digits", "-m", "0.8"], "features"),
    (["--data", "{npy}", "-m", "0"], "--importance-level"),
    (["--data", "{npy}", "-m", "1.5"], "--importance-level"),
    (["--data", "{npy}", "--sparsity", "1.0"], "--sparsity"),
    (["--data", "{npy}", "--sparsity", "-0.1"], "--sparsity"),
    (["--data", "{npy}"], "exactly one"),
])
def test_bad_compress_input_is_one_line_and_writes_nothing(runner, tmp_path, small_model,
                                                           npy_data, args, needle):
    args = [a.replace("{npy}", npy_data) for a in args]
    outdir = tmp_path / "never"
    _fails(runner.invoke(main, ["compress", str(small_model), *args, "-q", "-o", str(outdir)]),
           needle)
    assert not outdir.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".never")]


def test_pickled_checkpoint_needs_flag(runner, tmp_path, npy_data):
    seq = nn.Sequential(nn.Linear(12, 4), nn.ReLU(), nn.Linear(4, 12), nn.Sigmoid())
    torch.save(seq, tmp_path / "p.pt")
    _fails(runner.invoke(main, ["compress", str(tmp_path / "p.pt"), "--data", npy_data,
                                "-m", "0.8", "-o", str(tmp_path / "o")]), "--trust-code")
    assert not (tmp_path / "o").exists()
    _ok(runner.invoke(main, ["compress", str(tmp_path / "p.pt"), "--data", npy_data, "-m", "0.8",
                             "--trust-pickle", "--samples", "16", "-q",
                             "-o", str(tmp_path / "o")]))


def test_run_rejects_corrupted_bundle(runner, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    np.save(tmp_path / "x.npy", np.zeros((2, 6), np.float32))
    _fails(runner.invoke(main, ["run", str(bad), str(tmp_path / "x.npy"), "-o",
                                str(tmp_path / "y.npy")]), "bad.npz")
    assert not (tmp_path / "y.npy").exists()


def test_run_rejects_wrong_width(runner, tmp_path, small_model, npy_data):
    _ok(runner.invoke(main, ["compress", str(small_model), "--data", npy_data, "-m", "0.9",
                             "--method", "magnitude", "-q", "-o", str(tmp_path / "c")]))
    np.save(tmp_path / "x.npy", np.zeros((2, 5), np.float32))
    _fails(runner.invoke(main, ["run", str(tmp_path / "c" / "model.npz"), str(tmp_path / "x.npy"),
                                "-o", str(tmp_path / "y.npy")]))
    assert not (tmp_path / "y.npy").exists()


def test_export_command_writes_verified_artifacts(runner, tmp_path, small_model, npy_data):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ai_edge_litert")
    _ok(runner.invoke(main, ["compress", str(small_model), "--data", npy_data, "--sparsity", "0.8",
                             "--method", "magnitude", "--export", "npz", "-q",
                             "-o", str(tmp_path / "c")]))
    assert not (tmp_path / "c" / "model.onnx").exists()
    out = _ok(runner.invoke(main, ["export", str(tmp_path / "c"), "--format", "onnx,tflite,npz",
                                   "--onnx-sparse-initializers", "--tflite-sparse",
                                   "-o", str(tmp_path / "e")]))
    assert out.count("max |diff| vs PyTorch") == 3
    for fmt in ("onnx", "tflite", "npz"):
        assert (tmp_path / "e" / f"model.{fmt}").stat().st_size > 0
    info = json.loads(_ok(runner.invoke(main, ["info", str(tmp_path / "e" / "model.onnx"),
                                               "--json"])))
    assert info["format"] == "onnx" and info["gzip_bytes"] > 0
    _fails(runner.invoke(main, ["export", str(tmp_path / "c"), "--format", "pdf",
                                "-o", str(tmp_path / "x")]), "--format")
    assert not (tmp_path / "x").exists()


def test_score_auto_reports_pilot_and_peak_memory(runner, tmp_path):
    """A 30-14-30 relu/sigmoid autoencoder: auto's pilot decides both layers (fan-in > 12), the
    report names the estimators used and the peak memory; --estimator analytic and a target
    that analytic cannot meet both work from the CLI."""
    from edgeprune.checkpoint import save_checkpoint
    from tests.factories import make_network

    net = make_network(["relu", "sigmoid"], [30, 14, 30], latent=1)
    model = tmp_path / "m.pt"
    save_checkpoint(net, model)
    x = np.random.default_rng(0).random((200, 30)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    data = f"npy:{tmp_path / 'x.npy'}"
    out = _ok(runner.invoke(main, ["score", str(model), "--data", data, "--samples", "32",
                                   "--json", "-q", "-o", str(tmp_path / "s.npz")]))
    summary = json.loads(out)
    assert all(r["estimator"] in ("analytic", "permutation") and "reason" in r["auto"]
               for r in summary["layers"])
    peak = summary["peak_memory_bytes"]
    assert summary["memory_budget_bytes"] == 2 * 1024**3
    assert isinstance(peak, int) and 0 <= peak < 1024**3  # a 30-14-30 net on 32 samples
    assert all(isinstance(r["peak_memory_bytes"], int) and 0 <= r["peak_memory_bytes"] < 1024**3
               for r in summary["layers"])
    with np.load(tmp_path / "s.npz") as z:  # what was printed is what the scores file records
        assert json.loads(str(z["meta"]))["peak_memory_bytes"] == peak
    out = _ok(runner.invoke(main, ["score", str(model), "--data", data, "--samples", "32",
                                   "--target-rel-error", "0.0001", "--json", "-q",
                                   "-o", str(tmp_path / "s2.npz")]))
    assert json.loads(out)["layers"][0]["estimator"] == "permutation"
    out = _ok(runner.invoke(main, ["score", str(model), "--data", data, "--samples", "32",
                                   "--estimator", "analytic", "-o", str(tmp_path / "s3.npz")]))
    assert "analytic" in out and "peak memory" in out
    with np.load(tmp_path / "s3.npz") as z:
        assert z["li1"].shape == (14, 30) and "li_bias1" not in z.files
    with np.load(tmp_path / "s2.npz") as z:
        assert "li_bias1" in z.files and np.all(z["li_bias1"] >= 0)


def test_every_option_of_every_command_says_what_it_does():
    import click

    missing = [(name, p.opts[0]) for name, cmd in main.commands.items() for p in cmd.params
               if isinstance(p, click.Option) and not (p.help or "").strip()]
    assert missing == []


def test_text_numbers_from_one_json_indexes_from_zero(runner, tmp_path, small_model, npy_data):
    """One numbering convention: report.md / explain.md / notes say x1..xn; JSON keeps 0-based
    positions (the README says so)."""
    out = tmp_path / "c"
    _ok(runner.invoke(main, ["compress", str(small_model), "--data", npy_data, "--sparsity",
                             "0.6", "--method", "magnitude", "--export", "npz", "-q",
                             "-o", str(out)]))
    rep = json.loads((out / "report.json").read_text())
    assert 0 in rep["unused_inputs"] and 5 in rep["unused_inputs"]  # the weak inputs, 0-based
    md = (out / "report.md").read_text()
    assert "x1, " in md and "x6" in md and "numbered from 1" in md
    _ok(runner.invoke(main, ["explain", str(out), "-q", "-o", str(tmp_path / "e")]))
    never = json.loads((tmp_path / "e" / "explain.json").read_text())["never_read"]
    assert {e["index"] for e in never} >= {0, 5} and {e["name"] for e in never} >= {"x1", "x6"}
