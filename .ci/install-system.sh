#!/usr/bin/env bash
# Installs the system packages the tests need on Debian 12 (bookworm):
#   docker.io        - the Docker engine, Debian 13's 26.x (BuildKit built in); on Debian 12
#                      `-t trixie docker.io` pulls only docker.io and docker-cli, bookworm's
#                      containerd and runc stay
#   docker-registry  - the CNCF distribution registry (2.8)
#   docker-buildx    - `docker buildx build` (the BuildKit builder) and `imagetools`, the
#                      reference peer (Debian 13)
#   cosign           - signing of merged lists (Debian 13)
#   golang-go        - the Go toolchain (Debian 13's 1.24): change detection's go.mod/go.sum rule asks
#                      it for module graphs (tests: against a file GOPROXY they write)
#   qemu-user-static - QEMU for arm64 RUN steps on amd64 (registered in binfmt_misc by .ci/run)
#   busybox-static   - the .deb files only (amd64 and arm64), for offline base images with a shell
#   python3-venv     - only when python3 is Debian's externally-managed one without ensurepip
# Debian 13 (trixie) is added as a low-priority (100) source so only the packages asked for
# with `-t trixie` come from it. Idempotent.
#
#   bash .ci/install-system.sh [DEB_DIR]   # DEB_DIR (default: ci/baseimage.py's busybox directory,
#                                          # ~/.cache/localai-ci/busybox) receives busybox-static_*_{amd64,arm64}.deb
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
deb_dir=${1:-${CI_BUSYBOX_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/localai-ci/busybox}}

apt_run() {
  # apt needs root; use sudo when it is there, else say what to do
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else echo "install-system: run as root (or install: ${need[*]} ${need_trixie[*]})" >&2; exit 1
  fi
}

engine_major() { dockerd --version 2>/dev/null | sed -nE 's/^Docker version ([0-9]+).*/\1/p'; }
need=()
need_trixie=()
# BuildKit with heredocs and the containerd image store need Engine >= 25; Debian 12's is 20.10
if ! command -v dockerd >/dev/null 2>&1 || [ "$(engine_major)" -lt 25 ]; then need_trixie+=(docker.io); fi
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
have_buildx() { docker buildx version >/dev/null 2>&1; }
have_buildx || need_trixie+=(docker-buildx)
command -v cosign >/dev/null 2>&1 || need_trixie+=(cosign)
command -v go >/dev/null 2>&1 || need_trixie+=(golang-go)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
[ -e /usr/bin/qemu-aarch64-static ] || need+=(qemu-user-static)
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  need+=(python3-venv python3-pip)
fi
need_debs=0
if [ -n "$deb_dir" ]; then
  for arch in amd64 arm64; do
    compgen -G "$deb_dir/busybox-static_*_$arch.deb" >/dev/null || need_debs=1
  done
fi

if [ ${#need[@]} -eq 0 ] && [ ${#need_trixie[@]} -eq 0 ] && [ "$need_debs" -eq 0 ]; then
  echo "install-system: everything present"
  exit 0
fi

if [ ${#need_trixie[@]} -gt 0 ] && [ ! -f /etc/apt/sources.list.d/trixie.sources ]; then
  # reuse the machine's Debian mirror (deb822 sources, else the one-line sources.list)
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; exit}}' \
      /etc/apt/sources.list 2>/dev/null || true)
  fi
  uri=${uri:-http://deb.debian.org/debian}
  apt_run tee /etc/apt/sources.list.d/trixie.sources >/dev/null <<SRC
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt_run tee /etc/apt/preferences.d/trixie-low >/dev/null <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
fi
if [ "$need_debs" -eq 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  apt_run dpkg --add-architecture arm64  # only to download busybox-static:arm64; nothing is installed
fi

echo "install-system: installing ${need[*]} ${need_trixie[*]+(trixie: ${need_trixie[*]})}"
apt_run apt-get update -qq
if [ ${#need[@]} -gt 0 ]; then
  apt_run apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ ${#need_trixie[@]} -gt 0 ]; then
  apt_run apt-get install -y -qq --no-install-recommends -t trixie "${need_trixie[@]}"
fi
if [ "$need_debs" -eq 1 ]; then
  mkdir -p "$deb_dir"
  (cd "$deb_dir" && apt-get download -qq busybox-static:amd64 busybox-static:arm64)
  ls "$deb_dir"
fi
# The machine's docker CLI may live in /usr/local/bin without the plugin dir
# that Debian's docker-buildx uses; link the plugin where that CLI looks.
if ! have_buildx && [ -x /usr/libexec/docker/cli-plugins/docker-buildx ]; then
  mkdir -p "$HOME/.docker/cli-plugins"
  ln -sf /usr/libexec/docker/cli-plugins/docker-buildx "$HOME/.docker/cli-plugins/docker-buildx"
fi
docker buildx version
dockerd --version
