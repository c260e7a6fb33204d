"""``edgeprune deploy`` against a real OpenSSH server on 127.0.0.1 (this machine as the board):
the SSH error paths, each one line with nothing half-deployed, and a deploy that verifies,
redeploys as a no-op and survives an interrupted upload. The arm64 end-to-end run is in
tests/test_board_sim.py (slow)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeprune.cli import main
from edgeprune.deploy import deploy as dep
from edgeprune.deploy.package import build_package
from edgeprune.deploy.ssh import SshError, SshOptions, parse_target, ssh_argv
from edgeprune.exporters.csr import save_bundle
from tests import sshd as sshd_mod
from tests.test_runtime import make_autoencoder


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    reason = sshd_mod.why_not()
    if reason:
        pytest.skip(reason)
    server = sshd_mod.start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """One wheel of this project for the module (building one takes seconds)."""
    from edgeprune.deploy.package import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "ae" / "model.npz"
    path.parent.mkdir()
    save_bundle(make_autoencoder(), path)
    return path.parent


def _deploy(args, sshd, known=True, **config):
    cfg = sshd.client_config(known_hosts=known, **config)
    return CliRunner().invoke(main, ["deploy", *args, "--host", "board", "--ssh-config", str(cfg)])


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


# -- no server needed ---------------------------------------------------------------------------
def test_parse_target():
    assert parse_target("pi@raspberrypi.local:2222") == dep.Target("raspberrypi.local", "pi", 2222)
    assert parse_target("board") == dep.Target("board")
    for bad in ("-oProxyCommand=x", "pi@", "a b", "host:99999", ""):
        with pytest.raises(dep.EdgepruneError, match="--host"):
            parse_target(bad)


def test_ssh_argv_is_strict_and_secret_free():
    argv = ssh_argv(parse_target("pi@b:2200"), SshOptions(identity="/k", connect_timeout=7), "ls")
    text = " ".join(argv)
    assert "BatchMode=yes" in text and "StrictHostKeyChecking=yes" in text
    assert "ConnectTimeout=7" in text and argv[-2:] == ["b", "ls"] and "--" in argv
    assert "accept-new" in " ".join(ssh_argv(parse_target("b"),
                                             SshOptions(accept_new_host_key=True), "ls"))


def test_package_manifest_is_reproducible(bundle, wheel):
    a = build_package(bundle, wheel=wheel)
    b = build_package(bundle, wheel=wheel)
    assert a.manifest["files"] == b.manifest["files"] and a.name == "ae"
    assert set(a.manifest["files"]) == {"artifacts/model.npz", "verify/inputs.npy",
                                        "verify/model.npz.out.npy", f"wheels/{wheel.name}"}


def test_wheel_build_is_reproducible(tmp_path, wheel):
    from edgeprune.deploy.package import build_wheel

    again = build_wheel(tmp_path)
    assert again.read_bytes() == wheel.read_bytes()


def test_deploy_refuses_missing_formats_before_connecting(bundle):
    result = CliRunner().invoke(main, ["deploy", str(bundle), "--host", "nowhere.invalid",
                                       "--formats", "npz,onnx"])
    assert "no model.onnx" in _one_error_line(result)


# -- against the loopback sshd ------------------------------------------------------------------
def test_unknown_host_key(sshd, bundle, wheel):
    line = _one_error_line(_deploy([str(bundle), "--wheel", str(wheel)], sshd, known=False))
    assert "unknown host key" in line and "--accept-new-host-key" in line and "ssh-keyscan" in line


def test_refused_connection(sshd, bundle, wheel):
    line = _one_error_line(_deploy([str(bundle), "--wheel", str(wheel)], sshd,
                                   port=sshd_mod.free_port()))
    assert "connection refused" in line


def test_auth_failure(sshd, bundle, wheel):
    line = _one_error_line(_deploy([str(bundle), "--wheel", str(wheel)], sshd,
                                   key=sshd.root / "other_key"))
    assert "authentication failed" in line and "--identity" in line


def test_board_without_numpy(sshd, bundle, wheel, tmp_path):
    python = tmp_path / "python3-without-numpy"
    python.write_text("#!/bin/sh\nunset PYTHONPATH\nexec /usr/bin/python3 \"$@\"\n")
    python.chmod(0o755)
    remote = tmp_path / "remote" / "ae"
    line = _one_error_line(_deploy([str(bundle), "--wheel", str(wheel), "--python", str(python),
                                    "--remote-dir", str(remote)], sshd))
    assert "sudo apt install python3-numpy python3-scipy" in line
    assert not remote.parent.exists()  # nothing copied


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs (a full disk) needs root")
def test_disk_full(sshd, bundle, wheel, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=True)
    try:
        line = _one_error_line(_deploy([str(bundle), "--wheel", str(wheel), "--remote-dir",
                                        str(disk / "ae")], sshd))
        assert "MiB free" in line and "--remote-dir" in line
        assert os.listdir(disk) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_deploy_verify_redeploy_and_interrupted_upload(sshd, bundle, wheel, tmp_path):
    remote = tmp_path / "remote" / "ae"
    args = [str(bundle), "--wheel", str(wheel), "--remote-dir", str(remote)]
    first = _deploy(args, sshd)
    assert first.exit_code == 0, first.output
    assert "deployed" in first.output
    verify = json.loads((remote / "verify.json").read_text())
    assert verify["ok"] and verify["artifacts"][0]["max_abs_diff"] <= 1e-5
    manifest = json.loads((remote / "manifest.json").read_text())
    assert manifest["format"] == "edgeprune-deployment"

    again = _deploy(args, sshd)
    assert again.exit_code == 0 and "unchanged" in again.output and "nothing copied" in again.output

    # an upload cut off half-way: commit refuses it, the deployment is untouched, no staging left
    cfg = sshd.client_config()
    opts = dep.DeployOptions(remote_dir=str(remote), ssh=SshOptions(ssh_config=str(cfg)))
    package = build_package(bundle, wheel=wheel, seed=1)  # different inputs: a real change
    full = package.tar()
    package.tar = lambda: full[: len(full) // 2]
    target = parse_target("board")
    staging = str(remote.parent / ".ae.staging-test")
    try:
        dep.upload(target, opts, package, staging)
    except dep.EdgepruneError:
        pass  # tar may notice the truncated stream itself
    with pytest.raises(dep.EdgepruneError, match="upload incomplete|previous deployment"):
        dep.commit(target, opts, staging, str(remote))
    assert json.loads((remote / "manifest.json").read_text()) == manifest
    assert sorted(p.name for p in remote.parent.iterdir()) == ["ae"]


def test_several_hosts_one_row_each(sshd, bundle, wheel, tmp_path):
    cfg = sshd.client_config()
    refused = sshd_mod.free_port()
    result = CliRunner().invoke(main, [
        "deploy", str(bundle), "--wheel", str(wheel), "--ssh-config", str(cfg), "--dry-run",
        "--remote-dir", str(tmp_path / "r" / "ae"),
        "--host", "board", "--host", f"127.0.0.1:{refused}"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("host"))
    rows = lines[header + 1: header + 3]
    assert len(rows) == 2 and "would deploy" in rows[0] and "connection refused" in rows[1]
    assert "1 of 2 boards failed" in result.output


def test_ssh_error_classification():
    t = parse_target("pi@b")
    from edgeprune.deploy.ssh import _ssh_failure

    assert "timed out" in str(_ssh_failure(t, SshOptions(), "ssh: connect to host b port 22: "
                                                          "Connection timed out"))
    assert isinstance(_ssh_failure(t, SshOptions(), "weird"), SshError)


def test_remote_steps_stay_stdlib_only():
    """remote_steps.py runs on the board's bare python3: standard library imports only."""
    import ast
    import sys

    source = Path(dep.__file__).with_name("remote_steps.py").read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        assert all(n.split(".")[0] in sys.stdlib_module_names for n in names), names


def test_bench_remote_side_by_side(sshd, bundle, tmp_path):
    cfg = sshd.client_config()
    out = tmp_path / "remote.json"
    result = CliRunner().invoke(main, [
        "bench", str(bundle), "--remote", "board", "--ssh-config", str(cfg),
        "--remote-dir", str(tmp_path / "r" / "ae"), "--batch", "1,4", "--warmup", "1",
        "--runs", "3", "--min-time", "0", "--json", str(out), "--md", str(tmp_path / "r.md")])
    assert result.exit_code == 0, result.output
    results = json.loads(out.read_text())
    assert results["schema"] == "edgeprune-bench-remote" and results["emulated"] is False
    assert results["labels"]["board"] == "board"  # an x86 sshd on loopback: a real machine
    entry = results["artifacts"][0]
    assert {r["batch"] for r in entry["board"]["latency"]} == {1, 4}
    assert entry["board"]["startup"] and entry["host"]["peak_rss_bytes"] > 0
    assert "host p50" in (tmp_path / "r.md").read_text()
    assert "energy: proxy only" in result.output


def test_verification_catches_outputs_that_differ(bundle, wheel, tmp_path):
    """The board-side check compares for real: tampered host outputs fail with the diff named."""
    import numpy as np

    from edgeprune.deploy import on_board

    deployed = build_package(bundle, wheel=wheel).write_to(tmp_path / "d")
    assert on_board.verify(deployed, 1e-5)["ok"]
    out = deployed / "verify" / "model.npz.out.npy"
    np.save(out, np.load(out) + 1e-3)
    result = on_board.verify(deployed, 1e-5)
    assert not result["ok"] and "max |diff| 1.00e-03 > 1e-05" in result["error"]


@pytest.mark.slow
def test_bench_remote_calibrate_is_kept_across_redeploys(sshd, bundle, wheel, tmp_path):
    cfg = sshd.client_config()
    remote = tmp_path / "r" / "ae"
    out = tmp_path / "remote.json"
    result = CliRunner().invoke(main, [
        "bench", str(bundle), "--remote", "board", "--ssh-config", str(cfg), "--calibrate",
        "--remote-dir", str(remote), "--batch", "1", "--warmup", "0", "--runs", "2",
        "--min-time", "0", "--json", str(out)])
    assert result.exit_code == 0, result.output
    calibration = json.loads(out.read_text())["artifacts"][0]["board"]["calibration"]
    assert calibration["crossover"] and (remote / "kernel_profile.json").is_file()
    profile = (remote / "kernel_profile.json").read_text()
    opts = dep.DeployOptions(remote_dir=str(remote), ssh=SshOptions(ssh_config=str(cfg)))
    changed = dep.deploy_one("board", build_package(bundle, wheel=wheel, seed=3), opts)
    assert changed.status == "deployed", changed.error
    assert (remote / "kernel_profile.json").read_text() == profile


def test_hosts_file(tmp_path):
    path = tmp_path / "boards.txt"
    path.write_text("# lab\npi@a.local\n\n  b:2222  # spare\n")
    assert dep.read_hosts_file(str(path)) == ["pi@a.local", "b:2222"]
    with pytest.raises(dep.EdgepruneError, match="--hosts-file"):
        dep.read_hosts_file(str(tmp_path / "missing.txt"))


def test_remote_report_survives_a_hostile_board_reply():
    """What the board sends back is data: wrong types are dropped, never formatted or run."""
    from edgeprune.deploy.remote import remote_markdown, remote_summary

    host_row = {"artifact": "/h/model.npz", "backend": "edgeprune-auto", "batch": 1,
                "p50_us": 10.0, "p90_us": 11.0, "p99_us": 12.0}
    board = {"latency": [{**host_row, "p50_us": "__import__('os')"}, "junk", None],
             "startup": {"x": {"load_s": "1"}}, "peak_rss_bytes": "big",
             "measured_energy": [{"load_w": "9"}], "calibration": {"crossover": [{"batch": "x"}]}}
    results = {"host": "pi@b", "board": {"machine": "aarch64"}, "emulated": False,
               "labels": {"board": "board"},
               "artifacts": [{"name": "ae", "host": {"latency": [host_row]}, "board": board}]}
    text = remote_summary(results) + remote_markdown(results)
    assert "__import__" not in text and "energy: proxy only" in text


def test_silent_host_times_out_cleanly(bundle, wheel, tmp_path):
    """A port that accepts TCP but never speaks SSH: ConnectTimeout ends it with one line."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        result = CliRunner().invoke(main, ["deploy", str(bundle), "--wheel", str(wheel),
                                           "--host", f"127.0.0.1:{port}",
                                           "--connect-timeout", "1"])
    line = _one_error_line(result)
    assert "timed out after 1 s" in line


def test_deploy_onnx_verified_with_the_boards_onnxruntime(sshd, wheel, tmp_path):
    """--formats npz,onnx: the ONNX file is verified on the board by its ONNX Runtime (here the
    loopback "board" sees this run's onnxruntime)."""
    pytest.importorskip("onnxruntime")
    from edgeprune.exporters.onnx import export_onnx

    out = tmp_path / "ae"
    out.mkdir()
    net = make_autoencoder()
    save_bundle(net, out / "model.npz")
    export_onnx(net, out / "model.onnx")
    remote = tmp_path / "remote" / "ae"
    result = _deploy([str(out), "--wheel", str(wheel), "--formats", "npz,onnx",
                      "--remote-dir", str(remote)], sshd)
    assert result.exit_code == 0, result.output
    verify = json.loads((remote / "verify.json").read_text())
    assert {r["runtime"] for r in verify["artifacts"]} == {"edgeprune.runtime", "onnxruntime"}
    assert all(r["max_abs_diff"] <= 1e-5 for r in verify["artifacts"])


def test_identity_option(sshd, bundle, wheel, tmp_path):
    result = _deploy([str(bundle), "--wheel", str(wheel), "--dry-run", "--remote-dir",
                      str(tmp_path / "r" / "ae"), "--identity", str(sshd.client_key)], sshd,
                     key=sshd.root / "other_key")
    assert result.exit_code == 0 and "would deploy" in result.output
    missing = _deploy([str(bundle), "--wheel", str(wheel), "--identity",
                       str(tmp_path / "nokey")], sshd)
    assert "no such key file" in _one_error_line(missing)
