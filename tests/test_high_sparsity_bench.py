"""benchmarks/high_sparsity.py: paired differences and the report (fast), one real run (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest


def _rows():
    rows = []
    for seed, (mag, hyb) in enumerate([(0.80, 0.82), (0.70, 0.73), (0.75, 0.76)]):
        for variant, acc in (("magnitude", mag), ("hybrid-0.5", hyb), ("dense", 0.9)):
            for ft in (True, False):
                rows.append({"dataset": "digits", "variant": variant,
                             "eta": 0.0 if variant == "dense" else 0.9, "finetune": ft,
                             "seed": seed, "classifier_accuracy": acc, "mse": 1 - acc,
                             "inputs_read": 10})
    return rows


def test_paired_differences_are_per_seed():
    import high_sparsity as hs  # benchmarks/ is on pytest's pythonpath

    d = hs.paired(_rows(), "hybrid-0.5", 0.9, True, "classifier_accuracy")
    np.testing.assert_allclose(d, [2.0, 3.0, 1.0])
    assert hs.fmt(d) == "+2.00 ± 1.00"


def test_report_writes_table_and_plot(tmp_path):
    import high_sparsity as hs

    runs = tmp_path / "runs"
    runs.mkdir()
    rows = _rows()
    for seed in range(3):
        (runs / f"s{seed}.json").write_text(json.dumps(
            {"dataset": "digits", "seed": seed, "etas": [0.9],
             "rows": [r for r in rows if r["seed"] == seed]}))
    assert hs.main(["--report", "--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "Machines" in md and "| hybrid-0.5 | 77.00 | +2.00 ± 1.00 | 10 |" in md
    # the paired differences against each baseline, with standard errors
    assert "| hybrid-0.5 | +2.00 ± 0.58 (n=3) |" in md
    assert (tmp_path / "out" / "high_sparsity.png").stat().st_size > 0
    assert (tmp_path / "out" / "accuracy_vs_eta.png").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["measured_on"]


def test_standard_error_twins_and_duplicate_dense_rows():
    import high_sparsity as hs

    assert hs.fmt_se(np.array([1.0, 3.0])) == "+2.00 ± 1.00 (n=2)"
    assert hs.twin("hybrid-0.25-comp-g3") == "magnitude-comp-g3"
    assert hs.twin("hybrid-0.25") == "magnitude" and hs.twin("shap-mean-comp") == "magnitude-comp"
    assert hs.twin("hybrid-0.25-rec", "lap") == "lap-rec"
    assert hs.twin("hybrid-0.25-rec-g3") == "magnitude-rec-g3"
    rows = _rows()
    docs = [{"rows": rows}, {"rows": [r for r in rows if r["variant"] == "dense"]}]
    assert len(hs.unique_rows(docs)) == len(rows)  # a seed split over processes: dense once
    with pytest.raises(SystemExit, match="unknown"):
        hs.main(["--variants", "magnitude,nope", "--runs", "/nonexistent"])


def test_fine_tune_recipes_have_twins_and_a_recipe_table():
    import high_sparsity as hs

    assert hs.recipe_of(hs.SPECS["hybrid-0.25-kdo"]) == "kdo"
    assert hs.recipe_of(hs.SPECS["lap-lr3"]) == "lr3" and hs.recipe_of(hs.SPECS["lap"]) == ""
    assert hs.twin("hybrid-0.25-kd") == "magnitude-kd"
    assert hs.twin("hybrid-0.25-global") == "global-magnitude"
    rows = []
    for seed, (m, mk, h, hk, g, gk, lp, lk) in enumerate([
            (80, 81, 82, 84, 79, 80, 81, 81), (70, 72, 73, 74, 71, 71, 70, 72)]):
        for v, acc in (("magnitude", m), ("magnitude-kd", mk), ("hybrid-0.25", h),
                       ("hybrid-0.25-kd", hk), ("global-magnitude", g),
                       ("global-magnitude-kd", gk), ("lap", lp), ("lap-kd", lk), ("dense", 90)):
            rows.append({"dataset": "digits", "variant": v, "eta": 0.0 if v == "dense" else 0.9,
                         "finetune": v != "dense", "seed": seed,
                         "classifier_accuracy": acc / 100})
    md = "\n".join(hs.recipe_table(rows, [0.9]))
    # hybrid-0.25-kd: recipe effect +1.5 ± 0.5, vs dense -11.0, vs magnitude-kd +2.5
    assert ("| hybrid-0.25-kd | 79.00 | +1.50 ± 0.50 (n=2) | -11.00 ± 5.00 (n=2) | "
            "+2.50 ± 0.50 (n=2) |") in md
    assert "| magnitude-kd | 76.50 | +1.50 ± 0.50 (n=2) |" in md


@pytest.mark.slow
def test_one_digits_run_end_to_end(tmp_path, monkeypatch):
    import high_sparsity as hs
    import paper_mnist

    monkeypatch.setattr(paper_mnist, "CACHE", tmp_path / "cache")
    assert hs.main(["--data", "digits", "--seeds", "0", "--etas", "0.9", "--variants",
                    "magnitude,hybrid-0.5,hybrid-0.5-g3", "--runs", str(tmp_path / "r"),
                    "--quiet"]) == 0
    doc = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    got = {(r["variant"], r["finetune"]) for r in doc["rows"]}
    assert ("hybrid-0.5-g3", True) in got and ("hybrid-0.5", False) in got
    assert all(abs(r["achieved_eta"] - 0.9) < 0.02 for r in doc["rows"] if r["eta"] == 0.9)
    # --compensate rows and a pruned-only sweep
    assert hs.main(["--data", "digits", "--seeds", "0", "--etas", "0.5,0.9", "--variants",
                    "magnitude,hybrid-0.25-comp", "--pruned-only", "--runs",
                    str(tmp_path / "p"), "--quiet"]) == 0
    doc = json.loads(next((tmp_path / "p").glob("*_pruned.json")).read_text())
    assert {r["finetune"] for r in doc["rows"]} == {False}
    assert {(r["variant"], r["eta"]) for r in doc["rows"]} >= {("hybrid-0.25-comp", 0.5),
                                                                 ("magnitude", 0.9)}


def test_reconstructed_variants_are_paired_with_each_baselines_twin():
    import high_sparsity as hs

    rows = []
    for seed in range(2):
        for variant, acc in (("magnitude", 0.5), ("lap", 0.52), ("magnitude-rec", 0.80),
                             ("lap-rec", 0.81), ("hybrid-0.25-rec", 0.84 + 0.01 * seed)):
            rows.append({"dataset": "digits", "variant": variant, "eta": 0.9,
                         "finetune": False, "seed": seed, "classifier_accuracy": acc})
    lines = hs.against_baselines(rows, [0.9], ["magnitude", "lap", "magnitude-rec", "lap-rec",
                                               "hybrid-0.25-rec"])
    header = next(line for line in lines if line.startswith("| variant"))
    assert "vs twin η=0.9" in header and "vs twin lap η=0.9" in header
    row = next(line for line in lines if line.startswith("| hybrid-0.25-rec"))
    assert "+4.50 ± 0.50 (n=2) (magnitude-rec)" in row and "+3.50 ± 0.50 (n=2) (lap-rec)" in row
    assert "+34.50 ± 0.50 (n=2)" in row  # against plain magnitude
