"""``BundleModel``: run a validated CSR bundle on one sample or a batch (numpy/scipy only)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import Bundle, read_bundle
from .kernels import KERNELS, CsrKernel, DenseKernel, build_kernel

__all__ = ["BundleModel", "LayerInfo", "load"]


@dataclass(frozen=True)
class LayerInfo:
    """What one layer of a loaded model is and how it runs."""

    index: int  # 1-based
    shape: tuple[int, int]
    nnz: int
    density: float
    activation: str
    negative_slope: float
    kernel: str


def load(path: str | os.PathLike[str], kernel: str | Sequence[str] = "auto") -> BundleModel:
    """Load and validate the bundle at ``path``; see :class:`BundleModel` for ``kernel``."""
    return BundleModel(read_bundle(path), kernel=kernel)


class BundleModel:
    """A pruned network ready to run.

    ``kernel`` is ``"dense"``, ``"csr"``, ``"auto"`` (CSR below the density threshold of
    :func:`edgeprune.runtime.kernels.choose_kernel`) or one such name per layer.

    ``model(x)`` maps ``(input_dim,)`` to ``(output_dim,)`` and ``(B, input_dim)`` to
    ``(B, output_dim)`` in float32: it gathers the used inputs, runs the layers and scatters the
    live outputs into a row pre-filled with the constant outputs. Autoencoders also have
    :meth:`encode` (full ``latent_dim`` width; dead latent units hold their constant) and
    :meth:`decode`.
    """

    def __init__(self, bundle: Bundle, kernel: str | Sequence[str] = "auto") -> None:
        self.bundle = bundle
        n_layers = len(bundle.layers)
        if isinstance(kernel, str):
            names = [kernel] * n_layers
        else:
            names = list(kernel)
            if len(names) != n_layers:
                raise ValueError(f"got {len(names)} kernel names for {n_layers} layers")
        for name in names:
            if name not in (*KERNELS, "auto"):
                raise ValueError(f"unknown kernel {name!r}; expected 'dense', 'csr' or 'auto'")
        self._kernels: list[DenseKernel | CsrKernel] = [
            build_kernel(layer, name) for layer, name in zip(bundle.layers, names, strict=True)
        ]
        self.layers: list[LayerInfo] = [
            LayerInfo(
                index=k,
                shape=layer.shape,
                nnz=layer.nnz,
                density=layer.density,
                activation=layer.activation,
                negative_slope=layer.negative_slope,
                kernel=run.kernel,
            )
            for k, (layer, run) in enumerate(zip(bundle.layers, self._kernels, strict=True), 1)
        ]
        self._input_index = bundle.input_index
        self._output_index = bundle.output_index
        self._output_const = bundle.output_const
        self._latent_layer = bundle.latent_layer

    # -- description ----------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        return self.bundle.meta

    @property
    def kind(self) -> str:
        return self.bundle.kind

    @property
    def input_dim(self) -> int:
        return self.bundle.input_dim

    @property
    def output_dim(self) -> int:
        return self.bundle.output_dim

    @property
    def latent_dim(self) -> int | None:
        return self.bundle.latent_dim

    @property
    def latent_layer(self) -> int | None:
        return self._latent_layer

    @property
    def is_autoencoder(self) -> bool:
        return self._latent_layer is not None

    @property
    def kernels(self) -> list[str]:
        return [info.kernel for info in self.layers]

    @property
    def nnz(self) -> int:
        return sum(info.nnz for info in self.layers)

    @property
    def input_index(self) -> np.ndarray:
        return self._input_index

    @property
    def output_index(self) -> np.ndarray:
        return self._output_index

    @property
    def sparsity(self) -> float | None:
        """The sparsity reported by the pruning run (``meta.report.sparsity``), if recorded."""
        report = self.meta.get("report")
        for source in (report if isinstance(report, dict) else {}, self.meta):
            value = source.get("sparsity")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return None

    def __repr__(self) -> str:
        shapes = ", ".join(f"{i.shape[0]}x{i.shape[1]}:{i.kernel}" for i in self.layers)
        return (
            f"BundleModel({self.kind}, {self.input_dim}->{self.output_dim}, nnz={self.nnz}, "
            f"layers=[{shapes}])"
        )

    # -- running --------------------------------------------------------------------------------
    def __call__(self, x: Any) -> np.ndarray:
        """Full forward pass: ``(input_dim,)`` -> ``(output_dim,)``, ``(B, input_dim)`` -> ``(B, output_dim)``."""
        h, single = self._gather(x, self.input_dim, self._input_index, "input")
        h = self._run(h, 0, len(self._kernels))
        return self._scatter(h, single, self._output_const, self._output_index)

    def encode(self, x: Any) -> np.ndarray:
        """Input -> latent code of full ``latent_dim`` width (dead latent units = their constant)."""
        latent_layer = self._require_latent("encode")
        h, single = self._gather(x, self.input_dim, self._input_index, "input")
        stop = latent_layer if self._kernels else 0
        h = self._run(h, 0, stop)
        assert self.bundle.latent_const is not None and self.bundle.latent_index is not None
        return self._scatter(h, single, self.bundle.latent_const, self.bundle.latent_index)

    def decode(self, z: Any) -> np.ndarray:
        """Latent code (full ``latent_dim`` width; only live latent units are read) -> output."""
        latent_layer = self._require_latent("decode")
        assert self.latent_dim is not None and self.bundle.latent_index is not None
        h, single = self._gather(z, self.latent_dim, self.bundle.latent_index, "latent")
        start = latent_layer if self._kernels else 0
        h = self._run(h, start, len(self._kernels))
        return self._scatter(h, single, self._output_const, self._output_index)

    def _require_latent(self, what: str) -> int:
        if self._latent_layer is None:
            raise ValueError(
                f"{what}() needs an autoencoder bundle with a latent layer; this one is "
                f"{self.kind!r} without one"
            )
        return int(self._latent_layer)

    @staticmethod
    def _gather(x: Any, width: int, index: np.ndarray, what: str) -> tuple[np.ndarray, bool]:
        """Check ``x`` and return the used features feature-major: ``(n,)`` or ``(n, B)``."""
        arr = np.asarray(x)
        if arr.ndim not in (1, 2) or arr.shape[-1] != width:
            raise ValueError(
                f"expected {what} of shape ({width},) or (batch, {width}), got {arr.shape}"
            )
        if arr.ndim == 1:
            h = np.take(arr, index)
        else:
            # Taking rows of the transposed view yields a C-contiguous (n, B) array directly.
            h = np.take(arr.T, index, axis=0)
        return h.astype(np.float32, copy=False), arr.ndim == 1

    def _run(self, h: np.ndarray, start: int, stop: int) -> np.ndarray:
        for run in self._kernels[start:stop]:
            h = run(h)
        return h

    @staticmethod
    def _scatter(h: np.ndarray, single: bool, const: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Full-width float32 result pre-filled with ``const``; live units written at ``index``."""
        # With zero layers nothing is live (index is empty) and ``h`` is just the gathered input.
        if single:
            out = const.copy()
            if index.size:
                out[index] = h
            return out
        out = np.empty((h.shape[1], const.shape[0]), dtype=np.float32)
        out[...] = const
        if index.size:
            out[:, index] = h.T
        return out
