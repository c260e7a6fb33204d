"""Bad options and values (issue 19, classes 4 and 6): each is one ``Error:`` line naming the
option, exit 1 (click's own usage errors: exit 2), no traceback, nothing written — and the
output path is checked before any long work."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune.cli import main


def _refused(result, *needles, code=1):
    text = result.output.strip()
    assert result.exit_code == code, text
    assert "Traceback" not in text and "unexpected" not in text, text
    if code == 1:
        assert text.startswith("Error: ") and len(text.splitlines()) == 1, text
    for needle in needles:
        assert needle in text, text
    return text


@pytest.mark.parametrize("budget", ["nan", "inf", "-inf", "0", "-1", "1e9"])
@pytest.mark.parametrize("command", ["score", "compress", "explain"])
def test_memory_budget_must_be_finite_positive_and_sane(tmp_path, small_model, npy_data,
                                                        command, budget):
    out = tmp_path / "out"
    args = {"score": ["score", str(small_model), "--data", npy_data, "-o", str(out)],
            "compress": ["compress", str(small_model), "--data", npy_data, "-m", "0.8",
                         "-o", str(out)],
            "explain": ["explain", str(small_model), "--data", npy_data, "-o", str(out)]}
    _refused(CliRunner().invoke(main, [*args[command], "--memory-budget", budget]),
             "--memory-budget")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npy", "model.pt"]


@pytest.mark.parametrize("seed", ["-1", str(2**32), "1.5"])
def test_seeds_outside_what_generators_take_are_usage_errors(tmp_path, seed):
    text = _refused(CliRunner().invoke(main, ["train", "--seed", seed, "-o",
                                              str(tmp_path / "m.pt")]), "--seed", code=2)
    assert "Invalid value" in text and not (tmp_path / "m.pt").exists()


def test_data_that_makes_training_diverge_is_refused_not_saved(tmp_path):
    x = np.random.default_rng(0).random((300, 8)) * 1e30  # finite float32, MSE overflows
    np.save(tmp_path / "huge.npy", x)
    _refused(CliRunner().invoke(main, ["train", "--data", f"npy:{tmp_path / 'huge.npy'}",
                                       "--epochs", "2", "-q", "-o", str(tmp_path / "m.pt")]),
             "training diverged", "scale the data")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("where", ["/proc/edgeprune-out", "{tmp}/afile/out"])
def test_unwritable_output_fails_before_scoring(tmp_path, small_model, npy_data, where,
                                                monkeypatch):
    (tmp_path / "afile").write_text("x")
    scored = []
    monkeypatch.setattr("edgeprune.compress.score_network",
                        lambda *a, **k: scored.append(1))  # must never be reached
    out = where.replace("{tmp}", str(tmp_path))
    _refused(CliRunner().invoke(main, ["compress", str(small_model), "--data", npy_data,
                                       "-m", "0.8", "-q", "-o", out]), f"-o {out}")
    assert scored == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("fails", [True, False])
def test_library_warnings_are_held_back(fails):
    """Warnings raised before an error never reach the console (the error line is the only
    output); after a success each distinct warning is shown once as `warning:`."""
    import warnings

    import click

    from edgeprune.cli import _user_errors
    from edgeprune.errors import EdgepruneError

    @click.command()
    @_user_errors
    def noisy():
        for _ in range(3):
            warnings.warn("Mean of empty slice", RuntimeWarning, stacklevel=1)
        warnings.warn("torch says something", UserWarning, stacklevel=1)
        if fails:
            raise EdgepruneError("--option x: the one line the user needs")
        click.echo("done")

    result = CliRunner().invoke(noisy, [])
    if fails:
        assert result.output == "Error: --option x: the one line the user needs\n"
    else:
        assert result.output.splitlines() == [
            "done", "warning: RuntimeWarning: Mean of empty slice",
            "warning: UserWarning: torch says something"]


def test_an_internal_bug_is_reported_as_one_not_as_a_user_error():
    import click

    from edgeprune.cli import _user_errors

    @click.command()
    @_user_errors
    def buggy():
        raise ValueError("index mix-up")  # a plain ValueError is a bug, not bad input

    result = CliRunner().invoke(buggy, [])
    text = result.output.strip()
    assert result.exit_code == 1 and len(text.splitlines()) == 1
    assert text.startswith("Error: unexpected ValueError: index mix-up") and "report" in text


def test_bench_refuses_a_batch_beyond_the_memory_bound_before_allocating(tmp_path, small_model,
                                                                         npy_data):
    out = tmp_path / "c"
    assert CliRunner().invoke(main, ["compress", str(small_model), "--data", npy_data, "-m",
                                     "0.8", "--method", "magnitude", "--export", "npz", "-q",
                                     "-o", str(out)]).exit_code == 0
    _refused(CliRunner().invoke(main, ["bench", str(out / "model.npz"), "--batch",
                                       str(10**12), "--backends", "edgeprune", "-q"]),
             "--batch 1000000000000", "or less")


@pytest.mark.parametrize("command", ["score", "train"])
def test_single_file_outputs_never_replace_an_input(tmp_path, small_model, npy_data, command):
    data_file = npy_data.removeprefix("npy:")
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    if command == "score":
        args = ["score", str(small_model), "--data", npy_data, "-o", str(small_model)]
    else:
        args = ["train", "--data", npy_data, "--epochs", "1", "-o", data_file]
    _refused(CliRunner().invoke(main, args), "-o ", "this command reads")
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before
