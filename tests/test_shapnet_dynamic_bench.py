"""benchmarks/shapnet_dynamic.py end to end on a tiny budget (one epoch, one dataset)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
def test_shapnet_dynamic_benchmark_writes_its_results(tmp_path):
    import shapnet_dynamic

    assert shapnet_dynamic.main(["--epochs", "1", "--datasets", "breast-cancer", "--out",
                                 str(tmp_path)]) == 0
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert [r["l1"] for r in runs] == [0.0, shapnet_dynamic.L1]
    for run in runs:
        rows = run["rows"]
        assert rows[0]["threshold"] == 0.0 and rows[0]["max_prediction_change"] == 0.0
        assert all(r["max_prediction_change"] <= r["bound"] + 1e-5 for r in rows)
        assert rows[-1]["skipped_fraction"] >= rows[0]["skipped_fraction"]
        assert {"p50_us", "latency_saved_us", "accuracy", "p50_first_pattern_us"} <= set(rows[0])
    assert "measured on this host" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "dynamic_pruning.png").stat().st_size > 10_000
    assert shapnet_dynamic.main(["--from-json", "--out", str(tmp_path)]) == 0
