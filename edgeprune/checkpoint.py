"""Loading and saving model files (``model.pt``) as :class:`~edgeprune.network.Network`.

Formats, safest first (DESIGN section 3):

1. an edgeprune checkpoint — a dict of tensors and plain metadata, read with
   ``torch.load(weights_only=True)`` (no code is ever unpickled);
2. a plain ``state_dict`` — also ``weights_only``; the activations (and the latent layer of an
   autoencoder) come from the caller because a state_dict does not name them;
3. TorchScript (``torch.jit.save``) — a program: loading runs its ``__setstate__`` and reading
   its layers needs a forward pass, so only with ``trust_code=True`` (``--trust-code``);
4. a fully pickled ``nn.Module`` — only with ``trust_code=True`` (``--trust-code``, old name
   ``--trust-pickle``), because unpickling runs arbitrary code;
5. an ONNX MLP graph (``.onnx``, :mod:`edgeprune.onnx_import`).

BatchNorm1d layers are folded into the adjacent Linear (:mod:`edgeprune.layer_chain`); Dropout,
Identity and Flatten are dropped; every conversion of a module or graph is checked against the
original's own output.

The kind of file is decided from its bytes (:func:`sniff_model_file`) before anything is loaded.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from edgeprune.errors import first_line
from edgeprune.fileio import atomic_path
from edgeprune.layer_chain import Op, batchnorm_op, build_network, fold_chain
from edgeprune.network import Layer, ModelError, Network, parse_activations

CHECKPOINT_FORMAT = "edgeprune-checkpoint"
CHECKPOINT_VERSION = 1
#: A converted model must match the original (eval mode) to this, relative to its output scale.
FOLD_TOLERANCE = 1e-5


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
    batchnorm: str = "before-activation",
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
    if path.suffix.lower() == ".onnx":  # a protobuf: data, read without running anything
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise ModelError(f"{path}: is larger than the {MAX_MODEL_BYTES} bytes a model file "
                             "may hold; check the file")
        from edgeprune.onnx_import import network_from_onnx

        return _checked(network_from_onnx(path, activations=activations, latent=latent), path)
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
        return _checked(_from_plain_object(obj, path, activations, latent, batchnorm), path)
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
        return _checked(_from_state_dict(module, path, activations, latent, batchnorm), path)
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


def _from_plain_object(obj, path: Path, activations: str | None, latent: int | None,
                       batchnorm: str) -> Network:
    """A weights-only object: an edgeprune checkpoint, a state_dict, or a dict holding one."""
    torch = _torch()
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        return _from_checkpoint(obj, path)
    if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        return _from_state_dict(obj, path, activations, latent, batchnorm)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return _from_state_dict(obj["state_dict"], path, activations, latent, batchnorm)
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
    meta_kind = obj["meta"].get("kind") if isinstance(obj.get("meta"), dict) else None
    if isinstance(meta_kind, str) and meta_kind.startswith("shapnet-"):
        raise ModelError(f"{path}: is a ShapNet ({meta_kind}), not a chain of dense layers; "
                         "`edgeprune explain` (its own Shapley values) and `edgeprune export` "
                         "(model.npz, then run/bench/info) read it; this command takes MLP "
                         "checkpoints")
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


BATCHNORM_PLACEMENTS = ("before-activation", "after-activation")


def _from_state_dict(state: dict, path: Path, activations: str | None, latent: int | None,
                     batchnorm: str = "before-activation") -> Network:
    """A plain state_dict: Linear weights (2-D) and BatchNorm1d statistics, in the order of
    its keys (module registration order). It names no activations, so ``activations`` gives one
    per Linear; ``batchnorm`` says where each BatchNorm sits relative to the activation."""
    torch = _torch()
    if batchnorm not in BATCHNORM_PLACEMENTS:
        raise ModelError(f"--batchnorm {batchnorm!r}: use one of "
                         f"{', '.join(BATCHNORM_PLACEMENTS)}")
    groups: dict[str, dict] = {}
    for key, value in state.items():
        if not torch.is_tensor(value):
            continue
        prefix, _, leaf = str(key).rpartition(".")
        groups.setdefault(prefix, {})[leaf] = value.detach().to(torch.float64).numpy()
    entries: list[Op] = []
    for prefix, params in groups.items():
        w = params.get("weight")
        if "running_mean" in params and "running_var" in params:
            entries.append(batchnorm_op(prefix, "BatchNorm1d", params["running_mean"],
                                        params["running_var"], w, params.get("bias")))
        elif w is not None and w.ndim == 2:
            b = params.get("bias")
            entries.append(Op("linear", prefix, "Linear", w,
                              np.zeros(w.shape[0]) if b is None else b))
        elif w is not None:
            raise ModelError(
                f"{path}: parameter '{prefix}.weight' has shape {tuple(w.shape)} and no running "
                "statistics, so it is neither a Linear nor a BatchNorm1d; edgeprune reads chains "
                "of Linear (+ BatchNorm1d) layers and their activations")
    n_linear = sum(op.kind == "linear" for op in entries)
    if not n_linear:
        raise ModelError(f"{path}: state_dict has no 2-D '*.weight' tensors; is it a model?")
    if activations is None:
        raise ModelError(
            f"{path}: is a plain state_dict, which does not name its activations; pass "
            f"--activations with one name per Linear layer ({n_linear}), e.g. "
            f"{','.join(['relu'] * (n_linear - 1) + ['sigmoid'])}, and --latent L"
        )
    names = iter(parse_activations(activations, n_linear))
    ops: list[Op] = []
    act_due = None  # the activation of the last Linear, not yet placed
    for op in entries:
        if op.kind == "linear":
            if act_due is not None:
                ops.append(act_due)
            ops.append(op)
            act_due = Op("act", f"{op.name} activation", "activation", activation=next(names))
        elif act_due is not None and batchnorm == "after-activation":
            ops += [act_due, op]
            act_due = None
        else:  # before the activation of the last Linear, or ahead of the first Linear
            ops.append(op)
    if act_due is not None:
        ops.append(act_due)
    return build_network(fold_chain(ops, path), latent, path)


# ---------------------------------------------------------------------------------------------
# nn.Module / TorchScript walking
# ---------------------------------------------------------------------------------------------
_ACT_BY_TYPE = {"ReLU": "relu", "LeakyReLU": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}
#: The identity at inference on (N, features) inputs: dropped.
_SKIPPED_TYPES = ("Dropout", "AlphaDropout", "Identity", "Flatten")
_BN_TYPES = ("BatchNorm1d",)


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


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().to(_torch().float64).cpu().numpy()


def _bn_eps(leaf) -> float:
    """A BatchNorm's eps: an attribute of an nn.Module; in TorchScript a constant inlined into
    the code as the last float argument of the batch_norm call (after the momentum). A wrong
    guess cannot pass unnoticed: the converted network is checked against the module."""
    eps = getattr(leaf, "eps", None)
    if isinstance(eps, (int, float)):
        return float(eps)
    import re

    call = re.search(r"batch_norm\((.*?)\)", getattr(leaf, "code", "") or "", re.S)
    floats = re.findall(r"(?<![\w.])(\d+\.\d*(?:e[-+]?\d+)?|\d+e[-+]?\d+)", call.group(1)) \
        if call else []
    return float(floats[-1]) if floats else 1e-5


def _module_op(name: str, leaf, source) -> Op | None:
    """The operation of one leaf module (None for the identity at inference)."""
    tname = _type_name(leaf)
    if tname == "Linear":
        w = _numpy(leaf.weight)
        b = _numpy(leaf.bias) if leaf.bias is not None else np.zeros(w.shape[0])
        return Op("linear", name, tname, w, b)
    if tname in _BN_TYPES:
        if getattr(leaf, "running_mean", None) is None:
            raise ModelError(f"{source}: {name!r} ({tname}) keeps no running statistics "
                             "(track_running_stats=False), so in eval mode it normalises with "
                             "each batch's own statistics and cannot be folded; retrain with "
                             "running statistics")
        weight = getattr(leaf, "weight", None)
        bias = getattr(leaf, "bias", None)
        return batchnorm_op(name, tname, _numpy(leaf.running_mean), _numpy(leaf.running_var),
                            None if weight is None else _numpy(weight),
                            None if bias is None else _numpy(bias), _bn_eps(leaf))
    if tname in _ACT_BY_TYPE:
        return Op("act", name, tname, activation=_ACT_BY_TYPE[tname],
                  negative_slope=float(getattr(leaf, "negative_slope", 0.01)))
    if tname in _SKIPPED_TYPES:
        return None
    raise ModelError(
        f"{source}: unsupported module {name!r} ({tname}); edgeprune reads chains of Linear, "
        "BatchNorm1d, ReLU/LeakyReLU/Sigmoid/Tanh, Dropout, Identity and Flatten; export the "
        "model without it")


def network_from_module(module, *, activations: str | None = None, latent: int | None = None,
                        source: Path | str = "model") -> Network:
    """Convert a chain of Linear (+ BatchNorm1d) + elementwise activations (nn.Module or
    TorchScript); BatchNorms are folded (:mod:`edgeprune.layer_chain`) and the result is
    checked against the module's own forward in eval mode."""
    ops = [op for name, leaf in _flatten(module)
           if (op := _module_op(name, leaf, source)) is not None]
    chain = fold_chain(ops, source)
    if activations is not None:
        for layer, act in zip(chain.layers, parse_activations(activations, len(chain.layers))):
            layer.activation = act
    enc = getattr(module, "encoder", None)
    if latent is None and enc is not None and hasattr(enc, "named_children"):
        latent = sum(1 for _, m in _flatten(enc) if _type_name(m) == "Linear")
    net = build_network(chain, latent, source)
    _check_same_function(module, net, source)
    return net


def _check_same_function(module, net: Network, source) -> None:
    """Registration order is not always forward order, and folding must be exact: compare the
    module (eval mode) with the converted network on random inputs; record the difference."""
    torch = _torch()
    x = np.random.default_rng(0).random((16, net.in_dim), dtype=np.float32)
    try:
        module.eval()
        with torch.no_grad():
            ref = module(torch.from_numpy(x))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{source}: running the module failed ({type(exc).__name__}: "
                         f"{first_line(exc)[:120]}); is its forward a plain chain of its "
                         "layers?") from None
    if isinstance(ref, (tuple, list)):
        ref = ref[0]
    ref = ref.detach().double().numpy().reshape(len(x), -1)
    got = net.forward(x)
    if ref.shape != got.shape:
        raise ModelError(f"{source}: the module's forward is not the chain of its layers in "
                         "registration order (output shapes differ); export it as "
                         "nn.Sequential or pass a state_dict")
    diff = float(np.max(np.abs(ref - got)))
    if not diff <= FOLD_TOLERANCE * max(1.0, float(np.max(np.abs(ref)))):
        raise ModelError(
            f"{source}: the module's forward differs from the chain of its layers in "
            f"registration order by {diff:.3g}; export it as nn.Sequential or pass a state_dict"
        )
    net.meta.setdefault("import", {})["max_abs_diff_vs_original"] = diff
