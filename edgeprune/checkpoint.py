"""Loading and saving model files (``model.pt``) as :class:`~edgeprune.network.Network`.

Formats, safest first (DESIGN section 3):

1. an edgeprune checkpoint — a dict of tensors and plain metadata, read with
   ``torch.load(weights_only=True)`` (no code is ever unpickled);
2. a plain ``state_dict`` — also ``weights_only``; the activations (and the latent layer of an
   autoencoder) come from the caller because a state_dict does not name them;
3. TorchScript (``torch.jit.save``) — a program: loading runs its ``__setstate__`` and reading
   its layers needs a forward pass, so only with ``trust_code=True`` (``--trust-code``);
4. a fully pickled ``nn.Module`` — only with ``trust_code=True`` (``--trust-code``, old name
   ``--trust-pickle``), because unpickling runs arbitrary code.

The kind of file is decided from its bytes (:func:`sniff_model_file`) before anything is loaded.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from edgeprune.errors import first_line
from edgeprune.fileio import atomic_path
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
TRUST_HINT = "re-run with --trust-code only if you trust its source"
#: Model files are read whole into memory; a file that declares more than this is refused
#: before torch reads it (the largest model edgeprune targets is a few hundred MB).
MAX_MODEL_BYTES = 4 * 1024**3


def load_network(
    path: str | os.PathLike,
    *,
    activations: str | None = None,
    latent: int | None = None,
    trust_code: bool = False,
    trust_pickle: bool = False,
) -> Network:
    """Read ``path`` as a Network; see the module docstring for the accepted formats.

    A pickled ``nn.Module`` and a TorchScript file are programs: they are refused unless
    ``trust_code`` is true (``trust_pickle`` is its old name and means the same). Everything
    else is read without running any code from the file."""
    torch = _torch()
    trust_code = trust_code or trust_pickle
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file; check the path")
    kind = sniff_model_file(path)
    if kind == "torchscript":
        if not trust_code:
            raise ModelError(
                f"{path}: is a TorchScript program, which runs its own code when loaded; "
                f"{TRUST_HINT}, or save its state_dict and pass --activations")
        module = _run_untrusted_loader(lambda: torch.jit.load(str(path), map_location="cpu"), path)
        return _checked(network_from_module(module, activations=activations, latent=latent,
                                            source=path), path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - classified below into one-line errors
        if "weights only load failed" not in str(exc).lower():
            raise ModelError(f"{path}: cannot be read as a PyTorch model file "
                             f"({type(exc).__name__}: {first_line(exc)[:120]}); "
                             "check the file") from None
    else:
        return _checked(_from_plain_object(obj, path, activations, latent), path)
    # weights_only refused it: a well-formed pickle naming Python objects (loading it runs
    # their code), or damaged bytes; only the first deserves the trust hint.
    if not _pickle_parses(path, kind):
        raise ModelError(f"{path}: is damaged or not a PyTorch model file (its pickle stream "
                         "does not parse); copy it again or re-save the model")
    if not trust_code:
        raise ModelError(f"{path}: is a pickled Python object, which can run arbitrary code "
                         f"when loaded; {TRUST_HINT}")
    module = _run_untrusted_loader(
        lambda: torch.load(path, map_location="cpu", weights_only=False), path)
    if isinstance(module, torch.nn.Module):
        return _checked(network_from_module(module, activations=activations, latent=latent,
                                            source=path), path)
    if isinstance(module, dict):
        return _checked(_from_state_dict(module, path, activations, latent), path)
    raise ModelError(f"{path}: unpickled a {type(module).__name__}, not an nn.Module or state_dict")


def sniff_model_file(path: Path) -> str:
    """What ``path`` holds, decided from its bytes without unpickling or running anything:
    ``"torchscript"``, ``"torch-zip"`` (torch.save's zip format) or ``"torch-legacy"`` (a bare
    pickle stream, torch's format before 1.6). Anything else is a ModelError."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise ModelError(f"{path}: cannot be read ({exc.strerror}); check its permissions") from None
    if size == 0:
        raise ModelError(f"{path}: is empty; check the file")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ModelError(f"{path}: is a damaged zip archive ({first_line(exc)}); "
                             "copy it again or re-save the model") from None
        declared = sum(info.file_size for info in infos)
        if declared > MAX_MODEL_BYTES:
            raise ModelError(f"{path}: declares {declared} bytes of content, more than the "
                             f"{MAX_MODEL_BYTES} a model file may hold; check the file")
        names = [info.filename for info in infos]
        if any(name.endswith("constants.pkl") or "/code/" in name for name in names):
            return "torchscript"
        if not any(name.endswith("data.pkl") for name in names):
            raise ModelError(f"{path}: is a zip archive but not a PyTorch model file (no "
                             "data.pkl); give a file written by torch.save or edgeprune")
        return "torch-zip"
    # torch's legacy format and plain pickles start with the PROTO opcode (0x80, protocol 2-5)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "torch-legacy"
    raise ModelError(f"{path}: is not a PyTorch model file (unrecognised content); give a file "
                     "written by torch.save, torch.jit.save or edgeprune")


def _pickle_parses(path: Path, kind: str) -> bool:
    """Whether the file's (first) pickle stream is well formed, checked opcode by opcode with
    :mod:`pickletools` — which reads the stream and never executes it."""
    import io
    import pickletools

    try:
        if kind == "torch-zip":
            with zipfile.ZipFile(path) as zf:
                name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
                stream = io.BytesIO(zf.read(name))
        else:
            stream = path.open("rb")
        with stream:
            for _ in pickletools.genops(stream):
                pass
    except Exception:  # noqa: BLE001 - any parse failure means "not a well-formed pickle"
        return False
    return True


def _run_untrusted_loader(load, path: Path):
    """Run a loader the user explicitly trusted; its failures become one-line ModelErrors."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return load()
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: cannot be loaded ({type(exc).__name__}: "
                         f"{first_line(exc)[:120]}); check the file") from None


def _from_plain_object(obj, path: Path, activations: str | None, latent: int | None) -> Network:
    """A weights-only object: an edgeprune checkpoint, a state_dict, or a dict holding one."""
    torch = _torch()
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return _from_checkpoint(obj, path)
    if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        return _from_state_dict(obj, path, activations, latent)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return _from_state_dict(obj["state_dict"], path, activations, latent)
    raise ModelError(
        f"{path}: holds a {type(obj).__name__}, not a model; expected an edgeprune "
        "checkpoint, a state_dict, TorchScript, or a pickled nn.Module with --trust-code"
    )


def _checked(net: Network, path: Path) -> Network:
    """Refuse non-finite parameters: a NaN model gives NaN scores, exports and outputs."""
    for k, layer in enumerate(net.layers, start=1):
        for name, arr in (("weight", layer.weight), ("bias", layer.bias)):
            bad = ~np.isfinite(arr)
            if bad.any():
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                raise ModelError(f"{path}: layer {k} {name} holds a non-finite value "
                                 f"({arr[where]}) at {where}; the model is damaged, retrain "
                                 "or re-save it")
    return net


def _from_checkpoint(obj: dict, path: Path) -> Network:
    torch = _torch()
    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelError(f"{path}: field 'version' must be an integer, got {version!r}; "
                         "re-save the model with edgeprune")
    if not 1 <= version <= CHECKPOINT_VERSION:
        fix = "upgrade edgeprune to read it" if version > CHECKPOINT_VERSION else "re-save it"
        raise ModelError(f"{path}: checkpoint version {version}, this edgeprune reads "
                         f"version {CHECKPOINT_VERSION}; {fix}")

    def field(container, key, kind, where):
        if not isinstance(container, dict) or key not in container:
            raise ModelError(f"{path}: edgeprune checkpoint is missing field {where!r}; "
                             "re-save it")
        value = container[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise ModelError(f"{path}: field {where!r} must be a {_kind_name(kind)}, got "
                             f"{type(value).__name__}; re-save it")
        return value

    meta = field(obj, "meta", dict, "meta")
    state = field(obj, "state_dict", dict, "state_dict")
    specs = field(meta, "layers", list, "meta.layers")
    layers = []
    for k, spec in enumerate(specs, start=1):
        where = f"meta.layers[{k}]"
        if not isinstance(spec, dict):
            raise ModelError(f"{path}: field {where!r} must be a dict; re-save it")
        act = field(spec, "activation", str, f"{where}.activation")
        slope = spec.get("negative_slope", 0.01)
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ModelError(f"{path}: field '{where}.negative_slope' must be a number; re-save it")
        tensors = {}
        for part in ("weight", "bias", "mask"):
            key = f"layer{k}.{part}"
            t = state.get(key)
            if t is None and part == "mask":
                continue
            if not torch.is_tensor(t):
                raise ModelError(f"{path}: state_dict[{key!r}] must be a tensor, got "
                                 f"{type(t).__name__}; re-save it")
            tensors[part] = t.detach()
        w = tensors["weight"].to(torch.float32).numpy()
        b = tensors["bias"].to(torch.float32).numpy()
        mask = tensors["mask"].numpy().astype(bool) if "mask" in tensors else None
        if mask is not None and mask.shape != w.shape:
            raise ModelError(f"{path}: state_dict['layer{k}.mask'] has shape {mask.shape}, the "
                             f"weight {w.shape}; re-save it")
        try:
            layers.append(Layer(w, b, act, float(slope), mask))
        except ModelError as exc:
            raise ModelError(f"{path}: layer {k}: {exc}") from None
    latent = meta.get("latent")
    if latent is not None and (isinstance(latent, bool) or not isinstance(latent, int)):
        raise ModelError(f"{path}: field 'meta.latent' must be an integer or None; re-save it")
    kind = meta.get("kind", "autoencoder")
    if not isinstance(kind, str):
        raise ModelError(f"{path}: field 'meta.kind' must be a string; re-save it")
    info = meta.get("info") or {}
    if not isinstance(info, dict):
        raise ModelError(f"{path}: field 'meta.info' must be a dict; re-save it")
    try:
        return Network(layers, latent=latent, kind=kind, meta=dict(info))
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None


def _kind_name(kind) -> str:
    return {dict: "dict", list: "list", str: "string", int: "integer"}.get(kind, kind.__name__)


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
