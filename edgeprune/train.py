"""Dense training and masked fine-tuning of autoencoders (MSE, Adam), plus quality metrics."""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from edgeprune.network import Layer, ModelError, Network
from edgeprune.torch_network import MaskedMLP


def parse_hidden(spec: str | list[int]) -> list[int]:
    """``"32,8"`` -> [32, 8] (the encoder's hidden widths; the decoder mirrors them)."""
    try:
        sizes = [int(s) for s in spec.split(",")] if isinstance(spec, str) else [int(s) for s in spec]
    except ValueError:
        raise ModelError(f"--hidden {spec!r}: expected comma-separated widths such as 32,8") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise ModelError(f"--hidden {spec!r}: every width must be a positive integer, e.g. 32,8")
    return sizes


def build_autoencoder(in_dim: int, hidden: list[int], activation: str = "relu",
                      output_activation: str = "sigmoid", latent_activation: str | None = None,
                      seed: int = 0) -> Network:
    """A symmetric autoencoder in_dim-h1-..-hL-..-h1-in_dim with PyTorch's default init.

    The latent layer uses ``latent_activation`` (default: the hidden activation)."""
    dims = [in_dim, *hidden, *reversed(hidden[:-1]), in_dim]
    gen = torch.Generator().manual_seed(seed)
    layers = []
    n = len(dims) - 1
    for k in range(n):
        fan_in, fan_out = dims[k], dims[k + 1]
        bound = 1.0 / np.sqrt(fan_in)  # nn.Linear's default (kaiming_uniform a=sqrt(5)) bound
        w = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound
        b = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
        if k == n - 1:
            act = output_activation
        elif k == len(hidden) - 1 and latent_activation is not None:
            act = latent_activation
        else:
            act = activation
        layers.append(Layer(w.numpy(), b.numpy(), act))
    return Network(layers, latent=len(hidden), kind="autoencoder")


def train_network(net: Network, x_train: np.ndarray, x_val: np.ndarray | None = None, *,
                  epochs: int = 20, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                  quiet: bool = False, desc: str = "train") -> tuple[Network, list[dict]]:
    """Train (or fine-tune) ``net`` to reconstruct its input with MSE and Adam.

    Masked links stay exactly zero: the forward pass multiplies by the mask (so their gradient
    is zero) and the weights are re-masked after every step. Returns the trained network and a
    per-epoch history of train/validation MSE."""
    if epochs < 0:
        raise ModelError("--epochs must be >= 0")
    torch.manual_seed(seed)
    model = MaskedMLP(net)
    x = torch.from_numpy(np.asarray(x_train, dtype=np.float32))
    xv = None if x_val is None else torch.from_numpy(np.asarray(x_val, dtype=np.float32))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    bar = tqdm(range(epochs), desc=desc, disable=quiet, unit="epoch", leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for start in range(0, len(x), batch_size):
            xb = x[order[start:start + batch_size]]
            loss = torch.mean((model(xb) - xb) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.apply_masks_()
            total += float(loss.detach()) * len(xb)
        row = {"epoch": epoch + 1, "train_mse": total / len(x)}
        if xv is not None:
            with torch.no_grad():
                row["val_mse"] = float(torch.mean((model.eval()(xv) - xv) ** 2))
        history.append(row)
        bar.set_postfix({k: f"{v:.5f}" for k, v in row.items() if k != "epoch"})
    bar.close()
    return model.to_network(net), history


def reconstruction_mse(net: Network, x: np.ndarray) -> float:
    """Mean squared reconstruction error over all samples and features."""
    out = net.forward(x)
    return float(np.mean((out - np.asarray(x, dtype=np.float32)) ** 2))


def linear_probe_accuracy(net: Network, x_train: np.ndarray, y_train: np.ndarray,
                          x_test: np.ndarray, y_test: np.ndarray, seed: int = 0) -> float | None:
    """Accuracy of a logistic-regression probe trained on the latent code (None without labels
    or a latent layer)."""
    if net.latent is None or y_train is None or y_test is None:
        return None
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    z_train, z_test = net.encode(x_train), net.encode(x_test)
    scaler = StandardScaler().fit(z_train)
    clf = LogisticRegression(max_iter=2000, random_state=seed)
    clf.fit(scaler.transform(z_train), y_train)
    return float(clf.score(scaler.transform(z_test), y_test))


def evaluate(net: Network, ds, seed: int = 0) -> dict:
    """Test metrics for a dataset split: reconstruction MSE and the latent linear probe."""
    metrics = {"test_mse": reconstruction_mse(net, ds.x_test)}
    probe = linear_probe_accuracy(net, ds.x_train, ds.y_train, ds.x_test, ds.y_test, seed)
    if probe is not None:
        metrics["probe_accuracy"] = probe
    return metrics
