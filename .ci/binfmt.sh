#!/usr/bin/env bash
# Registers QEMU user emulation for arm64 in the kernel's binfmt_misc (what docker/setup-qemu-action
# does on GitHub), so BuildKit runs a linux/arm64 stage's RUN steps on an amd64 machine. Needs root
# and Debian's qemu-user-static (.ci/install-system.sh installs it). Idempotent; does nothing on an
# arm64 machine. Undo: echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64
set -euo pipefail
dir=/proc/sys/fs/binfmt_misc
[ "$(uname -m)" = aarch64 ] && { echo "binfmt: native arm64, nothing to register"; exit 0; }
if [ ! -e "$dir/register" ]; then
  mount -t binfmt_misc binfmt_misc "$dir" || { echo "binfmt: cannot mount $dir (needs root)" >&2; exit 1; }
fi
if [ -e "$dir/qemu-aarch64" ]; then
  echo "binfmt: qemu-aarch64 already registered ($(sed -n 2p "$dir/qemu-aarch64"))"
  exit 0
fi
conf=/usr/lib/binfmt.d/qemu-aarch64.conf
[ -r "$conf" ] || { echo "binfmt: $conf missing; apt-get install qemu-user-static" >&2; exit 1; }
grep -v '^#' "$conf" | grep . >"$dir/register"
echo "binfmt: registered qemu-aarch64 ($(sed -n 2p "$dir/qemu-aarch64"))"
