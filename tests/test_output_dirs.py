"""Output directories are all-or-nothing (issue 19, class 3): a re-run replaces the whole
directory, a failure or an interrupt (SIGINT, SIGTERM) at any point leaves the old directory
intact or the new one complete, staging left by killed runs is cleaned, and a directory that is
not an earlier output of the same command is never replaced."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeprune.cli import main
from edgeprune.output_dir import MANIFEST, clean_stale, read_manifest, staged_output_dir

TESTS = Path(__file__).parent


def _snapshot(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.iterdir())}


def _complete(directory: Path) -> bool:
    """Every file the manifest lists is there with its hash, and nothing else."""
    manifest = read_manifest(directory)
    if manifest is None:
        return False
    snap = _snapshot(directory)
    return set(snap) == set(manifest["files"]) | {MANIFEST} and all(
        snap[name] == entry["sha256"] for name, entry in manifest["files"].items())


def _no_staging(parent: Path, name: str) -> bool:
    return not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def _compress(model, data, outdir, *extra):
    return ["compress", str(model), "--data", data, "--sparsity", "0.5", "--method",
            "magnitude", "-q", "-o", str(outdir), *extra]


def test_rerun_replaces_the_whole_directory(tmp_path, small_model, npy_data):
    runner = CliRunner()
    out = tmp_path / "out"
    assert runner.invoke(main, _compress(small_model, npy_data, out, "--export", "npz,onnx")
                         ).exit_code == 0
    assert (out / "model.onnx").is_file() and _complete(out)
    result = runner.invoke(main, _compress(small_model, npy_data, out, "--export", "npz"))
    assert result.exit_code == 0, result.output
    assert not (out / "model.onnx").exists()  # no stale artifact of the earlier run
    assert _complete(out) and read_manifest(out)["command"] == "compress"
    assert _no_staging(tmp_path, "out")


def test_a_failure_while_writing_leaves_the_old_directory(tmp_path, small_model, npy_data,
                                                          monkeypatch):
    runner = CliRunner()
    out = tmp_path / "out"
    assert runner.invoke(main, _compress(small_model, npy_data, out, "--export", "npz")
                         ).exit_code == 0
    old = _snapshot(out)

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device", "model.onnx")

    monkeypatch.setattr("edgeprune.exporters.onnx.export_onnx", broken)
    result = runner.invoke(main, _compress(small_model, npy_data, out, "--export", "npz,onnx",
                                           "--sparsity", "0.7"))
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert _snapshot(out) == old and _no_staging(tmp_path, "out")


@pytest.mark.parametrize("setup,needle", [
    ("foreign", "not an earlier `compress` output"),
    ("file", "not a directory"),
    ("parent_is_file", "-o"),
    ("holds_input", "holds the input"),
])
def test_outputs_that_must_not_be_replaced_are_refused_first(tmp_path, small_model, npy_data,
                                                             setup, needle):
    out = tmp_path / "out"
    if setup == "foreign":
        out.mkdir()
        (out / "thesis.tex").write_text("years of work")
    elif setup == "file":
        out.write_text("x")
    elif setup == "parent_is_file":
        (tmp_path / "f").write_text("x")
        out = tmp_path / "f" / "out"
    else:
        out.mkdir()
        (out / "model.pt").write_bytes(small_model.read_bytes())
        small_model = out / "model.pt"
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    result = CliRunner().invoke(main, _compress(small_model, npy_data, out))
    text = result.output.strip()
    if setup == "file":  # click's own usage error comes first
        assert result.exit_code == 2 and "is a file" in text, text
    else:
        assert result.exit_code == 1 and text.startswith("Error: -o ") and needle in text, text
        assert len(text.splitlines()) == 1
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_export_and_explain_are_staged_too(tmp_path, small_model, npy_data):
    runner = CliRunner()
    comp = tmp_path / "c"
    assert runner.invoke(main, _compress(small_model, npy_data, comp, "--export", "npz")
                         ).exit_code == 0
    for command in (["export", str(comp), "--format", "npz,onnx"],
                    ["explain", str(comp), "-q"]):
        out = tmp_path / command[0]
        result = runner.invoke(main, [*command, "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert _complete(out) and read_manifest(out)["command"] == command[0]
        # an export directory is not an explain directory, and neither is the compress one
        other = "explain" if command[0] == "export" else "export"
        result = runner.invoke(main, [other, str(comp), "-o", str(out)])
        assert result.exit_code == 1 and "not an earlier" in result.output
        result = runner.invoke(main, [*command, "-o", str(comp)])
        assert result.exit_code == 1 and "holds the input" in result.output
    assert _complete(comp)


def test_stale_staging_of_killed_runs_is_cleaned(tmp_path):
    out = tmp_path / "out"
    dead = 2**22 + 12345  # above the default pid_max: no such process
    stale = tmp_path / f".out.staging-{dead}-abc"
    stale.mkdir()
    (stale / "model.npz").write_bytes(b"half")
    aside = tmp_path / f".out.old-{dead}-def"  # a swap cut between its two renames
    aside.mkdir()
    (aside / "report.json").write_text("{}")
    live = tmp_path / f".out.staging-{os.getpid()}-ghi"  # a run still going: left alone
    live.mkdir()
    assert clean_stale(out) == [stale]
    assert (out / "report.json").is_file() and live.is_dir()  # the old directory came back
    with staged_output_dir(out, "compress") as staging:
        (staging / "report.json").write_text('{"new": true}')
    assert json.loads((out / "report.json").read_text()) == {"new": True} and _complete(out)


# -- interrupts: a real process, a real signal, at a known point --------------------------------
POINTS = [  # (function made to pause, before/after it runs)
    ("edgeprune.compress:link_scores", "before"),  # while scoring
    ("edgeprune.compress:save_checkpoint", "after"),  # pruned.pt staged, nothing else
    ("edgeprune.exporters.onnx:export_onnx", "before"),  # model.npz staged, ONNX next
    ("edgeprune.output_dir:_replace_dir", "before"),  # everything staged, not yet swapped
]


def _interrupt(tmp_path, args, point, when, sig):
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "interrupt_driver.py"), point, when, *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "PAUSED", line + proc.stdout.read()
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point,when", POINTS, ids=[p.split(":")[1] for p, _ in POINTS])
def test_compress_interrupted_keeps_the_old_directory(tmp_path, small_model, npy_data, point,
                                                      when, sig):
    out = tmp_path / "out"
    assert CliRunner().invoke(main, _compress(small_model, npy_data, out, "--export", "npz")
                              ).exit_code == 0
    old = _snapshot(out)
    args = _compress(small_model, npy_data, out, "--export", "npz,onnx", "--method", "shap-sae",
                     "--samples", "16")
    code, text = _interrupt(tmp_path, args, point, when, sig)
    assert code == 1 and "Aborted!" in text and "Traceback" not in text, text
    assert _snapshot(out) == old and _no_staging(tmp_path, "out")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point,when", [("edgeprune.exporters.onnx:export_onnx", "before"),
                                        ("edgeprune.output_dir:_write_manifest", "after")],
                         ids=["onnx", "manifest"])
def test_export_interrupted_writes_nothing(tmp_path, small_model, npy_data, point, when, sig):
    comp = tmp_path / "c"
    assert CliRunner().invoke(main, _compress(small_model, npy_data, comp, "--export", "npz")
                              ).exit_code == 0
    out = tmp_path / "exp"
    code, text = _interrupt(tmp_path, ["export", str(comp), "--format", "npz,onnx",
                                       "-o", str(out)], point, when, sig)
    assert code == 1 and "Aborted!" in text and "Traceback" not in text, text
    assert not out.exists() and _no_staging(tmp_path, "exp") and _complete(comp)


def test_an_interrupt_after_the_swap_leaves_the_new_directory_complete(tmp_path, small_model,
                                                                      npy_data):
    out = tmp_path / "out"
    assert CliRunner().invoke(main, _compress(small_model, npy_data, out, "--export", "npz")
                              ).exit_code == 0
    code, text = _interrupt(tmp_path, _compress(small_model, npy_data, out, "--export",
                                                "npz,onnx"),
                            "edgeprune.output_dir:_replace_dir", "after", signal.SIGTERM)
    assert code == 1 and "Traceback" not in text, text
    assert (out / "model.onnx").is_file() and _complete(out) and _no_staging(tmp_path, "out")
