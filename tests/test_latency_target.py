"""Pruning to a latency budget (--target-latency): the cost model, the unit/link trade, the CLI
and the API, and one-line refusals (no timing bound is asserted: the host is shared)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_network

from edgeprune.cli import main
from edgeprune.errors import EdgepruneError
from edgeprune.prune import baseline_scores, compact_network
from edgeprune.prune.latency_target import (
    UNIT_FRACTIONS,
    predicted_latency,
    prune_to_latency,
    without_units,
)
from edgeprune.runtime import kernel_profile as kp
from edgeprune.runtime.bench import latency_model as lm

#: Round figures shaped like this host's (dense ~15x cheaper per element than CSR).
MODEL = lm.LatencyModel(call_us=2.0, dense_call_us=0.5, dense_ns=0.1, csr_call_us=0.5,
                        csr_ns=1.5, csr_row_ns=1.0, act_ns=1.0, source="test")


@pytest.fixture
def net():
    return make_network(["relu", "relu", "relu", "sigmoid"], [24, 20, 6, 20, 24], latent=2)


def test_cost_model_prefers_the_cheaper_kernel_and_counts_units():
    dense_us, kernel = MODEL.layer_us(100, 50, 4000)
    assert kernel == "dense" and dense_us == pytest.approx(0.5 + 0.1 * 100 * 51 / 1e3 + 0.1)
    sparse_us, kernel = MODEL.layer_us(100, 50, 50)
    assert kernel == "csr" and sparse_us == pytest.approx(0.5 + (1.5 * 50 + 100) / 1e3 + 0.1)
    pred = lm.predict_us([(100, 50, 4000), (100, 50, 50)], MODEL)
    assert pred["total_us"] == pytest.approx(2.0 + dense_us + sparse_us)
    assert pred["kernels"] == ["dense", "csr"]


def test_removing_units_shrinks_the_compacted_layers(net):
    scores = baseline_scores("magnitude", net)
    thin = without_units(net, scores, 0.5)
    before = [layer.weight.shape for layer in compact_network(net).layers]
    after = [layer.weight.shape for layer in compact_network(thin).layers]
    assert after[0][0] == before[0][0] // 2 and after[-1][1] < before[-1][1]
    assert predicted_latency(thin, MODEL)["total_us"] < predicted_latency(net, MODEL)["total_us"]
    # the least important units went: the kept ones carry more of the scores
    importance = scores[0].sum(axis=1) + scores[1].sum(axis=0)
    kept = thin.layers[0].mask.any(axis=1)
    assert importance[kept].min() >= importance[~kept].max()


def test_latency_budget_is_met_with_the_lowest_validation_loss(net):
    scores = baseline_scores("magnitude", net)
    x = np.random.default_rng(0).random((64, net.in_dim), dtype=np.float32)

    def loss(candidate):
        return float(np.mean((candidate.forward(x) - net.forward(x)) ** 2))

    full = predicted_latency(net, MODEL)["total_us"]
    target = 0.6 * full
    result, record = prune_to_latency(net, scores, target, MODEL, loss)
    assert predicted_latency(result.network, MODEL)["total_us"] <= target
    assert record["kind"] == "latency" and record["value"] <= target
    fits = [c for c in record["candidates"] if c["fits"]]
    assert [c["unit_fraction"] for c in record["candidates"]] == list(UNIT_FRACTIONS)
    assert record["unit_fraction"] == min(fits, key=lambda c: c["val_loss"])["unit_fraction"]
    assert loss(result.network) == pytest.approx(min(c["val_loss"] for c in fits))
    with pytest.raises(EdgepruneError, match="--target-latency 0.01: even the sparsest"):
        prune_to_latency(net, scores, 0.01, MODEL, loss)


def test_the_cost_model_comes_from_a_calibrated_profile_or_the_builtin(monkeypatch):
    measurements = [{"batch": 1, "dense_us": 60.0,
                     "csr_us": {"0.1": 30.0, "0.5": 110.0, "1.0": 210.0}}]
    kp.save_kernel_profile([(1, 0.2)], device={"shapes": [[100, 200], [50, 100]]},
                           measurements=measurements)
    fitted = lm.latency_model_for()
    assert fitted.source.startswith("fitted to") and fitted.csr_ns == pytest.approx(
        200.0 / 25000 * 1e3)  # slope 200 µs per unit density over 25,000 links
    assert fitted.dense_ns == pytest.approx((60.0 - 10.0) / (100 * 201 + 50 * 101) * 1e3)
    kp.default_profile_path().unlink()
    monkeypatch.setattr(lm, "MACHINE", "x86_64")
    assert lm.latency_model_for() is lm.BUILTIN["x86_64"]
    monkeypatch.setattr(lm, "MACHINE", "aarch64")
    with pytest.raises(EdgepruneError, match="run `edgeprune bench --calibrate`"):
        lm.latency_model_for()


def test_cli_target_latency(tmp_path, small_model, npy_data, monkeypatch):
    monkeypatch.setattr(lm, "MACHINE", "x86_64")  # the built-in figures, on any host
    runner = CliRunner()
    base = ["compress", str(small_model), "--data", npy_data, "--method", "magnitude",
            "--export", "npz", "-q"]
    result = runner.invoke(main, [*base, "--target-latency", "1e9", "-o", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "budget: at most 1e+09 µs per sample" in result.output
    rep = json.loads((tmp_path / "a" / "report.json").read_text())
    target = rep["scoring"]["target"]
    assert target["kind"] == "latency" and target["value"] <= 1e9
    assert target["measured_us_this_host"] > 0
    assert target["prediction"]["total_us"] == pytest.approx(target["value"], abs=1e-3)
    assert target["latency_model"]["source"] == "built-in x86_64"
    result = runner.invoke(main, [*base, "--target-latency", "0.001", "-o", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: --target-latency 0.001: even the sparsest")
    assert not (tmp_path / "b").exists()
    result = runner.invoke(main, [*base, "--target-latency", "0", "-o", str(tmp_path / "c")])
    assert result.exit_code == 2 and "--target-latency" in result.output
    result = runner.invoke(main, [*base, "--target-latency", "5", "--sparsity", "0.5",
                                  "-o", str(tmp_path / "d")])
    assert result.exit_code == 1 and "exactly one of" in result.output


def test_options_refuse_a_bad_latency_budget():
    from edgeprune.compress import CompressOptions
    from edgeprune.network import ModelError

    for bad in (-1.0, 0.0, float("nan"), float("inf")):
        with pytest.raises(ModelError, match="--target-latency .*microseconds > 0"):
            CompressOptions(target_latency=bad).validate()
    with pytest.raises(ModelError, match="exactly one of"):
        CompressOptions(target_latency=10.0, sparsity=0.5).validate()
    CompressOptions(target_latency=10.0).validate()


def test_the_numba_engine_has_its_own_builtin_figures(monkeypatch):
    monkeypatch.setattr(lm, "MACHINE", "x86_64")
    numba_model = lm.latency_model_for(engine="numba")
    assert numba_model is lm.BUILTIN_NUMBA["x86_64"] and "numba" in numba_model.source
    assert numba_model != lm.latency_model_for(engine="numpy")
    monkeypatch.setattr(lm, "MACHINE", "aarch64")
    with pytest.raises(EdgepruneError, match="--latency-engine numba: aarch64 has no built-in"):
        lm.latency_model_for(engine="numba")
    with pytest.raises(EdgepruneError, match="unknown engine 'gpu'"):
        lm.latency_model_for(engine="gpu")


def test_options_refuse_an_unknown_latency_engine():
    from edgeprune.compress import CompressOptions
    from edgeprune.network import ModelError

    with pytest.raises(ModelError, match="--latency-engine 'gpu': expected numpy or numba"):
        CompressOptions(target_latency=10.0, latency_engine="gpu").validate()


def test_cli_target_latency_for_the_numba_engine(tmp_path, small_model, npy_data, monkeypatch):
    pytest.importorskip("numba")
    monkeypatch.setattr(lm, "MACHINE", "x86_64")
    result = CliRunner().invoke(main, [
        "compress", str(small_model), "--data", npy_data, "--method", "magnitude", "--export",
        "npz", "-q", "--target-latency", "1e9", "--latency-engine", "numba",
        "-o", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "numba engine cost model" in result.output
    target = json.loads((tmp_path / "a" / "report.json").read_text())["scoring"]["target"]
    assert target["engine"] == "numba" and target["measured_us_this_host"] > 0
    assert target["latency_model"] == lm.BUILTIN_NUMBA["x86_64"].to_dict()
