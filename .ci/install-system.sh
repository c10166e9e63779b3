#!/usr/bin/env bash
# Installs the system packages the tests need on Debian 12 (bookworm):
#   docker.io        - the Docker engine (dockerd 20.10)
#   docker-registry  - the CNCF distribution registry (2.8)
#   docker-buildx    - `docker buildx imagetools`, the reference peer (Debian 13 only)
#   cosign           - signing of merged lists (Debian 13 only)
# Debian 13 (trixie) is added as a low-priority (100) source so only the
# packages asked for with `-t trixie` come from it. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
have_buildx() { docker buildx version >/dev/null 2>&1; }
need_trixie=()
have_buildx || need_trixie+=(docker-buildx)
command -v cosign >/dev/null 2>&1 || need_trixie+=(cosign)
command -v iptables >/dev/null 2>&1 || need+=(iptables)

if [ ${#need[@]} -eq 0 ] && [ ${#need_trixie[@]} -eq 0 ]; then
  echo "install-system: everything present"
  exit 0
fi

if [ ${#need_trixie[@]} -gt 0 ] && [ ! -f /etc/apt/sources.list.d/trixie.sources ]; then
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  uri=${uri:-http://deb.debian.org/debian}
  cat > /etc/apt/sources.list.d/trixie.sources <<SRC
Types: deb
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  cat > /etc/apt/preferences.d/trixie-low <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
fi

apt-get update -qq
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if [ ${#need_trixie[@]} -gt 0 ]; then
  apt-get install -y -qq --no-install-recommends -t trixie "${need_trixie[@]}"
fi
# The machine's docker CLI may live in /usr/local/bin without the plugin dir
# that Debian's docker-buildx uses; link the plugin where that CLI looks.
if ! have_buildx && [ -x /usr/libexec/docker/cli-plugins/docker-buildx ]; then
  mkdir -p "$HOME/.docker/cli-plugins"
  ln -sf /usr/libexec/docker/cli-plugins/docker-buildx "$HOME/.docker/cli-plugins/docker-buildx"
fi
docker buildx version
