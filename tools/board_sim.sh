#!/usr/bin/env bash
# The emulated board: a Debian 12 (bookworm) arm64 userland -- the base of Raspberry Pi OS
# 64-bit -- run under qemu-user (binfmt_misc), serving a real OpenSSH server on 127.0.0.1.
# Correctness only: timings under qemu-user are not device timings.
#
#   tools/board_sim.sh build   build the userland once and cache it (about 15 min), or reuse it
#   tools/board_sim.sh start   build if needed, start sshd, print the --host to use
#   tools/board_sim.sh stop    stop sshd and unmount what start mounted
#   tools/board_sim.sh check   exit 0 when this machine can run the board (else say why, exit 3)
#
# Needs root (debootstrap, chroot, mounts) and the Debian archive. The cache lives outside the
# clone: $EDGEPRUNE_BOARD_SIM_CACHE (default /var/cache/edgeprune/board-sim). The port is
# $EDGEPRUNE_BOARD_SIM_PORT (default 2222). Everything the client needs (key, known_hosts,
# ssh_config) is written into the cache, so ~/.ssh is never touched.
set -euo pipefail

CACHE=${EDGEPRUNE_BOARD_SIM_CACHE:-/var/cache/edgeprune/board-sim}
PORT=${EDGEPRUNE_BOARD_SIM_PORT:-2222}
MIRROR=${EDGEPRUNE_BOARD_SIM_MIRROR:-http://deb.debian.org/debian}
ROOTFS=$CACHE/rootfs
DONE=$ROOTFS/.edgeprune-complete
RUN=$CACHE/run-$PORT
PACKAGES=python3,python3-numpy,python3-scipy,python3-click,python3-venv,openssh-server
HOSTNAME_ALIAS=edgeprune-board-sim

say() { echo "board-sim: $*" >&2; }
die() { say "$*"; exit "${2:-1}"; }

check() {
    [ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mounts); run it as root" 3
    [ "$(uname -s)" = Linux ] || die "needs Linux (binfmt_misc)" 3
    if [ "$(uname -m)" != aarch64 ]; then
        if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
            mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
                || die "binfmt_misc is not available (cannot mount it: a container without it?)" 3
        fi
    fi
}

install_tools() {
    local need=()
    command -v debootstrap >/dev/null || need+=(debootstrap)
    command -v ssh >/dev/null || need+=(openssh-client)
    command -v ssh-keygen >/dev/null || need+=(openssh-client)
    if [ "$(uname -m)" != aarch64 ]; then
        [ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] || [ -e /usr/bin/qemu-aarch64-static ] \
            || need+=(qemu-user-static)
        command -v update-binfmts >/dev/null || need+=(binfmt-support)
    fi
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]} (apt-get)"
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
    fi
    if [ "$(uname -m)" != aarch64 ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
        [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
            || die "cannot register qemu-aarch64 with binfmt_misc (update-binfmts --enable qemu-aarch64 failed)" 3
    fi
}

build() {
    check
    mkdir -p "$CACHE"
    exec 9>"$CACHE/build.lock"
    flock 9  # one build at a time; a second caller waits, then reuses it
    if [ -e "$DONE" ]; then
        return 0
    fi
    install_tools
    local started=$SECONDS
    say "building the arm64 bookworm userland in $ROOTFS (first time only; about 15 min)"
    rm -rf "$ROOTFS.partial"
    debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" bookworm \
        "$ROOTFS.partial" "$MIRROR" >"$CACHE/build.log" 2>&1 \
        || die "debootstrap failed; see $CACHE/build.log"
    rm -rf "$ROOTFS"
    mv "$ROOTFS.partial" "$ROOTFS"
    finish_rootfs
    echo "$((SECONDS - started))" >"$CACHE/build-seconds"
    say "built in $((SECONDS - started)) s"
}

finish_rootfs() {
    # host keys, the client's key, the marker that says "emulated"; idempotent
    chroot "$ROOTFS" /usr/bin/ssh-keygen -A >/dev/null
    [ -e "$CACHE/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C edgeprune-board-sim \
        -f "$CACHE/client_key"
    mkdir -p "$ROOTFS/root/.ssh"
    chmod 700 "$ROOTFS/root/.ssh"
    cp "$CACHE/client_key.pub" "$ROOTFS/root/.ssh/authorized_keys"
    chmod 600 "$ROOTFS/root/.ssh/authorized_keys"
    echo "edgeprune board simulator: Debian arm64 userland under qemu-user; timings are not device timings" \
        >"$ROOTFS/etc/edgeprune-board-sim"
    touch "$DONE"
}

is_mounted() { mountpoint -q "$1"; }

start() {
    build
    install_tools
    [ -e "$ROOTFS/etc/edgeprune-board-sim" ] || finish_rootfs
    mkdir -p "$RUN"
    if [ -e "$RUN/sshd.pid" ] && kill -0 "$(cat "$RUN/sshd.pid")" 2>/dev/null; then
        say "already running on port $PORT"
    else
        for fs in proc sys dev dev/pts; do
            is_mounted "$ROOTFS/$fs" || mount --bind "/$fs" "$ROOTFS/$fs"
        done
        mkdir -p "$ROOTFS/run/sshd"
        chroot "$ROOTFS" /usr/sbin/sshd -p "$PORT" -o ListenAddress=127.0.0.1 \
            -o PidFile="/run/sshd-$PORT.pid" -o PasswordAuthentication=no \
            -o KbdInteractiveAuthentication=no -o PermitRootLogin=prohibit-password \
            -o UseDNS=no
        local i
        for i in $(seq 1 600); do  # sshd under qemu takes a few seconds to write its pid
            [ -s "$ROOTFS/run/sshd-$PORT.pid" ] && break
            sleep 0.1
        done
        [ -s "$ROOTFS/run/sshd-$PORT.pid" ] || die "sshd did not start on 127.0.0.1:$PORT"
        cp "$ROOTFS/run/sshd-$PORT.pid" "$RUN/sshd.pid"
    fi
    {
        for key in "$ROOTFS"/etc/ssh/ssh_host_*_key.pub; do
            echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$key")"
        done
    } >"$RUN/known_hosts"
    cat >"$RUN/ssh_config" <<EOF
Host $HOSTNAME_ALIAS
    HostName 127.0.0.1
    Port $PORT
    User root
    IdentityFile $CACHE/client_key
    IdentitiesOnly yes
    UserKnownHostsFile $RUN/known_hosts
    StrictHostKeyChecking yes
EOF
    say "running: Debian 12 arm64 under qemu-user, sshd on 127.0.0.1:$PORT (emulated: correctness only, not timings)"
    echo "--host $HOSTNAME_ALIAS --ssh-config $RUN/ssh_config"
}

stop() {
    if [ -e "$RUN/sshd.pid" ]; then
        kill "$(cat "$RUN/sshd.pid")" 2>/dev/null || true
    fi
    rm -rf "$RUN"
    # unmount only when no other simulated sshd still runs from this userland
    local other
    other=$(ls "$CACHE"/run-*/sshd.pid 2>/dev/null | head -n1 || true)
    if [ -z "$other" ] && [ -d "$ROOTFS" ]; then
        for fs in dev/pts dev sys proc; do
            is_mounted "$ROOTFS/$fs" && umount -l "$ROOTFS/$fs"
        done
    fi
    say "stopped (port $PORT)"
}

case "${1:-}" in
    build) build ;;
    start) start ;;
    stop) stop ;;
    check) check ;;
    *) echo "usage: $0 build|start|stop|check" >&2; exit 2 ;;
esac
