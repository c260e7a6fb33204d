"""Issue 17: ShapNets (Wang et al., ICLR 2021) on offline data, the paper's tables side by side.

Usage: nice python benchmarks/shapnets.py [--seeds-bc 3] [--seeds-syn 2] [--quick] [--out DIR]
       python benchmarks/shapnets.py --report-only [--out DIR]   # tables + plots from the JSON

Data: ``synthetic16`` (the paper's regression, 16 features, f(v) = Σv + Σv² + 0.05ε; the first
3,000 of its 7,000 training rows are used to keep the run short) and ``breast-cancer``
(scikit-learn's Breast Cancer Wisconsin, 30 features min-max scaled, 70/10/20 split by seed).
Every model: Adam lr 3e-3, batch 64 (synthetic, 15 epochs) / 32 (Breast Cancer, 20 epochs),
inner MLP 1 hidden layer of 32 ReLU units, 8 channels, reference = training mean, k = 2.

- Table 1: test MSE / accuracy of Deep and Shallow ShapNets and two ReLU MLPs of 3 hidden
  layers, one with about the Deep ShapNet's parameters (eq. param.), one with about its
  multiply-accumulates per sample (eq. comp.: a module evaluates its inner MLP 2^k times).
- Table 3: mean normalised ℓ1 difference ||φ - γ||₁ / d (paper eq. 8; classifiers: weighted by
  the softmax of the outputs, App. G.1) of an explanation γ from the model's exact Shapley values
  φ, on test rows: φ by brute force over all 2^16 coalitions (synthetic); on Breast Cancer
  (2^30 coalitions) φ is KernelSHAP with 2^13 coalitions, as the paper used a large KernelSHAP.
  γ: the intrinsic explanation, KernelSHAP (shap, ``l1_reg=False``) with 77 and its default
  2d + 2048 coalitions; the background is the model's reference, so every method computes
  Baseline Shapley values.
- Table 4: Deep ShapNets on Breast Cancer with no regulariser, ℓ1 on the explanation, ℓ1 on
  every representation, ℓ∞ (λ = 0.1 each; the two ℓ1 also at λ = 1, suffix ``-1``): accuracy, sparsity (share of |φ| of the predicted
  class below 1% of the sample's Σ|φ|), coefficient of variation of the mean |φ| over features.
- Fig. 5: accuracy vs the share of Shapley modules (and multiply-adds) skipped when every module
  whose inputs are within t of its reference is skipped (Cor. 4), t swept, in the edgeprune
  runtime (the Deep ShapNets compiled to bundle v4 in memory); and the batch-1 latency per input
  with skipping on this host (``bench``'s harness) for the unregularised and ℓ1-all models.
- Table 5: seconds to explain one sample (median over samples) on this host, one torch thread:
  the Deep ShapNet's own forward pass vs KernelSHAP (40, 77, default) and shap's permutation
  explainer on the same untrained Deep ShapNet (16 features, inner 1 x 100 hidden, as App. I.1)
  and on the two comparable MLPs.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeprune.data import load_dataset
from edgeprune.fileio import write_text_atomic
from edgeprune.shapnet import DeepShapNet
from edgeprune.shapnet.training import (
    Regularisation,
    ShapNetSpec,
    build_shapnet,
    metrics,
    reference_values,
    single_thread,
    task_data,
    task_loss,
    train_shapnet,
)
from edgeprune.train import adam_epochs

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "shapnets"
sys.path.insert(0, str(HERE))

SETUPS = {
    "synthetic16": {"epochs": 15, "batch_size": 64, "train_rows": 3000},
    "breast-cancer": {"epochs": 20, "batch_size": 32, "train_rows": None},
}
LR = 3e-3
SPEC = {"channels": 8, "hidden": (32,), "active_size": 2, "reference": "mean"}
REGULARISERS = {"none": Regularisation(), "l1-last": Regularisation(l1=0.1),
                "l1-all": Regularisation(l1=0.1, l1_layers="all"),
                "linf": Regularisation(smooth=0.1), "l1-last-1": Regularisation(l1=1.0),
                "l1-all-1": Regularisation(l1=1.0, l1_layers="all")}
THRESHOLDS = [0.0, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0]
LATENCY_THRESHOLDS = [0.0, 1e-2, 0.1]


# -- models --------------------------------------------------------------------------------------
def shapnet_macs(model) -> int:
    """Multiply-accumulates per sample: every module runs its inner MLP on 2^k copies."""
    modules = (list(model.modules_list) if hasattr(model, "modules_list")
               else [m for t in model.transforms for m in t])
    return sum(2 ** m.k * sum(layer.in_features * layer.out_features for layer in m.inner
                              if isinstance(layer, nn.Linear)) for m in modules)


def mlp(in_dim: int, out_dim: int, width: int, depth: int = 3) -> nn.Sequential:
    dims = [in_dim] + [width] * depth
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(dims[-1], out_dim))


def width_for(target: int, in_dim: int, out_dim: int, depth: int = 3) -> int:
    """The hidden width whose MLP has about ``target`` weights (= MACs per sample)."""
    a, b = depth - 1, in_dim + out_dim  # a w^2 + b w = target
    return max(1, round((-b + math.sqrt(b * b + 4 * a * target)) / (2 * a)))


class MLPRegressor(nn.Module):
    """An MLP with the ShapNets' ``(prediction, None)`` forward, for one training loop."""

    def __init__(self, net: nn.Sequential):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x), None


def train_mlp(model, x, t, task, setup, seed) -> None:
    x_t = torch.from_numpy(x)
    t_t = torch.from_numpy(np.asarray(t, dtype=np.int64 if task == "classification"
                                      else np.float32))
    torch.manual_seed(seed)
    with single_thread():
        adam_epochs(model, len(x), lambda idx: task_loss(task, model(x_t[idx])[0], t_t[idx]),
                    lambda m: {}, "train_loss", epochs=setup["epochs"], lr=LR,
                    batch_size=setup["batch_size"], seed=seed, quiet=True, desc="mlp", fmt=".4g")


def data(name: str, seed: int):
    ds = load_dataset(name, seed=seed)
    task, out_dim, (t_train, _, t_test) = task_data(ds)
    rows = SETUPS[name]["train_rows"] or len(ds.x_train)
    return ds, task, out_dim, ds.x_train[:rows], t_train[:rows], t_test


def train_models(name: str, seed: int, reg_names: list[str]) -> tuple[dict, dict]:
    """Table 1 (and Table 4's regularised Deep ShapNets): test metrics, and the models."""
    ds, task, out_dim, x, t, t_test = data(name, seed)
    setup, ref = SETUPS[name], reference_values(ds, SPEC["reference"])
    rows, models = {}, {}
    kinds = [("shapnet-deep", r) for r in reg_names] + [("shapnet-shallow", "none")]
    for kind, reg in kinds:
        spec = ShapNetSpec(kind=kind, active_size=SPEC["active_size"],
                           channels=SPEC["channels"], hidden=SPEC["hidden"])
        model = build_shapnet(spec, ds.dim, out_dim, ref, seed)
        start = time.perf_counter()
        train_shapnet(model, x, t, task=task, reg=REGULARISERS[reg], epochs=setup["epochs"],
                      lr=LR, batch_size=setup["batch_size"], seed=seed, quiet=True)
        key = kind if reg == "none" else f"{kind}+{reg}"
        models[key] = model.eval()
        rows[key] = {**metrics(model, ds.x_test, t_test, task, "test"),
                     "params": sum(p.numel() for p in model.parameters()),
                     "macs": shapnet_macs(model), "train_s": time.perf_counter() - start}
    deep = models["shapnet-deep"]
    for key, target in (("dnn-eq-param", rows["shapnet-deep"]["params"]),
                        ("dnn-eq-comp", rows["shapnet-deep"]["macs"])):
        torch.manual_seed(seed)
        width = width_for(target, ds.dim, out_dim)
        model = MLPRegressor(mlp(ds.dim, out_dim, width))
        start = time.perf_counter()
        train_mlp(model, x, t, task, setup, seed)
        models[key] = model.eval()
        rows[key] = {**metrics(model, ds.x_test, t_test, task, "test"), "width": width,
                     "params": sum(p.numel() for p in model.parameters()),
                     "macs": sum(m.in_features * m.out_features for m in model.net
                                 if isinstance(m, nn.Linear)),
                     "train_s": time.perf_counter() - start}
    rows["_task"], rows["_reference"] = task, deep.reference.numpy().tolist()
    return rows, models


# -- Shapley values of a black box ---------------------------------------------------------------
def numpy_fn(model):
    def f(z: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad(), single_thread():
            for start in range(0, len(z), 8192):
                out.append(model(torch.from_numpy(np.asarray(z[start:start + 8192],
                                                             dtype=np.float32)))[0].numpy())
        return np.concatenate(out).astype(np.float64)
    return f


def brute_force(f, x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Exact Baseline Shapley values of ``f`` at each row of ``x`` (all 2^d coalitions):
    (n, d, out). Coalition s holds feature i iff bit i of s is set."""
    n, d = x.shape
    s = np.arange(2 ** d)
    bits = ((s[:, None] >> np.arange(d)) & 1).astype(bool)
    size = bits.sum(axis=1)
    weight = np.array([math.factorial(m) * math.factorial(d - m - 1) / math.factorial(d)
                       for m in range(d)])
    result = []
    for row in x:
        values = f(np.where(bits, row[None], ref[None]))  # (2^d, out)
        phi = np.empty((d, values.shape[1]))
        for i in range(d):
            without = s[~bits[:, i]]
            phi[i] = weight[size[without]] @ (values[without | (1 << i)] - values[without])
        result.append(phi)
    return np.stack(result)


def kernel_shap(f, x: np.ndarray, ref: np.ndarray, nsamples) -> np.ndarray:
    """shap's KernelExplainer with the reference as the one background row: (n, d, out).

    ``l1_reg=False``: shap 0.51's default (``num_features(10)``) keeps only 10 features'
    values (the rest 0), which is feature selection, not KernelSHAP's estimate (measured on
    synthetic16: it made KernelSHAP's Table 3 error 20-190x larger)."""
    import shap

    explainer = shap.KernelExplainer(f, ref[None].astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = explainer.shap_values(x.astype(np.float64), nsamples=nsamples, l1_reg=False,
                                       silent=True)
    values = np.stack(values, axis=-1) if isinstance(values, list) else np.asarray(values)
    return values.reshape(len(x), x.shape[1], -1)


def l1_difference(phi: np.ndarray, gamma: np.ndarray, logits: np.ndarray | None) -> float:
    """Mean over samples of ||φ - γ||₁ / d, softmax-weighted over outputs for classifiers."""
    err = np.abs(phi - gamma).sum(axis=1) / phi.shape[1]  # (n, out)
    if logits is None:
        return float(err.mean())
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return float((err * (p / p.sum(axis=1, keepdims=True))).sum(axis=1).mean())


def table3(name: str, models: dict, x: np.ndarray, task: str, samples: int, truth_coalitions):
    rows = {}
    for key in ("shapnet-deep", "shapnet-shallow"):
        model = models[key]
        f, ref = numpy_fn(model), model.reference.numpy().astype(np.float64)
        xs = x[:samples].astype(np.float64)
        start = time.perf_counter()
        truth = (brute_force(f, xs, ref) if truth_coalitions is None
                 else kernel_shap(f, xs, ref, truth_coalitions))
        truth_s = time.perf_counter() - start
        with torch.no_grad():
            logits, ours = model(torch.from_numpy(xs.astype(np.float32)))
        logits = logits.numpy() if task == "classification" else None
        row = {"ours": l1_difference(truth, ours.numpy().astype(np.float64), logits),
               "truth_seconds": truth_s}
        for label, n in (("kernelshap-77", 77), ("kernelshap-default", "auto")):
            row[label] = l1_difference(truth, kernel_shap(f, xs, ref, n), logits)
        rows[key] = row
    return rows


# -- Table 4 and Fig. 5 ----------------------------------------------------------------------------
def regularisation_row(model, x: np.ndarray, y: np.ndarray) -> dict:
    with torch.no_grad():
        logits, phi = model(torch.from_numpy(x))
    att = np.take_along_axis(phi.numpy(), logits.argmax(1).numpy()[:, None, None], 2)[:, :, 0]
    mag = np.abs(att)
    sparse = mag < 0.01 * np.maximum(mag.sum(axis=1, keepdims=True), 1e-30)
    per_feature = mag.mean(axis=0)
    return {"accuracy": float(np.mean(logits.argmax(1).numpy() == y)),
            "sparsity": float(sparse.mean()),
            "cv": float(per_feature.std() / max(per_feature.mean(), 1e-30))}


def pruning_curve(model: DeepShapNet, x: np.ndarray, y: np.ndarray) -> list[dict]:
    """Fig. 5 in the edgeprune runtime: the model compiled (bundle v4, in memory) and run with
    each skip threshold; modules and multiply-adds skipped, accuracy, largest prediction change
    and the runtime's bound (:func:`edgeprune.shapnet.dynamic.dynamic_pruning_curve`)."""
    from edgeprune.shapnet.dynamic import dynamic_pruning_curve

    return dynamic_pruning_curve(model, x, y, THRESHOLDS)


def pruning_latency(model: DeepShapNet, x: np.ndarray) -> dict:
    """Batch-1 latency per input with dynamic pruning in the runtime (``bench``'s harness)."""
    from edgeprune.runtime.bench.dynamic import bench_dynamic_pruning
    from edgeprune.shapnet.dynamic import as_runtime_model

    return bench_dynamic_pruning(as_runtime_model(model), x, LATENCY_THRESHOLDS, runs=200,
                                 min_time=1.0)


# -- Table 5 -----------------------------------------------------------------------------------------
def table5(samples: int, seed: int = 0) -> dict:
    import shap

    torch.manual_seed(seed)
    d = 16
    deep = DeepShapNet(d, 1, np.zeros(d), channels=8, hidden=[100]).eval()
    macs, params = shapnet_macs(deep), sum(p.numel() for p in deep.parameters())
    models = {"shapnet-deep": deep,
              "dnn-eq-comp": MLPRegressor(mlp(d, 1, width_for(macs, d, 1))).eval(),
              "dnn-eq-param": MLPRegressor(mlp(d, 1, width_for(params, d, 1))).eval()}
    x = np.random.default_rng(seed).uniform(-0.5, 0.5, size=(samples, d))
    ref = np.zeros((1, d))
    result = {}
    for key, model in models.items():
        f = numpy_fn(model)
        methods = {}
        if key == "shapnet-deep":
            methods["ours"] = lambda row, model=model: model(torch.from_numpy(
                row[None].astype(np.float32)))
        for label, n in (("kernelshap-40", 40), ("kernelshap-77", 77),
                         ("kernelshap-default", "auto")):
            explainer = shap.KernelExplainer(f, ref)
            methods[label] = lambda row, e=explainer, n=n: e.shap_values(
                row[None], nsamples=n, l1_reg=False, silent=True)
        permutation = shap.explainers.Permutation(f, shap.maskers.Independent(ref))
        methods["permutation"] = lambda row, e=permutation: e(row[None], max_evals=4 * d + 1,
                                                              silent=True)
        result[key] = {}
        with torch.no_grad(), single_thread(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for label, explain in methods.items():
                explain(x[0])  # warm-up, untimed: shap compiles its numba code on first use
                times = []
                for row in x:
                    start = time.perf_counter()
                    explain(row)
                    times.append(time.perf_counter() - start)
                result[key][label] = float(np.median(times))
        result[key]["params"] = sum(p.numel() for p in model.parameters())
    return result


# -- driver ------------------------------------------------------------------------------------------
def run(args) -> dict:
    doc = {"setups": SETUPS, "lr": LR, "spec": {**SPEC, "hidden": list(SPEC["hidden"])},
           "regularisers": {k: vars(v) for k, v in REGULARISERS.items()},
           "thresholds": THRESHOLDS, "host": platform.platform(),
           "torch_threads": 1, "table1": {}, "table3": {}, "table4": [], "fig5": {},
           "fig5_latency": {}}
    started = time.perf_counter()
    for name, seeds in (("synthetic16", args.seeds_syn), ("breast-cancer", args.seeds_bc)):
        doc["table1"][name], doc["table3"][name] = [], []
        for seed in range(seeds):
            regs = list(REGULARISERS) if name == "breast-cancer" else ["none"]
            print(f"[{time.perf_counter() - started:6.0f}s] {name} seed {seed}: training",
                  flush=True)
            rows, models = train_models(name, seed, regs)
            doc["table1"][name].append({"seed": seed, **rows})
            ds, task, _, _, _, t_test = data(name, seed)
            truth = None if name == "synthetic16" else 2 ** 13
            if seed < args.table3_seeds:
                print(f"[{time.perf_counter() - started:6.0f}s] {name} seed {seed}: Table 3",
                      flush=True)
                doc["table3"][name].append({"seed": seed, **table3(
                    name, models, ds.x_test, task, args.table3_samples, truth)})
            if name == "breast-cancer":
                for reg in regs:
                    key = "shapnet-deep" if reg == "none" else f"shapnet-deep+{reg}"
                    doc["table4"].append({"seed": seed, "regulariser": reg,
                                          **regularisation_row(models[key], ds.x_test, t_test)})
                    doc["fig5"].setdefault(reg, []).append(
                        {"seed": seed, "curve": pruning_curve(models[key], ds.x_test, t_test)})
                    if seed == 0 and reg in ("none", "l1-all", "l1-all-1"):
                        doc["fig5_latency"][reg] = pruning_latency(models[key], ds.x_test)
    print(f"[{time.perf_counter() - started:6.0f}s] Table 5 timing", flush=True)
    doc["table5"] = table5(args.timing_samples)
    doc["wall_seconds"] = time.perf_counter() - started
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds-bc", type=int, default=3)
    parser.add_argument("--seeds-syn", type=int, default=2)
    parser.add_argument("--table3-seeds", type=int, default=1)
    parser.add_argument("--table3-samples", type=int, default=3)
    parser.add_argument("--timing-samples", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 epoch: a smoke test")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from shapnets_report import write_report

    out = args.out or (HERE / "cache" / "shapnets_quick" if args.quick else OUT)
    if args.report_only:
        write_report(json.loads((out / "results.json").read_text()), out)
        return
    if args.quick:
        args.seeds_bc = args.seeds_syn = 1
        args.table3_samples, args.timing_samples = 1, 2
        for setup in SETUPS.values():
            setup["epochs"], setup["train_rows"] = 1, 300
    doc = run(args)
    doc["quick"] = bool(args.quick)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "results.json", json.dumps(doc, indent=1) + "\n")
    write_report(doc, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
