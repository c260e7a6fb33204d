"""A pruned VAE's artifacts beyond ``model.<fmt>`` (x → decode(μ)): the runtime's
``encode``/``encode_logvar``/``decode`` checked against PyTorch, and the encoder and decoder
graphs for ONNX and TFLite.

* ``encoder.<fmt>``: ``x → [μ | log σ²]`` (``2 · latent_dim`` columns; the two heads read the
  same trunk output, so they run as one stacked layer), or ``x → μ`` without the head
  (``--drop-logvar``);
* ``decoder.<fmt>``: ``z → x̂`` (``latent_dim`` columns in; latent units the pruning removed
  are not read).

Both are :class:`~edgeprune.compacted.CompactNetwork` slices of the compacted VAE, so every
exporter writes them unchanged, each checked against PyTorch to 1e-5 when written.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from edgeprune.compacted import CompactLayer, CompactNetwork
from edgeprune.network import ModelError, Network
from edgeprune.runtime.activations import apply_activation

#: The graph files of a VAE, per format, besides model.<fmt>.
PARTS = ("encoder", "decoder")


def without_logvar(compact: CompactNetwork, drop: bool) -> CompactNetwork:
    """``compact`` as published: without its log-variance head when ``drop``."""
    return dataclasses.replace(compact, logvar=None) if drop else compact


def encoder_part(compact: CompactNetwork) -> CompactNetwork:
    """``x → μ`` (and ``log σ²`` beside it when the head is kept)."""
    lat, dim = int(compact.latent_layer), int(compact.latent_dim)
    head = compact.logvar
    width = dim * (2 if head is not None else 1)
    const = np.zeros(width, np.float32)
    const[:dim] = compact.latent_const
    if not compact.layers:  # degenerate: every output is a constant
        if head is not None:
            const[dim:] = apply_activation(head.bias, head.activation, head.negative_slope)
        return _part(compact, [], compact.input_dim, width, np.zeros(0, np.int64),
                     np.zeros(0, np.int64), const)
    mu = compact.layers[lat - 1]
    last, out_index = mu, mu.unit_index
    if head is not None:
        if (head.activation, head.negative_slope) != (mu.activation, mu.negative_slope):
            raise ModelError(f"the mu head ({mu.activation}) and the log-variance head "
                             f"({head.activation}) differ in activation; the encoder graph "
                             "stacks them: use --drop-logvar")
        out_index = np.concatenate([mu.unit_index, dim + np.arange(dim, dtype=np.int64)])
        last = CompactLayer(np.vstack([mu.weight, head.weight]).astype(np.float32),
                            np.concatenate([mu.bias, head.bias]).astype(np.float32),
                            mu.activation, mu.negative_slope, out_index)
    return _part(compact, [*compact.layers[:lat - 1], last], compact.input_dim, width,
                 compact.input_index, out_index, const)


def decoder_part(compact: CompactNetwork) -> CompactNetwork:
    """``z → x̂`` over the full ``latent_dim`` (dead latent units unread)."""
    lat, dim = int(compact.latent_layer), int(compact.latent_dim)
    if not compact.layers:
        return _part(compact, [], dim, compact.output_dim, np.zeros(0, np.int64),
                     np.zeros(0, np.int64), compact.output_const)
    return _part(compact, compact.layers[lat:], dim, compact.output_dim,
                 compact.layers[lat - 1].unit_index, compact.output_index, compact.output_const)


def _part(compact, layers, in_dim, out_dim, in_index, out_index, const) -> CompactNetwork:
    return CompactNetwork(layers=list(layers), input_dim=int(in_dim), output_dim=int(out_dim),
                          input_index=np.asarray(in_index, np.int64),
                          output_index=np.asarray(out_index, np.int64),
                          output_const=np.asarray(const, np.float32), kind="mlp",
                          meta=dict(compact.meta))


def references(pruned: Network, x: np.ndarray, keep_logvar: bool) -> dict[str, np.ndarray]:
    """PyTorch outputs the VAE artifacts must match: ``encoder`` ([μ | log σ²] or μ),
    ``decoder`` (decode(μ), on the inputs ``z`` = μ), ``mu``, ``logvar``."""
    from edgeprune.vae_network import torch_vae_outputs

    out = torch_vae_outputs(pruned, x)
    keep = keep_logvar and "logvar" in out
    out["encoder"] = np.hstack([out["mu"], out["logvar"]]) if keep else out["mu"]
    out["decoder"] = out["recon"]
    return out


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b))) if len(b) else 0.0


def check_bundle(path: Path, pruned: Network, x: np.ndarray, keep_logvar: bool,
                 tolerance: float) -> dict[str, float]:
    """Run a VAE bundle's ``encode`` / ``encode_logvar`` / ``decode`` (on z = μ) / ``sample``
    and compare each with PyTorch; raises past ``tolerance``."""
    from edgeprune import runtime

    model = runtime.load(path)
    ref = references(pruned, x, keep_logvar)
    diffs = {"encode": _max_diff(model.encode(x), ref["mu"]),
             "decode": _max_diff(model.decode(ref["mu"]), ref["recon"]),
             "sample": _max_diff(model.sample(ref["mu"]), ref["recon"])}
    if keep_logvar and "logvar" in ref:
        diffs["encode_logvar"] = _max_diff(model.encode_logvar(x), ref["logvar"])
    for what, diff in diffs.items():
        if not diff <= tolerance:
            path.unlink()
            raise ModelError(f"{path.name}: the NumPy runtime's {what}() differs from PyTorch "
                             f"by {diff:.3g} (> {tolerance}); this is a bug, please report it")
    return diffs


def write_parts(pruned: Network, compact: CompactNetwork, x: np.ndarray, outdir: Path,
                fmt: str, export, run, metadata: dict, **export_kwargs) -> dict[str, dict]:
    """``encoder.<fmt>`` and ``decoder.<fmt>`` through ``export`` (an exporter of
    :mod:`edgeprune.exporters`), each run by ``run`` and compared with PyTorch."""
    ref = references(pruned, x, compact.logvar is not None)
    written = {}
    for name, part, inputs in (("encoder", encoder_part(compact), x),
                               ("decoder", decoder_part(compact), ref["mu"])):
        path = outdir / f"{name}.{fmt}"
        export(part, path, metadata={**metadata, "vae_part": name}, verify_inputs=inputs,
               verify_reference=ref[name], **export_kwargs)
        written[name] = {"file": path.name, "bytes": path.stat().st_size,
                         "max_abs_diff_vs_pytorch": _max_diff(run(path, inputs), ref[name])}
    return written
