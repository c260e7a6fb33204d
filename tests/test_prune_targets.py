"""Pruning to a budget (--target-macs, --target-size): the least sparsity whose network fits,
from the CLI and the API, and a one-line refusal of a budget nothing fits."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import make_network

from edgeprune.cli import main
from edgeprune.prune import baseline_scores, prune_network
from edgeprune.prune.targets import bundle_bytes, prune_to_target, target_measure


@pytest.fixture
def net():
    return make_network(["relu", "tanh", "relu", "sigmoid"], [12, 10, 4, 10, 12], latent=2)


def test_macs_budget_is_met_by_the_least_sparse_network(net):
    scores = baseline_scores("magnitude", net)
    result, search = prune_to_target(net, scores, 150, "macs", target_measure("macs"))
    assert result.network.n_active <= 150 == search["target"]
    # a little less sparsity would break the budget: the search found the edge
    looser = prune_network(net, scores, sparsity=max(0.0, result.network.sparsity - 0.02))
    assert looser.network.n_active > 150


def test_size_budget_counts_the_bundle_as_written(net):
    scores = baseline_scores("magnitude", net)
    full = bundle_bytes(net)
    result, search = prune_to_target(net, scores, full // 2, "bytes", target_measure("bytes"))
    assert bundle_bytes(result.network) == search["value"] <= full // 2


def test_cli_budgets_and_an_impossible_one(tmp_path, small_model, npy_data):
    runner = CliRunner()
    base = ["compress", str(small_model), "--data", npy_data, "--method", "magnitude",
            "--export", "npz", "-q"]
    result = runner.invoke(main, [*base, "--target-macs", "120", "-o", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "budget: at most 120 multiply-adds per inference" in result.output
    rep = json.loads((tmp_path / "m" / "report.json").read_text())
    assert rep["links_kept"] <= 120 and rep["scoring"]["target"]["kind"] == "macs"
    result = runner.invoke(main, [*base, "--target-size", "3000", "-o", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s" / "model.npz").stat().st_size <= 3000
    result = runner.invoke(main, [*base, "--target-size", "10", "-o", str(tmp_path / "x")])
    assert result.exit_code == 1 and result.output.startswith("Error: --target-size 10: even")
    assert not (tmp_path / "x").exists()
    result = runner.invoke(main, [*base, "--target-macs", "5", "--sparsity", "0.5",
                                  "-o", str(tmp_path / "y")])
    assert result.exit_code == 1 and "exactly one of" in result.output


def test_size_budget_holds_after_fine_tuning_and_int8(tmp_path, small_model, npy_data):
    """Fine-tuning moves the deflated size; the published model.npz still fits the budget."""
    result = CliRunner().invoke(main, [
        "compress", str(small_model), "--data", npy_data, "--method", "magnitude", "--export",
        "npz", "--quantize", "int8", "--finetune-epochs", "3", "--target-size", "2600", "-q",
        "-o", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "q" / "model.npz").stat().st_size <= 2600
    target = json.loads((tmp_path / "q" / "report.json").read_text())["scoring"]["target"]
    assert target["value"] == (tmp_path / "q" / "model.npz").stat().st_size  # exact measure
