"""benchmarks/vae_pruning.py: paired differences and the report from saved runs (fast)."""

from __future__ import annotations

import json

import numpy as np


def _run(seed: int, shap: float, mag: float) -> dict:
    rows = [{"method": "dense", "eta": 0.0, "finetune": False, "seed": seed, "achieved_eta": 0,
             "test_neg_elbo": 30.0, "test_recon_nll": 28.0, "test_kl": 2.0, "test_mse": 0.05,
             "live_latent": 4, "logvar_links_kept": 128}]
    for method, value in (("shap-sae", shap), ("magnitude", mag)):
        for ft in (False, True):
            rows.append({"method": method, "eta": 0.9, "finetune": ft, "seed": seed,
                         "achieved_eta": 0.9, "test_neg_elbo": value - ft,
                         "test_recon_nll": value - 2, "test_kl": 2.0, "test_mse": value / 100,
                         "live_latent": 3, "logvar_links_kept": 12, "npz_bytes": 9000})
    return {"dataset": "digits", "seed": seed, "recipe": {"latent": 4}, "etas": [0.9],
            "rows": rows}


def test_paired_differences_and_report(tmp_path):
    import vae_pruning as vp  # benchmarks/ is on pytest's pythonpath

    runs = [_run(0, 33.0, 35.0), _run(1, 34.0, 35.0)]
    np.testing.assert_allclose(vp.paired(runs, 0.9, True, "test_neg_elbo"), [-2.0, -1.0])
    assert vp.fmt(np.array([-2.0, -1.0])) == "-1.50 ± 0.71"
    assert vp.fmt(np.array([0.5])) == "+0.50 (1 seed)"
    files = vp.report(runs, tmp_path)
    summary = files[0].read_text()
    assert "| shap-sae | 0.9 | yes | 0.900 | 32.50 |" in summary
    assert "| 0.9 | yes | -1.50 ± 0.71 |" in summary
    assert json.loads(files[1].read_text())["runs"][0]["seed"] == 0
    assert files[2].stat().st_size > 1000
