"""ShapNet checkpoints: the project's checkpoint format (``format: edgeprune-checkpoint``)
at ``version: 2`` with ``meta.kind`` ``shapnet-shallow`` or ``shapnet-deep``.

Layout (read with ``torch.load(weights_only=True)``, no code is ever unpickled)::

    {"format": "edgeprune-checkpoint", "version": 2,
     "state_dict": model.state_dict(),          # tensors only
     "meta": {"kind": "shapnet-deep",
              "shapnet": {"config": model.config(),   # ints / lists of ints / a name
                          "task": "regression" | "classification"},
              "info": {...}}}                          # trained_on, metrics, options

MLP checkpoints stay version 1 and load as before; an older edgeprune refuses a version-2 file
with its "upgrade edgeprune" line. Every field of ``meta.shapnet`` is type- and range-checked,
and every tensor's shape and finiteness, before the model is built; a bad field is a one-line
:class:`~edgeprune.network.ModelError` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from edgeprune.checkpoint import CHECKPOINT_FORMAT, _jsonable, sniff_model_file
from edgeprune.errors import first_line
from edgeprune.fileio import atomic_path
from edgeprune.network import ModelError
from edgeprune.shapnet.models import DeepShapNet, ShallowShapNet
from edgeprune.shapnet.modules import ACTIVATION_MODULES, MAX_ACTIVE, ShapNetError

SHAPNET_VERSION = 2
KINDS = {"shapnet-shallow": ShallowShapNet, "shapnet-deep": DeepShapNet}
TASKS = ("regression", "classification")
#: Bounds on what a file may declare, checked before anything is allocated.
MAX_FEATURES = 1 << 16
MAX_WIDTH = 4096  # channels, hidden widths, outputs
MAX_HIDDEN_LAYERS = 8
MAX_MODULES = 1 << 16
MAX_TRANSFORMS = 64


def kind_of(model) -> str:
    for name, cls in KINDS.items():
        if isinstance(model, cls):
            return name
    raise ShapNetError(f"{type(model).__name__} is not a ShapNet")


def shapnet_state(model, task: str, info: dict | None = None) -> dict:
    """The checkpoint dict of a ShapNet (see the module docstring)."""
    if task not in TASKS:
        raise ShapNetError(f"task {task!r} is not one of {', '.join(TASKS)}")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    meta = {"kind": kind_of(model), "shapnet": {"config": _jsonable(model.config()),
                                                "task": task},
            "info": _jsonable(info or {})}
    return {"format": CHECKPOINT_FORMAT, "version": SHAPNET_VERSION, "state_dict": state,
            "meta": meta}


def save_shapnet(model, path: str | os.PathLike, task: str, info: dict | None = None) -> Path:
    """Write a ShapNet checkpoint atomically (temp file, then rename)."""
    with atomic_path(path) as tmp:
        torch.save(shapnet_state(model, task, info), tmp)
    return Path(path)


def is_shapnet_checkpoint(obj) -> bool:
    """Whether a loaded checkpoint dict declares a ShapNet kind."""
    return (isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT
            and isinstance(obj.get("meta"), dict) and obj["meta"].get("kind") in KINDS)


def is_shapnet_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an edgeprune checkpoint of a ShapNet (read weights-only; False for
    anything else, including files that do not load)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() == ".onnx":
        return False
    try:
        if sniff_model_file(path) != "torch-zip":
            return False
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - not a readable checkpoint: not a ShapNet either
        return False
    return is_shapnet_checkpoint(obj)


def load_shapnet(path: str | os.PathLike):
    """Read a ShapNet checkpoint: returns ``(model, task, info)`` with the model in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file; check the path")
    if sniff_model_file(path) != "torch-zip":  # also bounds the zip's declared size
        raise ModelError(f"{path}: is not an edgeprune checkpoint (torch.save zip file); give "
                         "a ShapNet written by `edgeprune train --task shapnet-*`")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is a one-line error
        raise ModelError(f"{path}: cannot be read as an edgeprune checkpoint "
                         f"({first_line(exc)[:120]}); check the file") from None
    return shapnet_from_checkpoint(obj, path)


def shapnet_from_checkpoint(obj, path: Path):
    """Validate a loaded checkpoint dict field by field and build its ShapNet."""
    def fail(where: str, what: str):
        raise ModelError(f"{path}: field {where!r} {what}; re-save the model with edgeprune")

    if not is_shapnet_checkpoint(obj):
        fail("meta.kind", f"must be one of {', '.join(KINDS)} in an edgeprune checkpoint")
    version = obj.get("version")
    if isinstance(version, bool) or version != SHAPNET_VERSION:
        fail("version", f"must be {SHAPNET_VERSION} for a ShapNet, got {version!r}")
    meta, state = obj["meta"], obj.get("state_dict")
    if not isinstance(state, dict):
        fail("state_dict", "must be a dict of tensors")
    spec = meta.get("shapnet")
    if not isinstance(spec, dict):
        fail("meta.shapnet", "must be a dict")
    task = spec.get("task")
    if task not in TASKS:
        fail("meta.shapnet.task", f"must be one of {', '.join(TASKS)}, got {task!r}")
    config = spec.get("config")
    if not isinstance(config, dict):
        fail("meta.shapnet.config", "must be a dict")
    kwargs = _checked_config(meta["kind"], config, fail)
    held = sum(t.numel() for t in state.values() if torch.is_tensor(t))
    if _declared_elements(meta["kind"], kwargs) > held:
        fail("meta.shapnet.config", f"declares a larger model than the {held} values its "
             "state_dict holds")
    info = meta.get("info") or {}
    if not isinstance(info, dict):
        fail("meta.info", "must be a dict")
    try:
        model = KINDS[meta["kind"]](**kwargs)
    except ShapNetError as exc:
        raise ModelError(f"{path}: meta.shapnet.config: {exc}") from None
    _load_tensors(model, state, path)
    return model.eval(), task, dict(info)


def _int(config: dict, key: str, lo: int, hi: int, fail) -> int:
    value = config.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        fail(f"meta.shapnet.config.{key}", f"must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _int_list(config: dict, key: str, lo: int, hi: int, max_len: int, fail,
              min_len: int = 0) -> list[int]:
    value = config.get(key)
    if (not isinstance(value, list) or not min_len <= len(value) <= max_len
            or any(isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi
                   for v in value)):
        fail(f"meta.shapnet.config.{key}", f"must be a list of {min_len}..{max_len} integers in "
             f"{lo}..{hi}")
    return value


def _checked_config(kind: str, config: dict, fail) -> dict:
    in_dim = _int(config, "in_dim", 1, MAX_FEATURES, fail)
    kwargs = {"in_dim": in_dim, "out_dim": _int(config, "out_dim", 1, MAX_WIDTH, fail),
              "channels": _int(config, "channels", 1, MAX_WIDTH, fail),
              "hidden": _int_list(config, "hidden", 1, MAX_WIDTH, MAX_HIDDEN_LAYERS, fail)}
    activation = config.get("activation")
    if activation not in ACTIVATION_MODULES:
        fail("meta.shapnet.config.activation", f"must be one of {', '.join(ACTIVATION_MODULES)}")
    kwargs["activation"] = activation
    if kind == "shapnet-deep":
        k = _int(config, "k", 2, MAX_ACTIVE, fail)
        kwargs["k"] = k
        kwargs["n_transforms"] = _int(config, "n_transforms", 1, MAX_TRANSFORMS, fail)
        width = k
        while width < in_dim:
            width *= k
        if width // k * kwargs["n_transforms"] > MAX_MODULES:
            fail("meta.shapnet.config", f"declares more than {MAX_MODULES} Shapley modules")
        return kwargs
    sets = config.get("active_sets")
    if not isinstance(sets, list) or not 1 <= len(sets) <= MAX_MODULES:
        fail("meta.shapnet.config.active_sets", f"must be a list of 1..{MAX_MODULES} active sets")
    for n in range(len(sets)):
        _int_list({"s": sets[n]}, "s", 0, in_dim - 1, MAX_ACTIVE, fail, min_len=1)
    kwargs["active_sets"] = sets
    return kwargs


def _mlp_elements(dims: list[int]) -> int:
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def _declared_elements(kind: str, kw: dict) -> int:
    """The number of values the model's state_dict will hold, from the config alone: checked
    against what the file holds before anything of that size is allocated."""
    hidden, channels, out_dim = kw["hidden"], kw["channels"], kw["out_dim"]
    total = kw["in_dim"]  # the model's reference
    if kind == "shapnet-shallow":
        for s in kw["active_sets"]:
            total += 2 * len(s) + _mlp_elements([len(s), *hidden, channels])
        return total + channels * out_dim + out_dim
    k, n = kw["k"], kw["n_transforms"]
    width = k
    while width < kw["in_dim"]:
        width *= k
    for layer in range(n):
        c_in = 1 if layer == 0 else channels
        c_out = out_dim if layer == n - 1 else channels
        total += width // k * (2 * k + _mlp_elements([k * c_in, *hidden, c_out]))
    return total + out_dim


def _load_tensors(model, state: dict, path: Path) -> None:
    """Every tensor the model expects, of its shape and finite, then ``load_state_dict``."""
    expected = model.state_dict()
    for key, want in expected.items():
        got = state.get(key)
        if not torch.is_tensor(got):
            raise ModelError(f"{path}: state_dict[{key!r}] must be a tensor, got "
                             f"{type(got).__name__}; re-save the model with edgeprune")
        if tuple(got.shape) != tuple(want.shape) or got.dtype != want.dtype:
            raise ModelError(f"{path}: state_dict[{key!r}] is {tuple(got.shape)} {got.dtype}, "
                             f"the declared model needs {tuple(want.shape)} {want.dtype}; "
                             "re-save the model with edgeprune")
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise ModelError(f"{path}: state_dict[{key!r}] holds a non-finite value; the model "
                             "is damaged, retrain or re-save it")
        if key.endswith(".active") and not torch.equal(got, want):
            raise ModelError(f"{path}: state_dict[{key!r}] = {got.tolist()} differs from the "
                             f"active set the config declares ({want.tolist()}); re-save it")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise ModelError(f"{path}: state_dict has unexpected entry {extra[0]!r}; re-save the "
                         "model with edgeprune")
    model.load_state_dict(state, strict=True)
