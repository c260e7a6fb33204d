"""benchmarks/paper_synthetic.py in --quick mode: the files it writes, not the paper's claims
(those are asserted in tests/test_synthetic.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_synthetic.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load():
    import paper_synthetic  # benchmarks/ is on pytest's pythonpath

    return paper_synthetic


def _check_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, path
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 200 and height > 200
    assert data.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")


def test_relabelled_comparison_finds_the_paper_sets():
    mod = _load()
    perm = (2, 3, 1)  # our z1 is the paper's z2, etc.; invert it onto the paper's sets
    inv = {p: h for h, p in enumerate(perm, start=1)}
    g1 = [(inv[i], j) for i, j in mod.PAPER["gamma1"]]
    g2 = [(i, inv[j]) for i, j in mod.PAPER["gamma2"]]
    cmp = mod.compare_support(g1, g2)
    assert cmp["relabelled"]["equal1"] and cmp["relabelled"]["equal2"]
    assert cmp["relabelled"]["perm"] == list(perm)
    assert not cmp["literal"]["equal1"] and cmp["literal"]["jaccard1"] < 1.0
    assert mod.compare_support(mod.PAPER["gamma1"], mod.PAPER["gamma2"])["literal"]["equal2"]


@pytest.mark.slow
def test_quick_run_writes_results_summary_and_plots(tmp_path):
    mod = _load()
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    names = {"results.json", "summary.md", "ui_bars.png", "li_variance.png", "li_matrix.png"}
    assert names <= {p.name for p in tmp_path.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    doc = json.loads((tmp_path / "results.json").read_text())
    assert {"config", "paper", "seeds", "claims", "summary", "wall_seconds"} <= doc.keys()
    cfg = doc["config"]
    assert cfg["quick"] and cfg["architecture"] == "6-3-6" and cfg["importance_level"] == 0.8
    assert [s["seed"] for s in doc["seeds"]] == list(range(cfg["seeds"]))
    for s in doc["seeds"]:
        assert set(s["references"]) == {"zero", "mean"}
        for r in s["references"].values():
            assert len(r["ui"]) == 6 and len(r["li_var_across_units"]) == 6
            assert [len(r["li"][0]), len(r["li"][0][0])] == [3, 6]
            assert {"gamma1", "gamma2", "k_star", "compare", "sparsity"} <= r.keys()
        assert s["references"]["mean"]["ui"][0] == 0.0  # x1 is a dummy under the mean reference
    ids = {c["id"] for c in doc["claims"]}
    assert {"ui1_zero", "ui5_gt_ui2", "ui6_gt_ui3", "ui6_gt_ui4", "gamma_relabelled"} <= ids
    for c in doc["claims"]:
        for ref in ("zero", "mean"):
            assert c[ref]["n"] == len(doc["seeds"]) and 0 <= c[ref]["holds"] <= c[ref]["n"]
    summary = (tmp_path / "summary.md").read_text()
    assert "| UI(x5) > UI(x2) | holds |" in summary and "Γ(1) = {(1,2)" in summary
    for name in ("ui_bars.png", "li_variance.png", "li_matrix.png"):
        _check_png(tmp_path / name)
    # recount from the JSON alone: same claims, no training
    assert mod.main(["--from-json", str(tmp_path / "results.json")]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["claims"] == doc["claims"]
