"""Peak resident memory of a block of work, for the scoring report.

``tracemalloc`` does not see torch's or numpy's native allocations, and the process-wide
``ru_maxrss`` only ever grows (it cannot tell one block's peak from an earlier one), so a
background thread samples the resident set size (``/proc/self/statm``, Linux) every few
milliseconds while the block runs. Where ``/proc`` is missing it falls back to ``ru_maxrss``
(a conservative upper bound: the process peak so far). Sampling can miss a spike shorter than the
interval; the estimators allocate their temporaries for much longer than that.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from pathlib import Path

_STATM = Path("/proc/self/statm")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss() -> int | None:
    """Resident set size in bytes now, or None where /proc is not available."""
    try:
        return int(_STATM.read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def max_rss() -> int:
    """The process's peak resident set size so far, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class PeakMemory:
    """Context manager: ``peak_bytes`` (highest RSS seen) and ``extra_bytes`` (above the RSS at
    entry) of the block it wraps."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.start_bytes = 0
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            rss = current_rss()
            if rss is not None and rss > self.peak_bytes:
                self.peak_bytes = rss

    def __enter__(self) -> PeakMemory:
        rss = current_rss()
        if rss is None:
            self.start_bytes = self.peak_bytes = max_rss()
            return self
        self.start_bytes = self.peak_bytes = rss
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            self.peak_bytes = max(self.peak_bytes, max_rss())
            return
        self._stop.set()
        self._thread.join()
        rss = current_rss()
        if rss is not None:
            self.peak_bytes = max(self.peak_bytes, rss)

    @property
    def extra_bytes(self) -> int:
        return max(0, self.peak_bytes - self.start_bytes)
