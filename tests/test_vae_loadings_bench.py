"""benchmarks/vae_loadings.py: the simulation, the matching and scoring, and the report."""

from __future__ import annotations

import numpy as np
import pytest
from vae_loadings import FIG4_FEATURES, match, recovery, simulate
from vae_loadings_report import write_markdown, write_plots

pytest.importorskip("matplotlib")


def test_simulation_matches_the_poster_layout():
    L, F, X = simulate(0)
    assert L.shape == (1000, 5) and F.shape == (5, 2000) and X.shape == (2000, 1000)
    assert L[FIG4_FEATURES[0] - 1, 0] != 0 and L[FIG4_FEATURES[1] - 1, 0] == 0
    for k in range(5):  # factor k loads only inside its block
        outside = np.ones(1000, dtype=bool)
        outside[200 * k:200 * (k + 1)] = False
        assert not L[outside, k].any() and 120 < (L[:, k] != 0).sum() <= 200


def test_matching_and_recovery_of_a_perfect_permuted_estimate():
    L, F, _ = simulate(1)
    perm = np.array([3, 0, 4, 1, 2])               # unit perm[k] carries factor k
    scores = np.empty((F.shape[1], 5))
    scores[:, perm] = -2.0 * F.T                   # sign and scale do not matter
    unit, corr = match(scores, F)
    assert np.array_equal(unit, perm) and np.allclose(corr, 1.0)
    loadings = np.empty((1000, 5))
    loadings[:, perm] = L
    row = recovery(loadings, unit, corr, L)
    assert row["auroc"] == [1.0] * 5 and row["min_auroc"] == 1.0 and row["mean_auprc"] == 1.0


def test_report_writes_the_table_and_figures(tmp_path):
    L, _, _ = simulate(0)
    rng = np.random.default_rng(0)

    def row(extra=None):
        return {"auroc": [0.9] * 5, "auprc": [0.8] * 5, "matched_unit": [0, 1, 2, 3, 4],
                "match_abs_corr": [0.9] * 5, "min_auroc": 0.9, "mean_auroc": 0.9,
                "mean_auprc": 0.8, "sparsity": 0.0, "loadings": rng.random((1000, 5)).tolist(),
                **(extra or {})}

    pruned = {"test_mse_before": 0.3, "test_mse_after": 0.25, "sparsity": 0.5}
    methods = {n: row() for n in ("VAE SHAP loadings", "VAE SHAP loadings (varimax)",
                                  "VAE SHAP loadings (deep)", "PCA", "FactorAnalysis",
                                  "FactorAnalysis (varimax)", "SparsePCA")}
    methods["VAE pruned eta 0.5"] = row(pruned)
    methods["VAE pruned eta 0.5 (varimax)"] = row(pruned)
    res = {"seed": 0, "quick": True, "machine": "m", "load_average": 1.0, "seconds": 1.0,
           "simulation": {"features": 1000, "factors": 5, "block": 200, "density_in_block": 0.8,
                          "samples": 2000, "f_density": 0.5, "noise_sd": 0.5,
                          "nonzero_per_factor": [160] * 5},
           "vae": {"hidden": [128], "latent": 5, "epochs": 1, "beta": 0.25},
           "explanation_samples": 8, "permutations": 10, "methods": methods,
           "fig4": {"factor": 1, "unit": 1, "features": [150, 600], "true_loadings": [1.0, 0.0],
                    "values": {"150": rng.normal(size=8).tolist(),
                               "600": (0.01 * rng.normal(size=8)).tolist()}}}
    write_plots(res, L, tmp_path)
    write_markdown(res, tmp_path / "README.md")
    text = (tmp_path / "README.md").read_text()
    assert "| VAE SHAP loadings (varimax) | 0.900 / 0.900" in text and "NOT met" in text
    assert "| VAE pruned eta 0.5 | 0.500 | 0.3000 -> 0.2500 |" in text
    for name in ("fig3_simulated_L.png", "fig4_shap_histograms.png", "loadings_heatmaps.png",
                 "auroc.png"):
        assert (tmp_path / name).stat().st_size > 1000
