"""Measured power from ``vcgencmd pmic_read_adc`` (Raspberry Pi 5; a fake vcgencmd on PATH here)
and the labels of the profile-based figures: board energy only on the profiled board."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeprune.runtime.bench import power
from edgeprune.runtime.bench.energy import PROFILES, on_profiled_board

NEW_FORMAT = """\
 3V7_WL_SW_A current(0)=0.00390372A
 3V3_SYS_A current(1)=0.04587378A
 VDD_CORE_A current(7)=1.50000000A
 3V7_WL_SW_V volt(8)=3.70000000V
 3V3_SYS_V volt(9)=3.30000000V
 VDD_CORE_V volt(15)=0.80000000V
 EXT5V_V volt(24)=5.14000000V
 BATT_V volt(25)=0.00000000V
"""
OLD_FORMAT = "VDD_CORE_A=1.5A\nVDD_CORE_V=0.8V\nEXT5V_V=5.1V\nnonsense line\n"


def test_parse_both_formats():
    rails = power.parse_pmic_read_adc(NEW_FORMAT)
    assert rails["VDD_CORE"] == {"A": 1.5, "V": 0.8} and rails["EXT5V"] == {"V": 5.14}
    expected = 1.5 * 0.8 + 0.00390372 * 3.7 + 0.04587378 * 3.3
    assert power.rails_power_w(rails) == pytest.approx(expected)
    old = power.parse_pmic_read_adc(OLD_FORMAT)
    assert old == {"VDD_CORE": {"A": 1.5, "V": 0.8}, "EXT5V": {"V": 5.1}}
    assert power.rails_power_w(old) == pytest.approx(1.2)
    assert power.rails_power_w(power.parse_pmic_read_adc("error=1 error_msg=\"bad\"")) is None


def fake_vcgencmd(bin_dir: Path, text: str, status: int = 0) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "out.txt").write_text(text)
    script = bin_dir / "vcgencmd"
    script.write_text(f"#!/bin/sh\n[ \"$1\" = pmic_read_adc ] || exit 2\n"
                      f"cat {bin_dir / 'out.txt'}\nexit {status}\n")
    script.chmod(0o755)


def test_read_power_with_fake_vcgencmd(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    assert power.read_power() is None or power.read_power() >= 0  # a real Pi 5 might be here
    fake_vcgencmd(tmp_path / "bin", OLD_FORMAT)
    assert power.read_power() == pytest.approx(1.2)
    fake_vcgencmd(tmp_path / "bin", "", status=1)  # a Pi 4: no PMIC
    assert power.read_power() is None


def test_measured_energy_and_sampler():
    readings = iter([2.0, 2.0, 2.0] + [5.0] * 1000)
    _, measured = power.measure_block(lambda: sum(range(10)), idle_s=0.05,
                                      reader=lambda: next(readings))
    assert measured["load_w"] is not None and measured["idle_w"] is not None
    figures = power.measured_energy(2.0, 5.0, mean_latency_us=100.0, batch=4, samples=3)
    assert figures["uj_per_inference"] == pytest.approx(5.0 * 25.0)
    assert figures["uj_per_inference_above_idle"] == pytest.approx(3.0 * 25.0)
    assert "measured" in figures["source"]
    assert power.measured_energy(None, 5.0, 1.0, 1, 0) is None


def test_board_energy_only_on_the_profiled_board():
    pi4 = {"board": "Raspberry Pi 4 Model B Rev 1.4", "machine": "aarch64"}
    pi5 = {"board": "Raspberry Pi 5 Model B Rev 1.0"}
    x86 = {"machine": "x86_64", "cpu_model": "Intel(R) Xeon(R)"}
    assert on_profiled_board(PROFILES["rpi4"], pi4)
    assert not on_profiled_board(PROFILES["rpi4"], pi5)
    assert on_profiled_board(PROFILES["rpi5"], pi5)
    assert not on_profiled_board(PROFILES["rpi5"], x86)
    assert not on_profiled_board(PROFILES["generic45nm"], pi4)


def test_on_board_bench_reports_measured_power_beside_the_proxy(tmp_path):
    """The board-side bench with a fake Pi 5 PMIC: measured W and µJ per inference, labelled."""
    from edgeprune.deploy.package import build_package
    from edgeprune.exporters.csr import save_bundle
    from tests.test_runtime import make_autoencoder

    (tmp_path / "ae").mkdir()
    save_bundle(make_autoencoder(), tmp_path / "ae" / "model.npz")
    wheel = tmp_path / "edgeprune-0.0-py3-none-any.whl"
    wheel.write_bytes(b"not used")
    deployment = build_package(tmp_path / "ae", wheel=wheel).write_to(tmp_path / "deployed")
    fake_vcgencmd(tmp_path / "bin", NEW_FORMAT)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "edgeprune.deploy.on_board", "bench",
                           str(deployment), "--batch", "1", "--warmup", "1", "--runs", "3",
                           "--min-time", "0", "--profile", "rpi5"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    assert results["measured_power"]["source"].startswith("measured: vcgencmd pmic_read_adc")
    row = results["measured_energy"][0]
    assert row["load_w"] == pytest.approx(1.5 * 0.8 + 0.00390372 * 3.7 + 0.04587378 * 3.3)
    assert row["uj_per_inference"] > 0
    assert "proxy" in results["energy_profile"]["note"]  # the proxy stays, labelled
    assert results["startup"] and results["peak_rss_bytes"] > 0
