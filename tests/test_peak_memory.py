"""PeakMemory sees a native (numpy) allocation made inside the block."""

from __future__ import annotations

import numpy as np

from edgeprune.peak_memory import PeakMemory, current_rss

MIB = 1024**2


def test_peak_memory_sees_a_64_mib_allocation() -> None:
    with PeakMemory() as mem:
        block = np.ones(64 * MIB // 8)  # 64 MiB of float64, every page touched
        assert block[-1] == 1.0
    if current_rss() is not None:  # /proc: sampled RSS; without it ru_maxrss, a looser bound
        assert 48 * MIB <= mem.extra_bytes < 256 * MIB
    del block


def test_peak_memory_of_an_empty_block_is_small() -> None:
    with PeakMemory() as mem:
        pass
    assert 0 <= mem.extra_bytes < 16 * MIB
