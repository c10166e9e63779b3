"""A LocalAI-sized repository tree, generated (not a test module; used by tests and bench/bench_changes.py).

For a real matrix (``tests/resources/localai/backend-matrix.2026-08.yml``: 457 legs, 62 Darwin
entries) it writes what change detection reads: backend Dockerfiles, a ``.dockerignore`` and
``.docker/llama-cpp-compile.sh`` -- LocalAI-shaped ones written by the tests (``tests/support/localai_tree.py``),
or, given a named LocalAI tree (``CI_TEST_LOCALAI_TREE``), LocalAI's real ones copied from it at run
time (never committed here) --, every backend directory the matrix names
with a Makefile, packaging script and sources shaped like LocalAI's, a root Go module of
``packages`` packages (``pkg/...``, ``core/...``) whose import graph the Go backends reach
through ``pkg/grpc``, ``pkg/utils``, ``pkg/audio``..., the root Makefile with
``protogen-go``, the packaging and macOS scripts, and ``docs`` pages to reach LocalAI's size
(about 3,600 files). Deterministic: the same arguments give the same tree.
"""
from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

from tests.support.localai_ref import LocalAITree
from tests.support.localai_tree import _AUDIO_DF, _COMPILE, _LLAMA_DF, GIT_ENV, PROTO, _go_main, _pkg
from tests.support.localai_tree import files as shaped_files

KINDS = ("python", "golang", "llama-cpp", "turboquant", "bonsai", "ik-llama-cpp", "ds4", "privacy-filter",
         "audio-cpp", "rust")
#: module packages the real Go backends import (``go list -deps ./backend/go/...``)
REAL_PKGS = {
    "pkg/grpc": ("pkg/grpc/proto", "pkg/grpc/base", "pkg/grpc/grpcerrors"),
    "pkg/grpc/base": ("pkg/grpc/proto",),
    "pkg/grpc/grpcerrors": (),
    "pkg/audio": (),
    "pkg/httpclient": (),
    "pkg/sound": (),
    "pkg/store": ("pkg/grpc",),
    "pkg/utils": ("pkg/audio", "pkg/httpclient"),
}
EXTRA_IMPORTS = (("pkg/utils", "pkg/audio"), ("pkg/store",), ("pkg/sound",), ("pkg/httpclient",), (), (), ())


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def shaped_localai_files() -> dict[str, str]:
    """LocalAI-shaped backend Dockerfiles (every kind LocalAI's matrix names), ``.dockerignore`` and
    ``.docker/llama-cpp-compile.sh``, written by the tests."""
    base = shaped_files()
    out = {f"backend/Dockerfile.{k}": base[f"backend/Dockerfile.{k}"] for k in ("python", "golang", "rust", "audio-cpp")}
    for kind in ("llama-cpp", "turboquant", "bonsai", "ik-llama-cpp"):
        out[f"backend/Dockerfile.{kind}"] = _LLAMA_DF.replace("{kind}", kind)
    for kind in ("ds4", "privacy-filter"):  # single-builder C++ backends, like audio-cpp
        out[f"backend/Dockerfile.{kind}"] = _AUDIO_DF.replace("audio-cpp", kind)
    out[".dockerignore"] = base[".dockerignore"]
    out[".docker/llama-cpp-compile.sh"] = _COMPILE.format(kind="llama-cpp")
    return out


def real_localai_files(tree: LocalAITree) -> dict[str, str]:
    """The same files, LocalAI's real ones, from a named LocalAI tree."""
    names = [f"backend/Dockerfile.{k}" for k in KINDS] + [".dockerignore", ".docker/llama-cpp-compile.sh"]
    return {name: tree.text(name) for name in names}


def build_tree(dest: Path, matrix_path: Path, *, localai: LocalAITree | None = None, packages: int = 300,
               docs: int = 1500, commit: bool = False) -> Path:
    """Write the tree under ``dest`` (created); with ``commit``, make it a git repository. The
    Dockerfiles are LocalAI's real ones when ``localai`` names its tree, else LocalAI-shaped ones."""
    from localai_ci.matrix.model import load_matrix

    rng = random.Random(11)
    m = load_matrix(matrix_path)
    dest.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {
        "go.mod": "module github.com/mudler/LocalAI\n\ngo 1.26.0\n",
        "go.sum": "google.golang.org/grpc v1.70.0 h1:abc=\n",
        "backend/backend.proto": PROTO,
        "Makefile": (
            "GOCMD?=go\n\nprotogen-go: protoc install-go-tools\n\tmkdir -p pkg/grpc/proto\n"
            "\t./protoc -Ibackend/ --go_out=pkg/grpc/proto/ --go-grpc_out=pkg/grpc/proto/ backend/backend.proto\n\n"
            "protoc:\n\tcurl -L -o protoc.zip https://example.invalid/protoc.zip\n\n"
            "install-go-tools:\n\t$(GOCMD) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.34.2\n\n"
            "build: protogen-go\n\t$(GOCMD) build -o local-ai ./cmd/local-ai\n"),
        ".docker/apt-mirror.sh": "#!/bin/sh\n[ -z \"${APT_MIRROR}\" ] && exit 0\n",
        ".docker/install-base-deps.sh": "#!/bin/bash\napt-get install -y cmake\n",
        "scripts/build/package-gpu-libs.sh": "#!/bin/bash\npackage_gpu_libs() { :; }\n",
        "scripts/build/package-system-libs.sh": "#!/bin/bash\n:\n",
        "scripts/build/golang-darwin.sh": "#!/bin/bash -eux\nmake -C backend/go/${BACKEND} build\n",
        "scripts/build/python-darwin.sh": "#!/bin/bash\nmake -C backend/python/${BACKEND}\n"
                                          "cp -rfv backend/python/common backend/python/${BACKEND}/\n",
        "backend/python/common/libbackend.sh": "#!/bin/bash\nprotogen() { python -m grpc_tools.protoc -I../../ "
                                               "--python_out=. backend.proto; }\n",
        "README.md": "# LocalAI\n",
    }
    files.update(real_localai_files(localai) if localai is not None else shaped_localai_files())
    for kind in ("llama-cpp", "turboquant", "bonsai", "ik-llama-cpp"):
        files.setdefault(f".docker/{kind}-compile.sh",
                         f"#!/bin/bash\ncd /LocalAI/backend/cpp/{kind}\n"
                         f"T=$(/LocalAI/.docker/{kind}-build-target.sh \"${{TARGETARCH}}\")\nmake \"$T\"\n")
        files[f".docker/{kind}-build-target.sh"] = f"#!/bin/bash\necho {kind}-fallback\n"
    # the root module: the real packages, then generated ones importing lower-numbered ones
    for pkg, imports in REAL_PKGS.items():
        files[f"{pkg}/{pkg.rsplit('/', 1)[-1]}.go"] = _pkg(pkg, imports)
        files[f"{pkg}/{pkg.rsplit('/', 1)[-1]}_test.go"] = f"package {pkg.rsplit('/', 1)[-1]}\n"
    generated = []
    for i in range(packages - len(REAL_PKGS)):
        pkg = f"{'core' if i % 2 else 'pkg'}/gen{i // 10}/p{i}"
        imports = tuple(rng.sample(generated, min(len(generated), 3))) + (("pkg/utils",) if i % 7 == 0 else ())
        files[f"{pkg}/a.go"] = _pkg(pkg, imports)
        files[f"{pkg}/b.go"] = _pkg(pkg)
        generated.append(pkg)
    files["cmd/local-ai/main.go"] = _go_main(tuple(generated[-5:]))
    # backends
    package_sh = ("#!/bin/bash\nCURDIR=$(dirname \"$(realpath $0)\")\n"
                  "source \"$CURDIR/../../../scripts/build/package-system-libs.sh\" \"$CURDIR/package/lib\"\n"
                  "source \"$CURDIR/../../../scripts/build/package-gpu-libs.sh\" \"$CURDIR/package/lib\"\n")
    kinds: dict[str, set[str]] = {}
    for e in m:
        kinds.setdefault(e.dockerfile.rsplit(".", 1)[-1], set()).add(e.backend)
    darwin_only = {(d.get("backend", ""), d.get("lang", "")) for d in m.darwin}
    for i, be in enumerate(sorted(kinds.get("golang", set()) | {b for b, lang in darwin_only if lang == "go"
                                                                  and b not in ("llama-cpp", "ds4", "privacy-filter",
                                                                                "audio-cpp")})):
        d = f"backend/go/{be}"
        files[f"{d}/main.go"] = _go_main(("pkg/grpc", "pkg/grpc/base") + EXTRA_IMPORTS[i % len(EXTRA_IMPORTS)])
        files[f"{d}/{be.replace('-', '_')}.go"] = _pkg("main")
        files[f"{d}/{be.replace('-', '_')}_test.go"] = "package main\n"
        files[f"{d}/Makefile"] = f"{be}: main.go\n\tgo build -o {be} ./\n\npackage: {be}\n\tbash package.sh\n\n" \
                                 "build: package\n"
        files[f"{d}/package.sh"] = package_sh
        files[f"{d}/run.sh"] = f"#!/bin/bash\nexec $(dirname $0)/{be}\n"
        files[f"{d}/cpp/{be}.cpp"] = "int f() { return 0; }\n"
    for be in sorted(kinds.get("python", set()) | {b for b, lang in darwin_only if not lang}):
        d = f"backend/python/{be}"
        files[f"{d}/backend.py"] = f"# {be}\n"
        files[f"{d}/Makefile"] = f"{be}:\n\tbash install.sh\n"
        files[f"{d}/install.sh"] = "#!/bin/bash\nsource $(dirname $0)/../common/libbackend.sh\n"
        for req in ("", "-cpu", "-cublas12", "-hipblas", "-intel"):
            files[f"{d}/requirements{req}.txt"] = "torch\n"
        files[f"{d}/test.py"] = "def test(): pass\n"
    for kind in ("llama-cpp", "ik-llama-cpp", "ds4", "privacy-filter", "audio-cpp"):
        d = f"backend/cpp/{kind}"
        files[f"{d}/Makefile"] = "package:\n\tbash package.sh\n\ngrpc-server:\n\tcmake -S . -B build\n"
        files[f"{d}/CMakeLists.txt"] = ("get_filename_component(P \"${CMAKE_CURRENT_SOURCE_DIR}/../../backend.proto\" "
                                        "ABSOLUTE)\nadd_executable(grpc-server grpc-server.cpp)\n")
        files[f"{d}/grpc-server.cpp"] = "int main() { return 0; }\n"
        files[f"{d}/package.sh"] = package_sh
        files[f"scripts/build/{kind}-darwin.sh"] = f"#!/bin/bash\ncd backend/cpp/{kind}\nmake grpc-server\n"
    for kind in ("turboquant", "bonsai"):
        d = f"backend/cpp/{kind}"
        files[f"{d}/Makefile"] = ("CURRENT_MAKEFILE_DIR := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))\n"
                                  "LLAMA_CPP_DIR := $(CURRENT_MAKEFILE_DIR)/../llama-cpp\n\n"
                                  "package:\n\tcp -rf $(LLAMA_CPP_DIR) build\n\tbash package.sh\n")
        files[f"{d}/package.sh"] = package_sh
    files["backend/rust/kokoros/Makefile"] = ("CURRENT_DIR=$(abspath ./)\n\nbuild:\n\tcp $(CURRENT_DIR)/../../backend.proto "
                                              "proto/\n\tcargo build\n\tbash package.sh\n")
    files["backend/rust/kokoros/src/main.rs"] = "fn main() {}\n"
    files["backend/rust/kokoros/package.sh"] = package_sh
    for i in range(docs):
        files[f"docs/content/page{i // 100}/p{i}.md"] = f"page {i}\n"
    _write(dest, files)
    if commit:
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "tree"]):
            subprocess.run(["git", "-C", str(dest), *args], check=True, env=GIT_ENV, capture_output=True)
    return dest


def copy_matrix(tree: Path, matrix_path: Path, where: str = ".github/backend-matrix.yml") -> Path:
    """Put the matrix into the tree where LocalAI keeps it."""
    target = tree / where
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(matrix_path, target)
    return target
