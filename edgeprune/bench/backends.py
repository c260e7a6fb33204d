"""Optional benchmark backends: ONNX Runtime, LiteRT and torch, each imported lazily.

Every backend has ``name``, ``formats`` (artifact formats it runs), ``available() -> (bool,
note)`` (never raises; a missing package gives ``False`` and a one-line note naming what to
install) and ``load(path, threads) -> LoadedModel`` (``run(x)`` on a ``(batch, input_dim)``
float32 array). Threads: ONNX Runtime intra/inter-op threads, LiteRT ``num_threads`` and
``torch.set_num_threads`` are set for that backend only (torch's previous value is restored
when its measurements end). The numpy/scipy runtime backends (``edgeprune-auto|csr|dense``)
live in :mod:`edgeprune.runtime.bench.harness`, so a board with the base install can bench bundles.

The layer figures of ``.onnx``, ``.tflite`` and ``.pt`` artifacts for the static table come
from :func:`edgeprune.inspector.layer_source`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.runtime.bench.harness import LoadedModel, RuntimeBackend

BACKEND_NAMES = ("edgeprune", "onnxruntime", "litert", "torch")
EDGEPRUNE_KERNELS = ("auto", "csr", "dense")

__all__ = [
    "BACKEND_NAMES",
    "LiteRTBackend",
    "OnnxRuntimeBackend",
    "TorchBackend",
    "resolve_backends",
]


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - ImportError, or a broken install raising anything
        return False
    return True


class OnnxRuntimeBackend:
    """``onnxruntime.InferenceSession`` on the CPU execution provider."""

    name = "onnxruntime"
    formats = ("onnx",)

    def available(self) -> tuple[bool, str]:
        if _importable("onnxruntime"):
            return True, ""
        return False, "onnxruntime is not installed (pip install onnxruntime)"

    def load(self, path: Path, threads: int) -> LoadedModel:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inp = session.get_inputs()[0]
        width = inp.shape[-1] if inp.shape else None
        if not isinstance(width, int):
            raise EdgepruneError(f"input {inp.name!r} has no fixed feature width ({inp.shape})")
        feeds_name, outputs = inp.name, [session.get_outputs()[0].name]

        def run(x: np.ndarray) -> Any:
            return session.run(outputs, {feeds_name: x})[0]

        return LoadedModel(run, width, info={"providers": session.get_providers()})


@contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a block: LiteRT's C++ side prints "INFO: Created
    TensorFlow Lite XNNPACK delegate for CPU." when the default delegate is applied (at the
    first ``allocate_tensors``). TF_CPP_MIN_LOG_LEVEL does not reach that logger (measured with
    ai-edge-litert), so the descriptor itself is redirected to /dev/null around the call."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _litert_interpreter() -> tuple[Any, str] | None:
    for module, label in (("ai_edge_litert.interpreter", "ai-edge-litert"),
                          ("tflite_runtime.interpreter", "tflite-runtime")):
        try:
            return importlib.import_module(module).Interpreter, label
        except Exception:  # noqa: BLE001
            continue
    return None


class LiteRTBackend:
    """The LiteRT interpreter (``ai_edge_litert``, else ``tflite_runtime``), default delegates."""

    name = "litert"
    formats = ("tflite",)

    def available(self) -> tuple[bool, str]:
        if _litert_interpreter() is not None:
            return True, ""
        return False, "LiteRT is not installed (pip install ai-edge-litert, or tflite-runtime)"

    def load(self, path: Path, threads: int) -> LoadedModel:
        found = _litert_interpreter()
        assert found is not None
        with _quiet_native_stderr():
            interpreter = found[0](model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        out_index = interpreter.get_output_details()[0]["index"]
        in_index = inp["index"]
        current: list[tuple[int, ...] | None] = [None]

        def run(x: np.ndarray) -> Any:
            if current[0] != x.shape:  # once per batch size, during warm-up
                interpreter.resize_tensor_input(in_index, list(x.shape), strict=False)
                with _quiet_native_stderr():
                    interpreter.allocate_tensors()
                current[0] = x.shape
            interpreter.set_tensor(in_index, x)
            interpreter.invoke()
            return interpreter.get_tensor(out_index)

        return LoadedModel(run, int(inp["shape"][-1]), info={"runtime": found[1]})


class TorchBackend:
    """A ``pruned.pt`` (or any checkpoint edgeprune reads) as a chain of dense torch layers.

    The masks are multiplied into the weights once at load; each call is
    ``act(linear(x, W, b))`` per layer under ``torch.inference_mode()``.
    """

    name = "torch"
    formats = ("pt",)

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("torch") is not None:
            return True, ""
        return False, "torch is not installed (pip install 'edgeprune[torch]')"

    def load(self, path: Path, threads: int) -> LoadedModel:
        import torch

        from edgeprune.checkpoint import load_network
        from edgeprune.torch_network import torch_activation

        net = load_network(path)
        layers = [(torch.from_numpy(np.ascontiguousarray(layer.masked_weight)),
                   torch.from_numpy(layer.bias), torch_activation(layer.activation,
                                                                  layer.negative_slope))
                  for layer in net.layers]
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        linear = torch.nn.functional.linear

        def run(x: np.ndarray) -> Any:
            with torch.inference_mode():
                h = torch.from_numpy(x)
                for weight, bias, act in layers:
                    h = act(linear(h, weight, bias))
                return h

        def close() -> None:
            torch.set_num_threads(previous)

        return LoadedModel(run, net.layers[0].in_dim, info={"torch_threads": threads},
                           close=close)


def resolve_backends(spec: str | Sequence[str], kernel_profile: Any = None) -> list[Any]:
    """``"auto"`` (every backend) or names from :data:`BACKEND_NAMES`; ``edgeprune`` expands to
    ``edgeprune-auto``, ``edgeprune-csr`` and ``edgeprune-dense`` (each also accepted alone);
    ``edgeprune-numba`` (the optional compiled engine) only when named."""
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [n for n in names if n]
    if not names:
        raise EdgepruneError("--backends is empty; use auto or a list like edgeprune,onnxruntime")
    if "auto" in names:
        if len(names) > 1:
            raise EdgepruneError("--backends auto cannot be combined with other names")
        names = list(BACKEND_NAMES)
    out: list[Any] = []
    others = {"onnxruntime": OnnxRuntimeBackend, "litert": LiteRTBackend, "torch": TorchBackend}
    for name in names:
        if name == "edgeprune":
            out += [RuntimeBackend(k, kernel_profile) for k in EDGEPRUNE_KERNELS]
        elif name == "edgeprune-numba":  # opt-in: the compiled engine (JIT on first load)
            out.append(RuntimeBackend("auto", kernel_profile, engine="numba"))
        elif name.startswith("edgeprune-") and name[10:] in EDGEPRUNE_KERNELS:
            out.append(RuntimeBackend(name[10:], kernel_profile))
        elif name in others:
            out.append(others[name]())
        else:
            valid = ", ".join([*BACKEND_NAMES, *(f"edgeprune-{k}" for k in EDGEPRUNE_KERNELS),
                               "edgeprune-numba"])
            raise EdgepruneError(f"unknown backend {name!r}; use auto or some of: {valid}")
    seen: dict[str, Any] = {}
    for backend in out:
        seen.setdefault(backend.name, backend)
    return list(seen.values())
