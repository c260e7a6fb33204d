"""Predicted one-sample latency of a compacted network in the runtime (NumPy/SciPy engine).

What ``compress --target-latency`` solves against: a linear cost model of one batch-1 call of
:class:`~edgeprune.runtime.model.BundleModel` with ``kernel="auto"``, per compacted layer
``(rows, cols, nnz)``::

    layer_us = min(dense_us, csr_us) + act_ns * rows / 1000
    dense_us = dense_call_us + dense_ns * rows * (cols + 1) / 1000    # [W | b] @ [h; 1]
    csr_us   = csr_call_us + csr_ns * nnz / 1000 + csr_row_ns * rows / 1000
    total_us = call_us + sum(layer_us)

``min`` stands for ``auto``'s choice (it runs the cheaper kernel within its crossover's
accuracy). Removing a whole unit shrinks ``rows`` of its layer and ``cols`` of the next, so it
cuts the dense term; removing single links only cuts the CSR term, which on this machine wins
only below ~10 % density -- which is why the latency target trades links for units
(:mod:`edgeprune.prune.latency_target`).

Coefficients: :data:`BUILTIN` holds the ones fitted on x86-64 (the host of
``benchmarks/runtime_latency.py``, by least squares on its per-layer raw kernel times and
end-to-end medians; see ``benchmarks/results/latency_target/fit/cost_model.json``). Other machines
have no built-in figures (the emulated Arm board gives no timings):
:func:`latency_model_for` then fits them from the calibrated kernel profile's measurements
(``edgeprune bench --calibrate`` on the device) or refuses with a one-line error.
numpy/stdlib only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import EdgepruneError
from ..kernel_profile import MACHINE, KernelProfile, default_kernel_profile

__all__ = ["BUILTIN", "BUILTIN_NUMBA", "ENGINES", "LatencyModel", "fit_from_profile",
           "latency_model_for", "predict_us"]


@dataclass(frozen=True)
class LatencyModel:
    """Coefficients of the cost model (module docstring); ``source`` says where they come from."""

    call_us: float
    dense_call_us: float
    dense_ns: float  # per multiply-add of the dense product (bias column included)
    csr_call_us: float
    csr_ns: float  # per non-zero
    csr_row_ns: float  # per row of the CSR product
    act_ns: float  # bias copy / activation per output row
    source: str = "built-in"

    def layer_us(self, rows: int, cols: int, nnz: int) -> tuple[float, str]:
        """Predicted µs of one layer and the kernel the model expects ``auto`` to run."""
        dense = self.dense_call_us + self.dense_ns * rows * (cols + 1) / 1e3
        csr = self.csr_call_us + (self.csr_ns * nnz + self.csr_row_ns * rows) / 1e3
        best, kernel = (dense, "dense") if dense <= csr else (csr, "csr")
        return best + self.act_ns * rows / 1e3, kernel

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Fitted on this project's x86-64 benchmark host (Intel Xeon, AVX-512, one thread, numpy 2.4 /
#: OpenBLAS 0.3.31 / scipy 1.17), after the one-sample plans (``runtime/plan.py``): see
#: ``benchmarks/results/latency_target/fit/cost_model.json`` (non-negative least squares on
#: relative errors; in-sample within 8 % on the four pruned models, the unpruned one 22 % low:
#: its 1.6 MB of weights run slower in a chain than each layer timed alone).
BUILTIN: dict[str, LatencyModel] = {
    "x86_64": LatencyModel(call_us=1.766, dense_call_us=0.8684, dense_ns=0.0474,
                           csr_call_us=0.5934, csr_ns=0.5909, csr_row_ns=0.7596, act_ns=2.7655,
                           source="built-in x86_64"),
}
BUILTIN["AMD64"] = BUILTIN["x86_64"]

#: The optional numba engine (``load(path, engine="numba")``, ``compress --latency-engine
#: numba``) on the same host: fitted by ``benchmarks/latency_model_fit.py`` to that engine's
#: one-sample times with every layer forced dense and forced CSR (one compiled call: its fixed
#: cost is ``call_us``, the per-layer call terms are 0), on the engine with the AVX-512 window
#: layout (``benchmarks/results/latency_target/fit/cost_model.json``: its ``auto`` times within
#: 14 % on the pruned models, the unpruned one 36 % low; the engine is not linear in these terms). A calibrated profile measures the
#: NumPy/SciPy kernels only, so it never replaces these.
BUILTIN_NUMBA: dict[str, LatencyModel] = {
    "x86_64": LatencyModel(call_us=0.0, dense_call_us=0.0, dense_ns=0.0221, csr_call_us=0.0,
                           csr_ns=0.0747, csr_row_ns=0.0, act_ns=3.6438,
                           source="built-in x86_64, numba engine"),
}
BUILTIN_NUMBA["AMD64"] = BUILTIN_NUMBA["x86_64"]
ENGINES = ("numpy", "numba")


def predict_us(layers: list[tuple[int, int, int]], model: LatencyModel) -> dict[str, Any]:
    """Predicted batch-1 µs of a network given as ``(rows, cols, nnz)`` per compacted layer."""
    per_layer = [model.layer_us(r, c, n) for r, c, n in layers]
    return {"total_us": model.call_us + sum(us for us, _ in per_layer),
            "layers_us": [us for us, _ in per_layer],
            "kernels": [kernel for _, kernel in per_layer]}


def fit_from_profile(profile: KernelProfile) -> LatencyModel:
    """Coefficients from a calibrated profile's batch-1 measurements (``bench --calibrate``).

    The calibration times, summed over its shapes, dense once and CSR at each density: the CSR
    time is linear in the density (slope: per non-zero; intercept: per-call and per-row costs,
    taken as the dense call's too, which a single dense timing cannot separate)."""
    shapes = profile.device.get("shapes")
    rows_of = [m for m in profile.measurements if m.get("batch") == 1]
    if not shapes or not rows_of:
        raise EdgepruneError(
            f"kernel profile {profile.source}: no batch-1 measurements to fit a latency model; "
            "re-run `edgeprune bench --calibrate` (it records them)")
    m = rows_of[0]
    macs = float(sum(r * (c + 1) for r, c in shapes))
    links = float(sum(r * c for r, c in shapes))
    dens = np.array([float(d) for d in m["csr_us"]])
    times = np.array([float(t) for t in m["csr_us"].values()])
    slope, intercept = np.polyfit(dens, times, 1)
    per_call = max(intercept, 0.0) / len(shapes)
    return LatencyModel(
        call_us=0.0, dense_call_us=per_call,
        dense_ns=max(float(m["dense_us"]) - intercept, 0.0) / macs * 1e3,
        csr_call_us=per_call, csr_ns=max(slope, 0.0) / links * 1e3,
        csr_row_ns=0.0, act_ns=0.0, source=f"fitted to {profile.source}")


def latency_model_for(profile: KernelProfile | None = None,
                      engine: str = "numpy") -> LatencyModel:
    """The calibrated profile's fit when one is given or found, else this architecture's
    built-in coefficients, else a one-line error saying how to get them. ``engine="numba"``:
    the built-in figures of the numba engine (no profile fit: calibration times the NumPy/SciPy
    kernels)."""
    if engine == "numba":
        if MACHINE in BUILTIN_NUMBA:
            return BUILTIN_NUMBA[MACHINE]
        raise EdgepruneError(
            f"--latency-engine numba: {MACHINE} has no built-in cost figures for the numba "
            "engine (fitted on x86-64 only); use --latency-engine numpy with a calibrated "
            "profile (`edgeprune bench --calibrate`)")
    if engine != "numpy":
        raise EdgepruneError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    found = profile if profile is not None else default_kernel_profile()
    if found is not None and found.measurements:
        return fit_from_profile(found)
    if MACHINE in BUILTIN:
        return BUILTIN[MACHINE]
    raise EdgepruneError(
        f"--target-latency needs this machine's kernel costs ({MACHINE} has no built-in "
        "figures); run `edgeprune bench --calibrate` on it first")
