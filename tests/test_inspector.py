"""One inspector: every artifact format gives the same per-layer schema and the IR's names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeprune.checkpoint import save_checkpoint
from edgeprune.cli import main
from edgeprune.exporters.csr import save_bundle
from edgeprune.inspector import describe, format_info, layer_source
from tests.export_cases import ACTIVATION_SETS, pruned_network

ACTS = ACTIVATION_SETS["mixed"]  # relu, leaky_relu, tanh, identity, sigmoid


def _write(fmt: str, tmp_path: Path) -> tuple[Path, list[str]]:
    pruned, small = pruned_network(ACTS)
    path = tmp_path / f"model.{fmt}"
    if fmt == "npz":
        save_bundle(small, path)
    elif fmt == "pt":
        save_checkpoint(pruned, path)
        return path, [layer.activation for layer in pruned.layers]
    elif fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
        from edgeprune.exporters.onnx import export_onnx

        export_onnx(small, path, sparse_initializers=True)
    else:
        pytest.importorskip("tflite")
        from edgeprune.exporters.tflite import export_tflite, interpreter_available

        export_tflite(small, path, verify=interpreter_available())
    return path, [layer.activation for layer in small.layers]


@pytest.mark.parametrize("fmt", ["npz", "onnx", "tflite", "pt"])
def test_every_format_same_layer_schema(fmt: str, tmp_path: Path) -> None:
    path, acts = _write(fmt, tmp_path)
    desc = describe(path)
    assert [row["layer"] for row in desc["layers"]] == list(range(1, len(acts) + 1))
    assert [row["activation"] for row in desc["layers"]] == acts  # leaky_relu, not leakyrelu
    assert all(len(row["shape"]) == 2 and row["nnz"] > 0 for row in desc["layers"])
    assert desc["nnz"] == sum(row["nnz"] for row in desc["layers"])
    text = format_info(desc)
    assert "layer 1:" in text and "leaky_relu" in text
    out = CliRunner().invoke(main, ["info", str(path), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["layers"] == json.loads(json.dumps(desc["layers"]))


@pytest.mark.parametrize("fmt", ["npz", "onnx", "tflite", "pt"])
def test_bench_layer_figures_carry_activations(fmt: str, tmp_path: Path) -> None:
    """bench's static table reads the same layers (and activations) as info."""
    path, acts = _write(fmt, tmp_path)
    shapes, note = layer_source(path, fmt)
    assert note == ""
    assert [s.activation for s in shapes] == acts
    rows = describe(path)["layers"]
    assert [(s.rows, s.cols, s.nnz) for s in shapes] == [(*r["shape"], r["nnz"]) for r in rows]


def test_onnx_and_npz_agree_on_shapes(tmp_path: Path) -> None:
    onnx_path, _ = _write("onnx", tmp_path)
    npz_path, _ = _write("npz", tmp_path)
    strip = [{k: r[k] for k in ("layer", "shape", "nnz", "activation")}
             for r in describe(onnx_path)["layers"]]
    assert strip == [{k: r[k] for k in ("layer", "shape", "nnz", "activation")}
                     for r in describe(npz_path)["layers"]]
    assert np.all([r["storage"] == "sparse" for r in describe(onnx_path)["layers"]])
