"""Pruning to a budget: the least sparsity whose network fits ``--target-macs`` or
``--target-size``.

An embedded engineer starts from the budget — "at most 40 KB of flash", "at most 20k
multiply-adds per inference" — not from η. The link scores are computed once; the sparsity is
then found by bisection, each probe pruning with the same rule as ``--sparsity`` (support sets,
m ↔ η, dead-unit cascade) and measuring the result:

* MACs: the links the pruned network keeps (one multiply-add each per inference; the biases'
  adds are not counted).
* bytes: the size of ``model.npz`` as ``compress`` would write it (same quantization and index
  coding), written to a temporary file and measured — the deflate and index codings make the
  size no simple function of the link count.

Both fall as η rises (up to a few bytes of deflate noise, which is why the search keeps the
smallest η that was *measured* within the budget). Fine-tuning after the search changes weight
values, not the structure: MACs stay exactly as found, but the deflated size moves (a few per
cent, measured), so ``compress`` measures the fine-tuned network again — this time writing the
bundle exactly as it will be published, metadata included — and prunes its smallest remaining
weights until it fits.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.network import Network
from edgeprune.prune.api import PruneResult, prune_network

#: Sparsity search bounds and resolution.
MAX_SPARSITY = 0.999
ITERATIONS = 16  # bisection steps: eta resolved to ~1.5e-5


def bundle_bytes(net: Network, quantize: str = "none", metadata: dict | None = None,
                 compression: str = "auto") -> int:
    """Bytes of the ``model.npz`` of ``net`` (compacted); with the ``metadata`` compress records
    it is exactly the file compress writes for ``net``."""
    from edgeprune.artifacts import bundle_meta
    from edgeprune.exporters.csr import save_bundle
    from edgeprune.prune import compact_network

    provenance, report = bundle_meta(net, metadata) if metadata is not None else (None, None)
    with tempfile.TemporaryDirectory(prefix="edgeprune-size-") as tmp:
        path = save_bundle(compact_network(net), Path(tmp) / "model.npz", quantize=quantize,
                           provenance=provenance, report=report, compression=compression)
        return path.stat().st_size


def target_measure(kind: str, quantize: str = "none", metadata: dict | None = None,
                   compression: str = "auto") -> Callable[[Network], int]:
    """The measure of a pruned network for a target kind: ``"macs"`` or ``"bytes"``."""
    if kind == "macs":
        return lambda net: int(net.n_active)
    if kind == "bytes":
        return lambda net: bundle_bytes(net, quantize, metadata, compression)
    raise EdgepruneError(f"unknown target kind {kind!r}; use macs or bytes")


def prune_to_target(net: Network, scores: Sequence[np.ndarray], target: int, kind: str,
                    measure: Callable[[Network], int]) -> tuple[PruneResult, dict]:
    """The least-sparse pruning of ``net`` whose ``measure`` is at most ``target``; returns it
    with the search record. Refuses a budget that even the sparsest network exceeds."""
    option = "--target-macs" if kind == "macs" else "--target-size"
    unit = "multiply-adds" if kind == "macs" else "bytes"
    probes: list[dict] = []

    def probe(eta: float) -> tuple[PruneResult, int]:
        result = prune_network(net, scores, sparsity=eta)
        value = measure(result.network)
        probes.append({"sparsity": round(result.network.sparsity, 6), kind: value})
        return result, value

    best, value = probe(0.0)
    if value <= target:
        return best, {"kind": kind, "target": target, "value": value, "probes": probes}
    sparsest, smallest = probe(MAX_SPARSITY)
    if smallest > target:
        raise EdgepruneError(
            f"{option} {target}: even at sparsity {MAX_SPARSITY} the network needs {smallest} "
            f"{unit}; raise the budget" + (" or add --quantize int8" if kind == "bytes" else ""))
    best, value = bisect_sparsity(probe, target, sparsest, smallest, ITERATIONS)
    return best, {"kind": kind, "target": target, "value": value, "probes": probes}


def bisect_sparsity(probe: Callable[[float], tuple[PruneResult, float]], target: float,
                    best: PruneResult, value: float, iterations: int,
                    ) -> tuple[PruneResult, float]:
    """The least sparsity in ``[0, MAX_SPARSITY]`` whose ``probe`` measure is within ``target``,
    by bisection; ``best``/``value``: a probe known to fit (the sparsest). Keeps the least
    sparsity that was *measured* within budget (measures may be a little non-monotone)."""
    lo, hi = 0.0, MAX_SPARSITY
    for _ in range(iterations):
        mid = (lo + hi) / 2
        result, measured = probe(mid)
        if measured <= target:
            hi, best, value = mid, result, measured
        else:
            lo = mid
    return best, value
