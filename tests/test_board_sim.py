"""End to end on the emulated board (slow): a compressed model deployed over real SSH to a
Debian 12 arm64 userland under qemu-user (tools/board_sim.sh), verified there, redeployed as a
no-op, then ``bench --remote`` with its report labelled emulated.

The userland is built once (about 15 min) and cached outside the clone
($EDGEPRUNE_BOARD_SIM_CACHE, default /var/cache/edgeprune/board-sim); later runs reuse it. The
test is skipped only where the machine cannot run the board at all (not root, no
binfmt_misc), with the reason tools/board_sim.sh gives.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeprune.cli import main
from tests.sshd import free_port

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "board_sim.sh"


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    env = {**os.environ, "EDGEPRUNE_BOARD_SIM_PORT": str(free_port())}
    check = subprocess.run([str(SCRIPT), "check"], capture_output=True, text=True, env=env)
    if check.returncode == 3:
        pytest.skip("the emulated board cannot run here: " + check.stderr.strip())
    start = subprocess.run([str(SCRIPT), "start"], capture_output=True, text=True, env=env,
                           timeout=3600)
    assert start.returncode == 0, start.stderr[-2000:]
    args = shlex.split(start.stdout.strip().splitlines()[-1])  # --host NAME --ssh-config PATH
    yield args
    subprocess.run([str(SCRIPT), "stop"], capture_output=True, env=env, timeout=120)


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def test_deploy_verify_and_bench_on_the_emulated_board(board, small_model, npy_data, tmp_path):
    runner = CliRunner()
    outdir = tmp_path / "compressed"
    _ok(runner.invoke(main, ["compress", str(small_model), "--data", npy_data, "--sparsity",
                             "0.5", "--export", "npz", "-q", "-o", str(outdir)]))
    # One directory per test run: the userland is shared by every clone on this machine, so a
    # name from the test alone let two concurrent runs deploy into the same place.
    remote = f"/root/edgeprune-test/{tmp_path.name}-{os.getpid()}"
    try:
        _deploy_verify_and_bench(runner, board, outdir, remote, tmp_path)
    finally:
        subprocess.run(["ssh", "-F", board[board.index("--ssh-config") + 1],
                        board[board.index("--host") + 1], "rm", "-rf", remote],
                       capture_output=True, timeout=120)


def _deploy_verify_and_bench(runner, board, outdir, remote, tmp_path):
    deploy = ["deploy", str(outdir), *board, "--remote-dir", remote]
    out = _ok(runner.invoke(main, deploy))
    assert "deployed" in out and "emulated board" in out
    assert "aarch64" in out and "EMULATED" in out  # the probe's board description

    again = _ok(runner.invoke(main, deploy))
    assert "unchanged" in again and "nothing copied" in again

    report = tmp_path / "remote.json"
    out = _ok(runner.invoke(main, [
        "bench", str(outdir), "--remote", board[1], *board[2:], "--remote-dir", remote,
        "--batch", "1,8", "--warmup", "1", "--runs", "5", "--min-time", "0",
        "--json", str(report), "--md", str(tmp_path / "remote.md")]))
    results = json.loads(report.read_text())
    assert results["emulated"] is True and results["labels"]["board"] == "emulated"
    assert results["board"]["machine"] == "aarch64"
    assert results["board"]["numpy"] and results["board"]["scipy"]
    entry = results["artifacts"][0]
    assert {r["batch"] for r in entry["board"]["latency"]} == {1, 8}
    assert entry["board"]["environment"]["machine"] == "aarch64"
    assert "EMULATED" in out and "emulated p50" in (tmp_path / "remote.md").read_text()
