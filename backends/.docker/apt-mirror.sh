#!/bin/sh
# Points an Ubuntu image's apt sources at another mirror (LocalAI's .docker/apt-mirror.sh does the
# same): bind-mounted by the example Dockerfiles with RUN --mount=type=bind and run with
# APT_MIRROR / APT_PORTS_MIRROR from the build args (`invoke build-backend --apt-mirror URL`).
# Both empty: nothing to do. A base image without apt sources (the offline ci-offline/ bases) is
# left alone.
set -e
if [ -z "${APT_MIRROR}" ] && [ -z "${APT_PORTS_MIRROR}" ]; then
    exit 0
fi
for f in /etc/apt/sources.list.d/ubuntu.sources /etc/apt/sources.list; do
    [ -f "$f" ] || continue
    if [ -n "${APT_MIRROR}" ]; then
        sed -i -E "s,https?://(archive\.ubuntu\.com|security\.ubuntu\.com),${APT_MIRROR},g" "$f"
    fi
    if [ -n "${APT_PORTS_MIRROR}" ]; then
        sed -i -E "s,https?://ports\.ubuntu\.com,${APT_PORTS_MIRROR},g" "$f"
    fi
done
mkdir -p /etc/apt
echo "APT_MIRROR='${APT_MIRROR}' APT_PORTS_MIRROR='${APT_PORTS_MIRROR}'" > /etc/apt/mirror.applied
echo "apt-mirror: APT_MIRROR='${APT_MIRROR}' APT_PORTS_MIRROR='${APT_PORTS_MIRROR}'"
