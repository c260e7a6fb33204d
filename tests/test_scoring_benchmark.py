"""benchmarks/scoring.py --quick: the script runs end to end and writes its report and plots."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_scoring_benchmark_quick(tmp_path, monkeypatch):
    import scoring  # benchmarks/ is on pytest's pythonpath

    assert scoring.main(["--quick", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert {r["estimator"] for r in doc["small"]} >= {"exact", "analytic", "permutation",
                                                      "kernel"}
    exact_rows = [r for r in doc["small"] if r["estimator"] == "exact"]
    assert all(r["phi_rel_l1"] == 0.0 for r in exact_rows)
    # Every estimator with a real budget is within 15% of enumeration on these layers.
    assert all(r["phi_rel_l1"] < 0.15 for r in doc["small"])
    assert len(doc["peer"]) == 2 and all(p["seconds_per_pair"] > 0 for p in doc["peer"])
    png = (tmp_path / "error_vs_time.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "README.md").read_text()
    assert "KernelExplainer" in text and "| fan-in |" in text
