"""A small LocalAI-shaped repository for change-detection tests (not a test module).

The layout, Dockerfiles, scripts and Makefiles follow LocalAI's (commit 82c191af, 2026-08):
``backend/Dockerfile.python`` copies narrow paths; ``Dockerfile.golang``, ``.llama-cpp``,
``.turboquant``, ``.rust`` and ``.audio-cpp`` copy the whole repository into a builder stage
and ship only its ``package/``; ``.docker/llama-cpp-compile.sh`` is bind-mounted and runs
``.docker/llama-cpp-build-target.sh``; the Go backends build in the root module and import
``pkg/...``; ``make protogen-go`` writes ``pkg/grpc/proto`` from ``backend/backend.proto``.
The matrix holds LocalAI's filter-test entries (``backend-filter_test.mjs``) in this
project's format, plus a few more legs. :class:`Repo` makes it a real git repository and
runs the real selection against a base commit.
"""
from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
           "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}

PROTO = """syntax = "proto3";

package backend;

service Backend {
  rpc Health(HealthMessage) returns (Reply) {}
  rpc Predict(PredictOptions) returns (Reply) {}
}

message HealthMessage {}

message PredictOptions {
  string Prompt = 1;
  int32 Tokens = 2;
  bool UseTokenizerTemplate = 3;
}

message Reply {
  bytes message = 1;
}
"""

_PYTHON_DF = """ARG BASE_IMAGE=ubuntu:24.04
ARG APT_MIRROR=""

FROM ${BASE_IMAGE} AS builder
ARG BACKEND=rerankers
ARG BUILD_TYPE
ENV BUILD_TYPE=${BUILD_TYPE}
ARG APT_MIRROR
RUN --mount=type=bind,source=.docker/apt-mirror.sh,target=/usr/local/sbin/apt-mirror \\
    APT_MIRROR="${APT_MIRROR}" sh /usr/local/sbin/apt-mirror && apt-get update
COPY backend/python/${BACKEND} /${BACKEND}
COPY backend/backend.proto /${BACKEND}/backend.proto
COPY backend/python/common/ /${BACKEND}/common
COPY scripts/build/package-gpu-libs.sh /package-gpu-libs.sh
ARG DEPS_REFRESH=initial
RUN cd /${BACKEND} && PORTABLE_PYTHON=true make
RUN mkdir -p /${BACKEND}/lib && bash /package-gpu-libs.sh "/${BACKEND}/lib"

FROM scratch
ARG BACKEND=rerankers
COPY --from=builder /${BACKEND}/ /
"""

_GOLANG_DF = """ARG BASE_IMAGE=ubuntu:24.04
ARG APT_MIRROR=""

FROM ${BASE_IMAGE} AS builder
ARG BACKEND=rerankers
ARG BUILD_TYPE
ARG AMDGPU_TARGETS
ARG TARGETARCH
ARG APT_MIRROR
RUN --mount=type=bind,source=.docker/apt-mirror.sh,target=/usr/local/sbin/apt-mirror \\
    sh /usr/local/sbin/apt-mirror && apt-get update
RUN <<EOT bash
    if [ "${BUILD_TYPE}" = "hipblas" ]; then
        echo "ROCm for ${AMDGPU_TARGETS}"
    fi
EOT
COPY backend/go/${BACKEND}/ /LocalAI/backend/go/${BACKEND}/
RUN cd /LocalAI/backend/go/${BACKEND} && if make -n engine >/dev/null 2>&1; then make engine; fi
COPY . /LocalAI
RUN cd /LocalAI && make protogen-go && make -C /LocalAI/backend/go/${BACKEND} build

FROM scratch
ARG BACKEND=rerankers
COPY --from=builder /LocalAI/backend/go/${BACKEND}/package/. ./
"""

_LLAMA_DF = """ARG BASE_IMAGE=ubuntu:24.04
ARG BUILDER_BASE_IMAGE=${BASE_IMAGE}
ARG BUILDER_TARGET=builder-fromsource
ARG APT_MIRROR=""

FROM ${BASE_IMAGE} AS builder-fromsource
ARG BUILD_TYPE
ARG TARGETARCH
ARG AMDGPU_TARGETS
RUN --mount=type=bind,source=.docker/install-base-deps.sh,target=/usr/local/sbin/install-base-deps \\
    --mount=type=bind,source=.docker/apt-mirror.sh,target=/usr/local/sbin/apt-mirror \\
    bash /usr/local/sbin/install-base-deps
COPY . /LocalAI
RUN --mount=type=bind,source=.docker/{kind}-compile.sh,target=/usr/local/sbin/compile.sh \\
    --mount=type=cache,target=/root/.ccache,id={kind}-ccache-${TARGETARCH}-${BUILD_TYPE},sharing=locked \\
    bash /usr/local/sbin/compile.sh
RUN make -BC /LocalAI/backend/cpp/{kind} package

FROM ${BUILDER_BASE_IMAGE} AS builder-prebuilt
ARG BUILD_TYPE
ARG TARGETARCH
RUN cp -a /opt/grpc/. /usr/local/
COPY . /LocalAI
RUN --mount=type=bind,source=.docker/{kind}-compile.sh,target=/usr/local/sbin/compile.sh \\
    bash /usr/local/sbin/compile.sh
RUN make -BC /LocalAI/backend/cpp/{kind} package

FROM ${BUILDER_TARGET} AS builder

FROM scratch
COPY --from=builder /LocalAI/backend/cpp/{kind}/package/. ./
"""

_RUST_DF = """ARG BASE_IMAGE=ubuntu:24.04
FROM ${BASE_IMAGE} AS builder
ARG BACKEND=kokoros
RUN --mount=type=bind,source=.docker/apt-mirror.sh,target=/usr/local/sbin/apt-mirror \\
    sh /usr/local/sbin/apt-mirror
COPY . /LocalAI
RUN make -C /LocalAI/backend/rust/${BACKEND} build

FROM scratch
ARG BACKEND=kokoros
COPY --from=builder /LocalAI/backend/rust/${BACKEND}/package/. ./
"""

_AUDIO_DF = """ARG BASE_IMAGE=ubuntu:24.04
FROM ${BASE_IMAGE} AS builder
ARG BUILD_TYPE
ARG TARGETARCH
RUN --mount=type=bind,source=.docker/apt-mirror.sh,target=/usr/local/sbin/apt-mirror \\
    sh /usr/local/sbin/apt-mirror
COPY . /LocalAI
# gcc-14 on arm64, as .docker/llama-cpp-compile.sh does (a comment, not a read)
RUN --mount=type=cache,target=/root/.ccache,id=audio-cpp-ccache-${TARGETARCH}-${BUILD_TYPE},sharing=locked \\
    make -C /LocalAI/backend/cpp/audio-cpp BUILD_TYPE=${BUILD_TYPE} NATIVE=false grpc-server package

FROM scratch
COPY --from=builder /LocalAI/backend/cpp/audio-cpp/package/. ./
"""

_COMPILE = """#!/usr/bin/env bash
# Shared compile logic for backend/Dockerfile.{kind}, bind-mounted by both builder stages.
set -euxo pipefail
cd /LocalAI/backend/cpp/{kind}
BUILD_TARGET=$(/LocalAI/.docker/{kind}-build-target.sh "${{TARGETARCH}}" "${{BUILD_TYPE:-}}")
if [ "${{TARGETARCH}}" = "arm64" ]; then
  sh /LocalAI/.docker/apt-mirror.sh || true
fi
make "$BUILD_TARGET"
make {kind}-grpc
"""

_BUILD_TARGET = """#!/usr/bin/env bash
set -euo pipefail
case "${{2-}}" in
  sycl*|hipblas*) echo {kind}-fallback; exit 0 ;;
esac
echo {kind}-cpu-all
"""

_PACKAGE_SH = """#!/bin/bash
set -e
CURDIR=$(dirname "$(realpath $0)")
REPO_ROOT="${CURDIR}/../../.."
mkdir -p $CURDIR/package/lib
cp -avf $CURDIR/run.sh $CURDIR/package/
source "$CURDIR/../../../scripts/build/package-system-libs.sh" "$CURDIR/package/lib" ""
GPU_LIB_SCRIPT="${REPO_ROOT}/scripts/build/package-gpu-libs.sh"
if [ -f "$GPU_LIB_SCRIPT" ]; then
    source "$GPU_LIB_SCRIPT" "$CURDIR/package/lib"
fi
"""

_GO_MAKEFILE = """GOCMD?=go

{name}: main.go
\tCGO_ENABLED=0 $(GOCMD) build -o {name} ./

package: {name}
\tbash package.sh

build: package
"""


def _go_main(imports: tuple[str, ...]) -> str:
    lines = "\n".join(f'\t"github.com/mudler/LocalAI/{i}"' for i in imports)
    return f"package main\n\nimport (\n\t\"flag\"\n{lines}\n)\n\nfunc main() {{ flag.Parse() }}\n"


def _pkg(name: str, imports: tuple[str, ...] = ()) -> str:
    block = "".join(f'import "github.com/mudler/LocalAI/{i}"\n' for i in imports)
    return f"package {name.rsplit('/', 1)[-1]}\n\n{block}\nfunc X() {{}}\n"


GO_BACKENDS: Mapping[str, tuple[str, ...]] = {
    # backend -> the module packages its main package imports (LocalAI's real imports, `go list -deps`)
    "ced": ("pkg/grpc", "pkg/grpc/base"),
    "whisper": ("pkg/grpc", "pkg/grpc/base", "pkg/utils", "pkg/audio"),
    "local-store": ("pkg/grpc", "pkg/store"),
    "opus": ("pkg/grpc", "pkg/sound"),
    "cloud-proxy": ("pkg/grpc", "pkg/httpclient"),
    "trellis2cpp": ("pkg/grpc",),
}


def files() -> dict[str, str]:
    """Every file of the fixture repository at its base revision."""
    out: dict[str, str] = {
        "README.md": "# LocalAI (fixture)\n",
        "docs/content/docs/overview.md": "overview\n",
        "go.mod": "module github.com/mudler/LocalAI\n\ngo 1.26.0\n\nrequire google.golang.org/grpc v1.70.0\n",
        "go.sum": "google.golang.org/grpc v1.70.0 h1:abc=\n",
        ".dockerignore": ".idea\n.github\nmodels\nbackends\nbackend/go/*/build\nbackend/go/*/sources\n**/venv\n"
                         "Dockerfile*\n__pycache__\ntests\n",
        ".docker/apt-mirror.sh": "#!/bin/sh\nset -e\n[ -z \"${APT_MIRROR}\" ] && exit 0\nsed -i s,x,y, /etc/apt/sources.list\n",
        ".docker/install-base-deps.sh": "#!/bin/bash\nset -e\napt-get install -y cmake\n",
        "Makefile": (
            "GOCMD?=go\nPROTOC_VERSION?=31.1\n\n"
            ".PHONY: protogen-go\n"
            "protogen-go: protoc install-go-tools\n"
            "\tmkdir -p pkg/grpc/proto\n"
            "\t./protoc --experimental_allow_proto3_optional -Ibackend/ --go_out=pkg/grpc/proto/ "
            "--go-grpc_out=pkg/grpc/proto/ backend/backend.proto\n\n"
            "protoc:\n\tcurl -L -o protoc.zip https://example.invalid/protoc-$(PROTOC_VERSION).zip\n\n"
            "install-go-tools:\n\t$(GOCMD) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.34.2\n\n"
            "protogen-go-clean:\n\t$(RM) pkg/grpc/proto/backend.pb.go\n\n"
            "docs:\n\tcd docs && hugo\n\n"
            "build-darwin-go-backend: build\n\tbash ./scripts/build/golang-darwin.sh\n\n"
            "build: protogen-go\n\t$(GOCMD) build -o local-ai ./cmd/local-ai\n"),
        "cmd/local-ai/main.go": _go_main(("core/application",)),
        "core/application/app.go": _pkg("core/application", ("pkg/model",)),
        "backend/backend.proto": PROTO,
        "backend/README.md": "backends\n",
        # Go packages of the root module
        "pkg/grpc/server.go": _pkg("pkg/grpc", ("pkg/grpc/proto", "pkg/grpc/base", "pkg/grpc/grpcerrors")),
        "pkg/grpc/client.go": _pkg("pkg/grpc"),
        "pkg/grpc/client_busy_test.go": "package grpc\n\nimport \"testing\"\n\nfunc TestBusy(t *testing.T) {}\n",
        "pkg/grpc/base/base.go": _pkg("pkg/grpc/base", ("pkg/grpc/proto",)),
        "pkg/grpc/grpcerrors/errors.go": _pkg("pkg/grpc/grpcerrors"),
        "pkg/audio/convert.go": _pkg("pkg/audio"),
        "pkg/httpclient/client.go": _pkg("pkg/httpclient"),
        "pkg/sound/sound.go": _pkg("pkg/sound"),
        "pkg/store/client.go": _pkg("pkg/store", ("pkg/grpc",)),
        "pkg/utils/path.go": _pkg("pkg/utils", ("pkg/httpclient", "pkg/audio")),
        "pkg/utils/path_test.go": "package utils\n",
        "pkg/model/loader.go": _pkg("pkg/model", ("pkg/grpc", "pkg/downloader")),
        "pkg/xio/reader.go": _pkg("pkg/xio"),
        "pkg/downloader/download.go": _pkg("pkg/downloader"),
        "pkg/functions/parse.go": _pkg("pkg/functions"),
        "pkg/vram/vram.go": _pkg("pkg/vram"),
        # packaging scripts
        "scripts/build/package-gpu-libs.sh": "#!/bin/bash\npackage_gpu_libs() { cp -a /usr/lib/x \"$1\"; }\n",
        "scripts/build/package-system-libs.sh": "#!/bin/bash\ncp -a /lib/ld-linux* \"$1\"\n",
        "scripts/build/package-gpu-libs_test.sh": "#!/bin/bash\nbash scripts/build/package-gpu-libs.sh /tmp/x\n",
        "scripts/build/golang-darwin.sh": "#!/bin/bash -eux\nmake -C backend/go/${BACKEND} build\n"
                                          "BACKEND_DIR=\"backend/go/${BACKEND}\"\n"
                                          "./local-ai util create-oci-image \"${BACKEND_DIR}/package/.\"\n",
        "scripts/build/python-darwin.sh": "#!/bin/bash\nset -ex\nmake -C backend/python/${BACKEND}\n"
                                          "cp -rfv backend/python/common backend/python/${BACKEND}/\n",
        "scripts/build/llama-cpp-darwin.sh": "#!/bin/bash\nset -eux\ncd backend/cpp/llama-cpp\nmake llama-cpp-fallback\n",
        "scripts/build/ds4-darwin.sh": "#!/bin/bash\nset -eux\npushd backend/cpp/ds4\nmake NATIVE=false grpc-server\npopd\n"
                                       "mkdir -p build/darwin\n",
        "scripts/build/package-something-new.sh": "#!/bin/bash\necho new\n",
        # python backends
        "backend/python/common/libbackend.sh": (
            "#!/bin/bash\nensureVenv() { uv venv; }\n"
            "protogen() { python -m grpc_tools.protoc -I../../ -I./ --python_out=. backend.proto; }\n"),
        "backend/python/common/template/install.sh": "#!/bin/bash\n",
    }
    for be in ("diffusers", "vllm", "mlx"):
        out[f"backend/python/{be}/backend.py"] = f"# {be}\n"
        out[f"backend/python/{be}/Makefile"] = f".PHONY: {be}\n{be}:\n\tbash install.sh\n"
        out[f"backend/python/{be}/install.sh"] = "#!/bin/bash\nset -e\nbackend_dir=$(dirname $0)\n" \
                                                 "source $backend_dir/../common/libbackend.sh\n"
        out[f"backend/python/{be}/requirements.txt"] = "torch\n"
    out["backend/Dockerfile.python"] = _PYTHON_DF
    out["backend/Dockerfile.golang"] = _GOLANG_DF
    for kind in ("llama-cpp", "turboquant"):
        out[f"backend/Dockerfile.{kind}"] = _LLAMA_DF.replace("{kind}", kind)
        out[f".docker/{kind}-compile.sh"] = _COMPILE.format(kind=kind)
        out[f".docker/{kind}-build-target.sh"] = _BUILD_TARGET.format(kind=kind)
    out["backend/Dockerfile.rust"] = _RUST_DF
    out["backend/Dockerfile.audio-cpp"] = _AUDIO_DF
    # Go backends
    for be, imports in GO_BACKENDS.items():
        out[f"backend/go/{be}/main.go"] = _go_main(imports)
        out[f"backend/go/{be}/main_test.go"] = "package main\n\nimport \"testing\"\n\nfunc TestX(t *testing.T) {}\n"
        out[f"backend/go/{be}/Makefile"] = _GO_MAKEFILE.format(name=be)
        out[f"backend/go/{be}/package.sh"] = _PACKAGE_SH
        out[f"backend/go/{be}/run.sh"] = f"#!/bin/bash\nexec $(dirname $0)/{be}\n"
    # C++ backends
    out["backend/cpp/llama-cpp/Makefile"] = (
        "CURRENT_MAKEFILE_DIR := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))\n"
        "INSTALLED_PACKAGES=$(CURDIR)/../grpc/installed_packages\n\n"
        "llama-cpp-cpu-all:\n\tbash prepare.sh\n\tcmake -S . -B build\n\n"
        "llama-cpp-fallback:\n\tbash prepare.sh\n\n"
        "llama-cpp-grpc:\n\t$(MAKE) -C $(CURRENT_MAKEFILE_DIR)/../$(VARIANT) grpc-server\n\n"
        "package:\n\tbash package.sh\n")
    out["backend/cpp/llama-cpp/CMakeLists.txt"] = (
        "get_filename_component(hw_proto \"../../../../../../backend/backend.proto\" ABSOLUTE)\n"
        "add_executable(grpc-server grpc-server.cpp)\n")
    out["backend/cpp/llama-cpp/grpc-server.cpp"] = "int main() { return 0; }\n"
    out["backend/cpp/llama-cpp/prepare.sh"] = "#!/bin/bash\ncp -r CMakeLists.txt llama.cpp/tools/grpc-server/\n"
    out["backend/cpp/llama-cpp/package.sh"] = _PACKAGE_SH
    out["backend/cpp/llama-cpp/run.sh"] = "#!/bin/bash\nexec ./llama-cpp-fallback\n"
    out["backend/cpp/grpc/Makefile"] = "build:\n\tcmake ..\n"
    out["backend/cpp/turboquant/Makefile"] = (
        "CURRENT_MAKEFILE_DIR := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))\n"
        "LLAMA_CPP_DIR := $(CURRENT_MAKEFILE_DIR)/../llama-cpp\n\n"
        "turboquant-cpu-all:\n\tcp -rf $(LLAMA_CPP_DIR) $(CURRENT_MAKEFILE_DIR)/../turboquant-cpu-all-build\n"
        "\tbash $(CURRENT_MAKEFILE_DIR)/patch-grpc-server.sh\n\n"
        "package:\n\tbash package.sh\n")
    out["backend/cpp/turboquant/patch-grpc-server.sh"] = "#!/bin/bash\nsed -i s/a/b/ \"$1\"\n"
    out["backend/cpp/turboquant/package.sh"] = _PACKAGE_SH
    out["backend/cpp/audio-cpp/Makefile"] = "grpc-server:\n\tcmake -S . -B build\n\npackage:\n\tbash package.sh\n"
    out["backend/cpp/audio-cpp/CMakeLists.txt"] = (
        "get_filename_component(HW_PROTO \"${CMAKE_CURRENT_SOURCE_DIR}/../../backend.proto\" ABSOLUTE)\n")
    out["backend/cpp/audio-cpp/grpc-server.cpp"] = "int main() { return 0; }\n"
    out["backend/cpp/audio-cpp/package.sh"] = _PACKAGE_SH
    out["backend/cpp/ds4/Makefile"] = "grpc-server:\n\tcmake -S . -B build\n"
    out["backend/cpp/ds4/CMakeLists.txt"] = (
        "get_filename_component(HW_PROTO \"${CMAKE_CURRENT_SOURCE_DIR}/../../backend.proto\" ABSOLUTE)\n")
    out["backend/cpp/ds4/ds4.cpp"] = "int main() { return 0; }\n"
    # rust
    out["backend/rust/kokoros/Makefile"] = (
        "CURRENT_DIR=$(abspath ./)\n\nkokoros-grpc:\n\tmkdir -p $(CURRENT_DIR)/proto\n"
        "\tcp $(CURRENT_DIR)/../../backend.proto $(CURRENT_DIR)/proto/backend.proto\n\tcargo build --release\n\n"
        "package:\n\tbash package.sh\n\nbuild: kokoros-grpc package\n")
    out["backend/rust/kokoros/Cargo.toml"] = "[package]\nname = \"kokoros\"\n"
    out["backend/rust/kokoros/src/main.rs"] = "fn main() {}\n"
    out["backend/rust/kokoros/package.sh"] = _PACKAGE_SH
    # workflows
    out[".github/workflows/backend_build.yml"] = (
        "name: build\non:\n  workflow_call:\n    inputs:\n      backend:\n        type: string\n"
        "jobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo build\n")
    out[".github/workflows/backend_build_darwin.yml"] = out[".github/workflows/backend_build.yml"].replace(
        "name: build", "name: build darwin")
    out[".github/workflows/backend.yml"] = BACKEND_YML
    out[".github/workflows/lint.yml"] = "name: lint\non: push\njobs:\n  l:\n    runs-on: ubuntu-latest\n" \
                                        "    steps:\n      - run: make lint\n"
    out[".github/backend-matrix.yml"] = matrix_text()
    return out


BACKEND_YML = """name: backend
on: push
jobs:
  generate-matrix:
    runs-on: ubuntu-latest
    steps:
      - run: bun run scripts/changed-backends.js
  backend-jobs:
    needs: generate-matrix
    uses: ./.github/workflows/backend_build.yml
    with:
      backend: ${{ matrix.backend }}
      build-type: ${{ matrix.build-type }}
      amdgpu-targets: ${{ matrix.amdgpu-targets || 'gfx908,gfx90a,gfx942' }}
    strategy:
      matrix: ${{ fromJson(needs.generate-matrix.outputs.matrix) }}
  backend-jobs-darwin:
    uses: ./.github/workflows/backend_build_darwin.yml
    with:
      backend: ${{ matrix.backend }}
"""


def entry(suffix: str, backend: str, dockerfile: str, *, platform: str = "linux/amd64", ptag: str = "",
          build_type: str = "", base_image: str = "ubuntu:24.04", builder_base_image: str = "",
          amdgpu_targets: str = "") -> str:
    lines = [
        f"  - build-type: '{build_type}'", "    cuda-major-version: ''", "    cuda-minor-version: ''",
        f"    platforms: '{platform}'", "    tag-latest: 'auto'", f"    tag-suffix: '{suffix}'",
        "    runs-on: 'ubuntu-latest'", f"    base-image: '{base_image}'", "    skip-drivers: 'false'",
        f"    backend: '{backend}'", f"    dockerfile: './backend/Dockerfile.{dockerfile}'", "    context: './'",
        "    ubuntu-version: '2404'",
    ]
    lines += [f"    platform-tag: '{ptag}'"] if ptag else []
    lines += [f"    builder-base-image: '{builder_base_image}'"] if builder_base_image else []
    lines += [f"    amdgpu-targets: '{amdgpu_targets}'"] if amdgpu_targets else []
    return "\n".join(lines) + "\n"


#: LocalAI's filter-test entries (backend-filter_test.mjs `includes`), in order.
PEER_INCLUDES = (
    entry("-nvidia-cuda-13-diffusers", "diffusers", "python", build_type="cublas",
          base_image="nvidia/cuda:13.0.0-devel-ubuntu24.04"),
    entry("-nvidia-cuda-13-vllm", "vllm", "python", build_type="cublas",
          base_image="nvidia/cuda:13.0.0-devel-ubuntu24.04"),
    entry("-ced", "ced", "golang"),
    entry("-kokoros", "kokoros", "rust"),
    entry("-llama-cpp", "llama-cpp", "llama-cpp"),
    entry("-turboquant", "turboquant", "turboquant"),
    entry("-cpu-audio-cpp", "audio-cpp", "audio-cpp"),
)
#: More legs for this project's own scenarios (imports, ROCm defaults, pairs, BUILDER_TARGET).
MORE_INCLUDES = (
    entry("-cpu-trellis2cpp", "trellis2cpp", "golang"),
    entry("-cpu-whisper", "whisper", "golang", platform="linux/amd64", ptag="amd64"),
    entry("-cpu-whisper", "whisper", "golang", platform="linux/arm64", ptag="arm64"),
    entry("-cpu-local-store", "local-store", "golang"),
    entry("-cpu-opus", "opus", "golang"),
    entry("-cpu-cloud-proxy", "cloud-proxy", "golang"),
    entry("-gpu-rocm-hipblas-whisper", "whisper", "golang", build_type="hipblas", base_image="rocm/dev-ubuntu-24.04"),
    entry("-gpu-rocm-hipblas-python-vllm", "vllm", "python", build_type="hipblas", base_image="rocm/dev-ubuntu-24.04"),
    entry("-gpu-rocm-hipblas-gfx11-whisper", "whisper", "golang", build_type="hipblas",
          base_image="rocm/dev-ubuntu-24.04", amdgpu_targets="gfx1100"),
    entry("-gpu-nvidia-cuda-12-llama-cpp", "llama-cpp", "llama-cpp", build_type="cublas",
          builder_base_image="quay.io/go-skynet/ci-cache:base-grpc-cuda-12"),
)
#: LocalAI's filter-test Darwin entries (`includesDarwin`).
PEER_DARWIN = """includeDarwin:
  - backend: "diffusers"
    tag-suffix: "-metal-darwin-arm64-diffusers"
    build-type: "mps"
  - backend: "mlx"
    tag-suffix: "-metal-darwin-arm64-mlx"
    build-type: "mps"
  - backend: "whisper"
    lang: "go"
    tag-suffix: "-metal-darwin-arm64-whisper"
    build-type: "metal"
  - backend: "llama-cpp"
    lang: "go"
    tag-suffix: "-metal-darwin-arm64-llama-cpp"
    build-type: "metal"
  - backend: "ds4"
    lang: "go"
    tag-suffix: "-metal-darwin-arm64-ds4"
    build-type: "metal"
"""


def matrix_text(includes: tuple[str, ...] = PEER_INCLUDES + MORE_INCLUDES, darwin: str = PEER_DARWIN) -> str:
    return "include:\n" + "".join(includes) + darwin


MATRIX_PATH = ".github/backend-matrix.yml"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=GIT_ENV).stdout.strip()


def write(repo: Path, changes: Mapping[str, str | None]) -> None:
    for name, text in changes.items():
        p = repo / name
        if text is None:
            p.unlink()
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


class Repo:
    """The fixture as a real git repository: ``base`` is its first commit."""

    def __init__(self, path: Path, extra: Mapping[str, str] | None = None) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        git(path, "init", "-q", "-b", "main")
        write(path, {**files(), **(extra or {})})
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "base")
        self.base = git(path, "rev-parse", "HEAD")
        self._n = 0

    def change(self, edits: Mapping[str, str | None] | Callable[[Repo], Mapping[str, str | None]],
               start: str | None = None, message: str = "change") -> str:
        """A new branch from ``start`` (default: ``base``) with ``edits`` committed (a mapping, or a
        function of the repository at ``start``); returns the new HEAD."""
        self._n += 1
        git(self.path, "checkout", "-q", "-B", f"s{self._n}", start or self.base)
        write(self.path, edits(self) if callable(edits) else edits)
        git(self.path, "add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.path, "rev-parse", "HEAD")

    def text(self, name: str) -> str:
        return (self.path / name).read_text()
