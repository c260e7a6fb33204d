"""Training ShapNets with explanation regularisation (paper §2.4) and ``edgeprune train --task
shapnet-shallow|shapnet-deep``.

The loss is the task loss (MSE for regression, softmax cross-entropy for classification) plus

- ``l1 * mean |Z|``: the ℓ1 penalty of §2.4 on the explanation (``l1_layers="last"``) or on
  every Shapley representation Z^(1..L) (``"all"``, summed), which makes attributions sparse
  and, in a Deep ShapNet, lets more modules be skipped at run time (Cor. 4);
- ``smooth * mean_batch max_i sum_o |phi_io|``: the ℓ∞ penalty of §2.4 ("smooth": no single
  feature may carry too much of the prediction).

Means are over every entry so that λ does not scale with the number of features or outputs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from edgeprune.network import ModelError
from edgeprune.shapnet.models import DeepShapNet, ShallowShapNet, covering_active_sets
from edgeprune.shapnet.modules import ShapNetError
from edgeprune.train import adam_epochs

KINDS = ("shapnet-shallow", "shapnet-deep")
L1_LAYERS = ("last", "all")
REFERENCES = ("mean", "zero")


@dataclass
class Regularisation:
    """Explanation penalties (see the module docstring); all 0 = plain training."""

    l1: float = 0.0
    l1_layers: str = "last"
    smooth: float = 0.0

    def validate(self) -> None:
        for name, value in (("--explanation-l1", self.l1), ("--explanation-smooth", self.smooth)):
            if not (np.isfinite(value) and value >= 0):
                raise ShapNetError(f"{name} {value}: λ must be a finite number >= 0, e.g. 0.01")
        if self.l1_layers not in L1_LAYERS:
            raise ShapNetError(f"--l1-layers {self.l1_layers!r}: choose last or all")

    def penalty(self, reps: list[torch.Tensor]) -> torch.Tensor | float:
        """The regulariser on the representations (the last one is the explanation)."""
        total: torch.Tensor | float = 0.0
        if self.l1:
            layers = reps if self.l1_layers == "all" else reps[-1:]
            total = total + self.l1 * sum(z.abs().mean() for z in layers)
        if self.smooth:
            total = total + self.smooth * reps[-1].abs().sum(2).amax(1).mean()
        return total


@dataclass
class ShapNetSpec:
    """The architecture options of ``train --task shapnet-*``."""

    kind: str = "shapnet-deep"
    active_size: int = 2
    transforms: int | None = None  # Deep: Shapley transforms (default log_k of the width)
    modules: int | None = None  # Shallow: Shapley modules (default 2 * ceil(d / k))
    channels: int = 8
    hidden: tuple[int, ...] = (32,)
    activation: str = "relu"
    reference: str = "mean"


def build_shapnet(spec: ShapNetSpec, in_dim: int, out_dim: int, reference: np.ndarray,
                  seed: int = 0):
    """A freshly initialised (seeded) ShapNet of ``spec``."""
    if spec.kind not in KINDS:
        raise ShapNetError(f"unknown ShapNet kind {spec.kind!r}; choose {' or '.join(KINDS)}")
    torch.manual_seed(seed)
    common = {"channels": spec.channels, "hidden": list(spec.hidden),
              "activation": spec.activation}
    if spec.kind == "shapnet-shallow":
        sets = covering_active_sets(in_dim, spec.active_size, spec.modules, seed)
        return ShallowShapNet(in_dim, out_dim, sets, reference, **common)
    return DeepShapNet(in_dim, out_dim, reference, k=spec.active_size,
                       n_transforms=spec.transforms, **common)


def task_loss(task: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if task == "classification":
        return torch.nn.functional.cross_entropy(pred, target)
    return torch.mean((pred - target) ** 2)


def metrics(model, x: np.ndarray, target: np.ndarray, task: str, prefix: str) -> dict:
    """``{prefix}_mse`` (regression) or ``{prefix}_accuracy`` (classification) of ``model``."""
    if len(x) == 0:
        return {}
    with torch.no_grad():
        pred = model.eval()(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))[0]
    if task == "classification":
        return {f"{prefix}_accuracy": float(np.mean(pred.argmax(1).numpy() == target))}
    return {f"{prefix}_mse": float(np.mean((pred.numpy() - target) ** 2))}


@contextmanager
def single_thread():
    """Run torch on one intra-op thread, restoring the setting afterwards. A ShapNet's
    operations are small (tens of modules x batch x 2^k rows); measured on this 2-core host
    under load, two threads made a training step 7-19x slower than one (threads spin
    waiting for each other), and idle they gain nothing on matrices this small."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_shapnet(model, x_train: np.ndarray, t_train: np.ndarray, x_val=None, t_val=None, *,
                  task: str, reg: Regularisation | None = None, epochs: int = 20,
                  lr: float = 1e-3, batch_size: int = 64, seed: int = 0, quiet: bool = False,
                  desc: str = "train") -> list[dict]:
    """Adam on the task loss + ``reg``'s penalty, seeded shuffles; returns per-epoch history
    (train loss, validation metric). ``t_*`` are int64 labels or float (n, out) targets."""
    reg = reg or Regularisation()
    reg.validate()
    if epochs < 0:
        raise ModelError("--epochs must be >= 0")
    x = torch.from_numpy(np.ascontiguousarray(x_train, dtype=np.float32))
    t = torch.from_numpy(np.ascontiguousarray(
        t_train, dtype=np.int64 if task == "classification" else np.float32))
    torch.manual_seed(seed)

    def batch_loss(idx):
        pred, _, reps = model.outputs(x[idx])
        return task_loss(task, pred, t[idx]) + reg.penalty(reps)

    def val_metrics(model) -> dict:
        if x_val is None or t_val is None:
            return {}
        return metrics(model, x_val, t_val, task, "val")

    with single_thread():
        return adam_epochs(model, len(x), batch_loss, val_metrics, "train_loss", epochs=epochs,
                           lr=lr, batch_size=batch_size, seed=seed, quiet=quiet, desc=desc,
                           fmt=".4g")


def task_data(ds, target: str = "auto"):
    """``(task, out_dim, (t_train, t_val, t_test))`` of a dataset: regression on its float
    targets, classification on its labels (``auto``: targets when it has them)."""
    from edgeprune.train import _labels_of, n_classes_of

    if target == "auto":
        target = "regression" if ds.has_targets else "classification"
    if target == "regression":
        if not ds.has_targets:
            raise ShapNetError(f"data {ds.name!r} has no regression targets; use synthetic16 "
                               "or an npy: archive with a float y (or --target classification)")
        return "regression", ds.t_train.shape[1], (ds.t_train, ds.t_val, ds.t_test)
    if target != "classification":
        raise ShapNetError(f"--target {target!r}: choose auto, regression or classification")
    ys = (_labels_of(ds, "train"), ds.y_val, ds.y_test)
    return "classification", n_classes_of(ds), ys


def reference_values(ds, how: str) -> np.ndarray:
    """The input reference: the training mean (``mean``) or zeros (``zero``)."""
    if how not in REFERENCES:
        raise ShapNetError(f"--reference {how!r}: a ShapNet's reference is mean or zero")
    if how == "zero":
        return np.zeros(ds.dim, np.float32)
    return ds.x_train.mean(axis=0, dtype=np.float64).astype(np.float32)


def train_shapnet_file(data_spec: str, spec: ShapNetSpec, *, target: str = "auto",
                       reg: Regularisation | None = None, epochs: int = 20, lr: float = 1e-3,
                       batch_size: int = 64, seed: int = 0,
                       output: str | os.PathLike = "model.pt", quiet: bool = False) -> str:
    """``edgeprune train --task shapnet-*``: build, train, evaluate and save a ShapNet; returns
    a summary line."""
    from edgeprune.data import load_dataset
    from edgeprune.shapnet.checkpoint import save_shapnet

    reg = reg or Regularisation()
    reg.validate()
    ds = load_dataset(data_spec, seed=seed, regression=target == "regression")
    task, out_dim, (t_train, t_val, t_test) = task_data(ds, target)
    model = build_shapnet(spec, ds.dim, out_dim, reference_values(ds, spec.reference), seed)
    history = train_shapnet(model, ds.x_train, t_train, ds.x_val, t_val, task=task, reg=reg,
                            epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, quiet=quiet)
    test = metrics(model, ds.x_test, t_test, task, "test")
    info = {"trained_on": ds.name, "task": spec.kind, "target": task, "epochs": epochs,
            "seed": seed, "lr": lr, "batch_size": batch_size, "reference": spec.reference,
            "regularisation": {"l1": reg.l1, "l1_layers": reg.l1_layers, "smooth": reg.smooth},
            "test_metrics": test, "history": history[-1:]}
    save_shapnet(model.eval(), output, task, info)
    n_params = sum(p.numel() for p in model.parameters())
    parts = [f"{k}={v:.5g}" for k, v in test.items()]
    return (f"trained {spec.kind} ({_describe(model)}, {n_params} parameters) on {ds.name} "
            f"({task}): {', '.join(parts)}; wrote {output}")


def _describe(model) -> str:
    if isinstance(model, DeepShapNet):
        return (f"{model.n_transforms} Shapley transforms of {model.width // model.k} modules, "
                f"k={model.k}")
    return f"{len(model.modules_list)} Shapley modules, k<={max(m.k for m in model.modules_list)}"
