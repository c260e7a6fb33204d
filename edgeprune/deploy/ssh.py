"""Reaching a board: the system OpenSSH client, run as a subprocess (standard library only).

Why the system client and not a Python SSH library: it already honours everything a user has
set up -- ``~/.ssh/config`` (aliases, ``ProxyJump``, per-host keys), the agent, hardware keys,
``known_hosts`` -- and it is the client the user's own ``ssh pi@raspberrypi`` runs, so what
works in their shell works here. Every call adds ``BatchMode=yes`` (never a password or
passphrase prompt: a secret is never typed into, or passed through, this program),
``StrictHostKeyChecking=yes`` (an unknown host is refused; ``accept_new_host_key`` switches to
``accept-new``, never to ``no``) and ``ConnectTimeout``. Nothing secret is in argv: only the
host, port, user and key *path*. ssh's own failures (exit 255) are turned into one-line
:class:`SshError` s that name the host and the fix.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgeprune.errors import EdgepruneError

__all__ = ["SshError", "SshOptions", "Target", "parse_target", "run_ssh", "ssh_argv"]

_HOST_RE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])"
                      r"(?::(?P<port>[0-9]{1,5}))?$")


class SshError(EdgepruneError):
    """The board could not be reached or refused us; the message names the host and the fix."""


@dataclass(frozen=True)
class Target:
    """``[user@]host[:port]`` as the user wrote it (host may be an alias of ~/.ssh/config)."""

    host: str
    user: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        return (f"{self.user}@" if self.user else "") + self.host + (
            f":{self.port}" if self.port else "")


def parse_target(text: str) -> Target:
    """``pi@raspberrypi.local:2222`` -> Target; anything else is a one-line error."""
    match = _HOST_RE.match(text.strip())
    if not match or text.strip().startswith("-"):
        raise EdgepruneError(f"--host {text!r}: expected [user@]host[:port], e.g. pi@raspberrypi.local")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise EdgepruneError(f"--host {text!r}: port must be 1-65535")
    return Target(match.group("host").strip("[]"), match.group("user"),
                  int(port) if port else None)


@dataclass(frozen=True)
class SshOptions:
    """How to call ``ssh``; the defaults are the safe ones."""

    identity: str | None = None
    ssh_config: str | None = None
    accept_new_host_key: bool = False
    connect_timeout: int = 10
    extra: tuple[str, ...] = field(default_factory=tuple)


def ssh_argv(target: Target, opts: SshOptions, command: str) -> list[str]:
    """The ``ssh`` command line for ``command`` on ``target`` (no secret in it)."""
    argv = ["ssh"]
    if opts.ssh_config:
        argv += ["-F", opts.ssh_config]
    argv += ["-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=" + ("accept-new" if opts.accept_new_host_key else "yes"),
             "-o", f"ConnectTimeout={int(opts.connect_timeout)}",
             "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4",
             "-o", "LogLevel=ERROR"]
    if opts.identity:
        argv += ["-i", opts.identity, "-o", "IdentitiesOnly=yes"]
    if target.port:
        argv += ["-p", str(target.port)]
    if target.user:
        argv += ["-l", target.user]
    argv += [*opts.extra, "--", target.host, command]
    return argv


def _ssh_failure(target: Target, opts: SshOptions, stderr: str) -> SshError:
    """ssh exited 255: say what went wrong and how to fix it, in one line."""
    text = stderr.strip()
    port = target.port or 22
    if "Host key verification failed" in text or "No ED25519 host key is known" in text \
            or "host key for" in text.lower() and "not known" in text.lower():
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Offending" in text:
            return SshError(f"{target}: the host key has CHANGED since you last connected; "
                            "if the board was reinstalled, remove the old key with "
                            f"`ssh-keygen -R {target.host}`, else do not connect")
        return SshError(f"{target}: unknown host key; check its fingerprint and trust it with "
                        f"`ssh-keyscan -p {port} {target.host} >> ~/.ssh/known_hosts` "
                        "(or pass --accept-new-host-key)")
    if "Connection refused" in text:
        return SshError(f"{target}: connection refused on port {port}; is sshd running there "
                        "(sudo systemctl enable --now ssh) and is the port right?")
    if "Permission denied" in text or "Too many authentication failures" in text:
        return SshError(f"{target}: authentication failed; load your key into ssh-agent "
                        "(ssh-add) or pass --identity KEY, and check the user name "
                        "(user@host)")
    if "timed out" in text:
        return SshError(f"{target}: connection timed out after {opts.connect_timeout} s; is "
                        "the board on and reachable (ping it)?")
    if "Could not resolve hostname" in text or "Name or service not known" in text:
        return SshError(f"{target}: unknown host name; check the name or use its IP address")
    if "Identity file" in text and "not accessible" in text:
        return SshError(f"{target}: --identity {opts.identity}: no such key file")
    last = text.splitlines()[-1] if text else "ssh exited with status 255"
    return SshError(f"{target}: ssh failed: {last}")


def run_ssh(target: Target, opts: SshOptions, command: str, *, stdin: bytes | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``command`` on the board; ssh's own failures raise :class:`SshError`.

    The remote command's exit status is returned, not raised: the caller knows what it means.
    """
    argv = ssh_argv(target, opts, command)
    if opts.identity and not Path(opts.identity).is_file():
        raise SshError(f"--identity {opts.identity}: no such key file")
    try:
        proc = subprocess.run(argv, input=stdin if stdin is not None else b"",
                              capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SshError("the OpenSSH client `ssh` is not installed; install it "
                       "(sudo apt install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise SshError(f"{target}: no answer within {timeout:.0f} s; the board is too slow "
                       "or the connection hangs") from None
    if proc.returncode == 255:
        raise _ssh_failure(target, opts, proc.stderr.decode("utf-8", "replace"))
    return proc
