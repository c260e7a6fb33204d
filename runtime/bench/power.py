"""Measured board power from the Raspberry Pi 5's PMIC (``vcgencmd pmic_read_adc``), stdlib only.

The Pi 5's power-management IC reports per-rail current and voltage. Current firmware prints

    VDD_CORE_A current(7)=1.23000000A
    VDD_CORE_V volt(7)=0.87000000V

and older firmware ``VDD_CORE_A=1.23A`` / ``VDD_CORE_V=0.87V``. A rail's power is its current
times the voltage of the rail of the same name (``NAME_A`` with ``NAME_V``); the board's power is
the sum over the rails that have both. This is what the PMIC measures (the SoC's and memory's
rails, not the USB/5 V input), so it is a *measured* figure of the rails it covers, labelled
``measured (vcgencmd pmic_read_adc)`` -- beside, never instead of, the energy proxy.

Boards without it (Pi 4, Zero 2 W, any non-Pi host) have no ``vcgencmd`` or no
``pmic_read_adc``: :func:`read_power` returns None and the report keeps the proxy only.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["PowerSampler", "measured_energy", "parse_pmic_read_adc", "read_power"]

SOURCE = "measured: vcgencmd pmic_read_adc (sum of the PMIC rails' V x A)"
_LINE = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9_]+?)_(?P<kind>[AV])\b(?:\s+(?:current|volt)\(\d+\))?\s*=\s*"
    r"(?P<value>[-+0-9.eE]+)\s*(?P<unit>[AV])\s*$"
)


def parse_pmic_read_adc(text: str) -> dict[str, dict[str, float]]:
    """``{rail: {"A": amps, "V": volts}}`` from either output format; other lines are ignored."""
    rails: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match or match.group("kind") != match.group("unit"):
            continue
        try:
            value = float(match.group("value"))
        except ValueError:
            continue
        rails.setdefault(match.group("name"), {})[match.group("kind")] = value
    return rails


def rails_power_w(rails: dict[str, dict[str, float]]) -> float | None:
    """Sum of V x A over the rails that report both (None: none does)."""
    pairs = [r["A"] * r["V"] for r in rails.values() if "A" in r and "V" in r]
    return float(sum(pairs)) if pairs else None


def read_power(command: str = "vcgencmd", timeout: float = 5.0) -> float | None:
    """Board power in W now, or None where ``vcgencmd pmic_read_adc`` is absent or says nothing."""
    exe = shutil.which(command)
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "pmic_read_adc"], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return rails_power_w(parse_pmic_read_adc(proc.stdout))


class PowerSampler:
    """Sample :func:`read_power` in a background thread while a block runs."""

    def __init__(self, interval: float = 0.1, reader: Callable[[], float | None] = read_power):
        self.interval = interval
        self.reader = reader
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            value = self.reader()
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.interval)

    def __enter__(self) -> PowerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def measured_energy(idle_w: float | None, load_w: float | None, mean_latency_us: float,
                    batch: int, samples: int) -> dict[str, Any] | None:
    """Measured W and µJ per inference (whole-rail and above-idle), or None without readings."""
    if idle_w is None or load_w is None:
        return None
    per_sample_s = mean_latency_us * 1e-6 / batch
    return {
        "source": SOURCE,
        "idle_w": idle_w,
        "load_w": load_w,
        "uj_per_inference": load_w * per_sample_s * 1e6,
        "uj_per_inference_above_idle": max(load_w - idle_w, 0.0) * per_sample_s * 1e6,
        "readings": samples,
        "batch": batch,
    }


def measure_block(fn: Callable[[], Any], idle_s: float = 1.0,
                  reader: Callable[[], float | None] = read_power) -> tuple[Any, dict[str, Any]]:
    """Run ``fn`` while sampling power; idle power is sampled for ``idle_s`` before it."""
    idle = PowerSampler(reader=reader)
    with idle:
        time.sleep(idle_s)
    load = PowerSampler(reader=reader)
    with load:
        result = fn()
    return result, {"idle_w": idle.mean(), "load_w": load.mean(), "readings": len(load.samples)}
