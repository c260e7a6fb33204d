"""The edge runtime: load a ``.npz`` CSR bundle and run it with numpy/scipy only.

Nothing here imports torch, click or any ``edgeprune`` module outside ``edgeprune.runtime``: this
package is what a board runs.

>>> from edgeprune import runtime
>>> model = runtime.load("model.npz")          # validates everything first  # doctest: +SKIP
>>> y = model(x)                               # (input_dim,) or (B, input_dim)  # doctest: +SKIP
"""

from __future__ import annotations

from .activations import ACTIVATIONS, apply_activation
from .bundle import FORMAT, SUPPORTED_VERSIONS, Bundle, BundleError, read_bundle
from .info import describe
from .kernels import DENSITY_THRESHOLD, choose_kernel
from .model import BundleModel, LayerInfo, load

__all__ = [
    "ACTIVATIONS",
    "DENSITY_THRESHOLD",
    "FORMAT",
    "SUPPORTED_VERSIONS",
    "Bundle",
    "BundleError",
    "BundleModel",
    "LayerInfo",
    "apply_activation",
    "choose_kernel",
    "describe",
    "load",
    "read_bundle",
]
