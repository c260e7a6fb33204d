"""Loading and saving model files (``model.pt``) as :class:`~edgeprune.network.Network`.

Formats, safest first (DESIGN section 3):

1. an edgeprune checkpoint — a dict of tensors and plain metadata, read with
   ``torch.load(weights_only=True)`` (no code is ever unpickled);
2. a plain ``state_dict`` — also ``weights_only``; the activations (and the latent layer of an
   autoencoder) come from the caller because a state_dict does not name them;
3. TorchScript (``torch.jit.save``) — a zip of tensors and TorchScript code, not a pickle of
   Python objects; its module tree is walked;
4. a fully pickled ``nn.Module`` — only with ``trust_pickle=True`` (``--trust-pickle``), because
   unpickling runs arbitrary code.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from edgeprune.fileio import atomic_path
from edgeprune.messages import first_line
from edgeprune.network import Layer, ModelError, Network, parse_activations

CHECKPOINT_FORMAT = "edgeprune-checkpoint"
CHECKPOINT_VERSION = 1


def _torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ModelError("reading model.pt needs PyTorch: pip install 'edgeprune[torch]'") from exc
    return torch


# ---------------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------------
def network_state(net: Network) -> dict:
    """The edgeprune checkpoint dict for ``net`` (tensors + JSON-like metadata only)."""
    torch = _torch()
    state = {}
    for k, layer in enumerate(net.layers, start=1):
        state[f"layer{k}.weight"] = torch.from_numpy(layer.weight.copy())
        state[f"layer{k}.bias"] = torch.from_numpy(layer.bias.copy())
        state[f"layer{k}.mask"] = torch.from_numpy(layer.mask.copy())
    meta = {
        "layers": [
            {"in": layer.in_dim, "out": layer.out_dim, "activation": layer.activation,
             "negative_slope": float(layer.negative_slope)}
            for layer in net.layers
        ],
        "latent": net.latent,
        "kind": net.kind,
        "info": _jsonable(net.meta),
    }
    return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "state_dict": state,
            "meta": meta}


def _jsonable(obj):
    """Reduce metadata to types that ``torch.load(weights_only=True)`` accepts."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def save_checkpoint(net: Network, path: str | os.PathLike) -> Path:
    """Write ``net`` as an edgeprune checkpoint, atomically (temp file, then rename)."""
    torch = _torch()
    with atomic_path(path) as tmp:
        torch.save(network_state(net), tmp)
    return Path(path)


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def load_network(
    path: str | os.PathLike,
    *,
    activations: str | None = None,
    latent: int | None = None,
    trust_pickle: bool = False,
) -> Network:
    """Read ``path`` as a Network; see the module docstring for the accepted formats."""
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file; check the path")
    if _is_torchscript(path):  # a zip of tensors + TorchScript code, no Python pickle of objects
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
        return network_from_module(module, activations=activations, latent=latent, source=path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - we classify below and re-raise one-line errors
        obj = None
        weights_only_error = exc
    if obj is not None:
        if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
            return _from_checkpoint(obj, path)
        if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
            return _from_state_dict(obj, path, activations, latent)
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            return _from_state_dict(obj["state_dict"], path, activations, latent)
        raise ModelError(
            f"{path}: holds a {type(obj).__name__}, not a model; expected an edgeprune "
            "checkpoint, a state_dict, TorchScript, or a pickled nn.Module with --trust-pickle"
        )
    if "weights only load failed" not in str(weights_only_error).lower():
        first = (str(weights_only_error).splitlines() or [""])[0][:120]
        raise ModelError(f"{path}: cannot be read as a PyTorch model file "
                         f"({type(weights_only_error).__name__}: {first}); check the file")
    if not trust_pickle:
        raise ModelError(
            f"{path}: is a pickled Python object, which can run arbitrary code when loaded; "
            "re-run with --trust-pickle only if you trust its source "
            f"({type(weights_only_error).__name__})"
        )
    try:
        module = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: cannot be read as a PyTorch file ({exc.__class__.__name__}: "
                         f"{first_line(exc)[:120]}); check the file") from None
    if isinstance(module, torch.nn.Module):
        return network_from_module(module, activations=activations, latent=latent, source=path)
    if isinstance(module, dict):
        return _from_state_dict(module, path, activations, latent)
    raise ModelError(f"{path}: unpickled a {type(module).__name__}, not an nn.Module or state_dict")


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(name.endswith("constants.pkl") or "/code/" in name for name in zf.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _from_checkpoint(obj: dict, path: Path) -> Network:
    torch = _torch()
    try:
        meta = obj["meta"]
        state = obj["state_dict"]
        layers = []
        for k, spec in enumerate(meta["layers"], start=1):
            w = state[f"layer{k}.weight"].detach().to(torch.float32).numpy()
            b = state[f"layer{k}.bias"].detach().to(torch.float32).numpy()
            m = state.get(f"layer{k}.mask")
            mask = None if m is None else m.detach().numpy().astype(bool)
            layers.append(Layer(w, b, spec["activation"], float(spec.get("negative_slope", 0.01)),
                                mask))
    except KeyError as exc:
        raise ModelError(f"{path}: edgeprune checkpoint is missing field {exc}; re-save it") from None
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
    return Network(layers, latent=meta.get("latent"), kind=meta.get("kind", "autoencoder"),
                   meta=dict(meta.get("info") or {}))


def _from_state_dict(state: dict, path: Path, activations: str | None, latent: int | None
                     ) -> Network:
    torch = _torch()
    weights = [(k, v) for k, v in state.items() if k.endswith("weight") and torch.is_tensor(v)]
    if not weights:
        raise ModelError(f"{path}: state_dict has no '*.weight' tensors; is it a model?")
    layers_wb = []
    for key, w in weights:
        if w.ndim != 2:
            raise ModelError(
                f"{path}: parameter {key!r} has shape {tuple(w.shape)}; only chains of Linear "
                "layers are supported (first unsupported part)"
            )
        bkey = key[: -len("weight")] + "bias"
        b = state.get(bkey)
        b = torch.zeros(w.shape[0]) if b is None else b
        layers_wb.append((w.detach().float().numpy(), b.detach().float().numpy()))
    if activations is None:
        raise ModelError(
            f"{path}: is a plain state_dict, which does not name its activations; pass "
            f"--activations with one name per Linear layer ({len(layers_wb)}), e.g. "
            f"{','.join(['relu'] * (len(layers_wb) - 1) + ['sigmoid'])}, and --latent L"
        )
    names = parse_activations(activations, len(layers_wb))
    try:
        layers = [Layer(w, b, a) for (w, b), a in zip(layers_wb, names)]
        return Network(layers, latent=_default_latent(layers, latent), kind="autoencoder")
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None


def _default_latent(layers: list[Layer], latent: int | None) -> int | None:
    """The given latent index, or n/2 for a symmetric-looking autoencoder, else None (MLP)."""
    if latent is not None:
        return int(latent)
    n = len(layers)
    if n >= 2 and n % 2 == 0 and layers[0].in_dim == layers[-1].out_dim:
        return n // 2
    return None


# ---------------------------------------------------------------------------------------------
# nn.Module / TorchScript walking
# ---------------------------------------------------------------------------------------------
_ACT_BY_TYPE = {
    "ReLU": "relu", "LeakyReLU": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh",
    "Identity": "identity", "Dropout": None, "Flatten": None,
}


def _type_name(module) -> str:
    return getattr(module, "original_name", None) or type(module).__name__


def _flatten(module, prefix: str = "") -> list[tuple[str, object]]:
    """Leaf modules in registration order; containers (Sequential or any module whose children
    are all registered in forward order) are expanded."""
    children = list(module.named_children())
    if not children:
        return [(prefix or _type_name(module), module)]
    out = []
    for name, child in children:
        out.extend(_flatten(child, f"{prefix}.{name}" if prefix else name))
    return out


def network_from_module(module, *, activations: str | None = None, latent: int | None = None,
                        source: Path | str = "model") -> Network:
    """Convert a chain of Linear + elementwise activations (nn.Module or TorchScript)."""
    torch = _torch()
    leaves = _flatten(module)
    layers: list[Layer] = []
    for name, leaf in leaves:
        tname = _type_name(leaf)
        if tname == "Linear":
            w = leaf.weight.detach().float().cpu().numpy()
            b = leaf.bias.detach().float().cpu().numpy() if leaf.bias is not None else \
                np.zeros(w.shape[0], np.float32)
            layers.append(Layer(w, b, "identity"))
        elif tname in _ACT_BY_TYPE:
            act = _ACT_BY_TYPE[tname]
            if act is None:
                continue  # Dropout (inactive at inference) / Flatten (inputs are flat already)
            if not layers:
                raise ModelError(f"{source}: activation {name} ({tname}) comes before any Linear")
            if layers[-1].activation != "identity":
                raise ModelError(f"{source}: two activations in a row at {name} ({tname}); "
                                 "only Linear + one elementwise activation per layer is supported")
            layers[-1].activation = act
            if act == "leaky_relu":
                layers[-1].negative_slope = float(getattr(leaf, "negative_slope", 0.01))
        else:
            raise ModelError(
                f"{source}: unsupported module {name!r} ({tname}); edgeprune handles chains of "
                "Linear + ReLU/LeakyReLU/Sigmoid/Tanh/Identity"
            )
    if not layers:
        raise ModelError(f"{source}: no Linear layer found")
    if activations is not None:
        for layer, act in zip(layers, parse_activations(activations, len(layers))):
            layer.activation = act
    enc = getattr(module, "encoder", None)
    if latent is None and enc is not None and hasattr(enc, "named_children"):
        latent = sum(1 for _, m in _flatten(enc) if _type_name(m) == "Linear")
    net = Network(layers, latent=_default_latent(layers, latent), kind="autoencoder")
    _check_same_function(module, net, source, torch)
    return net


def _check_same_function(module, net: Network, source, torch) -> None:
    """Registration order is not always forward order: prove the conversion on random inputs."""
    x = np.random.default_rng(0).random((8, net.in_dim), dtype=np.float32)
    try:
        module.eval()
        with torch.no_grad():
            ref = module(torch.from_numpy(x))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{source}: running the module failed ({type(exc).__name__}); "
                         "is its forward a plain chain of its layers?") from None
    if isinstance(ref, (tuple, list)):
        ref = ref[0]
    ref = ref.detach().float().numpy().reshape(len(x), -1)
    got = net.forward(x)
    if ref.shape != got.shape or not np.allclose(ref, got, atol=1e-4, rtol=1e-4):
        raise ModelError(
            f"{source}: the module's forward is not the chain of its layers in registration "
            "order (outputs differ); export it as nn.Sequential or pass a state_dict"
        )
