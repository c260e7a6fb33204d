"""``edgeprune deploy``: probe each board, upload to a staging directory, verify there, swap in.

Per board (boards run in parallel threads, each with its own ``ssh`` processes):

1. **probe** (:mod:`.remote_steps` ``probe``, the board's ``python3``): machine, model, OS,
   Python, numpy/scipy, free disk, emulated or not, and the manifest of what is deployed. No
   numpy/scipy, an old Python or too little disk: one error naming the fix, nothing copied.
   The same sha256 for every file as the deployed manifest, verified: a no-op that says so.
2. **upload**: one tar stream over ``ssh`` into ``.NAME.staging-XXXX`` beside the deployment.
3. **commit** (``commit``): sha256 of every file against the manifest, venv, offline pip
   install, verification on the board against the host's outputs, then the swap. Any failure
   (including an interrupted upload) removes the staging directory; the previous deployment is
   untouched. A verification that fails is a failed deploy.

Every byte the board sends back is untrusted: it is parsed as JSON of bounded size, and only
numbers and short strings from it are shown.
"""

from __future__ import annotations

import json
import posixpath
import secrets
import shlex
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from edgeprune.deploy.package import Package
from edgeprune.deploy.ssh import SshError, SshOptions, Target, parse_target, run_ssh
from edgeprune.errors import EdgepruneError, first_line

__all__ = ["DeployOptions", "DeployResult", "deploy", "deploy_one", "probe", "remote_dir_for"]

MIN_PYTHON = (3, 9)
VENV_BYTES = 40 * 1024 * 1024  # venv + pip + the installed wheel, with room to spare
MAX_REPLY = 4 * 1024 * 1024
NUMPY_FIX = "sudo apt install python3-numpy python3-scipy"


@dataclass
class DeployOptions:
    remote_dir: str | None = None  # default ~/edgeprune/<name>
    python: str = "python3"
    dry_run: bool = False
    ssh: SshOptions = field(default_factory=SshOptions)
    tolerance: float = 1e-5
    timeout: float = 1800  # seconds per remote step (a venv under qemu takes minutes)


@dataclass
class DeployResult:
    """One row per board."""

    host: str
    status: str  # deployed | unchanged | would deploy | failed
    dir: str | None = None
    board: dict[str, Any] | None = None
    max_abs_diff: float | None = None
    seconds: float = 0.0
    error: str | None = None
    verify: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def remote_dir_for(name: str, remote_dir: str | None) -> str:
    return remote_dir or f"~/edgeprune/{name}"


def _script() -> bytes:
    return resources.files("edgeprune.deploy").joinpath("remote_steps.py").read_bytes()


def _reply(target: Target, proc, step: str) -> dict[str, Any]:
    """The JSON line a remote step printed (its last stdout line), as untrusted data."""
    text = proc.stdout[-MAX_REPLY:].decode("utf-8", "replace").strip()
    try:
        reply = json.loads(text.splitlines()[-1]) if text else None
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        err = proc.stderr.decode("utf-8", "replace").strip()
        if proc.returncode == 127 or "not found" in err:
            raise EdgepruneError(f"{target}: {err.splitlines()[-1] if err else 'not found'}; "
                                 "install Python 3 on the board (sudo apt install python3) or "
                                 "pass --python PATH")
        raise EdgepruneError(f"{target}: {step} on the board failed: "
                             f"{first_line(err) if err else 'no reply'}")
    return reply


def _python_step(target: Target, opts: DeployOptions, args: Sequence[str],
                 timeout: float) -> tuple[Any, dict[str, Any]]:
    command = " ".join(shlex.quote(a) for a in [opts.python, "-", *args])
    proc = run_ssh(target, opts.ssh, command, stdin=_script(), timeout=timeout)
    return proc, _reply(target, proc, args[0])


def probe(target: Target, opts: DeployOptions, remote_dir: str) -> dict[str, Any]:
    """What the board is and what is deployed in ``remote_dir`` (see :mod:`.remote_steps`)."""
    _, reply = _python_step(target, opts, ["probe", remote_dir], timeout=opts.timeout)
    if not reply.get("ok"):
        raise EdgepruneError(f"{target}: probe failed: {reply.get('error')}")
    return reply


def describe_board(board: dict[str, Any]) -> str:
    parts = [str(board.get("model") or board.get("machine")), str(board.get("os")),
             f"Python {board.get('python')}", f"numpy {board.get('numpy')}",
             f"scipy {board.get('scipy')}"]
    if board.get("free_bytes") is not None:
        parts.append(f"{board['free_bytes'] / 1024**3:.1f} GB free")
    if board.get("emulated"):
        parts.append("EMULATED (qemu: correctness only, no timings)")
    return ", ".join(parts)


def check_board(target: Target, board: dict[str, Any], need_bytes: int) -> None:
    missing = [m for m in ("numpy", "scipy") if not board.get(m)]
    if missing:
        raise EdgepruneError(f"{target}: {' and '.join(missing)} not installed for "
                             f"{board.get('python_path') or 'python3'} on the board; install "
                             f"them there with: {NUMPY_FIX}")
    version = tuple(int(p) for p in str(board.get("python", "0.0")).split(".")[:2]
                    if p.isdigit())
    if version < MIN_PYTHON:
        raise EdgepruneError(f"{target}: Python {board.get('python')} on the board; the runtime "
                             f"needs >= {'.'.join(map(str, MIN_PYTHON))} (Raspberry Pi OS "
                             "bookworm has 3.11)")
    free = board.get("free_bytes")
    if isinstance(free, int) and free < need_bytes:
        raise EdgepruneError(f"{target}: only {free / 1024**2:.0f} MiB free under "
                             f"{board.get('dir')}; the deployment needs about "
                             f"{need_bytes / 1024**2:.0f} MiB: free some space or pass "
                             "--remote-dir on a larger disk")


def _same(package: Package, board: dict[str, Any]) -> bool:
    deployed, verified = board.get("manifest"), board.get("verify")
    return (isinstance(deployed, dict) and deployed.get("files") == package.manifest["files"]
            and isinstance(verified, dict) and verified.get("ok") is True)


def _max_diff(verify: dict[str, Any] | None) -> float | None:
    rows = (verify or {}).get("artifacts") or []
    diffs = [r.get("max_abs_diff") for r in rows if isinstance(r, dict)]
    diffs = [d for d in diffs if isinstance(d, (int, float))]
    return max(diffs) if diffs else None


def upload(target: Target, opts: DeployOptions, package: Package, staging: str) -> None:
    """One tar stream into ``staging`` (created fresh); a failure removes it."""
    q = shlex.quote(staging)
    command = f"mkdir -p -- {q} && tar -xf - -C {q}"
    try:
        proc = run_ssh(target, opts.ssh, command, stdin=package.tar(), timeout=opts.timeout)
    except (KeyboardInterrupt, EdgepruneError):  # Ctrl-C or a dropped connection mid-upload
        _cleanup(target, opts, staging)
        raise
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        _cleanup(target, opts, staging)
        if "No space left" in err:
            raise EdgepruneError(f"{target}: disk full while uploading to {staging}; free some "
                                 "space on the board or pass --remote-dir on a larger disk; "
                                 "the previous deployment is untouched")
        raise EdgepruneError(f"{target}: upload failed: {first_line(err) or 'tar failed'}; "
                             "the previous deployment is untouched")


def _cleanup(target: Target, opts: DeployOptions, staging: str) -> None:
    try:
        _python_step(target, opts, ["remove", staging], timeout=120)
    except EdgepruneError:
        pass  # the next probe removes stale staging directories


def commit(target: Target, opts: DeployOptions, staging: str, live: str) -> dict[str, Any]:
    _, reply = _python_step(target, opts, ["commit", staging, live, repr(opts.tolerance)],
                            timeout=opts.timeout)
    if not reply.get("ok"):
        raise EdgepruneError(f"{target}: {reply.get('error')}; nothing deployed, the previous "
                             "deployment is untouched")
    return reply


def deploy_one(target: Target | str, package: Package, opts: DeployOptions,
               say: Callable[[str], None] | None = None) -> DeployResult:
    """Deploy ``package`` to one board; every failure becomes a ``failed`` row (never raises)."""
    target = parse_target(target) if isinstance(target, str) else target
    say = say or (lambda _m: None)
    start = time.monotonic()
    result = DeployResult(str(target), "failed")
    try:
        board = probe(target, opts, remote_dir_for(package.name, opts.remote_dir))
        result.board, result.dir = board, board.get("dir")
        say(f"{target}: {describe_board(board)}")
        check_board(target, board, package.bytes * 2 + VENV_BYTES)
        if _same(package, board):
            result.status, result.verify = "unchanged", board.get("verify")
            result.max_abs_diff = _max_diff(result.verify)
        elif opts.dry_run:
            result.status = "would deploy"
        else:
            live = board["dir"]
            if not isinstance(live, str) or not posixpath.isabs(live):
                raise EdgepruneError(f"{target}: the board answered a bad directory {live!r}")
            staging = posixpath.join(posixpath.dirname(live), f".{posixpath.basename(live)}"
                                     f".staging-{secrets.token_hex(4)}")
            say(f"{target}: uploading {len(package.files)} files "
                f"({package.bytes / 1024:.0f} KiB) to {staging}")
            upload(target, opts, package, staging)
            say(f"{target}: installing and verifying on the board")
            reply = commit(target, opts, staging, live)
            result.status, result.verify = "deployed", reply.get("verify")
            result.max_abs_diff = _max_diff(result.verify)
    except (EdgepruneError, SshError) as exc:
        result.error = first_line(exc)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - one board's bug must not stop the others
        result.error = f"{target}: unexpected {type(exc).__name__}: {first_line(exc)}"
    result.seconds = time.monotonic() - start
    return result


def deploy(hosts: Sequence[str], package: Package, opts: DeployOptions,
           say: Callable[[str], None] | None = None) -> list[DeployResult]:
    """Deploy to every host in parallel; one result per host, in the order given."""
    targets = [parse_target(h) for h in hosts]  # bad --host values fail before any connection
    if not targets:
        raise EdgepruneError("give at least one --host (or --hosts-file)")
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        return list(pool.map(lambda t: deploy_one(t, package, opts, say), targets))


def read_hosts_file(path: str) -> list[str]:
    """One ``[user@]host[:port]`` per line; blank lines and ``#`` comments ignored."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise EdgepruneError(f"--hosts-file {path}: {exc.strerror or exc}") from None
    return [line.split("#", 1)[0].strip() for line in text.splitlines()
            if line.split("#", 1)[0].strip()]


def result_table(results: Sequence[DeployResult]) -> str:
    width = max([4, *(len(r.host) for r in results)])
    lines = [f"{'host':<{width}}  {'status':<12} {'max |diff|':>10} {'seconds':>8}  detail"]
    for r in results:
        diff = f"{r.max_abs_diff:.1e}" if r.max_abs_diff is not None else "-"
        detail = r.error if r.error else (r.dir or "")
        if r.status == "unchanged":
            detail += ": already deployed (same sha256 for every file), nothing copied"
        if r.ok and r.board and r.board.get("emulated"):
            detail += " (emulated board)"
        lines.append(f"{r.host:<{width}}  {r.status:<12} {diff:>10} {r.seconds:>8.1f}  {detail}")
    return "\n".join(lines)
