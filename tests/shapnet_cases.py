"""Small ShapNets for the deployment tests: numpy specs (any shape the compiler takes) and the
PyTorch models of :mod:`edgeprune.shapnet`."""

from __future__ import annotations

import itertools

import numpy as np

from edgeprune.shapnet.spec import InnerLayer, ModuleSpec, ShapnetSpec, TransformSpec

#: (k, in_channels, out_channels, hidden widths, activation) per transform
DEEP = ((2, 1, 3, [5], "relu"), (2, 3, 4, [6], "tanh"), (2, 4, 2, [4], "sigmoid"))


def random_spec(features: int = 8, transforms=DEEP, outputs: int = 2, *, overlapping=False,
                inputs: int | None = None, seed: int = 0) -> ShapnetSpec:
    """Disjoint active sets per transform (or every k-subset with ``overlapping``), random
    inner MLPs (the last inner layer linear), random references for the first transform."""
    rng = np.random.default_rng(seed)
    specs = []
    for t, (k, c_in, c_out, hidden, act) in enumerate(transforms):
        if overlapping:
            sets = [list(s) for s in itertools.combinations(range(features), k)]
        else:
            perm = rng.permutation(features)
            sets = [perm[i:i + k] for i in range(0, features - features % k, k)]
        modules = []
        for active in sets:
            widths = [k * c_in, *hidden, c_out]
            layers = [InnerLayer(rng.normal(size=(widths[i + 1], widths[i])).astype(np.float32),
                                 0.3 * rng.normal(size=widths[i + 1]).astype(np.float32),
                                 act if i < len(widths) - 2 else "identity", 0.1)
                      for i in range(len(widths) - 1)]
            ref = rng.normal(size=k * c_in) if t == 0 else np.zeros(k * c_in)
            if inputs is not None and t == 0:
                ref = np.where(np.repeat(np.asarray(active) >= inputs, c_in), 0.0, ref)
            modules.append(ModuleSpec(np.asarray(active), ref.astype(np.float32), layers))
        specs.append(TransformSpec(c_in, c_out, modules))
    return ShapnetSpec(features, specs, rng.normal(size=(outputs, transforms[-1][2])).astype(
        np.float32), rng.normal(size=outputs).astype(np.float32), inputs=inputs)


def at_reference(spec: ShapnetSpec, x: np.ndarray, rows: slice, modules: int) -> np.ndarray:
    """``x`` with the inputs of the first ``modules`` first-transform modules set to their
    reference on ``rows`` (those modules' Shapley values are then exactly 0)."""
    x = x.copy()
    for m in spec.transforms[0].modules[:modules]:
        real = np.asarray(m.active) < x.shape[1]
        x[rows, np.asarray(m.active)[real]] = np.asarray(m.reference)[real]
    return x


def torch_models(seed: int = 0):
    """(name, model) for a Shallow ShapNet with overlapping modules and two Deep ShapNets (the
    second pads 10 features to 3**3 = 27), random weights and references, in eval mode."""
    import torch

    from edgeprune.shapnet import DeepShapNet, ShallowShapNet, covering_active_sets

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    models = [
        ("shallow", ShallowShapNet(7, 3, covering_active_sets(7, 3), reference=rng.normal(size=7),
                                   channels=4, hidden=(8,), activation="tanh")),
        ("deep", DeepShapNet(6, 2, reference=rng.normal(size=6), k=2, channels=3, hidden=(8, 6),
                             activation="leaky_relu")),
        ("deep-k3-padded", DeepShapNet(10, 1, k=3, channels=2, hidden=(5,),
                                       activation="sigmoid")),
    ]
    for _, model in models:
        model.eval()
    return models


def torch_outputs(model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    with torch.no_grad():
        pred, expl = model(torch.from_numpy(np.asarray(x, np.float32)))
    return pred.numpy(), expl.numpy()
