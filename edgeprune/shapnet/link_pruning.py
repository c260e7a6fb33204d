"""SHAP-SAE link pruning of a ShapNet's inner MLPs (static pruning, before compiling).

A Shapley module's Shapley values are exact only when every masked copy goes through the *same*
inner function, so the compiled chain's copies of an inner link cannot be pruned one by one:
a link is kept or removed in all ``2**k`` copies at once. That is what pruning the inner MLP
``f_j`` itself does, and how it is scored here: ``f_j`` is an ordinary MLP
(:class:`~edgeprune.network.Network`), its explanation set is the masked copies of its inputs
over the data (``samples x 2**k`` rows, exactly what the compiled copies layer feeds it), and
:func:`~edgeprune.scoring.score_network` gives every link its SHAP-SAE importance (LI, the paper's
eq. 3) on those inputs, which equals the mean of the compiled copies' link scores. Each module
is then pruned with :func:`~edgeprune.prune.prune_network` (support sets at importance level
``m``, or the ``m`` that reaches a target sparsity; dead units cascaded into biases) and the
pruned weights are written back into a copy of the PyTorch model, which stays a ShapNet (its
explanations are still exact Shapley values of the pruned model). Compiling it drops the zero
links from every copy.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.runtime.shapnet_layout import coalition_bits

from .compile import spec_from_model
from .spec import ShapnetSpec

__all__ = ["masked_copy_inputs", "prune_inner_links"]


def masked_copy_inputs(spec: ShapnetSpec, x: np.ndarray) -> list[list[np.ndarray]]:
    """Per transform, per module: the inner MLP's inputs over ``x``, ``(samples * 2**k, k*C)``
    (the masked copies of the module's inputs, as the compiled copies layer builds them)."""
    _, _, zs = spec.forward(x, representations=True)
    z = np.zeros((len(x), spec.features, 1))
    z[:, :spec.n_inputs, 0] = np.asarray(x, np.float64)
    out = []
    for t, tr in enumerate(spec.transforms):
        source = z if t == 0 else zs[t - 1]
        per = []
        for m in tr.modules:
            active = np.asarray(m.active)
            k = len(active)
            inputs = source[:, active, :].reshape(len(x), -1)
            keep = np.repeat(coalition_bits(k).astype(bool), tr.in_channels, axis=1)
            copies = np.where(keep[None], inputs[:, None, :], np.asarray(m.reference)[None, None])
            per.append(copies.reshape(-1, k * tr.in_channels).astype(np.float32))
        out.append(per)
    return out


def prune_inner_links(model: Any, x: np.ndarray, *, importance_level: float | None = None,
                      sparsity: float | None = None, estimator: str = "auto", seed: int = 0,
                      max_samples: int = 128, quiet: bool = False) -> tuple[Any, dict]:
    """Prune every Shapley module's inner MLP of the PyTorch ShapNet ``model`` with SHAP-SAE
    link scores on its masked-copy inputs over ``x`` (at most ``max_samples`` samples).

    Give one of ``importance_level`` (m in (0, 1], per layer of each inner MLP) or
    ``sparsity`` (the target fraction of each inner MLP's links removed). Returns the pruned
    copy of ``model`` and a report (links per transform before/after, the scores' estimator).
    Each module is scored on ``samples * 2**k`` rows (about a second per module of two
    16-wide layers on this host); a progress bar counts the modules unless ``quiet``.
    """
    from tqdm.auto import tqdm

    from edgeprune.network import Layer, Network
    from edgeprune.prune import prune_network
    from edgeprune.scoring import score_network

    if (importance_level is None) == (sparsity is None):
        raise EdgepruneError("give exactly one of importance_level or sparsity")
    x = np.asarray(x, dtype=np.float32)
    if len(x) > max_samples:
        x = x[np.random.default_rng(seed).choice(len(x), max_samples, replace=False)]
    spec = spec_from_model(model)
    inputs = masked_copy_inputs(spec, x)
    pruned = copy.deepcopy(model)
    torch_modules = _torch_modules(pruned)
    report: dict[str, Any] = {"samples": int(len(x)), "estimator": estimator,
                              "importance_level": importance_level, "sparsity": sparsity,
                              "transforms": []}
    index = 0
    bar = tqdm(total=spec.n_modules, desc="score inner MLPs", unit="module", disable=quiet,
               leave=False)
    for t, tr in enumerate(spec.transforms):
        before = after = 0
        for m, copies in zip(tr.modules, inputs[t]):
            net = Network([Layer(lay.weight, lay.bias, lay.activation, lay.negative_slope)
                           for lay in m.layers], kind="mlp")
            scores = score_network(net, copies, estimator=estimator, seed=seed + index,
                                   quiet=True)
            result = prune_network(net, scores.li(), importance_level=importance_level,
                                   sparsity=sparsity)
            _write_back(torch_modules[index], result.network)
            before += sum(layer.n_links for layer in net.layers)
            after += sum(int(np.count_nonzero(layer.masked_weight))
                         for layer in result.network.layers)
            index += 1
            bar.update(1)
        report["transforms"].append({"transform": t + 1, "modules": len(tr.modules),
                                     "links": before, "links_kept": after,
                                     "sparsity": 1 - after / before if before else 0.0})
    bar.close()
    total = sum(r["links"] for r in report["transforms"])
    kept = sum(r["links_kept"] for r in report["transforms"])
    report["inner_sparsity"] = 1 - kept / total if total else 0.0
    return pruned, report


def _torch_modules(model: Any) -> list[Any]:
    """The model's Shapley modules in :func:`spec_from_model`'s order."""
    if hasattr(model, "modules_list"):
        return list(model.modules_list)
    return [m for modules in model.transforms for m in modules]


def _write_back(module: Any, net: Any) -> None:
    """The pruned inner network's weights (pruned links exactly 0) and cascaded biases."""
    import torch

    linears = [part for part in module.inner if type(part).__name__ == "Linear"]
    with torch.no_grad():
        for linear, layer in zip(linears, net.layers, strict=True):
            linear.weight.copy_(torch.from_numpy(layer.masked_weight))
            linear.bias.copy_(torch.from_numpy(layer.bias))
