"""benchmarks/paper_mnist.py --quick end to end: every output written and consistent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load_script():
    import paper_mnist  # benchmarks/ is on pytest's pythonpath

    return paper_mnist


@pytest.mark.slow
def test_quick_run_writes_every_output(tmp_path, monkeypatch):
    script = _load_script()
    monkeypatch.setattr(script, "CACHE", tmp_path / "cache")  # train from scratch, seeded
    out = tmp_path / "out"
    assert script.main(["--quick", "--quiet", "--out", str(out)]) == 0

    folder = out / "digits"
    for name in ("results.json", "summary.md", "performance_vs_eta.png", "reconstructions.png"):
        assert (folder / name).stat().st_size > 0, name
    assert (out / "summary.md").is_file()
    doc = json.loads((folder / "results.json").read_text())
    assert doc["quick"] and doc["seeds"] == [0] and doc["etas"] == [0.5, 0.9]
    assert doc["recipe"]["hidden"] == [32, 16] and doc["recipe"]["in_dim"] == 64
    runs = doc["runs"]
    methods = {"shap-sae", "magnitude", "random", "lap", "k-sparse", "dropout",
               "global-magnitude"}
    # every method x eta x fine-tune, plus the three eta = 0 models with and without fine-tune
    assert len(runs) == len(methods) * 2 * 2 + 3 * 2
    for r in runs:
        assert {"dataset", "method", "eta", "finetune", "seed", "mse", "probe_accuracy",
                "classifier_accuracy", "achieved_eta", "seconds"} <= set(r)
        assert abs(r["achieved_eta"] - r["eta"]) < 0.01  # 4608 links: eta is hit closely
        assert 0.0 <= r["classifier_accuracy"] <= 1.0 and r["mse"] > 0
    pruned = [r for r in runs if r["method"] in methods]
    assert {r["method"] for r in pruned} == methods
    # fine-tuning keeps the masks: same achieved sparsity with and without it
    by = {(r["method"], r["eta"], r["finetune"]): r for r in runs}
    for m in methods:
        for eta in (0.5, 0.9):
            assert by[(m, eta, True)]["achieved_eta"] == by[(m, eta, False)]["achieved_eta"]
    assert by[("shap-sae", 0.9, False)]["inputs_pruned"] > 0
    summary = (folder / "summary.md").read_text()
    assert "| 1. SHAP-SAE beats the dense AE" in summary and "MINT" in summary
    assert doc["wall_seconds"] < 600
