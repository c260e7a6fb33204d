"""The export contract (exporters/contract.py), once for every graph format: parity with a torch
model, sparse storage pays at 90 % sparsity, a wrong reference or an unsupported activation
fails with one line and writes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from edgeprune.exporters.contract import ExportError
from edgeprune.prune import cascade_dead_units, compact_network
from tests.export_cases import (
    ACTIVATION_SETS,
    batch,
    max_diff,
    pruned_network,
    pruned_torch_sequential,
)
from tests.factories import make_network


@dataclass(frozen=True)
class Format:
    name: str  # the format's name in user messages
    suffix: str
    module: str  # edgeprune.exporters.<module>
    schema: tuple[str, ...]  # packages needed to build the file
    runtime: str  # package that runs it (the write-time check)
    sparse_flag: str  # the exporter's keyword for sparse weights
    builder: str  # the module's model builder (must not run for an unsupported network)

    def exporter(self) -> tuple[Callable[..., Any], Callable[..., Any], Any]:
        for package in self.schema:
            pytest.importorskip(package)
        module = pytest.importorskip(f"edgeprune.exporters.{self.module}")
        export = getattr(module, f"export_{self.module}")
        return export, getattr(module, f"run_{self.module}"), module

    def export(self, small, path, *, sparse: bool = False, **kwargs):
        export, _, _ = self.exporter()
        return export(small, path, **{self.sparse_flag: sparse}, **kwargs)

    def runtime_available(self) -> bool:
        import importlib.util

        return importlib.util.find_spec(self.runtime) is not None


FORMATS = [
    Format("ONNX", ".onnx", "onnx", ("onnx",), "onnxruntime", "sparse_initializers",
           "build_onnx_model"),
    Format("TFLite", ".tflite", "tflite", ("tflite", "flatbuffers"), "ai_edge_litert", "sparse",
           "build_tflite_model"),
]
ids = [f.module for f in FORMATS]


@pytest.mark.parametrize("fmt", FORMATS, ids=ids)
def test_torch_sequential_model(tmp_path, fmt):
    pytest.importorskip("torch")
    pytest.importorskip(fmt.runtime)
    _, run, _ = fmt.exporter()
    small, x, ref = pruned_torch_sequential()
    for sparse in (False, True):
        path = fmt.export(small, tmp_path / f"seq{sparse}{fmt.suffix}", sparse=sparse,
                          verify_inputs=x, verify_reference=ref)
        assert max_diff(run(path, x[:1]), ref[:1]) <= 1e-5
        assert max_diff(run(path, x), ref) <= 1e-5


@pytest.mark.parametrize("fmt", FORMATS, ids=ids)
def test_sparse_weights_are_smaller_at_90_percent(tmp_path, fmt):
    net = make_network(["relu", "relu", "sigmoid"], [128, 64, 32, 128], seed=2)
    for layer in net.layers:
        layer.mask = np.abs(layer.weight) >= np.quantile(np.abs(layer.weight), 0.9)
    small = compact_network(cascade_dead_units(net).network)
    verify = fmt.runtime_available()
    dense = fmt.export(small, tmp_path / f"dense{fmt.suffix}", verify=verify)
    sparse = fmt.export(small, tmp_path / f"sparse{fmt.suffix}", sparse=True, verify=verify)
    assert sparse.stat().st_size < 0.5 * dense.stat().st_size


@pytest.mark.parametrize("fmt", FORMATS, ids=ids)
def test_wrong_reference_raises_and_writes_nothing(tmp_path, fmt):
    pytest.importorskip(fmt.runtime)
    _, small = pruned_network(ACTIVATION_SETS["mixed"])
    x = batch(8, small.input_dim)
    wrong = small.forward(x)
    wrong[3, 4] += 1e-3
    target = tmp_path / f"m{fmt.suffix}"
    with pytest.raises(ExportError, match="differs from the reference"):
        fmt.export(small, target, verify_inputs=x, verify_reference=wrong)
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"previous")  # a failed export leaves an existing file alone
    with pytest.raises(ExportError):
        fmt.export(small, target, sparse=True, verify_inputs=x, verify_reference=wrong)
    assert target.read_bytes() == b"previous" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("fmt", FORMATS, ids=ids)
@pytest.mark.parametrize("layer,activation", [(2, "gelu"), (3, "softplus")])
def test_unsupported_activation_raises_before_writing(tmp_path, monkeypatch, fmt, layer,
                                                      activation):
    _, _, module = fmt.exporter()
    _, small = pruned_network(ACTIVATION_SETS["relu"])
    small.layers[layer - 1].activation = activation

    def no_build(*args, **kwargs):
        raise AssertionError("the model must not be built")

    monkeypatch.setattr(module, fmt.builder, no_build)
    with pytest.raises(ExportError) as info:
        fmt.export(small, tmp_path / f"m{fmt.suffix}", verify=False)
    message = str(info.value)
    assert "\n" not in message and f"layer {layer}" in message and f"'{activation}'" in message
    assert fmt.name in message
    assert list(tmp_path.iterdir()) == []
