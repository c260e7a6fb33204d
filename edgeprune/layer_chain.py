"""Users' models as a chain of operations, folded into the Network IR.

Every model source — an ``nn.Module`` or TorchScript module tree, a plain ``state_dict``, an
ONNX graph (:mod:`edgeprune.onnx_import`) — is first read into a list of :class:`Op`:
``linear`` (W, b), ``batchnorm`` (eval-mode statistics), ``act`` (an elementwise activation) or
nothing at all for the operations that are the identity at inference (Dropout, Identity,
Flatten of a feature vector). :func:`fold_chain` then turns that list into ``Layer``s:

* **BatchNorm right after a Linear** (``Linear → BN → act``, the common placement) folds into
  that Linear with :func:`torch.nn.utils.fusion.fuse_linear_bn_eval`.
* **BatchNorm after an activation, or before the first Linear** (``act → BN → Linear``) is an
  affine map ``s·h + t`` of the next Linear's input, so it folds into the *next* Linear:
  ``W' = W·diag(s)``, ``b' = b + W t``. torch has no helper for this direction (its fusion
  utilities fold a BN into the layer before it), hence the two lines of algebra here.
* Refused, with the module named: a BN with no Linear after it where it cannot go before
  (after the last activation), a BN that uses batch statistics in eval mode
  (``track_running_stats=False``), two activations in a row, an activation before any Linear.

Everything is numpy except the fold of a BN into the preceding Linear (torch's own function).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeprune.network import Layer, ModelError, Network


@dataclass
class Op:
    """One operation of a model, in forward order."""

    kind: str  # "linear", "batchnorm" or "act"
    name: str  # where it comes from: module path, state_dict prefix or ONNX node name
    type_name: str  # the source's own type name (Linear, BatchNorm1d, Gemm, Relu, ...)
    weight: np.ndarray | None = None  # linear (out, in)
    bias: np.ndarray | None = None  # linear (out,)
    bn: dict = field(default_factory=dict)  # batchnorm: gamma, beta, mean, var, eps
    activation: str = "identity"  # act
    negative_slope: float = 0.01  # act: leaky_relu


def batchnorm_op(name: str, type_name: str, mean, var, gamma=None, beta=None,
                 eps: float = 1e-5) -> Op:
    """A BatchNorm in eval mode; no ``gamma``/``beta`` means a BN without affine parameters."""
    n = np.asarray(mean).shape[0]
    return Op("batchnorm", name, type_name, bn={
        "gamma": np.ones(n) if gamma is None else np.asarray(gamma, np.float64),
        "beta": np.zeros(n) if beta is None else np.asarray(beta, np.float64),
        "mean": np.asarray(mean, np.float64), "var": np.asarray(var, np.float64),
        "eps": float(eps)})


@dataclass
class FoldedChain:
    """The layers of a model with its BatchNorms folded in, and what was done."""

    layers: list[Layer]
    folded: list[str]  # "encoder.1 (BatchNorm1d) into encoder.0 (Linear)"
    dropped: list[str]  # identity-at-inference ops that were skipped

    def summary(self) -> str | None:
        if not self.folded:
            return None
        types = sorted({f.split("(")[1].split(")")[0] for f in self.folded})
        return f"folded {len(self.folded)} {'/'.join(types)} into Linear"


def _fold_into_previous(linear: Op, bn: Op) -> tuple[np.ndarray, np.ndarray]:
    """``BN(W x + b)`` as one Linear, by torch's own fusion function (eval mode)."""
    import torch
    from torch.nn.utils.fusion import fuse_linear_bn_eval

    out_dim, in_dim = linear.weight.shape
    lin = torch.nn.Linear(in_dim, out_dim).eval()
    norm = torch.nn.BatchNorm1d(out_dim, eps=bn.bn["eps"]).eval()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(linear.weight.astype(np.float64)).float())
        lin.bias.copy_(torch.from_numpy(linear.bias.astype(np.float64)).float())
        norm.weight.copy_(torch.from_numpy(bn.bn["gamma"]).float())
        norm.bias.copy_(torch.from_numpy(bn.bn["beta"]).float())
        norm.running_mean.copy_(torch.from_numpy(bn.bn["mean"]).float())
        norm.running_var.copy_(torch.from_numpy(bn.bn["var"]).float())
    fused = fuse_linear_bn_eval(lin, norm)
    return fused.weight.detach().numpy(), fused.bias.detach().numpy()


def _bn_affine(bn: Op) -> tuple[np.ndarray, np.ndarray]:
    """``BN(h) = s * h + t`` in eval mode."""
    p = bn.bn
    s = p["gamma"].astype(np.float64) / np.sqrt(p["var"].astype(np.float64) + p["eps"])
    return s, p["beta"].astype(np.float64) - p["mean"].astype(np.float64) * s


def fold_chain(ops: list[Op], source) -> FoldedChain:
    """Fold ``ops`` (forward order) into Layers; see the module docstring for the rules."""
    layers: list[Layer] = []
    folded: list[str] = []
    pending_bn: list[Op] = []  # BNs waiting for the next Linear (after an activation / at start)
    last_linear: Op | None = None  # the Linear of the current layer, while no activation yet
    for op in ops:
        where = f"{op.name!r} ({op.type_name})"
        if op.kind == "linear":
            w = op.weight.astype(np.float64)
            b = op.bias.astype(np.float64)
            for bn in pending_bn:  # act → BN → Linear: fold BN into this Linear's inputs
                if bn.bn["gamma"].shape[0] != w.shape[1]:
                    raise ModelError(f"{source}: {bn.name!r} ({bn.type_name}) has "
                                     f"{bn.bn['gamma'].shape[0]} features but {where} reads "
                                     f"{w.shape[1]}")
                s, t = _bn_affine(bn)
                b = b + w @ t
                w = w * s[None, :]
                folded.append(f"{bn.name} ({bn.type_name}) into {op.name} ({op.type_name})")
            pending_bn = []
            layers.append(Layer(w.astype(np.float32), b.astype(np.float32), "identity"))
            last_linear = Op("linear", op.name, op.type_name, w.astype(np.float32),
                             b.astype(np.float32))
        elif op.kind == "batchnorm":
            if last_linear is not None:  # Linear → BN: torch's fusion into that Linear
                if op.bn["gamma"].shape[0] != last_linear.weight.shape[0]:
                    raise ModelError(f"{source}: {where} has {op.bn['gamma'].shape[0]} features "
                                     f"but {last_linear.name!r} outputs "
                                     f"{last_linear.weight.shape[0]}")
                w, b = _fold_into_previous(last_linear, op)
                layers[-1] = Layer(w, b, "identity")
                last_linear = Op("linear", last_linear.name, last_linear.type_name, w, b)
                folded.append(f"{op.name} ({op.type_name}) into {last_linear.name} "
                              f"({last_linear.type_name})")
            else:
                pending_bn.append(op)
        elif op.kind == "act":
            if not layers:
                raise ModelError(f"{source}: activation {where} comes before any Linear; "
                                 "edgeprune's first layer must be a Linear")
            if layers[-1].activation != "identity" or last_linear is None:
                raise ModelError(f"{source}: two activations in a row at {where}; only one "
                                 "elementwise activation per Linear is supported")
            layers[-1].activation = op.activation
            layers[-1].negative_slope = op.negative_slope
            last_linear = None
        else:  # pragma: no cover - readers only emit the kinds above
            raise ModelError(f"{source}: unknown operation {where}")
    if pending_bn:
        bn = pending_bn[0]
        raise ModelError(f"{source}: {bn.name!r} ({bn.type_name}) comes after the last "
                         "activation with no Linear after it, so it cannot be folded; remove it or "
                         "place it before the activation")
    if not layers:
        raise ModelError(f"{source}: no Linear layer found")
    return FoldedChain(layers, folded, [])


def narrowest_latent(layers: list[Layer]) -> int | None:
    """For an autoencoder-shaped chain (output width = input width, ≥ 2 layers): the 1-based
    index of the narrowest layer before the output (the first one on ties); else None."""
    if len(layers) < 2 or layers[0].in_dim != layers[-1].out_dim:
        return None
    widths = [layer.out_dim for layer in layers[:-1]]
    return int(np.argmin(widths)) + 1


def build_network(chain: FoldedChain, latent: int | None, source,
                  kind: str = "autoencoder") -> Network:
    """The Network of a folded chain; the latent layer is ``latent`` or the narrowest layer
    (recorded in ``meta['import']`` so the user is told)."""
    notes = []
    if latent is None:
        latent = narrowest_latent(chain.layers)
        if latent is not None:
            notes.append(f"latent layer {latent} ({chain.layers[latent - 1].out_dim} units, the "
                         "narrowest) chosen; pass --latent L to choose another")
    summary = chain.summary()
    if summary:
        notes.insert(0, summary)
    try:
        net = Network(chain.layers, latent=latent, kind=kind)  # no latent: an mlp
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None
    if notes or chain.folded:
        net.meta = {**net.meta, "import": {"notes": notes, "folded": list(chain.folded)}}
    return net


def import_notes(net: Network) -> list[str]:
    """What loading did to a user's model (folded BatchNorms, the latent layer chosen)."""
    return list(((net.meta or {}).get("import") or {}).get("notes") or [])
