"""The fine-tune recipe after pruning: knowledge distillation from the unpruned network and the
learning-rate schedule (``compress --distill W --distill-on output|all --finetune-schedule``).

Distillation (Hinton et al. 2015, for regression: match the teacher's outputs; FitNets, Romero
et al. 2015: match its hidden codes too). The teacher is the network the links were pruned from,
the student the masked network being fine-tuned; both see the same mini-batch. With weight ``W``
the autoencoder's loss is

    (1 - W) * ||f(x) - x||^2 / c_x  +  W * mean_k ||h_k(x) - t_k(x)||^2 / c_k

where ``h_k`` / ``t_k`` are the student's / teacher's outputs of layer k (``all``: every layer,
the hidden codes and the reconstruction; ``output``: only the reconstruction) and ``c_x``,
``c_k`` the mean squares of the targets over the training split, so that every term is a
relative squared error and ``W`` weighs comparable quantities (the plain loss is the first term
times the constant ``c_x``; Adam does not see a constant factor). ``W = 0`` is the plain MSE
fine-tune, bit for bit (:func:`edgeprune.train.train_network` takes its own path then).

The schedule: ``constant`` (the paper's Adam at a fixed rate) or ``cosine`` (the rate decays
from ``--finetune-lr`` to 0 over the fine-tune's steps, ``torch.optim.lr_scheduler.
CosineAnnealingLR``), so the last epochs settle instead of bouncing at the full rate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from edgeprune.choices import DISTILL_TARGETS, LR_SCHEDULES
from edgeprune.errors import EdgepruneError
from edgeprune.network import ModelError, Network
from edgeprune.torch_network import MaskedMLP

#: Adam's learning rate in the fine-tune unless ``--finetune-lr`` says otherwise: 3e-3 for an
#: autoencoder (benchmarks/results/high_sparsity: at eta 0.95 +1.7 to +2.2 pp for every method on
#: MNIST-5k, +22 to +29 pp at eta 0.9 on digits; level at eta 0.9 on MNIST-5k), 1e-3 (the
#: paper's, unmeasured at 3e-3) for a VAE's ELBO and a classifier's cross-entropy.
AUTOENCODER_FINETUNE_LR = 3e-3
DEFAULT_FINETUNE_LR = 1e-3


def finetune_lr(net: Network, lr: float | None) -> float:
    """The fine-tune's learning rate: ``lr`` when given, else the default for ``net``'s kind."""
    if lr is not None:
        return float(lr)
    return AUTOENCODER_FINETUNE_LR if net.kind == "autoencoder" else DEFAULT_FINETUNE_LR
#: Rows per forward pass when the normalisers are measured (bounds the memory of that pass).
_CHUNK = 4096


def check_finetune_recipe(distill: float, distill_on: str, schedule: str) -> None:
    """Validate ``--distill`` (a weight in [0, 1]), ``--distill-on`` and
    ``--finetune-schedule``."""
    if isinstance(distill, bool) or not isinstance(distill, (int, float)) or not (
            np.isfinite(distill) and 0.0 <= distill <= 1.0):
        raise EdgepruneError(f"--distill {distill!r}: must be a weight in [0, 1] (0: off), "
                             "e.g. 0.5")
    if distill_on not in DISTILL_TARGETS:
        raise EdgepruneError(f"--distill-on {distill_on!r}: use one of "
                             f"{', '.join(DISTILL_TARGETS)}")
    if schedule not in LR_SCHEDULES:
        raise EdgepruneError(f"--finetune-schedule {schedule!r}: use one of "
                             f"{', '.join(LR_SCHEDULES)}")


def check_teacher(teacher: Network, student: Network) -> None:
    """The teacher must have the student's layer shapes (the student is a masked copy)."""
    shapes = teacher.layer_shapes
    if shapes != student.layer_shapes:
        raise EdgepruneError(f"--distill: the teacher's layers {shapes} differ from the pruned "
                             "network's; distil from the network the links were pruned from")


@torch.no_grad()
def _mean_squares(model: MaskedMLP, x: torch.Tensor) -> list[float]:
    """Mean square of every layer's output of ``model`` over ``x`` (a floor keeps a layer
    that is all zeros from dividing by zero)."""
    sums = None
    for start in range(0, len(x), _CHUNK):
        outs = model.activations(x[start:start + _CHUNK])
        part = [float(o.double().square().sum()) for o in outs]
        sums = part if sums is None else [a + b for a, b in zip(sums, part)]
    sizes = [len(x) * lin.out_features for lin in model.linears]
    return [max(s / n, 1e-12) for s, n in zip(sums or [], sizes)]


def distillation_loss(teacher: Network, x: torch.Tensor, weight: float,
                      on: str) -> tuple[Callable, Callable]:
    """``(forward, loss)`` for :func:`edgeprune.train._masked_adam_loop`: ``forward(model,
    batch)`` returns every layer's output of the student, ``loss(outputs, indices)`` the
    weighted sum of module docstring (``x`` is the training split as a tensor)."""
    teach = MaskedMLP(teacher).eval()
    for p in teach.parameters():
        p.requires_grad_(False)
    c_layers = _mean_squares(teach, x)
    c_x = max(float(x.double().square().mean()), 1e-12)
    layers = list(range(len(c_layers))) if on == "all" else [len(c_layers) - 1]

    def forward(model: MaskedMLP, batch: torch.Tensor) -> list[torch.Tensor]:
        return model.activations(batch)

    def loss(outs: list[torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
        xb = x[idx]
        with torch.no_grad():
            targets = teach.activations(xb)
        recon = torch.mean((outs[-1] - xb) ** 2) / c_x
        match = sum(torch.mean((outs[k] - targets[k]) ** 2) / c_layers[k] for k in layers)
        return (1.0 - weight) * recon + weight * match / len(layers)

    return forward, loss


def check_finetune_kind(net: Network, opts) -> None:
    """--distill matches an autoencoder's layers; a VAE's ELBO fine-tune has neither option."""
    if opts.distill and net.kind != "autoencoder":
        raise ModelError(f"--distill matches the layers of an autoencoder; this model is a "
                         f"{net.kind}: drop --distill")
    if opts.finetune_schedule != "constant" and net.kind == "vae":
        raise ModelError("--finetune-schedule: a VAE is fine-tuned by its ELBO at a constant "
                         "rate; drop --finetune-schedule")


def finetune_recipe(net: Network, opts) -> dict | None:
    """What report.json records of --distill / --finetune-schedule / --finetune-lr (None: the
    plain fine-tune)."""
    recipe = {}
    if opts.distill:
        recipe.update(distill=opts.distill, distill_on=opts.distill_on)
    if opts.finetune_schedule != "constant":
        recipe["schedule"] = opts.finetune_schedule
    if opts.finetune_epochs:
        recipe["lr"] = finetune_lr(net, opts.finetune_lr)
    return recipe or None


def finetune_pruned(pruned: Network, ds, opts,
              epochs: int | None = None, teacher: Network | None = None) -> tuple[Network, list]:
    """The masked fine-tune of ``opts`` (its recipe: --distill from ``teacher``, the network
    the links were pruned from, and --finetune-schedule)."""
    from edgeprune.train import fit, train_network

    epochs = opts.finetune_epochs if epochs is None else epochs
    lr = finetune_lr(pruned, opts.finetune_lr)
    if not epochs:
        return pruned, []
    if pruned.kind == "vae" and pruned.logvar is not None:  # the beta-ELBO, masks kept
        from edgeprune.vae_network import finetune_vae

        return finetune_vae(pruned, ds.x_train, ds.x_val, epochs=epochs, lr=lr,
                            seed=opts.seed, quiet=opts.quiet, beta=opts.beta, desc="fine-tune")
    if pruned.kind == "classifier":  # cross-entropy, not MSE
        return fit(pruned, ds, epochs=epochs, lr=lr,
                   seed=opts.seed, quiet=opts.quiet, desc="fine-tune",
                   schedule=opts.finetune_schedule)
    return train_network(pruned, ds.x_train, ds.x_val, epochs=epochs,
                         lr=lr, seed=opts.seed, quiet=opts.quiet,
                         desc="fine-tune", teacher=teacher, distill=opts.distill,
                         distill_on=opts.distill_on, schedule=opts.finetune_schedule)


def cosine_scheduler(opt: torch.optim.Optimizer, total_steps: int):
    """The learning rate of ``opt`` decays along a half cosine to 0 over ``total_steps``."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total_steps))
