"""A real OpenSSH server on 127.0.0.1 for the deploy tests: its own host key, client key,
authorized_keys and config in a temporary directory; nothing in ~/.ssh is read or written.

The "board" it serves is this machine: ``/usr/bin/python3`` (no numpy) plays a board without
numpy; the same Python with ``PYTHONPATH`` naming this test run's site-packages (set for the SSH
sessions with sshd's ``SetEnv``) plays a board whose distribution ships numpy/scipy.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def why_not() -> str | None:
    """None when a loopback sshd can run here, else the reason (for pytest.skip)."""
    if not Path(SSHD).is_file() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "needs the OpenSSH server and client (apt-get install openssh-server openssh-client)"
    if not Path("/run/sshd").is_dir():
        if os.geteuid() != 0:
            return "sshd needs /run/sshd (create it as root)"
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    return None


@dataclass
class Sshd:
    root: Path
    port: int
    proc: subprocess.Popen
    host_pub: str

    @property
    def client_key(self) -> Path:
        return self.root / "client_key"

    def client_config(self, known_hosts: bool = True, key: Path | None = None,
                      port: int | None = None) -> Path:
        """An ssh_config naming this server as host ``board`` (known host key or not)."""
        kh = self.root / ("known_hosts" if known_hosts else "known_hosts.empty")
        if known_hosts:
            kh.write_text(f"[127.0.0.1]:{self.port} {self.host_pub}\n")
        else:
            kh.write_text("")
        path = self.root / f"config-{'known' if known_hosts else 'unknown'}-{port or self.port}"
        path.write_text(
            "Host board\n"
            "    HostName 127.0.0.1\n"
            f"    Port {port or self.port}\n"
            f"    User {os.environ.get('USER') or 'root'}\n"
            f"    IdentityFile {key or self.client_key}\n"
            "    IdentitiesOnly yes\n"
            f"    UserKnownHostsFile {kh}\n"
            "    GlobalKnownHostsFile /dev/null\n")
        return path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_sshd(root: Path) -> Sshd:
    root.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key", "other_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / name)],
                       check=True)
    (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
    os.chmod(root / "authorized_keys", 0o600)
    site = Path(np.__file__).resolve().parents[1]  # where this run's numpy/scipy live
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\n"
        "ListenAddress 127.0.0.1\n"
        f"HostKey {root / 'host_key'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\n"
        f"PidFile {root / 'sshd.pid'}\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n"
        "PermitRootLogin prohibit-password\n"
        "UseDNS no\n"
        f"SetEnv PYTHONPATH={site}\n")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL,
                            stderr=open(root / "sshd.log", "wb"))
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError("sshd exited: " + (root / "sshd.log").read_text()[-500:])
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    host_pub = " ".join((root / "host_key.pub").read_text().split()[:2])
    return Sshd(root, port, proc, host_pub)
