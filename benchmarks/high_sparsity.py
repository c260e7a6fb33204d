"""Issue 13: Shapley score rules at high sparsity (eta 0.9, 0.95) against magnitude and LAP.

Usage: python benchmarks/high_sparsity.py [--data mnist5k] [--seeds 0,1,2] [--etas 0.9,0.95]
       [--variants a,b,...] [--runs DIR]     # measure; one JSON per (dataset, seed) in DIR
       python benchmarks/high_sparsity.py --report [--runs DIR] [--out DIR]   # tables + plot

The protocol is benchmarks/paper_mnist.py's, imported from it, not copied: the same cached
dense autoencoder (784-256-64-256-784, 30 epochs), the same fixed classifier, the same SHAP-SAE
scores (auto estimator, 256 samples, zero reference) and the same masked fine-tune (10 epochs,
Adam lr 1e-3, batch 64). Each variant prunes the dense AE to link sparsity eta (eq. 9, after the
cascade) and is measured pruned only and fine-tuned, on the test split: classifier accuracy on
the reconstructions (the headline), reconstruction MSE, and how many input pixels are still read.

Variants (every one reachable from ``edgeprune compress``; :data:`SPECS`):

* ``magnitude``, ``lap``: ``--method magnitude|lap``; ``global-magnitude``: one |w| threshold
  over all layers (``prune_global_magnitude``, the paper_mnist row).
* ``shap-sae``: ``--score-rule paper`` (mean |phi|, eq. 3); ``shap-rms``: ``--score-rule rms``;
  ``hybrid-0.5`` / ``hybrid-0.25``: ``--score-rule hybrid --alpha 0.5|0.25``.
* ``hybrid-auto``: ``--score-rule hybrid --alpha auto`` (alpha of 0, .25, .5, .75, 1 with the
  lowest validation MSE of the pruned, not yet fine-tuned network).
* ``*-g3``: ``--steps 3`` (cubic schedule 0.63 eta, 0.96 eta, eta), re-scoring the pruned
  network at each step, 3 + 3 epochs between steps and 4 after the last (the same 10 epochs in
  all). Pruned-only rows do not exist for gradual runs.
* ``*-comp``: ``--compensate``, every live unit's bias keeps its mean pre-activation on the
  training split (the pruned links' mean contributions folded in, edgeprune.prune.compensate);
  ``magnitude-comp`` is ``--method magnitude --compensate``, the fair baseline for it.
* ``shap-mean*`` / ``*-mean-comp``: scores with ``--reference mean`` (a link absent from a
  coalition contributes its mean, the interventional reference for independent inputs);
  ``shap-mean`` prunes them the paper's way (a pruned link is 0), ``shap-mean-comp`` and
  ``hybrid-A-mean-comp`` (``--score-rule hybrid --alpha A``) with ``--compensate``, as the game
  they were scored in says.
* ``*-rec``: ``--reconstruct`` (edgeprune.prune.reconstruct): after the mask is chosen (after
  each step with ``-g3``), the kept weights and biases are refit layer by layer, input to
  output, by ridge least squares on the training split so that each layer's pre-activations on
  the pruned network's own inputs match the dense network's (``--ridge``, default the
  library's 1e-3). ``magnitude-rec``, ``lap-rec`` and ``global-magnitude-rec`` are the
  baselines with the same refit (the report's "twin" columns pair each Shapley variant with
  them).

* fine-tune recipes (``RECIPES``), each for magnitude, global magnitude, LAP and hybrid-0.25:
  ``-kd`` = ``--distill 0.5`` (knowledge distillation from the dense AE, every layer),
  ``-kdo`` = ``--distill 0.5 --distill-on output``, ``-cos`` = ``--finetune-schedule cosine``,
  ``-kd-cos`` both, ``-lr3`` = ``--finetune-lr 3e-3``; the recipe table compares each with the
  same method's plain fine-tune and the Shapley rule with every baseline under the same recipe.
* ``*-global``: ``--allocation global`` (one budget over per-layer-normalised scores).
* ``*-bg*``: ``--reference background`` (interventional SHAP over 16 background samples).

Paired differences: per seed, variant minus magnitude on the same dense model, data split and
classifier; reported as mean +- std over seeds. The test split has 1,000 images (mnist5k), so one
image is 0.1 pp.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import paper_mnist as pm  # noqa: E402  (benchmarks/ is not a package)

RUNS = HERE / "cache" / "high_sparsity"
OUT = HERE / "results" / "high_sparsity"


def _spec(base="shap", rule="paper", alpha=1.0, reference="zero", compensate=False, steps=1,
          distill=0.0, distill_on="all", schedule="constant", allocation="layer",
          finetune_lr=None, reconstruct=False):
    return {"base": base, "rule": rule, "alpha": alpha, "reference": reference,
            "compensate": compensate, "steps": steps, "distill": distill,
            "distill_on": distill_on, "schedule": schedule, "allocation": allocation,
            "finetune_lr": finetune_lr, "reconstruct": reconstruct}


#: The fine-tune recipes of the distillation lever (suffix -> _spec keywords), each applied to
#: every method of :data:`RECIPE_METHODS`: KD on every layer's output, KD on the
#: reconstruction only, the cosine learning-rate decay, KD on every layer with it, and a
#: three times higher constant learning rate (3e-3; the cosine decay measured worse, so the
#: 10 epochs may be short of converging rather than too noisy).
RECIPES = {
    "kd": {"distill": 0.5},
    "kdo": {"distill": 0.5, "distill_on": "output"},
    "cos": {"schedule": "cosine"},
    "kd-cos": {"distill": 0.5, "schedule": "cosine"},
    "lr3": {"finetune_lr": 3e-3},
}
#: The spec keys a fine-tune recipe sets.
RECIPE_KEYS = ("distill", "distill_on", "schedule", "finetune_lr")
RECIPE_METHODS = {"magnitude": {"base": "magnitude"},
                  "global-magnitude": {"base": "global-magnitude"}, "lap": {"base": "lap"},
                  "hybrid-0.25": {"rule": "hybrid", "alpha": 0.25}}


#: Every variant: where its scores come from (a baseline, or SHAP-SAE with a reference), the
#: score rule, bias compensation and gradual steps; each is one ``edgeprune compress`` command
#: (module docstring).
SPECS = {
    "magnitude": _spec("magnitude"), "global-magnitude": _spec("global-magnitude"),
    "lap": _spec("lap"), "shap-sae": _spec(), "shap-rms": _spec(rule="rms"),
    "hybrid-0.25": _spec(rule="hybrid", alpha=0.25), "hybrid-0.5": _spec(rule="hybrid", alpha=0.5),
    "magnitude-g3": _spec("magnitude", steps=3),
    "hybrid-0.5-g3": _spec(rule="hybrid", alpha=0.5, steps=3),
    "hybrid-0.25-g3": _spec(rule="hybrid", alpha=0.25, steps=3),
    "magnitude-comp-g3": _spec("magnitude", compensate=True, steps=3),
    "hybrid-0.25-comp-g3": _spec(rule="hybrid", alpha=0.25, compensate=True, steps=3),
    "hybrid-auto": _spec(rule="hybrid", alpha="auto"),
    "magnitude-comp": _spec("magnitude", compensate=True),
    "hybrid-0.25-comp": _spec(rule="hybrid", alpha=0.25, compensate=True),
    "shap-mean": _spec(reference="mean"),
    "shap-mean-comp": _spec(reference="mean", compensate=True),
    "hybrid-0.25-mean-comp": _spec(rule="hybrid", alpha=0.25, reference="mean", compensate=True),
    "hybrid-0.5-mean-comp": _spec(rule="hybrid", alpha=0.5, reference="mean", compensate=True),
    **{f"{m}-{r}": _spec(**{**kw, **rk}) for r, rk in RECIPES.items()
       for m, kw in RECIPE_METHODS.items()},
    # allocation: one budget over per-layer-normalised scores (--allocation global)
    "hybrid-0.25-global": _spec(rule="hybrid", alpha=0.25, allocation="global"),
    "shap-sae-global": _spec(allocation="global"),
    "lap-global": _spec("lap", allocation="global"),
    # interventional SHAP: 16 background samples as the reference (--reference background)
    "shap-bg-comp": _spec(reference="background", compensate=True),
    "hybrid-0.25-bg": _spec(rule="hybrid", alpha=0.25, reference="background"),
    "hybrid-0.25-bg-comp": _spec(rule="hybrid", alpha=0.25, reference="background",
                                 compensate=True),
    "magnitude-rec": _spec("magnitude", reconstruct=True),
    "hybrid-0.25-rec": _spec(rule="hybrid", alpha=0.25, reconstruct=True),
    "global-magnitude-rec": _spec("global-magnitude", reconstruct=True),
    "lap-rec": _spec("lap", reconstruct=True),
    "shap-sae-rec": _spec(reconstruct=True),
    "hybrid-0.5-rec": _spec(rule="hybrid", alpha=0.5, reconstruct=True),
    "magnitude-rec-g3": _spec("magnitude", steps=3, reconstruct=True),
    "hybrid-0.25-rec-g3": _spec(rule="hybrid", alpha=0.25, steps=3, reconstruct=True),
    # both defaults of `compress` together: the refit and the 3e-3 fine-tune (and its twin)
    "hybrid-0.25-rec-lr3": _spec(rule="hybrid", alpha=0.25, reconstruct=True, finetune_lr=3e-3),
    "magnitude-rec-lr3": _spec("magnitude", reconstruct=True, finetune_lr=3e-3),
}
VARIANTS = list(SPECS)
#: The baselines a Shapley rule has to beat (issue 13's goal).
BASELINES = ("magnitude", "global-magnitude", "lap")


def cached_shap(spec: str, dense, ds, seed: int, rc: dict, reference: str):
    """SHAP-SAE scores of the dense AE with ``reference`` (cached by paper_mnist), as
    :class:`NetworkScores` with the mean and variance of phi."""
    from edgeprune.scoring import NetworkScores
    from edgeprune.shapley import LayerScores

    rc = {**rc, "reference": reference}
    pm.shap_scores(spec, dense, ds, seed, rc)  # computes and caches on the first run
    with np.load(pm.scores_path(spec, dense, seed, rc)) as z:  # li, signed and var of phi
        return NetworkScores([LayerScores(li=z[f"li{k}"], ui=z[f"ui{k}"], signed=z[f"signed{k}"],
                                          var=z[f"var{k}"], stderr=None, estimator="cached",
                                          seconds=0.0, n_samples=rc["samples"], n_evaluations=0)
                              for k in range(1, len(dense.layers) + 1)],
                             rc["estimator"], reference, rc["samples"], seed)


def run_one(spec: str, seed: int, etas: list[float], variants: list[str], quiet: bool,
            save=None, finetune: bool = True, ridge: float | None = None) -> dict:
    """Every variant at every eta on one dataset and seed; ``save(doc)`` (optional) is called
    with the rows so far after each variant; ``finetune=False`` measures pruned only (no
    gradual variants then); ``ridge``: --reconstruct-ridge of the ``*-rec`` variants
    (default: the library's)."""
    from edgeprune.choices import DEFAULT_RECONSTRUCT_RIDGE
    from edgeprune.compress import CompressOptions
    from edgeprune.data import explanation_set, load_dataset
    from edgeprune.gradual import gradual_prune
    from edgeprune.prune import baseline_scores, prune_global_magnitude, prune_network
    from edgeprune.prune.compensate import compensate_biases
    from edgeprune.prune.reconstruct import reconstruct_weights
    from edgeprune.scoring import auto_alpha_scores, rule_scores, score_network
    from edgeprune.train import accuracy, train_network

    rc = pm.recipe(types.SimpleNamespace(quick=False, estimator="auto", samples=None,
                                         threads=1))
    ds = load_dataset(spec, seed=seed)
    nets, _ = pm.trained_models(spec, ds, seed, rc, quiet, only=("dense",))
    dense, clf = nets["dense"], nets["classifier"]
    shap = {ref: cached_shap(spec, dense, ds, seed, rc, ref) for ref in
            sorted({SPECS[v]["reference"] for v in variants if SPECS[v]["base"] == "shap"})}
    ft = {"epochs": rc["finetune_epochs"], "lr": rc["finetune_lr"],
          "batch_size": rc["batch_size"], "seed": seed, "quiet": True}
    x_explain = explanation_set(ds, rc["samples"], seed)
    ridge = DEFAULT_RECONSTRUCT_RIDGE if ridge is None else ridge
    rows = []

    def tune(sp, net, epochs=None):  # the masked fine-tune with the variant's recipe
        kw = {**ft, **({"epochs": epochs} if epochs is not None else {}),
              **({"lr": sp["finetune_lr"]} if sp["finetune_lr"] else {}),
              "distill": sp["distill"], "distill_on": sp["distill_on"],
              "schedule": sp["schedule"], "teacher": dense}
        return train_network(net, ds.x_train, ds.x_val, **kw)[0]

    def record(variant, eta, net, finetune, seconds, extra=None):
        recon = net.forward(ds.x_test)
        row = {"dataset": spec, "variant": variant, "eta": eta, "finetune": finetune,
               "seed": seed, "achieved_eta": round(net.sparsity, 6),
               "mse": float(np.mean((recon - ds.x_test) ** 2)),
               "classifier_accuracy": accuracy(clf, recon, ds.y_test),
               "inputs_read": int(net.layers[0].mask.any(axis=0).sum()),
               "links_kept_per_layer": [layer.n_active for layer in net.layers],
               "seconds": round(seconds, 2), **(extra or {})}
        rows.append(row)
        if not quiet:
            print(f"  s{seed} {variant:>15} eta={eta:<4} ft={finetune!s:<5} "
                  f"eta*={row['achieved_eta']:.4f} mse={row['mse']:.5f} "
                  f"clf={row['classifier_accuracy']:.4f} in={row['inputs_read']} "
                  f"({seconds:.0f}s)", flush=True)

    def scores_of(sp, net):
        if sp["base"] != "shap":
            return baseline_scores(sp["base"], net, seed=seed)
        sc = shap[sp["reference"]] if net is dense else score_network(
            net, x_explain, estimator=rc["estimator"], reference=sp["reference"], seed=seed,
            quiet=True)  # the gradual runs re-score the pruned, fine-tuned network
        return rule_scores(sc, net, sp["rule"], sp["alpha"])

    def compensated(sp, before, res):
        if sp.get("reconstruct"):
            return dataclasses.replace(res, network=reconstruct_weights(
                before, res.network, ds.x_train, ridge=ridge)[0])
        if not sp["compensate"]:
            return res
        return dataclasses.replace(res, network=compensate_biases(before, res.network,
                                                                  ds.x_train))

    def doc():
        return {"dataset": spec, "seed": seed, "etas": etas, "variants": variants,
                "recipe": {**rc, "reconstruct_ridge": ridge}, "rows": rows}

    record("dense", 0.0, dense, False, 0.0)
    for variant in variants:
        if save is not None:
            save(doc())
        sp = SPECS[variant]
        for eta in etas:
            t0 = time.perf_counter()
            extra = None
            if sp["steps"] > 1:
                if not finetune:
                    break
                opts = CompressOptions(sparsity=eta, steps=sp["steps"],
                                       finetune_epochs=rc["finetune_epochs"],
                                       allocation=sp["allocation"])
                res, _, _, left = gradual_prune(
                    dense, ds, opts, lambda n, sp=sp: (scores_of(sp, n), None),
                    lambda n, e, sp=sp: tune(sp, n, e),
                    lambda n: {}, adjust=lambda b, r, sp=sp: compensated(sp, b, r))
                tuned = tune(sp, res.network, left)
                record(variant, eta, tuned, True, time.perf_counter() - t0)
                continue
            if sp["alpha"] == "auto":
                scores, search = auto_alpha_scores(shap[sp["reference"]], dense, ds.x_val,
                                                   ds.y_val, sparsity=eta)
                res = prune_network(dense, scores, sparsity=eta)
                extra = {"alpha": search["alpha"]}
            elif sp["base"] == "global-magnitude":
                res = prune_global_magnitude(dense, eta)
            else:
                res = prune_network(dense, scores_of(sp, dense), sparsity=eta,
                                    allocation=sp["allocation"])
            res = compensated(sp, dense, res)
            if not recipe_of(sp):  # a fine-tune recipe leaves the pruned network as it was
                record(variant, eta, res.network, False, time.perf_counter() - t0, extra)
            if not finetune:
                continue
            tuned = tune(sp, res.network)
            record(variant, eta, tuned, True, time.perf_counter() - t0, extra)
    return doc()


def recipe_of(sp: dict) -> str:
    """The fine-tune recipe suffix of a spec ("" for the plain fine-tune): a key of
    :data:`RECIPES`."""
    plain = _spec()
    for name, kw in RECIPES.items():
        if all(sp[k] == {**plain, **kw}[k] for k in RECIPE_KEYS):
            return name
    return ""


# -- report -----------------------------------------------------------------------------------


def modes(rows: list[dict]) -> list[bool]:
    """Fine-tuned and/or pruned only: the ones these rows have (a --pruned-only run: one)."""
    return [ft for ft in (True, False) if any(r["finetune"] == ft for r in rows)]


def unique_rows(docs: list[dict]) -> list[dict]:
    """Every row once: a seed run in several processes (variants split) repeats its dense row.
    Each row gets ``pair``, the seed and the torch version it ran under: the same seed trained
    under another torch version is another dense model, so rows pair only within one."""
    seen, rows = set(), []
    for d in docs:
        torch = (d.get("machine") or {}).get("torch", "?")
        for r in d["rows"]:
            key = (r["dataset"], r["variant"], r["eta"], r["finetune"], r["seed"], torch)
            if key not in seen:
                seen.add(key)
                rows.append({**r, "pair": f"{r['seed']}@{torch}"})
    return rows


def paired(rows: list[dict], variant: str, eta: float, finetune: bool, key: str,
           against: str = "magnitude"):
    """Per-seed differences variant - ``against`` (in pp for accuracy), seeds where both ran
    (a seed is its ``pair`` key when rows have one: :func:`unique_rows`)."""
    def by_seed(v):
        return {r.get("pair", r["seed"]): r[key] for r in rows
                if r["variant"] == v and r["eta"] == eta and r["finetune"] == finetune}
    a, m = by_seed(variant), by_seed(against)
    seeds = sorted(set(a) & set(m))
    scale = 100.0 if key == "classifier_accuracy" else 1.0
    return np.array([scale * (a[s] - m[s]) for s in seeds])


def fmt(d: np.ndarray, digits: int = 2) -> str:
    if d.size == 0:
        return "–"
    sd = f" ± {d.std(ddof=1):.{digits}f}" if d.size > 1 else ""
    return f"{d.mean():+.{digits}f}{sd}"


def fmt_se(d: np.ndarray, digits: int = 2) -> str:
    """mean ± standard error (n): the paired difference and how sure it is."""
    if d.size < 2:
        return fmt(d, digits) + (f" (n={d.size})" if d.size else "")
    return f"{d.mean():+.{digits}f} ± {d.std(ddof=1) / np.sqrt(d.size):.{digits}f} (n={d.size})"


def machines(docs: list[dict]) -> list[str]:
    """Which machine ran which (dataset, seeds): the runs record it."""
    by: dict[str, set] = {}
    for d in docs:
        m = d.get("machine", {})
        label = m.get("label") or (f"{m.get('platform', '?')}, {m.get('cpus', '?')} CPUs, "
                                   f"torch {m.get('torch', '?')}")
        by.setdefault(label, set()).add(f"{d['dataset']} s{d['seed']}")
    return [f"- {label}: {', '.join(sorted(v))}" for label, v in by.items()]


def summarize(docs: list[dict], out: Path) -> str:
    rows = unique_rows(docs)
    etas = sorted({e for d in docs for e in d["etas"]})
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
    seeds = sorted({d["seed"] for d in docs})
    datasets = sorted({d["dataset"] for d in docs})
    lines = ["# High-sparsity Shapley rules (issue 13), measured (CPU, see the machines below)",
             "",
             f"Data {', '.join(datasets)}; seeds {seeds} (not every variant on every seed: n "
             "says how many pairs); the paper_mnist protocol (benchmarks/high_sparsity.py "
             "docstring). Classifier accuracy on the reconstructions of the test split "
             "(mnist5k: 1,000 images, 0.1 pp each; digits: 540, 0.19 pp); Δ = variant − "
             "magnitude on the same seed (same dense model, split and classifier, so every "
             "pair ran on one machine; a seed run under two torch versions is two dense "
             "models, paired separately), mean ± std over seeds; the last tables give mean ± "
             "standard error.", "",
             "Machines (the rows of one seed under one torch version ran on one of them):", "",
             *machines(docs), ""]
    for spec in datasets:
        rs = [r for r in rows if r["dataset"] == spec]
        dense = [100 * r["classifier_accuracy"] for r in rs if r["variant"] == "dense"]
        sd = np.std(dense, ddof=1) if len(dense) > 1 else 0.0
        lines += [f"## {spec}", "", f"Dense AE: {np.mean(dense):.2f} ± {sd:.2f} % "
                  f"({len(dense)} dense models: seeds, each under the torch version it ran "
                  "with)", ""]
        for ft in modes(rs):
            lines += [f"### {'fine-tuned (10 epochs)' if ft else 'pruned only'}", "",
                      "| variant | " + " | ".join(f"acc η={e} | Δ acc vs magnitude η={e} | "
                                                  f"inputs read η={e}" for e in etas) + " |",
                      "|---|" + "---:|---:|---:|" * len(etas)]
            for v in variants:
                cells = []
                for e in etas:
                    sel = [r for r in rs if r["variant"] == v and r["eta"] == e
                           and r["finetune"] == ft]
                    if not sel:
                        cells += ["–", "–", "–"]
                        continue
                    acc = np.array([100 * r["classifier_accuracy"] for r in sel])
                    inp = np.mean([r["inputs_read"] for r in sel])
                    cells += [f"{acc.mean():.2f}", "0" if v == "magnitude" else
                              fmt(paired(rs, v, e, ft, "classifier_accuracy")), f"{inp:.0f}"]
                lines.append(f"| {v} | " + " | ".join(cells) + " |")
            alphas = [f"s{r['seed']} η={r['eta']}: {r['alpha']:g}" for r in rs
                      if r["variant"] == "hybrid-auto" and r["finetune"] == ft]
            if alphas:
                lines += ["", "hybrid-auto chose α = " + ", ".join(alphas) + "."]
            lines += ["", "MSE, Δ vs magnitude (×1e-3): " + "; ".join(
                f"{v} η={e}: " + fmt(1e3 * paired(rs, v, e, ft, "mse"))
                for v in variants if v != "magnitude" for e in etas
                if paired(rs, v, e, ft, "mse").size), ""]
        lines += against_baselines(rs, etas, variants)
        lines += recipe_table(rs, etas)
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(text)
    plot(rows, etas, variants, datasets, out / "high_sparsity.png")
    plot_vs_eta(rows, etas, variants, datasets, out / "accuracy_vs_eta.png")
    return text


def twin(variant: str, base: str = "magnitude") -> str:
    """The ``base`` run (a baseline) with the same schedule, compensation, reconstruction,
    fine-tune recipe and allocation (magnitude-comp-g3 for hybrid-0.25-comp-g3, lap-rec for
    hybrid-0.25-rec, magnitude-kd for hybrid-0.25-kd, global-magnitude for hybrid-0.25-global):
    what separates the score rule from the rest of the recipe."""
    sp = SPECS[variant]
    recipe = recipe_of(sp)
    if sp.get("allocation") == "global" and base == "magnitude":
        base = "global-magnitude"
    return (base + ("-comp" if sp["compensate"] else "")
            + ("-rec" if sp.get("reconstruct") else "")
            + (f"-g{sp['steps']}" if sp["steps"] > 1 else "") + (f"-{recipe}" if recipe else ""))


def recipe_table(rs: list[dict], etas: list[float]) -> list[str]:
    """The fine-tune recipes (:data:`RECIPES`) side by side, fine-tuned rows only: each method
    with a recipe against the same method's plain fine-tune (the recipe's own effect: if it
    helps every method alike it is no argument for a score rule), against the dense AE, and
    the Shapley rule with a recipe against every baseline with the same recipe."""
    have = {r["variant"] for r in rs if r["finetune"]}
    recipes = [r for r in RECIPES if any(f"{m}-{r}" in have for m in RECIPE_METHODS)]
    if not recipes:
        return []
    shap_method = next(m for m, kw in RECIPE_METHODS.items() if "base" not in kw)
    lines = ["### Fine-tune recipes (pp, paired mean ± standard error over seeds)", "",
             "Recipes: " + "; ".join(f"`-{r}`: " + ", ".join(f"{k}={v}" for k, v in kw.items())
                                     for r, kw in RECIPES.items() if r in recipes)
             + ". Recipe effect = the method with the recipe minus the same method with the "
             "plain fine-tune; 'same recipe' columns compare the Shapley rule with each "
             "baseline fine-tuned the same way.", "",
             "| variant | " + " | ".join(
                 f"acc η={e} | recipe effect η={e} | vs dense η={e} | "
                 + " | ".join(f"vs {b} same recipe η={e}" for b in BASELINES)
                 for e in etas) + " |",
             "|---|" + ("---:|" * (3 + len(BASELINES))) * len(etas)]
    for r in ["", *recipes]:
        for m in RECIPE_METHODS:
            v = f"{m}-{r}" if r else m
            if v not in have:
                continue
            cells = []
            for e in etas:
                acc = [100 * x["classifier_accuracy"] for x in rs if x["variant"] == v
                       and x["eta"] == e and x["finetune"]]
                dense = paired([{**x, "eta": e, "finetune": True} if x["variant"] == "dense"
                                else x for x in rs], v, e, True, "classifier_accuracy", "dense")
                cells += [f"{np.mean(acc):.2f}" if acc else "–",
                          fmt_se(paired(rs, v, e, True, "classifier_accuracy", m)) if r
                          else "0", fmt_se(dense)]
                cells += [fmt_se(paired(rs, v, e, True, "classifier_accuracy",
                                        f"{b}-{r}" if r else b)) if m == shap_method else "–"
                          for b in BASELINES]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def against_baselines(rs: list[dict], etas: list[float], variants: list[str]) -> list[str]:
    """Paired Δ accuracy (pp, mean ± standard error) of every Shapley variant against each
    baseline (the goal's comparisons), against the baselines' twins with the same recipe
    (:func:`twin`; "twin" is magnitude's, "twin lap" LAP's, ...) and, for the fine-tuned
    networks, against the dense AE (as trained)."""
    shap = [v for v in variants if SPECS[v]["base"] == "shap"]
    base = [b for b in BASELINES if any(r["variant"] == b for r in rs)]
    twins = [b for b in BASELINES if any(r["variant"] == twin(v, b) != b for v in shap
                                         for r in rs)]
    lines = []
    for ft in modes(rs):
        cols = [*base, *(("twin" if b == "magnitude" else f"twin {b}") for b in twins),
                *(["dense"] if ft else [])]
        lines += [f"### Δ accuracy vs each baseline, {'fine-tuned' if ft else 'pruned only'} "
                  "(pp, mean ± standard error over seeds; twin: magnitude with the same "
                  "--compensate/--reconstruct/--steps, twin lap / twin global-magnitude: "
                  "those baselines with them)", "",
                  "| variant | " + " | ".join(f"vs {b} η={e}" for e in etas for b in cols)
                  + " |", "|---|" + "---:|" * (len(etas) * len(cols))]
        for v in shap:
            cells = []
            for e in etas:
                for b in cols:
                    other = (twin(v, "magnitude" if b == "twin" else b.removeprefix("twin "))
                             if b.startswith("twin") else b)
                    if b == "dense":
                        d = paired([{**r, "eta": e, "finetune": ft} if r["variant"] == "dense"
                                    else r for r in rs], v, e, ft, "classifier_accuracy", "dense")
                    elif b.startswith("twin") and other in BASELINES:
                        d = np.array([])  # the plain baseline has its own column
                    else:
                        d = paired(rs, v, e, ft, "classifier_accuracy", other)
                    cells.append(fmt_se(d) + (f" ({other})" if b.startswith("twin") and d.size
                                              else ""))
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def panels(rows, datasets):
    """One axis per (dataset, fine-tuned / pruned only): yields (ax, dataset rows, ft) and
    returns the figure to save (:func:`save_figure`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fts = modes(rows)
    fig, axes = plt.subplots(len(datasets), len(fts), figsize=(6 * len(fts), 4 * len(datasets)),
                             squeeze=False)
    cells = [(axes[i][j], spec, [r for r in rows if r["dataset"] == spec], ft)
             for i, spec in enumerate(datasets) for j, ft in enumerate(fts)]
    return fig, cells


def save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot(rows, etas, variants, datasets, path: Path) -> None:
    fig, cells = panels(rows, datasets)
    for ax, spec, rs, ft in cells:
        shown = [v for v in variants if v != "magnitude"
                 and any(r["variant"] == v and r["finetune"] == ft for r in rs)]
        width = 0.8 / max(1, len(etas))
        for k, e in enumerate(etas):
            d = [paired(rs, v, e, ft, "classifier_accuracy") for v in shown]
            ax.bar(np.arange(len(shown)) + k * width,
                   [x.mean() if x.size else np.nan for x in d], width,
                   yerr=[x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else 0 for x in d],
                   label=f"η = {e}", capsize=3)
        ax.axhline(0, color="k", lw=0.8)
        clip_off_scale(ax, [paired(rs, v, e, ft, "classifier_accuracy") for e in etas
                            for v in shown], len(shown), width, len(etas))
        ax.set_xticks(np.arange(len(shown)) + width * (len(etas) - 1) / 2)
        ax.set_xticklabels(shown, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("Δ classifier accuracy vs magnitude (pp)")
        ax.set_title(f"{spec}, {'fine-tuned' if ft else 'pruned only'}: paired Δ, "
                     "mean ± s.e. (measured, CPU)", fontsize=9)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def clip_off_scale(ax, diffs, n_bars, width, n_etas, floor=-15.0) -> None:
    """Keep the axis on the differences that matter: bars far below ``floor`` (a collapsed
    rule, e.g. the mean reference on MNIST-5k) are cut at it and labelled with their value."""
    means = [d.mean() if d.size else np.nan for d in diffs]
    if not np.nanmin(means, initial=0.0) < floor:
        return
    ax.set_ylim(bottom=floor * 1.1)
    for idx, m in enumerate(means):
        if m < floor:
            k, i = divmod(idx, n_bars)
            ax.text(i + k * width, floor * 1.05, f"{m:.0f}", ha="center", va="bottom",
                    fontsize=6, rotation=90, color="white")


#: What ``compress --method shap-sae`` does by default (drawn in black).
DEFAULT_VARIANT = "hybrid-0.25-rec"
#: The rows of the Figure-3-style plot (the paper's methods and the rules of this issue).
FIGURE_VARIANTS = ("magnitude", "global-magnitude", "lap", "shap-sae", "hybrid-0.25",
                   "hybrid-0.25-comp", "magnitude-comp", "hybrid-0.25-mean-comp",
                   "shap-mean-comp", "hybrid-0.25-g3", "hybrid-0.25-comp-g3",
                   "magnitude-lr3", "hybrid-0.25-lr3", "hybrid-0.25-kd",
                   "magnitude-rec", "lap-rec", "global-magnitude-rec", "hybrid-0.25-rec",
                   "hybrid-0.25-rec-g3")


#: How far below the worst baseline run the panels of :func:`plot_vs_eta` reach (pp); the
#: collapsed rules below stay in the legend and in the tables.
AXIS_DEPTH = 10.0


def plot_vs_eta(rows, etas, variants, datasets, path: Path) -> None:
    """Figure 3 of the paper, for the high-sparsity end: classifier accuracy against eta
    (the dense AE at 0), mean ± standard error over the seeds each variant ran."""
    fig, cells = panels(rows, datasets)
    for ax, spec, rs, ft in cells:
        dense = np.array([100 * r["classifier_accuracy"] for r in rs if r["variant"] == "dense"])
        for v in [v for v in FIGURE_VARIANTS if v in variants]:
            xs, ys, es = [0.0], [dense.mean()], [0.0]
            for e in etas:
                acc = np.array([100 * r["classifier_accuracy"] for r in rs
                                if r["variant"] == v and r["eta"] == e
                                and r["finetune"] == ft])
                if acc.size:
                    xs.append(e)
                    ys.append(acc.mean())
                    es.append(acc.std(ddof=1) / np.sqrt(acc.size) if acc.size > 1 else 0)
            if len(xs) > 1:
                ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2,
                            label=v + (" (default)" if v == DEFAULT_VARIANT else ""),
                            color="k" if v == DEFAULT_VARIANT else None,
                            lw=2.2 if "rec" in v else 1.0,
                            ls="-" if SPECS[v]["base"] == "shap" else "--")
        ax.set_xlabel("link sparsity η")
        ax.set_ylabel("classifier accuracy on reconstructions (%)")
        cut = ""
        base = [100 * r["classifier_accuracy"] for r in rs if r["variant"] in BASELINES
                and r["finetune"] == ft]
        floor = min(base, default=0.0) - AXIS_DEPTH
        if ax.get_ylim()[0] < floor:  # keep the rows near the baselines readable
            ax.set_ylim(bottom=floor)
            cut = f"; y from {floor:.0f} %"
        ax.set_title(f"{spec}, {'fine-tuned 10 epochs' if ft else 'pruned only'} "
                     f"(measured, CPU; solid: Shapley rules, dashed: baselines{cut})",
                     fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist5k")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--etas", default="0.9,0.95")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--runs", type=Path, default=RUNS)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--report", action="store_true", help="Only write tables and the plot.")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--pruned-only", action="store_true",
                    help="No fine-tuning (the goal's pruned-only sweep over many etas).")
    ap.add_argument("--ridge", type=float, default=None,
                    help="--reconstruct-ridge of the *-rec variants (default: the library's).")
    ap.add_argument("--machine-label", default=None,
                    help="Where this runs, recorded in every run file (default: platform, CPUs "
                         "and torch version).")
    args = ap.parse_args(argv)
    if args.report:
        docs = [json.loads(p.read_text()) for p in sorted(args.runs.glob("*.json"))]
        if not docs:
            raise SystemExit(f"no runs under {args.runs}")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(
            {"measured_on": machines(docs), "runs": docs}, indent=1) + "\n")
        print(summarize(docs, args.out))
        return 0
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    args.runs.mkdir(parents=True, exist_ok=True)
    etas = [float(e) for e in args.etas.split(",")]
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in SPECS]
    if unknown:
        raise SystemExit(f"--variants: unknown {', '.join(unknown)}; use {', '.join(VARIANTS)}")
    tag = ("all" if variants == VARIANTS else "-".join(variants)) + (
        "_pruned" if args.pruned_only else "")
    if len(tag) > 120:
        import hashlib

        tag = hashlib.sha1(tag.encode()).hexdigest()[:10]
    machine = {"platform": platform.platform(), "cpus": os.cpu_count(),
               "torch": torch.__version__, **({"label": args.machine_label}
                                              if args.machine_label else {})}
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="sklearn")
        for spec in args.data.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                t0 = time.perf_counter()
                path = args.runs / f"{pm.data_tag(spec)}_s{seed}_{tag}.json"

                def save(doc, path=path, t0=t0):  # after every variant: a killed run keeps rows
                    doc.update(wall_seconds=round(time.perf_counter() - t0, 1), machine=machine,
                               git=pm.git_state(), command=" ".join(sys.argv))
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(doc, indent=1) + "\n")
                    tmp.replace(path)

                save(run_one(spec, seed, etas, variants, args.quiet, save,
                             finetune=not args.pruned_only, ridge=args.ridge))
    return 0


if __name__ == "__main__":
    sys.exit(main())
