"""Shared preparation for the benchmarks: the MNIST-5k 784-256-64-256-784 autoencoder.

Trains it once (or reuses ``benchmarks/cache/``), scores every link once with SHAP-SAE, and
prunes it to any sparsity from those scores. Everything is seeded, so a re-run gives the same
models; delete ``benchmarks/cache/`` to start from scratch.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgeprune.checkpoint import load_network, save_checkpoint
from edgeprune.compress import CompressOptions, compress
from edgeprune.data import explanation_set, load_dataset
from edgeprune.network import Network
from edgeprune.scoring import load_link_scores, save_scores, score_network
from edgeprune.train import build_autoencoder, train_network

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache"
RESULTS = HERE / "results"
HIDDEN = [256, 64]
EPOCHS = 30


def mnist_autoencoder(seed: int = 0, quiet: bool = True) -> tuple[Network, object, Path]:
    """The trained dense autoencoder, its dataset and its checkpoint path (cached)."""
    ds = load_dataset("mnist5k", seed=seed)
    path = CACHE / f"mnist5k_ae_784-256-64_s{seed}.pt"
    if path.is_file():
        return load_network(path), ds, path
    net = build_autoencoder(784, HIDDEN, "relu", "sigmoid", seed=seed)
    net, _ = train_network(net, ds.x_train, ds.x_val, epochs=EPOCHS, seed=seed, quiet=quiet)
    save_checkpoint(net, path)
    return net, ds, path


def mnist_scores(net: Network, ds, seed: int = 0, estimator: str = "auto",
                 samples: int = 256) -> tuple[Path, dict]:
    """Link scores of the dense model (cached .npz) and the seconds spent per layer."""
    path = CACHE / f"mnist5k_scores_{estimator}_{samples}_s{seed}.npz"
    if path.is_file():
        load_link_scores(path, net)
        return path, {"cached": True}
    t0 = time.perf_counter()
    scores = score_network(net, explanation_set(ds, samples, seed), estimator=estimator,
                           seed=seed, quiet=False)
    save_scores(scores, path)
    return path, {"cached": False, "seconds": time.perf_counter() - t0,
                  **scores.summary()}


def pruned_at(net: Network, ds, scores_path: Path, eta: float, outdir: Path,
              seed: int = 0, finetune_epochs: int = 0):
    """``compress`` at sparsity ``eta`` from precomputed scores; returns the CompressResult.

    The paper's rule (``--score-rule paper``, ``--no-reconstruct``), pinned: the committed size
    and latency results were measured with it before shap-sae's defaults became the hybrid rule
    and the least-squares refit (issue 13)."""
    return compress(net, ds, outdir, CompressOptions(sparsity=eta, scores_path=str(scores_path),
                                                     seed=seed, quiet=True, score_rule="paper",
                                                     finetune_lr=1e-3,  # as committed
                                                     reconstruct=False,
                                                     finetune_epochs=finetune_epochs))
