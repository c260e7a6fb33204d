"""Deploying a trained ShapNet: compile it and write ``model.npz`` / ``.onnx`` / ``.tflite``
into one output directory, each run in its own runtime and checked against PyTorch for the
prediction *and* the explanation (max |diff| <= 1e-5), all or nothing (``output_dir``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.artifacts import PARITY_TOLERANCE, VERIFY_SAMPLES, parse_formats
from edgeprune.network import ModelError
from edgeprune.output_dir import staged_output_dir

from .compile import CompiledShapnet, compile_shapnet

__all__ = ["export_shapnet", "export_shapnet_checkpoint", "write_shapnet_artifacts"]


def _torch_reference(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch

    model.eval()
    with torch.no_grad():
        pred, expl = model(torch.from_numpy(x))
    return pred.numpy(), expl.numpy()


def _diff(got: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray]
          ) -> dict[str, float]:
    return {f"max_abs_diff_{name}": float(np.max(np.abs(np.asarray(g, np.float64) - r)))
            for name, g, r in zip(("prediction", "explanation"), got, ref)}


def write_shapnet_artifacts(model: Any, compiled: CompiledShapnet, x_verify: np.ndarray,
                            outdir: Path, formats: list[str], metadata: dict | None = None
                            ) -> dict[str, dict]:
    """Write ``model.<fmt>`` for each format into ``outdir`` (an existing directory); each is
    run in its runtime on ``x_verify`` and must match ``model`` (PyTorch) within 1e-5."""
    from edgeprune.exporters.shapnet import (
        export_shapnet_onnx,
        export_shapnet_tflite,
        run_shapnet_onnx,
        run_shapnet_tflite,
        save_shapnet_bundle,
    )
    from edgeprune.runtime.shapnet import load_shapnet

    x = np.ascontiguousarray(x_verify[:VERIFY_SAMPLES], dtype=np.float32)
    ref = _torch_reference(model, x)
    meta = {"variant": compiled.layout["variant"], **(metadata or {})}
    written: dict[str, dict] = {}
    for fmt in formats:
        path = outdir / f"model.{fmt}"
        if fmt == "npz":
            save_shapnet_bundle(compiled, path, provenance=meta)
            got = load_shapnet(path)(x)
        elif fmt == "onnx":
            export_shapnet_onnx(compiled, path, metadata={k: str(v) for k, v in meta.items()},
                                verify_inputs=x, verify_reference=ref)
            got = run_shapnet_onnx(path, x)
        else:
            export_shapnet_tflite(compiled, path, metadata=meta, verify_inputs=x,
                                  verify_reference=ref)
            got = run_shapnet_tflite(path, x)
        diffs = _diff(got, ref)
        if max(diffs.values()) > PARITY_TOLERANCE:
            path.unlink()
            raise ModelError(f"{path.name}: differs from PyTorch by {max(diffs.values()):.3g} "
                             f"(> {PARITY_TOLERANCE}); this is a bug, please report it")
        written[fmt] = {"path": str(path), "bytes": path.stat().st_size, **diffs}
    return written


def export_shapnet(model: Any, outdir: str | os.PathLike, x_verify: np.ndarray, *,
                   formats: str | None = None, metadata: dict | None = None,
                   inputs: tuple = ()) -> dict:
    """Compile the PyTorch ShapNet ``model`` and write its artifacts into ``outdir`` (every
    format whose libraries are installed by default, or ``formats`` like ``"npz,onnx"``).

    Returns ``{"written": {fmt: {path, bytes, max_abs_diff_prediction, ...}}, "notes",
    "compiled": {layers, nnz, modules, transforms}}``; on any failure ``outdir`` is left as
    it was."""
    chosen, notes = parse_formats(formats)
    x = np.asarray(x_verify, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != model.in_dim:
        raise ModelError(f"verification data has shape {x.shape}; the ShapNet reads "
                         f"(samples, {model.in_dim})")
    compiled = compile_shapnet(model)
    with staged_output_dir(outdir, "export", inputs=inputs) as staging:
        written = write_shapnet_artifacts(model, compiled, x, staging, chosen, metadata)
    for art in written.values():
        art["path"] = str(Path(outdir) / Path(art["path"]).name)
    summary = {"layers": len(compiled.layers), "nnz": compiled.nnz,
               "modules": sum(t["modules"] for t in compiled.layout["transforms"]),
               "transforms": len(compiled.layout["transforms"])}
    return {"written": written, "notes": notes, "compiled": summary}


def _metric(model: Any, x: np.ndarray, y: np.ndarray, task: str) -> dict[str, float]:
    pred, _ = _torch_reference(model, np.asarray(x, np.float32))
    if task == "classification":
        return {"test_accuracy": float(np.mean(pred.argmax(1) == y))}
    return {"test_mse": float(np.mean((pred - np.asarray(y).reshape(pred.shape)) ** 2))}


def export_shapnet_checkpoint(source: str | os.PathLike, outdir: str | os.PathLike, *,
                              formats: str | None = None, data_spec: str | None = None,
                              seed: int = 0, inner_sparsity: float | None = None) -> dict:
    """``edgeprune export`` of a ShapNet checkpoint (``edgeprune train --task shapnet-*``).

    Verification inputs come from ``data_spec``, else from the data it was trained on. With
    ``inner_sparsity`` the inner MLPs are link-pruned first (SHAP-SAE scores on their
    masked-copy inputs over the training split, :func:`~.link_pruning.prune_inner_links`; no
    fine-tuning) and the test metric before and after is reported."""
    from edgeprune.data import load_dataset
    from edgeprune.output_dir import check_output_dir
    from edgeprune.shapnet.checkpoint import load_shapnet

    chosen, _ = parse_formats(formats)  # an unknown or missing format fails before any work
    check_output_dir(outdir, "export", inputs=[source])
    model, task, info = load_shapnet(source)
    spec = data_spec or (info or {}).get("trained_on")
    if not spec:
        raise ModelError(f"{source}: no record of the data it was trained on; pass --data SPEC "
                         "so the artifacts can be checked on real inputs")
    regression = task == "regression"
    ds = load_dataset(spec, seed=seed, regression=regression)
    if ds.dim != model.in_dim:
        raise ModelError(f"data {spec!r} has {ds.dim} features but the ShapNet reads "
                         f"{model.in_dim}; pass --data with {model.in_dim}-feature samples")
    pruning = None
    if inner_sparsity is not None:
        from .link_pruning import prune_inner_links

        if not 0 <= inner_sparsity < 1:
            raise ModelError(f"--inner-sparsity {inner_sparsity}: give a fraction in [0, 1)")
        y_test = ds.t_test if regression else ds.y_test
        before = _metric(model, ds.x_test, y_test, task) if y_test is not None else {}
        model, pruning = prune_inner_links(model, ds.x_train, sparsity=inner_sparsity,
                                           seed=seed)
        pruning["before"] = before
        pruning["after"] = _metric(model, ds.x_test, y_test, task) if y_test is not None else {}
    result = export_shapnet(model, outdir, ds.x_test, formats=",".join(chosen),
                            metadata={"trained_on": ds.name, "task": task},
                            inputs=(source,))
    return {**result, "data": spec, "inner_pruning": pruning}
