"""The energy *proxy* of one inference, and the profiles that carry its coefficients (stdlib only).

    E = MACs x (E_mult + E_add) + words_read x E_mem

with ``E_mem = E_DRAM`` when the model's bytes exceed the profile's cache size and ``E_SRAM``
otherwise (every word at the same price: a deliberately coarse model). MACs and words read are
defined in :mod:`edgeprune.runtime.bench.costs`; the figure is computed twice, for the layers stored
dense (``macs_dense``, ``words_read_dense``, ``bytes_dense_fp32``) and as CSR
(``macs_effective``, ``words_read_csr``, ``bytes_csr``).

This is a proxy for comparing models, not a measurement: the default coefficients are
Horowitz's 45 nm figures (M. Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014): fp32 multiply 3.7 pJ, fp32 add 0.9 pJ, 32-bit read from a small SRAM 5 pJ,
32-bit DRAM read 640 pJ. The board profiles keep these 45 nm coefficients (they are *not*
rescaled to the boards' 28 nm / 16 nm processes) and add the board's last-level cache size and
published whole-board power figures, all approximations.

A user profile is a JSON object with the keys of :class:`EnergyProfile` (``name``,
``e_mult_pj``, ``e_add_pj``, ``e_sram_pj``, ``e_dram_pj``, ``cache_bytes``, optional
``idle_w``, ``load_w``, ``source``, ``notes``), optionally ``"base": "rpi4"`` to start from a
built-in profile; unknown keys are refused so that typos do not pass silently.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import EdgepruneError

__all__ = [
    "HOROWITZ_SOURCE",
    "PROFILES",
    "EnergyProfile",
    "EnergyProfileError",
    "PROFILE_BOARDS",
    "energy_proxy",
    "on_profiled_board",
    "load_energy_profile",
    "profile_from_mapping",
]

HOROWITZ_SOURCE = (
    "M. Horowitz, 'Computing's energy problem (and what we can do about it)', ISSCC 2014, "
    "45 nm figures: fp32 mult 3.7 pJ, fp32 add 0.9 pJ, 32-bit SRAM read 5 pJ, "
    "32-bit DRAM read 640 pJ"
)
PROXY_NOTE = (
    "energy is a proxy, not a measurement: MACs x (E_mult + E_add) + words read x E_mem, "
    "E_mem = DRAM when the model's bytes exceed the cache size, else SRAM"
)


class EnergyProfileError(EdgepruneError):
    """A bad energy profile (name or file); the message is one line."""


@dataclass(frozen=True)
class EnergyProfile:
    """Coefficients of the energy proxy plus (optional) board power figures."""

    name: str
    e_mult_pj: float
    e_add_pj: float
    e_sram_pj: float
    e_dram_pj: float
    cache_bytes: int
    idle_w: float | None = None
    load_w: float | None = None
    source: str = HOROWITZ_SOURCE
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_MIB = 1024 * 1024
_HOROWITZ = {"e_mult_pj": 3.7, "e_add_pj": 0.9, "e_sram_pj": 5.0, "e_dram_pj": 640.0}

PROFILES: dict[str, EnergyProfile] = {
    "generic45nm": EnergyProfile(
        name="generic45nm",
        cache_bytes=1 * _MIB,
        notes="cache size 1 MiB: a nominal last-level cache of a small core (assumption)",
        **_HOROWITZ,
    ),
    "rpi4": EnergyProfile(
        name="rpi4",
        cache_bytes=1 * _MIB,
        idle_w=2.7,
        load_w=6.4,
        notes=(
            "Raspberry Pi 4 B, BCM2711, 4x Cortex-A72: 1 MiB shared L2 is the last-level "
            "cache (BCM2711 product brief). Board power approx.: 2.7 W idle, 6.4 W with "
            "stress --cpu 4 (pidramble.com power-consumption benchmarks, J. Geerling). "
            "Coefficients are Horowitz's 45 nm values, not rescaled to 28 nm."
        ),
        **_HOROWITZ,
    ),
    "rpi5": EnergyProfile(
        name="rpi5",
        cache_bytes=2 * _MIB,
        idle_w=3.0,
        load_w=7.0,
        notes=(
            "Raspberry Pi 5, BCM2712, 4x Cortex-A76: 512 KiB L2 per core, 2 MiB shared L3 "
            "is the last-level cache (Raspberry Pi 5 product brief). Board power approx.: "
            "~3 W idle, ~7 W with all four cores loaded (published third-party measurements "
            "vary by +-1 W with firmware, cooling and peripherals; measure your own board). "
            "Coefficients are Horowitz's 45 nm values, not rescaled to 16 nm."
        ),
        **_HOROWITZ,
    ),
}

#: The board a built-in profile's power figures describe, as its device-tree model names it. The
#: figures x latency are a *board* energy only when measured on that board; anywhere else they are
#: a proxy (the board's power times another machine's latency), labelled so.
PROFILE_BOARDS = {"rpi4": "Raspberry Pi 4", "rpi5": "Raspberry Pi 5"}


def on_profiled_board(profile: EnergyProfile, environment: dict[str, Any]) -> bool:
    """Whether ``environment`` (of :func:`~.harness.environment`) is the board ``profile``
    describes: its model string names that board. User profiles name no board: never."""
    board = PROFILE_BOARDS.get(profile.name)
    model = str(environment.get("board") or "")
    return bool(board) and model.startswith(board)


_NUMBER_KEYS = ("e_mult_pj", "e_add_pj", "e_sram_pj", "e_dram_pj")
_OPTIONAL_W = ("idle_w", "load_w")
_KEYS = {"name", "base", "cache_bytes", "source", "notes", *_NUMBER_KEYS, *_OPTIONAL_W}


def _number(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
    )


def _from_mapping(obj: Any, source: str) -> EnergyProfile:
    def bad(problem: str) -> EnergyProfileError:
        return EnergyProfileError(f"energy profile {source}: {problem}")

    if not isinstance(obj, dict):
        raise bad(f"must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise bad(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KEYS))}")
    base_name = obj.get("base")
    if base_name is not None and base_name not in PROFILES:
        raise bad(f"base {base_name!r} is not one of {', '.join(PROFILES)}")
    base = PROFILES.get(base_name) if base_name else None
    fields: dict[str, Any] = base.to_json() if base else {}
    for key in _NUMBER_KEYS:
        if key in obj:
            if not _number(obj[key]) or obj[key] < 0:
                raise bad(f"{key} must be a number >= 0 (picojoules), got {obj[key]!r}")
            fields[key] = float(obj[key])
        elif base is None:
            raise bad(f"{key} is missing (or give \"base\": one of {', '.join(PROFILES)})")
    if "cache_bytes" in obj:
        value = obj["cache_bytes"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(f"cache_bytes must be an integer >= 0, got {value!r}")
        fields["cache_bytes"] = value
    elif base is None:
        raise bad("cache_bytes is missing")
    for key in _OPTIONAL_W:
        if key in obj and obj[key] is not None:
            if not _number(obj[key]) or obj[key] < 0:
                raise bad(f"{key} must be a number >= 0 (watts) or null, got {obj[key]!r}")
            fields[key] = float(obj[key])
    idle, load = fields.get("idle_w"), fields.get("load_w")
    if idle is not None and load is not None and load < idle:
        raise bad(f"load_w ({load}) must be >= idle_w ({idle})")
    for key in ("name", "source", "notes"):
        if key in obj:
            if not isinstance(obj[key], str):
                raise bad(f"{key} must be a string, got {obj[key]!r}")
            fields[key] = obj[key]
    fields.setdefault("name", Path(source).stem)
    if base is None:
        fields.setdefault("source", f"user profile {source}")
    elif "name" not in obj:
        fields["name"] = f"{base.name}+{Path(source).stem}"
    return EnergyProfile(**fields)


def load_energy_profile(spec: str | os.PathLike[str] | EnergyProfile | None) -> EnergyProfile:
    """A built-in profile by name (``generic45nm`` default, ``rpi4``, ``rpi5``) or a JSON file."""
    if spec is None:
        return PROFILES["generic45nm"]
    if isinstance(spec, EnergyProfile):
        return spec
    text = os.fspath(spec)
    if text in PROFILES:
        return PROFILES[text]
    path = Path(text)
    if not path.suffix.lower() == ".json" and not path.exists():
        raise EnergyProfileError(
            f"unknown energy profile {text!r}; use one of {', '.join(PROFILES)} or a .json file"
        )
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EnergyProfileError(f"energy profile {text}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise EnergyProfileError(f"energy profile {text}: cannot be read ({err})") from None
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as err:
        raise EnergyProfileError(f"energy profile {text}: not valid JSON ({err})") from None
    return _from_mapping(obj, text)


def profile_from_mapping(obj: dict[str, Any], source: str = "mapping") -> EnergyProfile:
    """Validate a profile given as a dict (same rules as a JSON file)."""
    return _from_mapping(obj, source)


def _variant(macs: int, words: int, model_bytes: int, p: EnergyProfile) -> dict[str, Any]:
    dram = model_bytes > p.cache_bytes
    e_mem = p.e_dram_pj if dram else p.e_sram_pj
    compute = macs * (p.e_mult_pj + p.e_add_pj)
    memory = words * e_mem
    return {
        "macs": macs,
        "words_read": words,
        "model_bytes": model_bytes,
        "memory": "dram" if dram else "sram",
        "compute_pj": compute,
        "memory_pj": memory,
        "total_pj": compute + memory,
        "total_uj": (compute + memory) * 1e-6,
    }


def energy_proxy(total: dict[str, Any], profile: EnergyProfile) -> dict[str, Any]:
    """Energy proxy per inference from the ``total`` of :func:`~.costs.static_figures`."""
    dense = _variant(
        total["macs_dense"], total["words_read_dense"], total["bytes_dense_fp32"], profile
    )
    csr = _variant(total["macs_effective"], total["words_read_csr"], total["bytes_csr"], profile)
    ratio = csr["total_pj"] / dense["total_pj"] if dense["total_pj"] else None
    return {
        "profile": profile.name,
        "per_inference": "one sample (batch 1)",
        "dense": dense,
        "csr": csr,
        "csr_over_dense": ratio,
        "note": PROXY_NOTE,
    }
