"""Elementwise activations in NumPy, shared by the runtime and the library (numpy only).

Each function writes into ``out`` when given, so the runtime can reuse preallocated buffers.
"""

from __future__ import annotations

import numpy as np

ACTIVATIONS = ("identity", "relu", "leaky_relu", "sigmoid", "tanh")


def _sigmoid(z: np.ndarray, out: np.ndarray) -> np.ndarray:
    # Numerically stable logistic written with ufuncs: 0.5 * (1 + tanh(z / 2)) never overflows.
    np.multiply(z, 0.5, out=out)
    np.tanh(out, out=out)
    out += 1.0
    out *= 0.5
    return out


def apply_activation(
    z: np.ndarray,
    name: str,
    negative_slope: float = 0.01,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Apply activation ``name`` to ``z`` (into ``out``, which may be ``z`` itself)."""
    if out is None:
        out = np.empty_like(z)
    if name == "identity":
        if out is not z:
            np.copyto(out, z)
        return out
    if name == "relu":
        return np.maximum(z, 0, out=out)
    if name == "leaky_relu":
        # max(z, a*z) equals leaky_relu for 0 <= a <= 1, the only slopes that make sense here.
        if not 0.0 <= negative_slope <= 1.0:
            np.copyto(out, np.where(z >= 0, z, z * negative_slope))
            return out
        tmp = np.multiply(z, negative_slope)
        return np.maximum(z, tmp, out=out)
    if name == "sigmoid":
        return _sigmoid(z, out)
    if name == "tanh":
        return np.tanh(z, out=out)
    raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
