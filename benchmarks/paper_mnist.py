"""SHAP-SAE paper section 3.2 (Figures 3 and 4): pruned autoencoders on MNIST-like data.

Usage: python benchmarks/paper_mnist.py [--data mnist5k,digits | idx:DIR] [--seeds 0,1,2]
       [--etas 0.5,0.6,0.7,0.8,0.9,0.95] [--quick] [--out DIR] [--quiet]
       [--from-json OUT]

Model (the paper's sizes): a 784-256-64-256-784 autoencoder, relu hidden and latent layers,
sigmoid output, PyTorch's default init (``edgeprune.train.build_autoencoder``). Inputs with other
widths d get d-(d/2)-(d/4)-(d/2)-d, so scikit-learn's 8x8 ``digits`` gets 64-32-16-32-64.
Training: MSE, Adam lr 1e-3, batch 64, 30 epochs, on the training split (70 %; MNIST-5k is
3,500 / 500 / 1,000 train / validation / test images; ``idx:DIR`` with t10k files uses the
official test set), everything seeded by the run's seed (split, init, shuffles).

Methods, every one at link sparsity eta (paper eq. 9: masked links over all links, after the
dead-unit cascade) for eta in 0.5, 0.6, 0.7, 0.8, 0.9, 0.95:

* ``shap-sae``: Shapley link importances of the dense AE (``edgeprune.scoring.score_network``,
  estimator ``auto``, 256 explanation samples from the training split, zero reference), then
  the per-layer support sets (eq. 8) with the importance level m solved for eta
  (``edgeprune.prune.prune_network``).
* ``magnitude``, ``random``, ``lap``: the same support-set rule and m <-> eta solver on the
  dense AE with |w|, uniform random or lookahead (LAP, Park et al. 2020) scores
  (``edgeprune.prune.baseline_scores``).
* ``k-sparse``: a k-sparse autoencoder (Makhzani & Frey 2014), trained like the dense AE but
  with only the k = latent/2 largest latent activations kept in the training forward
  (``edgeprune.regularized_training``); ``dropout``: a dropout autoencoder (Srivastava et al.
  2014), dropout p = 0.1 on every hidden layer in training. Their regularizers make the
  *activations* sparse, not the links, so each is then pruned by global weight magnitude (one
  |w| threshold over all layers, ``prune_global_magnitude``) to the same link sparsity eta:
  what an engineer deploying it on a board would do. ``global-magnitude`` applies that same
  rule to the dense AE, to separate the effect of the training from that of the pruning rule.
  k and p were chosen among latent/4 vs latent/2 and 0.1 vs 0.2 by validation MSE on MNIST-5k
  (seed 0). Both are evaluated as deployed: the plain network, no top-k and no dropout at
  inference (the edgeprune runtime, ONNX and TFLite run the plain forward).
* MINT (Ganesh et al. 2021) is not implemented (see summary.md).

Every pruned model is measured as pruned and after the library's masked fine-tune (the
``compress --finetune-epochs`` step: ``train_network`` on the pruned masks, 10 epochs, Adam lr
1e-3, plain forward for every method). The dense reference (eta = 0) is measured as trained and
after the same 10 extra epochs, so "with fine-tune" compares equal training budgets.

Metrics on the test split: reconstruction MSE; linear-probe accuracy (logistic regression on
the standardized latent code, fit on the training split, ``linear_probe_accuracy``); and the
accuracy of a fixed classifier on the reconstructions (a d-256-10 relu MLP, 20 epochs of Adam
on the original training images, trained once per dataset and seed, never on reconstructions).

Outputs per dataset in OUT/<dataset>/: results.json (every run), summary.md (mean +- std tables
and the paper's claims checked), performance_vs_eta.png (Figure 3 style) and
reconstructions.png (Figure 4 style: inputs that lost every outgoing first-layer link in gray);
OUT/summary.md indexes them. Trained models and scores are cached in benchmarks/cache/.
``--quick`` is a smoke test (digits, seed 0, eta 0.5 and 0.9, few epochs) written to
benchmarks/cache/paper_mnist_quick unless --out is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from paper_mnist_report import write_index, write_outputs

HERE = Path(__file__).resolve().parent

CACHE = HERE / "cache" / "paper_mnist"
DATA = ["mnist5k", "digits"]
ETAS = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
QUICK_ETAS = [0.5, 0.9]
FIGURE_ETAS = [0.5, 0.8, 0.9, 0.95]
METHODS = ["shap-sae", "magnitude", "random", "lap", "k-sparse", "dropout", "global-magnitude"]


def hidden_for(dim: int) -> list[int]:
    """The paper's 784-256-64 encoder; other widths d get d-(d/2)-(d/4)."""
    return [256, 64] if dim == 784 else [max(2, dim // 2), max(1, dim // 4)]


def recipe(args) -> dict:
    quick = args.quick
    return {
        "epochs": 20 if quick else 30, "epochs_small": 20 if quick else 60,
        "small_below": 3000, "lr": 1e-3, "batch_size": 64,
        "finetune_epochs": 3 if quick else 10, "finetune_lr": 1e-3,
        "ksparse_k_fraction": 0.5, "dropout_p": 0.1,
        "classifier_hidden": 256, "classifier_epochs": 8 if quick else 20,
        "estimator": args.estimator, "samples": args.samples or (64 if quick else 256),
        "reference": "zero", "activation": "relu", "output_activation": "sigmoid",
        "threads": args.threads,
    }


def data_tag(spec: str) -> str:
    """A folder/cache name for a data spec (idx:/path/to/fashion -> idx_fashion)."""
    kind, _, arg = spec.partition(":")
    name = f"{kind}_{Path(arg).name}" if arg else spec
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def cache_tag(spec: str) -> str:
    """data_tag plus a hash of the resolved path for file specs, so that two folders with the
    same name never share cached models."""
    import hashlib

    kind, _, arg = spec.partition(":")
    if not arg:
        return data_tag(spec)
    digest = hashlib.sha1(str(Path(arg).expanduser().resolve()).encode()).hexdigest()[:8]
    return f"{data_tag(spec)}_{digest}"


# -- cached models ---------------------------------------------------------------------------


def _cached(path: Path, make):
    from edgeprune.checkpoint import load_network, save_checkpoint

    if path.is_file():
        return load_network(path), 0.0
    t0 = time.perf_counter()
    net = make()
    save_checkpoint(net, path)
    return net, time.perf_counter() - t0


def trained_models(spec: str, ds, seed: int, rc: dict, quiet: bool,
                   only: tuple[str, ...] | None = None) -> tuple[dict, dict]:
    """Dense, k-sparse and dropout autoencoders and the fixed classifier (cached); ``only``
    limits the autoencoders to those names (e.g. ``("dense",)``)."""
    from edgeprune.regularized_training import train_dropout_autoencoder, train_ksparse_autoencoder
    from edgeprune.train import (
        build_autoencoder,
        build_classifier,
        n_classes_of,
        train_classifier,
        train_network,
    )

    hidden = hidden_for(ds.dim)
    dims = "-".join(map(str, [ds.dim, *hidden]))
    k = max(1, int(round(hidden[-1] * rc["ksparse_k_fraction"])))
    ep = rc["epochs"] if len(ds.x_train) >= rc["small_below"] else rc["epochs_small"]
    tag = cache_tag(spec)
    kw = {"epochs": ep, "lr": rc["lr"], "batch_size": rc["batch_size"], "seed": seed,
          "quiet": True}

    def fresh():
        return build_autoencoder(ds.dim, hidden, rc["activation"], rc["output_activation"],
                                 seed=seed)

    variants = {
        "dense": ("plain", lambda: train_network(fresh(), ds.x_train, ds.x_val, **kw)[0]),
        "k-sparse": (f"ksparse{k}", lambda: train_ksparse_autoencoder(
            fresh(), ds.x_train, ds.x_val, k=k, **kw)[0]),
        "dropout": (f"dropout{rc['dropout_p']}", lambda: train_dropout_autoencoder(
            fresh(), ds.x_train, ds.x_val, p=rc["dropout_p"], **kw)[0]),
    }
    nets, info = {}, {"in_dim": ds.dim, "hidden": hidden, "ksparse_k": k, "epochs_used": ep,
                      "train_seconds": {}}
    for name, (variant, make) in variants.items():
        if only is not None and name not in only:
            continue
        path = CACHE / f"{tag}_ae_{dims}_{variant}_e{ep}_s{seed}.pt"
        nets[name], info["train_seconds"][name] = _cached(path, make)
        if not quiet:
            print(f"  {name} AE {'trained' if info['train_seconds'][name] else 'cached'}",
                  flush=True)
    n_classes = info["n_classes"] = n_classes_of(ds)
    ch, ce = min(rc["classifier_hidden"], ds.dim), rc["classifier_epochs"]

    def make_clf():
        clf = build_classifier(ds.dim, [ch], n_classes, "relu", seed=seed)
        return train_classifier(clf, ds.x_train, ds.y_train, epochs=ce, lr=rc["lr"],
                                batch_size=rc["batch_size"], seed=seed, quiet=True)[0]

    path = CACHE / f"{tag}_clf_{ds.dim}-{ch}-{n_classes}_e{ce}_s{seed}.pt"
    nets["classifier"], info["train_seconds"]["classifier"] = _cached(path, make_clf)
    return nets, info


def scores_path(spec: str, net, seed: int, rc: dict) -> Path:
    """Where :func:`shap_scores` caches the scores of ``net`` (an ``edgeprune score`` .npz);
    a reference other than zero is part of the name."""
    ref = "" if rc.get("reference", "zero") == "zero" else f"_{rc['reference']}"
    return CACHE / (f"{cache_tag(spec)}_scores_{rc['estimator']}_{rc['samples']}{ref}_"
                    f"{net.fingerprint()}_s{seed}.npz")


def shap_scores(spec: str, net, ds, seed: int, rc: dict) -> tuple[list, dict]:
    """SHAP-SAE link importances of ``net`` (cached by the network's fingerprint)."""
    from edgeprune.data import explanation_set
    from edgeprune.scoring import load_link_scores, save_scores, score_network

    path = scores_path(spec, net, seed, rc)
    if path.is_file():
        return load_link_scores(path, net), {"cached": True, "path": path.name}
    t0 = time.perf_counter()
    scores = score_network(net, explanation_set(ds, rc["samples"], seed),
                           estimator=rc["estimator"], reference=rc["reference"], seed=seed,
                           quiet=True)
    save_scores(scores, path)
    summary = scores.summary()
    return scores.li(), {"cached": False, "seconds": time.perf_counter() - t0,
                         "layers": [{k: lay.get(k) for k in ("layer", "estimator", "seconds",
                                                             "mean_rel_stderr")}
                                    for lay in summary["layers"]]}


# -- one dataset, one seed -------------------------------------------------------------------


def measure(net, ds, clf, seed: int) -> dict:
    from edgeprune.train import accuracy, linear_probe_accuracy

    recon = net.forward(ds.x_test)
    return {"mse": float(np.mean((recon - ds.x_test) ** 2)),
            "probe_accuracy": linear_probe_accuracy(net, ds.x_train, ds.y_train, ds.x_test,
                                                    ds.y_test, seed),
            "classifier_accuracy": accuracy(clf, recon, ds.y_test)}


def pruned_inputs(net) -> np.ndarray:
    """Inputs whose every outgoing first-layer link is pruned."""
    return ~net.layers[0].mask.any(axis=0)


def run_seed(spec: str, seed: int, etas: list[float], rc: dict, quiet: bool,
             figure: dict | None) -> tuple[list[dict], dict]:
    from edgeprune.data import load_dataset
    from edgeprune.prune import baseline_scores, prune_global_magnitude, prune_network
    from edgeprune.train import accuracy, train_network

    ds = load_dataset(spec, seed=seed)
    if not ds.has_labels:
        raise SystemExit(f"{spec}: needs labels (the probe and the classifier use them)")
    nets, info = trained_models(spec, ds, seed, rc, quiet)
    clf, dense = nets["classifier"], nets["dense"]
    info["classifier_test_accuracy_on_originals"] = accuracy(clf, ds.x_test, ds.y_test)
    info["split_sizes"] = [len(ds.x_train), len(ds.x_val), len(ds.x_test)]
    scores, info["shap_scoring"] = shap_scores(spec, dense, ds, seed, rc)
    score_sets = {"shap-sae": scores, **{m: baseline_scores(m, dense, seed=seed)
                                         for m in ("magnitude", "random", "lap")}}
    base_of = {"k-sparse": nets["k-sparse"], "dropout": nets["dropout"],
               "global-magnitude": dense}
    ft = {"epochs": rc["finetune_epochs"], "lr": rc["finetune_lr"],
          "batch_size": rc["batch_size"], "seed": seed, "quiet": True}
    rows = []

    def record(method, eta, net, finetune, seconds, extra=None):
        row = {"dataset": spec, "method": method, "eta": eta, "finetune": finetune,
               "seed": seed, "achieved_eta": round(net.sparsity, 6),
               "inputs_pruned": int(pruned_inputs(net).sum()),
               "constant_outputs": int((~net.layers[-1].mask.any(axis=1)).sum()),
               "links_kept_per_layer": [layer.n_active for layer in net.layers],
               **measure(net, ds, clf, seed),
               "seconds": round(seconds, 3), **(extra or {})}
        rows.append(row)
        if not quiet:
            print(f"  {method:>16} eta={eta:<4} ft={finetune!s:<5} eta*={row['achieved_eta']:.4f}"
                  f" mse={row['mse']:.5f} probe={row['probe_accuracy']:.4f} "
                  f"clf={row['classifier_accuracy']:.4f} ({seconds:.1f}s)", flush=True)
        return row

    for method, net in (("dense", dense), ("k-sparse", nets["k-sparse"]),
                        ("dropout", nets["dropout"])):
        record(method, 0.0, net, False, 0.0)
        t0 = time.perf_counter()
        tuned, _ = train_network(net, ds.x_train, ds.x_val, **ft)
        record(method, 0.0, tuned, True, time.perf_counter() - t0)
    if figure is not None:
        figure.update({"images": ds.x_test[figure_indices(ds)], "image_shape": ds.image_shape,
                       "dense": dense.forward(ds.x_test[figure_indices(ds)]), "rows": []})
    for method in METHODS:
        for eta in etas:
            t0 = time.perf_counter()
            if method in score_sets:
                res = prune_network(dense, score_sets[method], sparsity=eta)
            else:
                res = prune_global_magnitude(base_of[method], eta)
            t_prune = time.perf_counter() - t0
            extra = {"importance_level": res.importance_level}
            record(method, eta, res.network, False, t_prune, extra)
            t0 = time.perf_counter()
            tuned, _ = train_network(res.network, ds.x_train, ds.x_val, **ft)
            record(method, eta, tuned, True, t_prune + time.perf_counter() - t0, extra)
            if figure is not None and method == "shap-sae" and eta in FIGURE_ETAS:
                idx = figure_indices(ds)
                figure["rows"].append({"eta": eta, "recon": tuned.forward(ds.x_test[idx]),
                                       "pruned_inputs": pruned_inputs(tuned),
                                       "achieved_eta": tuned.sparsity})
    return rows, info


def figure_indices(ds, n: int = 10) -> np.ndarray:
    """The first test image of each class (up to n), in class order."""
    y = np.asarray(ds.y_test)
    return np.array([int(np.flatnonzero(y == c)[0]) for c in np.unique(y)[:n]])


# -- the run ----------------------------------------------------------------------------------


class LoadSampler:
    """Samples the 1-minute load average every ``period`` seconds in a daemon thread."""

    def __init__(self, period: float = 15.0):
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period,), daemon=True)

    def _run(self, period: float) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(period):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = np.asarray(self.samples or [os.getloadavg()[0]])
        return {"cpus": os.cpu_count(), "load1_mean": round(float(s.mean()), 2),
                "load1_max": round(float(s.max()), 2), "samples": len(s)}


def git_state() -> dict:
    """HEAD and the uncommitted files under edgeprune/ (the code that produced the numbers)."""
    import subprocess

    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", *cmd], cwd=HERE.parent, capture_output=True,
                                  text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"head": git("rev-parse", "--short", "HEAD"),
            "uncommitted": git("status", "--porcelain", "--", "edgeprune").splitlines()}


def run_dataset(spec: str, args, rc: dict, out: Path, git: dict) -> dict:
    import torch

    t0, cpu0 = time.perf_counter(), time.process_time()
    rows, setup = [], {}
    figure: dict = {}
    with LoadSampler() as load:
        for seed in args.seeds:
            if not args.quiet:
                print(f"{spec} seed {seed}", flush=True)
            seed_rows, info = run_seed(spec, seed, args.etas, rc, args.quiet,
                                       figure if seed == args.seeds[0] else None)
            rows += seed_rows
            setup[str(seed)] = info
    first = next(iter(setup.values()))
    doc = {
        "dataset": spec, "tag": data_tag(spec), "seeds": args.seeds, "etas": args.etas,
        "methods": ["dense", *METHODS], "quick": args.quick,
        "recipe": {**rc, **{k: first[k] for k in ("in_dim", "hidden", "ksparse_k", "n_classes",
                                                   "split_sizes", "epochs_used")}},
        "setup": setup,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, **load.summary()},
        "git": git,
        "command": args.command,
        "runs": rows,
    }
    write_outputs(doc, out, figure)
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None,
                    help="Comma-separated data specs (default mnist5k,digits; --quick: digits); "
                         "idx:DIR runs MNIST or Fashion-MNIST IDX files.")
    ap.add_argument("--seeds", default=None, help="Comma-separated seeds (default 0,1,2).")
    ap.add_argument("--etas", default=None, help="Comma-separated target sparsities.")
    ap.add_argument("--estimator", default="auto", help="SHAP-SAE estimator (default auto).")
    ap.add_argument("--samples", type=int, default=None,
                    help="SHAP-SAE explanation samples (default 256; --quick 64).")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch and BLAS threads (default 1: tiny matrices on a shared machine).")
    ap.add_argument("--quick", action="store_true", help="Smoke test: digits, 1 seed, 2 etas.")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="Only redraw summary.md files and performance_vs_eta.png from the "
                         "results.json files under this output directory.")
    args = ap.parse_args(argv)
    args.command = " ".join(["python benchmarks/paper_mnist.py",
                             *(sys.argv[1:] if argv is None else argv)])
    if args.from_json:
        docs = []
        paths = sorted(args.from_json.glob("*/results.json"), key=lambda q: (
            DATA.index(q.parent.name) if q.parent.name in DATA else len(DATA), q.parent.name))
        for path in paths:
            docs.append(json.loads(path.read_text()))
            write_outputs(docs[-1], path.parent, None)
        if not docs:
            raise SystemExit(f"--from-json {args.from_json}: no */results.json below it")
        write_index(docs, args.from_json)
        return 0
    import torch
    from threadpoolctl import threadpool_limits

    args.data = (args.data or ("digits" if args.quick else ",".join(DATA))).split(",")
    args.seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    args.etas = [float(e) for e in (args.etas or ",".join(
        map(str, QUICK_ETAS if args.quick else ETAS))).split(",")]
    rc = recipe(args)
    out = args.out or (HERE / "cache" / "paper_mnist_quick" if args.quick
                       else HERE / "results" / "paper_mnist")
    t0 = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with threadpool_limits(args.threads), warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="sklearn")
            git = git_state()  # the code imported now is the code that runs
            docs = [run_dataset(spec, args, rc, out / data_tag(spec), git) for spec in args.data]
    finally:
        torch.set_num_threads(threads)
    write_index(docs, out, round(time.perf_counter() - t0, 1))
    if not args.quiet:
        print(f"wrote {out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
