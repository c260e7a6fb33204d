"""The steps ``deploy`` runs on the board with the board's own ``python3`` (standard library only).

This file is not imported on the board: ``deploy`` sends its source over SSH as the program of
``python3 - STEP ARGS...`` (stdin), so nothing has to be installed there first. It must run on
any Python >= 3.7 and print exactly one JSON object on stdout; every failure is a JSON object
with ``"ok": false`` and a one-line ``"error"`` (exit status 1).

Steps:

* ``probe DIR``: what the board is (machine, model, OS, Python, numpy/scipy, free disk under
  DIR, whether it is emulated) and what is deployed in DIR (its manifest and verification);
  repairs an interrupted swap and removes stale staging directories.
* ``commit STAGING DIR TOLERANCE``: check every uploaded file against the manifest (sha256),
  create ``venv`` (``--system-site-packages``: the distribution's numpy/scipy serve), install the
  shipped wheels offline (``--no-index --no-deps``), run the verification with the deployed
  runtime, and only when it passes swap STAGING into DIR (the previous deployment is removed
  after the swap). Any failure removes STAGING and leaves DIR as it was.
* ``remove PATH``: remove a staging directory (after a failed upload).
"""

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time

MANIFEST = "manifest.json"
STALE_STAGING_S = 3600


def out(obj, status=0):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
    sys.exit(status)


def fail(message):
    out({"ok": False, "error": message.strip().splitlines()[0] if message.strip() else "failed"},
        1)


def read_text(path, limit=1 << 20):
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def read_json(path):
    text = read_text(path)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def version_of(module):
    """The installed version of a distribution package, without importing it (None: absent)."""
    code = ("import importlib, sys\n"
            "m = importlib.import_module(sys.argv[1])\n"
            "print(getattr(m, '__version__', '?'))\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code, module], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.decode().strip() or None if proc.returncode == 0 else None


def emulation():
    """(emulated, how we know): the board simulator's marker, or a CPU that is not the machine.

    Under qemu-user, ``uname -m`` says aarch64 but /proc/cpuinfo is the host's (x86 vendor
    fields), because qemu-user does not emulate /proc/cpuinfo for arm64 guests.
    """
    if os.path.exists("/etc/edgeprune-board-sim"):
        return True, "/etc/edgeprune-board-sim (edgeprune board simulator)"
    machine = platform.machine()
    cpuinfo = read_text("/proc/cpuinfo") or ""
    if machine in ("aarch64", "arm64", "armv7l", "armv6l") and (
            "GenuineIntel" in cpuinfo or "AuthenticAMD" in cpuinfo or "vendor_id" in cpuinfo):
        return True, f"uname -m is {machine} but /proc/cpuinfo describes an x86 CPU (qemu-user)"
    return False, "uname -m and /proc/cpuinfo agree"


def os_name():
    text = read_text("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def existing_parent(path):
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def clean(parent, name):
    """Repair an interrupted swap; remove staging/old directories of dead deploys."""
    live = os.path.join(parent, name)
    if not os.path.isdir(parent):
        return
    now = time.time()
    olds = []
    for entry in os.listdir(parent):
        path = os.path.join(parent, entry)
        if entry.startswith("." + name + ".old-"):
            olds.append(path)
        elif entry.startswith("." + name + ".staging-"):
            try:
                if now - os.stat(path).st_mtime > STALE_STAGING_S:
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
    if olds and not os.path.exists(live):  # crashed between the two renames: put it back
        os.rename(sorted(olds)[-1], live)
        olds = sorted(olds)[:-1]
    for path in olds:
        shutil.rmtree(path, ignore_errors=True)


def probe(directory):
    directory = os.path.abspath(os.path.expanduser(directory))
    parent, name = os.path.dirname(directory), os.path.basename(directory)
    clean(parent, name)
    model = read_text("/proc/device-tree/model")
    emulated, how = emulation()
    try:
        st = os.statvfs(existing_parent(directory))
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    out({
        "ok": True,
        "dir": directory,
        "machine": platform.machine(),
        "model": model.strip("\0\n ") if model else None,
        "os": os_name(),
        "python": platform.python_version(),
        "python_path": sys.executable,
        "numpy": version_of("numpy"),
        "scipy": version_of("scipy"),
        "free_bytes": free,
        "emulated": emulated,
        "emulated_how": how,
        "vcgencmd": shutil.which("vcgencmd") is not None,
        "manifest": read_json(os.path.join(directory, MANIFEST)),
        "verify": read_json(os.path.join(directory, "verify.json")),
        "kernel_profile": os.path.exists(os.path.join(directory, "kernel_profile.json")),
    })


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run(argv, what):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        text = proc.stdout.decode("utf-8", "replace").strip().splitlines()
        detail = [line for line in text if "rror" in line] or text or ["(no output)"]
        raise RuntimeError(what + " failed: " + detail[-1].strip())
    return proc.stdout.decode("utf-8", "replace")


def commit(staging, directory, tolerance):
    staging = os.path.abspath(os.path.expanduser(staging))
    directory = os.path.abspath(os.path.expanduser(directory))
    try:
        manifest = read_json(os.path.join(staging, MANIFEST))
        if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
            raise RuntimeError("upload incomplete: no manifest in the staging directory")
        for rel, entry in sorted(manifest["files"].items()):
            path = os.path.join(staging, rel)
            if not os.path.isfile(path) or os.path.getsize(path) != entry["bytes"] \
                    or sha256(path) != entry["sha256"]:
                raise RuntimeError("upload incomplete: " + rel + " is missing or damaged "
                                   "(sha256 differs)")
        venv = os.path.join(staging, "venv")
        run([sys.executable, "-m", "venv", "--system-site-packages", venv],
            "creating the venv (python3 -m venv; on Debian/Raspberry Pi OS: sudo apt install "
            "python3-venv)")
        python = os.path.join(venv, "bin", "python")
        wheels = [os.path.join(staging, rel) for rel in sorted(manifest["files"])
                  if rel.endswith(".whl")]
        run([python, "-m", "pip", "install", "--no-index", "--no-deps", "--quiet",
             "--disable-pip-version-check", "--no-cache-dir", *wheels], "pip install")
        profile = os.path.join(directory, "kernel_profile.json")
        if os.path.isfile(profile):  # the board's calibration outlives redeployments
            shutil.copy2(profile, os.path.join(staging, "kernel_profile.json"))
        text = run([python, "-m", "edgeprune.deploy.on_board", "verify", staging,
                    "--tolerance", str(tolerance)], "verification")
        verify = json.loads(text.strip().splitlines()[-1])
        if not verify.get("ok"):
            out({"ok": False, "verify": verify,
                 "error": "verification failed: " + verify.get("error", "outputs differ")}, 1)
        old = None
        if os.path.exists(directory):
            old = os.path.join(os.path.dirname(directory), "." + os.path.basename(directory)
                               + ".old-" + os.path.basename(staging).rsplit("-", 1)[-1])
            os.rename(directory, old)
        os.rename(staging, directory)
        if old:
            shutil.rmtree(old, ignore_errors=True)
        out({"ok": True, "dir": directory, "verify": verify})
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is one JSON line
        fail(str(exc) or type(exc).__name__)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)


def remove(path):
    path = os.path.abspath(os.path.expanduser(path))
    if ".staging-" in os.path.basename(path):
        shutil.rmtree(path, ignore_errors=True)
    out({"ok": True})


def main(argv):
    step = argv[0] if argv else ""
    try:
        if step == "probe":
            probe(argv[1])
        elif step == "commit":
            commit(argv[1], argv[2], float(argv[3]))
        elif step == "remove":
            remove(argv[1])
        else:
            fail("unknown step " + repr(step))
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001
        fail(type(exc).__name__ + ": " + str(exc))


if __name__ == "__main__":
    main(sys.argv[1:])
