"""Do SHAP loadings of a VAE recover the factor loadings L? (the vae-shap poster, issue 16)

Usage: python benchmarks/vae_loadings.py [--quick] [--seed 0] [--out benchmarks/results/vae_loadings]
       [--from-json results.json]

1. Simulate sparse L (1,000 features x 5 factors: factor k loads on features 200k+1..200k+200,
   80% of them non-zero, |l| ~ U(0.5, 1.5) with a random sign; feature 150 is kept non-zero on
   factor 1 so that the poster's Fig. 4 pair, #150 non-zero and #600 zero on factor 1, exists),
   sparse F (5 x 2,000, N(0, 1) entries kept with probability 0.5) and X = (L F)^T + N(0, 0.5^2).
2. Fit a Gaussian VAE (edgeprune.vae.train_vae: 1000 -> 128 -> 5, beta and epochs below) on the
   training split; SHAP loadings of its mu encoder (edgeprune.loadings.shap_loadings, the
   ``permutation`` explainer, 10 permutations, the zero reference = the data's mean) over an
   explanation set of the training split.
3. Match latent units (or baseline components) to the true factors by the Hungarian assignment
   (scipy.optimize.linear_sum_assignment) on |correlation| between their scores on the data and
   the true F; score |loading| of the matched unit against the support of L[:, k]: AUROC and
   AUPRC per factor (sklearn.metrics).
4. Baselines on the same X: PCA, FactorAnalysis (plain and varimax-rotated) and SparsePCA
   loadings (scikit-learn).
5. Prune the VAE with ``compress`` (SHAP-SAE, fine-tuned by the ELBO) at eta = 0.5, 0.8, 0.9 and
   score the pruned VAE's SHAP loadings the same way.

Writes results.json, README.md (the recovery table), fig3_simulated_L.png (the poster's Fig. 3),
fig4_shap_histograms.png (Fig. 4 from this run), loadings_heatmaps.png and auroc.png into --out.
Everything is seeded; the run is measured on this host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import PCA, FactorAnalysis, SparsePCA
from sklearn.metrics import average_precision_score, roc_auc_score
from vae_loadings_report import write_markdown, write_plots

from edgeprune.data import Dataset
from edgeprune.fileio import write_text_atomic
from edgeprune.loadings import encoder_module, shap_loadings
from edgeprune.vae import train_vae
from edgeprune.vae_network import vae_to_network

HERE = Path(__file__).resolve().parent
N_FEATURES, N_FACTORS, BLOCK, DENSITY = 1000, 5, 200, 0.8
N_SAMPLES, F_DENSITY, NOISE = 2000, 0.5, 0.5
HIDDEN, EPOCHS, BETA = [128], 60, 0.25
EXPLAIN_SAMPLES, PERMUTATIONS = 200, 10
ETAS = (0.5, 0.8, 0.9)
FINETUNE_EPOCHS = 20
COMPRESS_SAMPLES = 128  # explanation set of compress's link scoring
FIG4_FEATURES = (150, 600)  # 1-based, as in the poster


def simulate(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L (n x k), F (k x N), X (N x n)), float32 X."""
    rng = np.random.default_rng(seed)
    L = np.zeros((N_FEATURES, N_FACTORS))
    for k in range(N_FACTORS):
        rows = np.arange(k * BLOCK, (k + 1) * BLOCK)
        keep = rng.random(BLOCK) < DENSITY
        if k == 0:
            keep[FIG4_FEATURES[0] - 1] = True
        L[rows[keep], k] = rng.choice([-1.0, 1.0], keep.sum()) * rng.uniform(0.5, 1.5, keep.sum())
    F = rng.normal(size=(N_FACTORS, N_SAMPLES)) * (rng.random((N_FACTORS, N_SAMPLES)) < F_DENSITY)
    X = (L @ F).T + NOISE * rng.normal(size=(N_SAMPLES, N_FEATURES))
    return L, F, X.astype(np.float32)


def split(X: np.ndarray, F: np.ndarray) -> tuple[Dataset, np.ndarray]:
    """Train 80% / validation 10% / test 10% (rows already random); F of the training rows."""
    a, b = int(0.8 * len(X)), int(0.9 * len(X))
    ds = Dataset("simulated L F + noise", X[:a], X[a:b], X[b:], None, None, None, None, None)
    return ds, F[:, :a]


def match(scores: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``unit[k]``: the unit (column of ``scores``) assigned to factor k, and its |corr|."""
    k = F.shape[0]
    c = np.corrcoef(np.vstack([F, scores.T]))[:k, k:]
    c = np.nan_to_num(np.abs(c))  # a constant (dead) unit correlates with nothing
    rows, cols = linear_sum_assignment(-c)
    unit = np.empty(k, dtype=int)
    unit[rows] = cols
    return unit, c[np.arange(k), unit]


def recovery(loadings: np.ndarray, unit: np.ndarray, corr: np.ndarray, L: np.ndarray) -> dict:
    """AUROC/AUPRC of |loadings[:, unit[k]]| for the support of L[:, k], per factor."""
    auroc, auprc = [], []
    for k in range(L.shape[1]):
        truth = L[:, k] != 0
        score = np.abs(loadings[:, unit[k]])
        auroc.append(float(roc_auc_score(truth, score)))
        auprc.append(float(average_precision_score(truth, score)))
    return {"auroc": auroc, "auprc": auprc, "matched_unit": unit.tolist(),
            "match_abs_corr": corr.tolist(), "min_auroc": min(auroc),
            "mean_auroc": float(np.mean(auroc)), "mean_auprc": float(np.mean(auprc))}


def baselines(ds: Dataset, F_train: np.ndarray, L: np.ndarray, seed: int) -> dict:
    out = {}
    models = {"PCA": PCA(N_FACTORS, random_state=seed),
              "FactorAnalysis": FactorAnalysis(N_FACTORS, random_state=seed),
              "FactorAnalysis (varimax)": FactorAnalysis(N_FACTORS, rotation="varimax",
                                                         random_state=seed),
              "SparsePCA": SparsePCA(N_FACTORS, alpha=1.0, max_iter=30, random_state=seed)}
    for name, model in models.items():
        t0 = time.perf_counter()
        scores = model.fit_transform(ds.x_train)
        unit, corr = match(scores, F_train)
        out[name] = {**recovery(model.components_.T, unit, corr, L),
                     "seconds": time.perf_counter() - t0,
                     "loadings": model.components_.T.tolist()}
        print(f"{name}: AUROC {np.round(out[name]['auroc'], 3)} ({out[name]['seconds']:.0f} s)",
              flush=True)
    return out


def vae_rows(net, ds: Dataset, F_train: np.ndarray, L: np.ndarray, x_explain: np.ndarray,
             seed: int, explainer: str = "permutation") -> tuple[dict, dict, np.ndarray]:
    """The SHAP-loading rows of ``net``'s mu encoder: as is, and with the latent code rotated
    by varimax (``Loadings.varimax``); and the per-sample values (N, n, latent)."""
    enc = encoder_module(net)
    with torch.no_grad():
        mu = enc(torch.from_numpy(ds.x_train)).numpy().astype(np.float64)
    t0 = time.perf_counter()
    lo = shap_loadings(enc, x_explain, np.zeros(N_FEATURES), explainer=explainer,
                       permutations=PERMUTATIONS, seed=seed)
    common = {"shap_seconds": time.perf_counter() - t0, "explainer": explainer,
              "sparsity": float(net.sparsity)}
    unit, corr = match(mu, F_train)
    plain = {**recovery(lo.mean_abs, unit, corr, L), **common,
             "loadings": lo.mean_abs.tolist()}
    rot = lo.varimax()
    unit, corr = match(mu @ np.asarray(rot.info["rotation"]), F_train)
    rotated = {**recovery(rot.mean_abs, unit, corr, L), **common,
               "loadings": rot.mean_abs.tolist(), "rotation": rot.info["rotation"]}
    return plain, rotated, lo.phi


def pruned_rows(net, ds, F_train, L, x_explain, seed, etas, finetune_epochs) -> dict:
    from edgeprune.compress import CompressOptions, compress

    rows = {}
    for eta in etas:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            res = compress(net, ds, Path(tmp) / "out", CompressOptions(
                sparsity=eta, seed=seed, quiet=True, finetune_epochs=finetune_epochs,
                samples=COMPRESS_SAMPLES, export="npz"))
            seconds = time.perf_counter() - t0
        plain, rotated, _ = vae_rows(res.network, ds, F_train, L, x_explain, seed)
        extra = {"target_eta": eta, "compress_seconds": seconds,
                 "test_mse_before": res.report.metrics.get("before", {}).get("test_mse"),
                 "test_mse_after": res.report.metrics.get("after", {}).get("test_mse")}
        rows[f"VAE pruned eta {eta}"] = {**plain, **extra}
        rows[f"VAE pruned eta {eta} (varimax)"] = {**rotated, **extra}
        print(f"eta {eta} ({seconds:.0f} s): sparsity {plain['sparsity']:.3f} AUROC "
              f"{np.round(plain['auroc'], 3)}, varimax {np.round(rotated['auroc'], 3)}",
              flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer epochs, samples and etas")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE / "results" / "vae_loadings"))
    ap.add_argument("--from-json", metavar="RESULTS", default=None,
                    help="only rewrite README.md in --out from an earlier results.json")
    args = ap.parse_args()
    if args.from_json:
        write_markdown(json.loads(Path(args.from_json).read_text()), Path(args.out) / "README.md")
        return
    # One torch thread: on this shared 2-core machine two threads under load spin, measured
    # ~20x slower per op (the results do not depend on it).
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    seed = args.seed
    epochs = 5 if args.quick else EPOCHS
    n_explain = 32 if args.quick else EXPLAIN_SAMPLES
    L, F, X = simulate(seed)
    ds, F_train = split(X, F)
    x_explain = ds.x_train[np.sort(np.random.default_rng(seed).choice(
        len(ds.x_train), n_explain, replace=False))]
    t0 = time.perf_counter()
    vae, history = train_vae(ds.x_train, latent=N_FACTORS, hidden=HIDDEN, epochs=epochs,
                             beta=BETA, seed=seed, quiet=True, x_val=ds.x_val)
    train_seconds = time.perf_counter() - t0
    net = vae_to_network(vae.eval(), meta={"trained_on": ds.name})
    print(f"VAE trained in {train_seconds:.0f} s", flush=True)
    methods = {}
    methods["VAE SHAP loadings"], methods["VAE SHAP loadings (varimax)"], phi = vae_rows(
        net, ds, F_train, L, x_explain, seed)
    methods["VAE SHAP loadings"]["train_seconds"] = train_seconds
    for name in ("VAE SHAP loadings", "VAE SHAP loadings (varimax)"):
        print(f"{name}: AUROC {np.round(methods[name]['auroc'], 3)} "
              f"({methods[name]['shap_seconds']:.0f} s)", flush=True)
    methods["VAE SHAP loadings (deep)"], _, _ = vae_rows(net, ds, F_train, L, x_explain, seed,
                                                         explainer="deep")
    methods.update(baselines(ds, F_train, L, seed))
    methods.update(pruned_rows(net, ds, F_train, L, x_explain, seed,
                               ETAS[:1] if args.quick else ETAS,
                               2 if args.quick else FINETUNE_EPOCHS))
    # Fig. 4 from the varimax-rotated code (the unit that carries factor 1 after the rotation)
    unit1 = methods["VAE SHAP loadings (varimax)"]["matched_unit"][0]
    phi = phi @ np.asarray(methods["VAE SHAP loadings (varimax)"]["rotation"])
    res = {"machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
           "load_average": os.getloadavg()[0], "seed": seed, "quick": args.quick,
           "simulation": {"features": N_FEATURES, "factors": N_FACTORS, "block": BLOCK,
                          "density_in_block": DENSITY, "samples": N_SAMPLES,
                          "f_density": F_DENSITY, "noise_sd": NOISE,
                          "nonzero_per_factor": (L != 0).sum(axis=0).tolist()},
           "vae": {"hidden": HIDDEN, "latent": N_FACTORS, "epochs": epochs, "beta": BETA,
                   "final": {k: v[-1] for k, v in history.items()
                             if isinstance(v, list) and v}},
           "explanation_samples": n_explain, "permutations": PERMUTATIONS,
           "finetune_epochs": 2 if args.quick else FINETUNE_EPOCHS,
           "methods": methods,
           "fig4": {"factor": 1, "unit": int(unit1) + 1, "rotated": "varimax", "features": list(FIG4_FEATURES),
                    "true_loadings": [float(L[j - 1, 0]) for j in FIG4_FEATURES],
                    "values": {str(j): phi[:, j - 1, unit1].tolist() for j in FIG4_FEATURES}}}
    res["seconds"] = time.perf_counter() - t_start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_plots(res, L, out)
    write_markdown(res, out / "README.md")
    for row in methods.values():
        row.pop("loadings")
    write_text_atomic(out / "results.json", json.dumps(res, indent=2) + "\n")
    print(f"wrote {out} in {res['seconds']:.0f} s")


if __name__ == "__main__":
    main()
