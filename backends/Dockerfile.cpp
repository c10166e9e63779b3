# LocalAI-shaped example backend (backends/matrix.yml: -cpu-tiny-cpp), modelled on LocalAI's
# backend/Dockerfile.llama-cpp: global BUILDER_BASE_IMAGE / BUILDER_TARGET args; a from-source and
# a prebuilt builder stage, of which BUILDER_TARGET picks one (builder-prebuilt when the matrix
# entry sets builder-base-image, as LocalAI's backend_build.yml derives it); bind-mounted
# apt-mirror and compile scripts; a ccache cache mount; heredoc RUN steps; TARGETARCH; a
# DEPS_REFRESH cache buster; a FROM scratch final stage. Context: backends/.
#
# One difference from LocalAI: the builder stages run on the build platform
# (--platform=$BUILDPLATFORM) and compile for TARGETARCH, so the arm64 leg builds on an amd64
# machine without QEMU. LocalAI builds each leg on a native runner instead; this tool builds both
# kinds (a target-platform stage's RUN steps run under QEMU when binfmt is registered).
ARG BASE_IMAGE=ci-offline/ubuntu:24.04
ARG BUILDER_BASE_IMAGE=${BASE_IMAGE}
ARG BUILDER_TARGET=builder-fromsource
ARG APT_MIRROR=""
ARG APT_PORTS_MIRROR=""

# ---- builder-fromsource: installs its toolchain, then compiles
FROM --platform=$BUILDPLATFORM ${BASE_IMAGE} AS builder-fromsource
ARG BACKEND=tiny-cpp
ARG BUILD_TYPE
ARG TARGETOS
ARG TARGETARCH
ARG TARGETPLATFORM
ARG BUILDPLATFORM
ARG APT_MIRROR
ARG APT_PORTS_MIRROR
ENV BUILD_TYPE=${BUILD_TYPE}

RUN --mount=type=bind,source=.docker/apt-mirror.sh,target=/usr/local/sbin/apt-mirror \
    APT_MIRROR="${APT_MIRROR}" APT_PORTS_MIRROR="${APT_PORTS_MIRROR}" sh /usr/local/sbin/apt-mirror

# the dependency layer: DEPS_REFRESH (the ISO week in CI) rebuilds it weekly, like LocalAI's
ARG DEPS_REFRESH=initial
RUN <<EOT bash
    set -e
    mkdir -p /opt/toolchain
    echo "from-source toolchain for ${TARGETOS}/${TARGETARCH} (deps ${DEPS_REFRESH})" > /opt/toolchain/VERSION
EOT

COPY . /build
RUN --mount=type=bind,source=.docker/compile.sh,target=/usr/local/sbin/compile.sh \
    --mount=type=cache,target=/root/.ccache,id=tiny-cpp-ccache-${TARGETARCH}-${BUILD_TYPE},sharing=locked \
    sh /usr/local/sbin/compile.sh

# ---- builder-prebuilt: the builder base image already has the toolchain
FROM --platform=$BUILDPLATFORM ${BUILDER_BASE_IMAGE} AS builder-prebuilt
ARG BACKEND=tiny-cpp
ARG BUILD_TYPE
ARG TARGETARCH
ARG TARGETPLATFORM
ARG BUILDPLATFORM
ARG BUILDER_BASE_IMAGE
ENV BUILD_TYPE=${BUILD_TYPE}
RUN <<EOT bash
    mkdir -p /opt/toolchain
    echo "prebuilt toolchain of ${BUILDER_BASE_IMAGE}" > /opt/toolchain/VERSION
EOT
COPY . /build
RUN --mount=type=bind,source=.docker/compile.sh,target=/usr/local/sbin/compile.sh \
    --mount=type=cache,target=/root/.ccache,id=tiny-cpp-ccache-${TARGETARCH}-${BUILD_TYPE},sharing=locked \
    sh /usr/local/sbin/compile.sh

# ---- the builder BUILDER_TARGET names (COPY --from takes no variables; LocalAI's alias trick)
FROM ${BUILDER_TARGET} AS builder

FROM scratch
COPY --from=builder /build/package/ /
