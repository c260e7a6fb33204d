"""``edgeprune bench --remote HOST ARTIFACT...``: the same harness on the board and on this host,
side by side.

Each artifact is deployed first (``deploy``: a no-op when the board already has it, verified),
then ``python -m edgeprune.deploy.on_board bench DIR`` runs in the deployment's venv on the
board, and the same command runs here on the same files, so both sides measure the same thing
with the same code: p50/p90/p99 per batch size, load time, first-inference time, peak RSS.

Labels: every figure says where it was measured. ``host`` is this machine; ``board`` a real
board; ``emulated`` a board under qemu-user (detected by :mod:`.remote_steps`: the board
simulator's marker file, or ``uname -m`` arm64 with an x86 ``/proc/cpuinfo``) -- an emulated
timing is shown for completeness and never as a device timing. Energy: the proxy everywhere,
``measured`` only from the board's PMIC (``vcgencmd pmic_read_adc``).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgeprune.bench.report import _fmt, _table
from edgeprune.deploy.deploy import DeployOptions, deploy_one, describe_board
from edgeprune.deploy.package import build_package
from edgeprune.deploy.ssh import parse_target, run_ssh
from edgeprune.errors import EdgepruneError, first_line

__all__ = ["bench_remote", "remote_markdown", "remote_summary"]

SCHEMA = "edgeprune-bench-remote"
EMULATED_NOTE = ("the board is EMULATED (qemu-user on this host): its timings measure the "
                 "emulator, not a device; use them for correctness only")


def _bench_args(directory: str, batches: Sequence[int], warmup: int, runs: int, min_time: float,
                threads: int, profile: str, calibrate: bool) -> list[str]:
    args = ["-m", "edgeprune.deploy.on_board", "bench", directory,
            "--batch", ",".join(str(b) for b in batches), "--warmup", str(warmup),
            "--runs", str(runs), "--min-time", repr(float(min_time)), "--threads", str(threads),
            "--profile", profile]
    return args + (["--calibrate"] if calibrate else [])


def _parse(text: str, where: str) -> dict[str, Any]:
    lines = text.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        raise EdgepruneError(f"{where}: the benchmark printed no result")
    if result.get("ok") is False:
        raise EdgepruneError(f"{where}: the benchmark failed: {result.get('error')}")
    return result


def bench_remote(host: str, artifacts: Sequence[str], opts: DeployOptions, *,
                 batches: Sequence[int] = (1, 32), warmup: int = 10, runs: int = 100,
                 min_time: float = 0.5, threads: int = 1, energy_profile: str = "generic45nm",
                 calibrate: bool = False,
                 say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Deploy each artifact to ``host``, bench it there and here; return the combined results."""
    say = say or (lambda _m: None)
    target = parse_target(host)
    if opts.remote_dir and len(artifacts) > 1:
        raise EdgepruneError("--remote-dir names one deployment; give one ARTIFACT with it")
    combined: dict[str, Any] = {"schema": SCHEMA, "host": str(target), "artifacts": []}
    for artifact in artifacts:
        package = build_package(artifact)
        result = deploy_one(target, package, opts, say)
        if not result.ok:
            raise EdgepruneError(result.error or f"{target}: deploy failed")
        board = result.board or {}
        combined["board"] = board
        combined["emulated"] = bool(board.get("emulated"))
        combined["emulated_how"] = board.get("emulated_how")
        say(f"{target}: benchmarking {package.name} on the board"
            + (" (emulated: correctness only)" if board.get("emulated") else ""))
        args = _bench_args(result.dir or "", batches, warmup, runs, min_time, threads,
                           energy_profile, calibrate)
        python = f"{result.dir}/venv/bin/python"
        command = " ".join(shlex.quote(a) for a in [python, *args])
        proc = run_ssh(target, opts.ssh, command, timeout=opts.timeout)
        on_board = _parse(proc.stdout[-8 * 1024 * 1024:].decode("utf-8", "replace"),
                          f"{target}")
        say(f"benchmarking {package.name} on this host")
        with tempfile.TemporaryDirectory(prefix="edgeprune-bench-") as tmp:
            local = package.write_to(Path(tmp) / package.name)
            proc = subprocess.run([sys.executable, *_bench_args(str(local), batches, warmup,
                                                               runs, min_time, threads,
                                                               energy_profile, False)],
                                  capture_output=True, text=True, check=False)
            on_host = _parse(proc.stdout, "this host")
            if proc.returncode != 0 and not on_host:
                raise EdgepruneError(f"this host: {first_line(proc.stderr)}")
        combined["artifacts"].append({"name": package.name, "source": str(artifact),
                                      "deployment": result.dir, "host": on_host,
                                      "board": on_board})
    combined["labels"] = {"host": "host",
                          "board": "emulated" if combined.get("emulated") else "board",
                          "energy": "proxy (measured only where measured_power is given)"}
    if combined.get("emulated"):
        combined["note"] = EMULATED_NOTE
    return combined


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid(row: Any) -> bool:
    """A latency row as the harness writes it; the board's rows are untrusted data."""
    return (isinstance(row, dict) and isinstance(row.get("artifact"), str)
            and isinstance(row.get("backend"), str) and _number(row.get("batch"))
            and all(_number(row.get(k)) for k in ("p50_us", "p90_us", "p99_us")))


def _startup(side: dict[str, Any]) -> list[tuple[str, float, float]]:
    items = side.get("startup") if isinstance(side.get("startup"), dict) else {}
    return [(Path(str(p)).name, s["load_s"], s["first_inference_s"]) for p, s in items.items()
            if isinstance(s, dict) and _number(s.get("load_s"))
            and _number(s.get("first_inference_s"))]


def _rss_mib(side: dict[str, Any]) -> float:
    value = side.get("peak_rss_bytes")
    return value / 1024**2 if _number(value) else float("nan")


def _rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Host and board latency rows matched by (backend, batch, artifact file name)."""
    def key(r: dict[str, Any]) -> tuple[str, str, int]:
        return Path(r["artifact"]).name, r["backend"], r["batch"]

    board = {key(r): r for r in entry["board"].get("latency", []) if _valid(r)}
    out = []
    for r in entry["host"].get("latency", []):
        b = board.get(key(r))
        if b is not None:
            out.append({"artifact": Path(r["artifact"]).name, "backend": r["backend"],
                        "batch": r["batch"], "host": r, "board": b})
    return out


def _measured(entry: dict[str, Any]) -> list[dict[str, Any]]:
    rows = entry["board"].get("measured_energy") or []
    keys = ("load_w", "uj_per_inference", "uj_per_inference_above_idle", "batch")
    return [m for m in rows if isinstance(m, dict) and isinstance(m.get("artifact"), str)
            and isinstance(m.get("source"), str) and all(_number(m.get(k)) for k in keys)]


def remote_summary(results: dict[str, Any]) -> str:
    where = results["labels"]["board"]
    lines = [f"board {results['host']}: {describe_board(results.get('board') or {})}"]
    if results.get("emulated"):
        lines.append(f"NOTE: {EMULATED_NOTE} ({results.get('emulated_how')})")
    for entry in results["artifacts"]:
        lines.append("")
        lines.append(f"{entry['name']}: {'backend':<16} {'batch':>5} {'host p50 µs':>12} "
                     f"{where + ' p50 µs':>16} {'ratio':>8}")
        for row in _rows(entry):
            h, b = row["host"]["p50_us"], row["board"]["p50_us"]
            lines.append(f"{'':<{len(entry['name'])}}  {row['backend']:<16} {row['batch']:>5} "
                         f"{h:>12.1f} {b:>16.1f} {b / h if h else float('inf'):>8.1f}")
        for side in ("host", "board"):
            label = "host" if side == "host" else where
            for name, load_s, first_s in _startup(entry[side]):
                lines.append(f"  {label}: {name} load {load_s * 1e3:.1f} ms, first inference "
                             f"{first_s * 1e3:.2f} ms, peak RSS {_rss_mib(entry[side]):.0f} MiB")
        measured = _measured(entry)
        if measured:
            m = measured[0]
            lines.append(f"  {where} energy, measured ({m['source']}): {m['load_w']:.2f} W, "
                         f"{m['uj_per_inference']:.1f} µJ per inference at batch {m['batch']}")
        else:
            lines.append("  energy: proxy only (no vcgencmd pmic_read_adc on the board)")
    return "\n".join(lines)


def remote_markdown(results: dict[str, Any]) -> str:
    where = results["labels"]["board"]
    board = results.get("board") or {}
    lines = ["# edgeprune bench --remote", "",
             f"- board `{results['host']}`: {describe_board(board)}",
             f"- where each figure was measured: host = this machine, {where} = the board"
             + (" under qemu-user emulation" if results.get("emulated") else ""), ""]
    if results.get("emulated"):
        lines += [f"**{EMULATED_NOTE}** (detected: {results.get('emulated_how')}).", ""]
    for entry in results["artifacts"]:
        lines += [f"## {entry['name']}", ""]
        header = ["backend", "batch", "host p50", "host p90", "host p99", f"{where} p50",
                  f"{where} p90", f"{where} p99", f"{where} / host"]
        rows = [[r["backend"], r["batch"], r["host"]["p50_us"], r["host"]["p90_us"],
                 r["host"]["p99_us"], r["board"]["p50_us"], r["board"]["p90_us"],
                 r["board"]["p99_us"],
                 f"{r['board']['p50_us'] / r['host']['p50_us']:.1f}x" if r["host"]["p50_us"]
                 else "–"] for r in _rows(entry)]
        lines += ["Latency, µs per call:", ""] + _table(header, rows)
        start = [[side if side == "host" else where, name, load_s * 1e3, first_s * 1e3,
                  _rss_mib(entry[side])]
                 for side in ("host", "board") for name, load_s, first_s in _startup(entry[side])]
        lines += _table(["where", "artifact", "load ms", "first inference ms", "peak RSS MiB"],
                        start)
        measured = _measured(entry)
        if measured:
            lines += _table(["artifact", "batch", "W (measured)", "µJ/inference (measured)",
                             "µJ above idle"],
                            [[Path(m["artifact"]).name, m["batch"], m["load_w"],
                              m["uj_per_inference"], m["uj_per_inference_above_idle"]]
                             for m in measured])
            lines += [f"Measured: {measured[0]['source']}.", ""]
        energy = [a.get("energy") for a in entry["host"].get("artifacts", []) if a.get("energy")]
        if energy:
            lines += [f"Energy proxy (not a measurement): {_fmt(energy[0]['csr']['total_pj'] / 1e3)}"
                      f" nJ per inference (CSR, profile {energy[0]['profile']}).", ""]
        cal = entry["board"].get("calibration")
        if isinstance(cal, dict) and isinstance(cal.get("crossover"), list) and all(
                isinstance(c, dict) and _number(c.get("batch")) and _number(c.get("density"))
                for c in cal["crossover"]):
            lines += ["Calibrated on the board: dense/CSR crossover "
                      + ", ".join(f"batch {c['batch']}: {c['density']:.3f}"
                                  for c in cal["crossover"])
                      + f" (saved as {cal['path']}; deploy and bench use it from now on).", ""]
    return "\n".join(lines)
