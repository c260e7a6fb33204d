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


def _masked_adam_loop(net: Network, x: torch.Tensor, loss_fn, val_metrics, train_key: str, *,
                      epochs: int, lr: float, batch_size: int, seed: int, quiet: bool, desc: str,
                      fmt: str, forward=None,
                      schedule: str = "constant") -> tuple[MaskedMLP, list[dict]]:
    """The masked-network training loop: :func:`adam_epochs` with the masks re-applied after
    every step.

    ``loss_fn(outputs, batch_indices)`` is the batch loss; ``val_metrics(model)`` (evaluated
    under ``no_grad`` in eval mode) adds validation figures to each epoch's history row.
    ``forward(model, batch)`` replaces ``model(batch)`` for the training loss only (default:
    the plain masked forward). ``schedule``: the learning rate's (:mod:`edgeprune.finetune`)."""
    torch.manual_seed(seed)
    model = MaskedMLP(net)

    def batch_loss(idx):
        return loss_fn(model(x[idx]) if forward is None else forward(model, x[idx]), idx)

    history = adam_epochs(model, len(x), batch_loss, val_metrics, train_key, epochs=epochs,
                          lr=lr, batch_size=batch_size, seed=seed, quiet=quiet, desc=desc,
                          fmt=fmt, after_step=model.apply_masks_, schedule=schedule)
    return model, history


def adam_epochs(model: torch.nn.Module, n: int, batch_loss, val_metrics, train_key: str, *,
                epochs: int, lr: float, batch_size: int, seed: int, quiet: bool, desc: str,
                fmt: str, after_step=None, schedule: str = "constant") -> list[dict]:
    """The one training loop: seeded shuffles of ``range(n)``, Adam on ``model``'s parameters,
    ``batch_loss(indices)`` per mini-batch, ``after_step()`` after every update; returns one
    history row per epoch (mean training loss as ``train_key`` + ``val_metrics(model)``,
    evaluated under ``no_grad`` in eval mode). A non-finite loss is a one-line error.
    ``schedule="cosine"`` decays the rate from ``lr`` to 0 over all steps (else constant)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = None
    if schedule == "cosine":
        from edgeprune.finetune import cosine_scheduler

        sched = cosine_scheduler(opt, epochs * -(-n // batch_size))
    gen = torch.Generator().manual_seed(seed)
    history: list[dict] = []
    bar = tqdm(range(epochs), desc=desc, disable=quiet, unit="epoch", leave=False)
    for epoch in bar:
        model.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            loss = batch_loss(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            if after_step is not None:
                after_step()
            total += float(loss.detach()) * len(idx)
        row = {"epoch": epoch + 1, train_key: total / max(n, 1)}
        if not np.isfinite(row[train_key]):
            raise ModelError(f"training diverged: the {desc} loss is {row[train_key]} in epoch "
                             f"{epoch + 1}; scale the data to a small range (e.g. [0, 1]) or "
                             "lower --lr")
        with torch.no_grad():
            row.update(val_metrics(model.eval()))
        history.append(row)
        bar.set_postfix({k: f"{v:{fmt}}" for k, v in row.items() if k != "epoch"})
    bar.close()
    return history


def train_network(net: Network, x_train: np.ndarray, x_val: np.ndarray | None = None, *,
                  epochs: int = 20, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                  quiet: bool = False, desc: str = "train", forward=None,
                  teacher: Network | None = None, distill: float = 0.0,
                  distill_on: str = "all",
                  schedule: str = "constant") -> tuple[Network, list[dict]]:
    """Train (or fine-tune) ``net`` to reconstruct its input with MSE and Adam.

    Masked links stay exactly zero: the forward pass multiplies by the mask (so their gradient
    is zero) and the weights are re-masked after every step. Returns the trained network and a
    per-epoch history of train/validation MSE. ``forward(model, batch)``, if given, computes
    the reconstruction that the training loss sees (e.g. with dropout or a top-k latent, see
    :mod:`edgeprune.regularized_training`); validation always uses the plain forward.

    ``distill`` > 0 with a ``teacher`` (the unpruned network) adds the distillation terms of
    :mod:`edgeprune.finetune` (``distill_on``: ``output`` or ``all`` layers); ``schedule``:
    ``constant`` or ``cosine`` learning rate. Validation MSE stays the plain one."""
    if epochs < 0:
        raise ModelError("--epochs must be >= 0")
    from edgeprune.finetune import check_finetune_recipe, check_teacher, distillation_loss

    check_finetune_recipe(distill, distill_on, schedule)
    x = torch.from_numpy(np.asarray(x_train, dtype=np.float32))

    def loss_fn(out, idx):
        return torch.mean((out - x[idx]) ** 2)

    if distill > 0:
        if teacher is None:
            raise ModelError("--distill needs the unpruned network as the teacher")
        if forward is not None:
            raise ModelError("distillation and a training-time forward (dropout, top-k) "
                             "do not combine")
        check_teacher(teacher, net)
        forward, loss_fn = distillation_loss(teacher, x, float(distill), distill_on)
    xv = None if x_val is None else torch.from_numpy(np.asarray(x_val, dtype=np.float32))

    def val_metrics(model: MaskedMLP) -> dict:
        if xv is None:
            return {}
        return {"val_mse": float(torch.mean((model(xv) - xv) ** 2))}

    model, history = _masked_adam_loop(
        net, x, loss_fn, val_metrics, "train_loss" if distill > 0 else "train_mse",
        epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, quiet=quiet, desc=desc, fmt=".5f",
        forward=forward, schedule=schedule)
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
    """Test metrics for a dataset split: reconstruction MSE and the latent linear probe
    (test accuracy for a classifier)."""
    if net.kind == "classifier":
        return {"test_accuracy": accuracy(net, ds.x_test, _labels_of(ds, "test"))}
    metrics = {"test_mse": reconstruction_mse(net, ds.x_test)}
    probe = linear_probe_accuracy(net, ds.x_train, ds.y_train, ds.x_test, ds.y_test, seed)
    if probe is not None:
        metrics["probe_accuracy"] = probe
    if net.kind == "vae":  # and the ELBO's terms, with one seeded sample of z
        from edgeprune.vae_network import elbo_metrics

        metrics.update(elbo_metrics(net, ds.x_test, seed=seed))
    return metrics


# -- MLP classifiers (the neuron-pruning paper's MNIST models) ---------------------------------


def build_classifier(in_dim: int, hidden: list[int], n_classes: int, activation: str = "relu",
                     seed: int = 0) -> Network:
    """An MLP classifier in_dim-h1-..-hK-n_classes with PyTorch's default init.

    Hidden layers use ``activation``; the output layer is the identity (logits), trained with
    softmax cross-entropy by :func:`train_classifier`. ``kind="classifier"``, no latent layer."""
    if n_classes < 2:
        raise ModelError(f"a classifier needs at least 2 classes, got {n_classes}")
    dims = [in_dim, *hidden, n_classes]
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for k in range(len(dims) - 1):
        bound = 1.0 / np.sqrt(dims[k])
        w = (torch.rand(dims[k + 1], dims[k], generator=gen) * 2 - 1) * bound
        b = (torch.rand(dims[k + 1], generator=gen) * 2 - 1) * bound
        act = "identity" if k == len(dims) - 2 else activation
        layers.append(Layer(w.numpy(), b.numpy(), act))
    return Network(layers, latent=None, kind="classifier")


def _labels_of(ds, split: str) -> np.ndarray:
    y = getattr(ds, f"y_{split}")
    if y is None:
        raise ModelError(f"data {ds.name!r} has no labels; a classifier needs labelled data "
                         "(digits, mnist5k, idx: with labels, npy:/csv: with a label column)")
    return np.asarray(y, dtype=np.int64)


def n_classes_of(ds) -> int:
    """Number of classes of a labelled dataset (largest label + 1 over every split)."""
    ys = [_labels_of(ds, "train")] + [np.asarray(y) for y in (ds.y_val, ds.y_test)
                                      if y is not None and len(y)]
    return int(max(int(np.max(y)) for y in ys if len(y))) + 1


def accuracy(net: Network, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of samples whose largest output (logit) is at the label."""
    y = np.asarray(y)
    if len(y) == 0:
        return float("nan")
    return float(np.mean(np.argmax(net.forward(x), axis=1) == y))


def train_classifier(net: Network, x_train: np.ndarray, y_train: np.ndarray,
                     x_val: np.ndarray | None = None, y_val: np.ndarray | None = None, *,
                     epochs: int = 20, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                     quiet: bool = False, desc: str = "train",
                     schedule: str = "constant") -> tuple[Network, list[dict]]:
    """Train (or fine-tune) a classifier with softmax cross-entropy and Adam (``schedule``:
    the learning rate's, constant or cosine).

    Masked links stay exactly zero, as in :func:`train_network`. Returns the trained network
    and a per-epoch history of train loss and (with validation data) validation accuracy."""
    if epochs < 0:
        raise ModelError("--epochs must be >= 0")
    n_out = net.out_dim
    y = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_out):
        raise ModelError(f"labels must be in 0..{n_out - 1} for a {n_out}-output classifier")
    x = torch.from_numpy(np.asarray(x_train, dtype=np.float32))

    def val_metrics(model: MaskedMLP) -> dict:
        if x_val is None or y_val is None or not len(y_val):
            return {}
        logits = model(torch.from_numpy(np.asarray(x_val, dtype=np.float32)))
        return {"val_accuracy": float(np.mean(logits.argmax(1).numpy() == np.asarray(y_val)))}

    model, history = _masked_adam_loop(
        net, x, lambda out, idx: torch.nn.functional.cross_entropy(out, y[idx]), val_metrics,
        "train_loss", epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, quiet=quiet,
        desc=desc, fmt=".4f", schedule=schedule)
    return model.to_network(net), history


def fit(net: Network, ds, *, epochs: int, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
        quiet: bool = False, desc: str = "train",
        schedule: str = "constant") -> tuple[Network, list[dict]]:
    """Train ``net`` on ``ds`` with the loss of its kind: cross-entropy for a classifier,
    reconstruction MSE otherwise."""
    if net.kind == "classifier":
        return train_classifier(net, ds.x_train, _labels_of(ds, "train"), ds.x_val, ds.y_val,
                                epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                quiet=quiet, desc=desc, schedule=schedule)
    return train_network(net, ds.x_train, ds.x_val, epochs=epochs, lr=lr,
                         batch_size=batch_size, seed=seed, quiet=quiet, desc=desc,
                         schedule=schedule)


def train_classifier_file(data_spec: str, *, hidden: str | list[int] = "40",
                          activation: str = "relu", epochs: int = 20, lr: float = 1e-3,
                          batch_size: int = 64, seed: int = 0, output="model.pt",
                          quiet: bool = False) -> str:
    """``edgeprune train --task classify``: train an MLP classifier on labelled ``data_spec``
    and save an edgeprune checkpoint (kind "classifier"); returns a summary line."""
    from edgeprune.checkpoint import save_checkpoint
    from edgeprune.data import load_dataset
    from edgeprune.network import parse_activations

    sizes = parse_hidden(hidden)
    activation = parse_activations(activation, 1)[0]
    ds = load_dataset(data_spec, seed=seed)
    net = build_classifier(ds.dim, sizes, n_classes_of(ds), activation, seed)
    net, history = train_classifier(net, ds.x_train, _labels_of(ds, "train"), ds.x_val,
                                    ds.y_val, epochs=epochs, lr=lr, batch_size=batch_size,
                                    seed=seed, quiet=quiet)
    metrics = evaluate(net, ds, seed)
    net.meta = {"trained_on": ds.name, "task": "classify", "epochs": epochs, "seed": seed,
                "lr": lr, "test_metrics": metrics, "history": history[-1:] if history else []}
    save_checkpoint(net, output)
    parts = [f"{k}={v:.5g}" for k, v in metrics.items()]
    return f"trained {net.describe()} on {ds.name}: {', '.join(parts)}; wrote {output}"
