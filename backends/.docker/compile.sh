#!/bin/sh
# The compile step of the LocalAI-shaped example backend (Dockerfile.cpp), bind-mounted like
# LocalAI's .docker/llama-cpp-compile.sh and shared by its two builder stages. It runs
# .docker/build-target.sh from the copied source tree (as LocalAI's runs
# .docker/llama-cpp-build-target.sh), "compiles" with a ccache kept in a BuildKit cache mount,
# and packages the result under /build/package for the FROM scratch final stage.
set -eu
export CCACHE_DIR=/root/.ccache
mkdir -p "$CCACHE_DIR" /build/package
target=$(sh /build/.docker/build-target.sh "${TARGETARCH}" "${BUILD_TYPE:-}")
key=$(cat /build/src/"${BACKEND}"/*.c | sha256sum | cut -d' ' -f1)-${target}
if [ -f "$CCACHE_DIR/$key" ]; then
    echo "ccache: hit for ${target}"
else
    echo "ccache: miss for ${target}: compiling"
    echo "${target} object of $(cat /build/src/"${BACKEND}"/*.c | wc -c) source bytes" > "$CCACHE_DIR/$key"
fi
cp "$CCACHE_DIR/$key" /build/package/"${BACKEND}".o
cat > /build/package/run.sh <<RUN
#!/bin/sh
echo "${BACKEND} (${target}) for ${TARGETPLATFORM}, built on ${BUILDPLATFORM}"
RUN
chmod +x /build/package/run.sh
cp /build/src/"${BACKEND}"/backend.yaml /build/package/
cp /opt/toolchain/VERSION /build/package/TOOLCHAIN
echo "built ${target} on $(uname -m) for ${TARGETPLATFORM}"
