"""Small end-to-end library functions behind ``train`` and ``run`` (no click here; ``info`` is
:mod:`edgeprune.inspector`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeprune.fileio import atomic_path
from edgeprune.network import ModelError


def train_autoencoder(data_spec: str, *, hidden: str = "32,8", activation: str = "relu",
                      latent_activation: str | None = None, output_activation: str = "sigmoid",
                      epochs: int = 20, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                      output: str | os.PathLike = "model.pt", quiet: bool = False) -> str:
    """Train a symmetric autoencoder on ``data_spec`` and save it; returns a summary line."""
    from edgeprune.checkpoint import save_checkpoint
    from edgeprune.data import load_dataset
    from edgeprune.network import parse_activations
    from edgeprune.train import build_autoencoder, evaluate, parse_hidden, train_network

    sizes = parse_hidden(hidden)
    activation = parse_activations(activation, 1)[0]
    output_activation = parse_activations(output_activation, 1)[0]
    if latent_activation is not None:
        latent_activation = parse_activations(latent_activation, 1)[0]
    ds = load_dataset(data_spec, seed=seed)
    net = build_autoencoder(ds.dim, sizes, activation, output_activation, latent_activation, seed)
    net, history = train_network(net, ds.x_train, ds.x_val, epochs=epochs, lr=lr,
                                 batch_size=batch_size, seed=seed, quiet=quiet)
    metrics = evaluate(net, ds, seed)
    net.meta = {"trained_on": ds.name, "epochs": epochs, "seed": seed, "lr": lr,
                "test_metrics": metrics, "history": history[-1:] if history else []}
    save_checkpoint(net, output)
    parts = [f"{k}={v:.5g}" for k, v in metrics.items()]
    return f"trained {net.describe()} on {ds.name}: {', '.join(parts)}; wrote {output}"


def _save_npy_atomic(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, arr)


def run_bundle(bundle: str | os.PathLike, inputs: str | os.PathLike, output: str | os.PathLike,
               *, kernel: str = "auto", mode: str = "forward") -> tuple[int, ...]:
    """Run ``bundle`` on the samples in ``inputs`` (.npy) and write the result to ``output``."""
    from edgeprune import runtime

    model = runtime.load(bundle, kernel=kernel)
    inputs = Path(inputs)
    try:
        x = np.load(inputs, allow_pickle=False)
    except FileNotFoundError:
        raise ModelError(f"{inputs}: no such input file; give a .npy array of samples") from None
    except ValueError as exc:
        raise ModelError(f"{inputs}: not a plain numeric .npy array ({exc}); save it with "
                         "np.save from a float array") from None
    if x.dtype.kind not in "fiub":
        raise ModelError(f"{inputs}: dtype {x.dtype} is not numeric; save a float32 array")
    x = x.astype(np.float32, copy=False)
    fn = {"forward": model, "encode": model.encode, "decode": model.decode}[mode]
    y = fn(x)
    _save_npy_atomic(Path(output), y)
    return tuple(y.shape)
