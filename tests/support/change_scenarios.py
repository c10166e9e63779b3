"""Change-detection scenarios on the LocalAI-shaped fixture (``tests/support/localai_tree.py``); not a test module.

``PEER`` holds every test of LocalAI's own filter suite (``scripts/lib/backend-filter_test.mjs``,
41 tests) in this project's terms: the same change, made as a real commit (or, where the
peer hands in no previous revision, as a changed-file list without a base), with what the
peer's test asserts and what this project selects. Where they differ, ``note`` says why on
purpose. ``OURS`` are the cases the peer has no test for (issue 11). ``tests/changes/test_changes.py``
runs them all; ``bench/bench_changes.py --scenarios`` runs them side by side with the peer's
``filterMatrix`` itself.

Expectations are backend names (Linux, Darwin) over a *view* of the matrix: for ``PEER``
the peer's own entries (``PEER_INCLUDES`` / ``PEER_DARWIN``), else the given suffixes.
``ALL`` means every entry of the view.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from tests.support.localai_tree import (MATRIX_PATH, MORE_INCLUDES, PEER_DARWIN, PEER_INCLUDES, PROTO, Repo, entry,
                                       matrix_text)

ALL = frozenset({"*"})
Edits = Callable[[Repo], Mapping[str, "str | None"]]


@dataclass(frozen=True)
class Scenario:
    name: str
    edits: Edits | None = None  # committed on a branch from the base (None: no commit)
    listed: tuple[str, ...] = ()  # a changed-file list without a base instead of a commit
    base_edits: Edits | None = None  # a different base revision for this scenario
    linux: frozenset[str] = frozenset()  # what this project selects (backend names in the view)
    darwin: frozenset[str] = frozenset()
    peer_linux: frozenset[str] | None = None  # what the peer's test asserts (None: same as ours)
    peer_darwin: frozenset[str] | None = None
    backends: frozenset[str] | None = None  # the per-backend outputs that are true (when the peer pins them)
    view: tuple[str, ...] = ()  # suffixes compared ('' tuple: the peer's entries)
    note: str = ""  # why this project answers differently (required when it does)
    strict_proto: bool = False
    suffixes: frozenset[str] | None = None  # exact Linux suffixes selected (our own scenarios)
    reason: str = ""  # a text the first leg's reason must contain

    @property
    def differs(self) -> bool:
        return ((self.peer_linux is not None and self.peer_linux != self.linux)
                or (self.peer_darwin is not None and self.peer_darwin != self.darwin))


def S(*names: str) -> frozenset[str]:
    return frozenset(names)


def _append(path: str, text: str) -> Edits:
    return lambda r: {path: r.text(path) + text}


def _replace(path: str, old: str, new: str) -> Edits:
    def edit(r: Repo) -> Mapping[str, str | None]:
        before = r.text(path)
        assert old in before, (path, old)
        return {path: before.replace(old, new, 1)}
    return edit


def _matrix(fn: Callable[[str], str]) -> Edits:
    return lambda r: {MATRIX_PATH: fn(r.text(MATRIX_PATH))}


def _proto(fields: str | None = None, text: str | None = None) -> Edits:
    base_fields = "  string Prompt = 1;\n  int32 Tokens = 2;\n  bool UseTokenizerTemplate = 3;"
    return lambda r: {"backend/backend.proto": text if text is not None else PROTO.replace(base_fields, fields or "")}


PEER_SUFFIXES = tuple(line.split("'")[1] for block in PEER_INCLUDES for line in block.splitlines()
                      if "tag-suffix" in line)
MORE_SUFFIXES = tuple(line.split("'")[1] for block in MORE_INCLUDES for line in block.splitlines()
                      if "tag-suffix" in line)
GO_LINUX = S("ced", "whisper", "local-store", "opus", "cloud-proxy", "trellis2cpp")
FIELDS = "  string Prompt = 1;\n  int32 Tokens = 2;\n  bool UseTokenizerTemplate = 3;"

PEER: tuple[Scenario, ...] = (
    Scenario("trellis2cpp maps to its Go backend source directory",
             edits=_append("backend/go/trellis2cpp/main.go", "\n// x\n"), linux=S("trellis2cpp"),
             view=("-cpu-trellis2cpp",)),
    Scenario("a change to only package-gpu-libs.sh rebuilds every Linux image",
             edits=_append("scripts/build/package-gpu-libs.sh", "# fix\n"), linux=ALL,
             darwin=S("whisper", "llama-cpp"), peer_darwin=S(),
             note="the Darwin builds run it too: golang-darwin.sh runs `make -C backend/go/<backend> build`, whose "
                  "package.sh sources scripts/build/package-gpu-libs.sh (so does backend/cpp/llama-cpp/package.sh, "
                  "run by llama-cpp-darwin.sh); the peer's rule says they never call it"),
    Scenario("docs- and README-only changes never produce a matrix",
             edits=lambda r: {"README.md": "changed\n", "docs/content/docs/overview.md": "changed\n"},
             backends=S()),
    Scenario("a backend's own directory still triggers only that backend",
             edits=_append("backend/python/vllm/backend.py", "x = 1\n"), linux=S("vllm"), backends=S("vllm")),
    Scenario("Dockerfile.python rebuilds Python images and nothing else",
             edits=_replace("backend/Dockerfile.python", "ARG DEPS_REFRESH=initial", "ARG DEPS_REFRESH=initial\nRUN true"),
             linux=S("diffusers", "vllm")),
    Scenario("Dockerfile.golang rebuilds Go images and nothing else",
             edits=_replace("backend/Dockerfile.golang", "COPY . /LocalAI", "COPY . /LocalAI\nRUN true"),
             linux=S("ced")),
    Scenario("a per-family Dockerfile rebuilds only its own family",
             edits=_replace("backend/Dockerfile.llama-cpp", "RUN make -BC", "RUN true\nRUN make -BC"),
             linux=S("llama-cpp")),
    Scenario("backend.proto rebuilds every backend on every OS",
             listed=("backend/backend.proto",), linux=ALL, darwin=ALL),
    Scenario("backend/python/common rebuilds Python images on Linux and Darwin",
             edits=_append("backend/python/common/libbackend.sh", "# x\n"), linux=S("diffusers", "vllm"),
             darwin=S("diffusers", "mlx")),
    Scenario("the reusable Linux build workflow rebuilds Linux only",
             edits=_append(".github/workflows/backend_build.yml", "# x\n"), linux=ALL),
    Scenario("the reusable Darwin build workflow rebuilds Darwin only",
             edits=_append(".github/workflows/backend_build_darwin.yml", "# x\n"), darwin=ALL),
    Scenario("golang-darwin.sh skips backends with bespoke Darwin build scripts",
             edits=_append("scripts/build/golang-darwin.sh", "# x\n"), darwin=S("whisper")),
    Scenario("a bespoke Darwin build script rebuilds only its own backend",
             edits=_append("scripts/build/ds4-darwin.sh", "# x\n"), darwin=S("ds4")),
    Scenario("an unclassified scripts/build/ file conservatively rebuilds everything",
             edits=_append("scripts/build/package-something-new.sh", "# x\n"), peer_linux=ALL, peer_darwin=ALL,
             note="no Dockerfile, script or Makefile of any leg names it, so it reaches no image; the leg that starts "
                  "using it changes the file that names it (a package.sh, a Dockerfile), and that change selects it"),
    Scenario("tests for the packaging scripts do not rebuild anything",
             edits=_append("scripts/build/package-gpu-libs_test.sh", "# x\n")),
    Scenario("turboquant still retriggers on llama-cpp source changes",
             edits=_append("backend/cpp/llama-cpp/grpc-server.cpp", "// x\n"), linux=S("llama-cpp", "turboquant"),
             darwin=S("llama-cpp")),
    Scenario("audio-cpp source changes rebuild audio-cpp and nothing else",
             edits=_append("backend/cpp/audio-cpp/grpc-server.cpp", "// x\n"), linux=S("audio-cpp"),
             backends=S("audio-cpp")),
    Scenario("Dockerfile.audio-cpp rebuilds only audio-cpp",
             edits=_replace("backend/Dockerfile.audio-cpp", "COPY . /LocalAI", "COPY . /LocalAI\nRUN true"),
             linux=S("audio-cpp")),
    # "audio-cpp resolves to its C++ sources on Darwin, not backend/go" pins a function: test_changes tests it
    Scenario("a pkg/ subtree Go backends link rebuilds Go images on both OSes",
             edits=_append("pkg/grpc/server.go", "\n// x\n"), linux=S("ced"), darwin=S("whisper"), backends=None),
    Scenario("pkg/grpc subpackages rebuild Go images too",
             edits=_append("pkg/grpc/base/base.go", "\n// x\n"), linux=S("ced"), darwin=S("whisper")),
    Scenario("every enumerated Go-backend pkg subtree triggers a Go rebuild",
             edits=lambda r: {f: r.text(f) + "\n// x\n" for f in (
                 "pkg/audio/convert.go", "pkg/httpclient/client.go", "pkg/sound/sound.go", "pkg/store/client.go",
                 "pkg/utils/path.go")},
             linux=S(), darwin=S("whisper"), peer_linux=S("ced"), peer_darwin=S("whisper"),
             note="ced imports pkg/grpc and pkg/grpc/base only; none of these five subtrees reaches its binary "
                  "(each selects exactly the Go backends whose import graph reaches it, see the import scenarios; "
                  "pkg/grpc/client.go does select ced)"),
    Scenario("a pkg/ subtree no Go backend imports rebuilds nothing",
             edits=lambda r: {f: r.text(f) + "\n// x\n" for f in (
                 "pkg/model/loader.go", "pkg/xio/reader.go", "pkg/downloader/download.go", "pkg/functions/parse.go",
                 "pkg/vram/vram.go")}, backends=S()),
    Scenario("tests for the linked pkg subtrees do not rebuild anything",
             edits=_append("pkg/grpc/client_busy_test.go", "\n// x\n")),
    Scenario("editing an existing entry's base-image rebuilds exactly that entry",
             edits=_matrix(lambda t: t.replace("base-image: 'nvidia/cuda:13.0.0-devel-ubuntu24.04'\n    skip-drivers: "
                                               "'false'\n    backend: 'vllm'", "base-image: 'nvidia/cuda:12.8.0-devel-"
                                               "ubuntu24.04'\n    skip-drivers: 'false'\n    backend: 'vllm'")),
             linux=S("vllm"), backends=S("vllm")),
    Scenario("editing a non-base-image field of an entry rebuilds it too",
             edits=_matrix(lambda t: t.replace("  - build-type: ''\n    cuda-major-version: ''\n    cuda-minor-version: "
                                               "''\n    platforms: 'linux/amd64'\n    tag-latest: 'auto'\n    tag-suffix: "
                                               "'-ced'", "  - build-type: 'cublas'\n    cuda-major-version: ''\n    "
                                               "cuda-minor-version: ''\n    platforms: 'linux/amd64'\n    tag-latest: "
                                               "'auto'\n    tag-suffix: '-ced'")),
             linux=S("ced")),
    Scenario("a brand-new matrix entry for an existing backend rebuilds only itself",
             base_edits=lambda r: {MATRIX_PATH: matrix_text(tuple(e for e in PEER_INCLUDES + MORE_INCLUDES
                                                                  if "'-kokoros'" not in e))},
             edits=lambda r: {MATRIX_PATH: matrix_text()}, linux=S("kokoros")),
    Scenario("editing a Darwin entry rebuilds only that Darwin entry",
             edits=_matrix(lambda t: t.replace('tag-suffix: "-metal-darwin-arm64-mlx"\n    build-type: "mps"',
                                               'tag-suffix: "-metal-darwin-arm64-mlx"\n    build-type: "cpu"')),
             darwin=S("mlx")),
    Scenario("a backend-matrix.yml edit that changes no entry rebuilds nothing",
             edits=_matrix(lambda t: "# reformatted\n" + t.replace("include:\n", "include:\n  # a comment\n")),
             backends=S()),
    Scenario("removing an entry rebuilds nothing",
             base_edits=lambda r: {MATRIX_PATH: matrix_text(PEER_INCLUDES + MORE_INCLUDES + (
                 entry("-nvidia-cuda-11-vllm", "vllm", "python", base_image="nvidia/cuda:11.8.0-devel-ubuntu22.04"),))},
             edits=lambda r: {MATRIX_PATH: matrix_text()}),
    Scenario("a previous matrix is ignored when backend-matrix.yml did not change",
             edits=_append("README.md", "x\n")),
    Scenario("an unavailable previous matrix conservatively rebuilds everything",
             listed=(MATRIX_PATH,), linux=ALL, darwin=ALL),
    Scenario("an added proto field rebuilds nothing",
             edits=_proto(FIELDS + "\n  bool cache_prompt = 8;"), backends=S(), reason=""),
    Scenario("an added proto message and RPC rebuild nothing",
             edits=lambda r: {"backend/backend.proto": PROTO.replace(
                 "message HealthMessage {}", "message HealthMessage {}\n\nmessage ScoreRequest {\n  string Text = 1;\n}"
             ).replace("  rpc Predict(PredictOptions) returns (Reply) {}",
                       "  rpc Predict(PredictOptions) returns (Reply) {}\n  rpc Score(ScoreRequest) returns (Reply) {}")}),
    Scenario("a removed proto field rebuilds every backend on every OS",
             edits=_proto("  string Prompt = 1;\n  bool UseTokenizerTemplate = 3;"), linux=ALL, darwin=ALL),
    Scenario("a renumbered proto field rebuilds every backend on every OS",
             edits=_proto("  string Prompt = 1;\n  int32 Tokens = 9;\n  bool UseTokenizerTemplate = 3;"),
             linux=ALL, darwin=ALL),
    Scenario("a retyped proto field rebuilds every backend on every OS",
             edits=_proto("  string Prompt = 1;\n  int64 Tokens = 2;\n  bool UseTokenizerTemplate = 3;"),
             linux=ALL, darwin=ALL),
    Scenario("a renamed proto field rebuilds every backend on every OS",
             edits=_proto("  string Prompt = 1;\n  int32 MaxTokens = 2;\n  bool UseTokenizerTemplate = 3;"),
             linux=ALL, darwin=ALL),
    Scenario("a removed proto RPC rebuilds every backend on every OS",
             edits=lambda r: {"backend/backend.proto": PROTO.replace(
                 "  rpc Predict(PredictOptions) returns (Reply) {}\n", "")}, linux=ALL, darwin=ALL),
    Scenario("a comment-only proto change rebuilds nothing",
             edits=_proto("  string Prompt = 1;\n  // how many tokens to emit\n  int32 Tokens = 2;\n"
                          "  bool UseTokenizerTemplate = 3;")),
    Scenario("unresolvable proto revisions conservatively rebuild everything",
             listed=("backend/backend.proto",), linux=ALL, darwin=ALL),
)

#: the peer test this project pins as a function, not a selection (see tests/changes/test_changes.py)
PEER_FUNCTION_TESTS = ("audio-cpp resolves to its C++ sources on Darwin, not backend/go",)

EVERY_LINUX = frozenset(PEER_SUFFIXES + MORE_SUFFIXES)
GO_SUFFIXES = frozenset({"-ced", "-cpu-trellis2cpp", "-cpu-whisper", "-cpu-local-store", "-cpu-opus",
                         "-cpu-cloud-proxy", "-gpu-rocm-hipblas-whisper", "-gpu-rocm-hipblas-gfx11-whisper"})
LLAMA_SUFFIXES = frozenset({"-llama-cpp", "-gpu-nvidia-cuda-12-llama-cpp"})

OURS: tuple[Scenario, ...] = (
    Scenario("pkg/audio reaches the Go backends that import it (whisper, directly and through pkg/utils)",
             edits=_append("pkg/audio/convert.go", "\n// x\n"), darwin=S("whisper"),
             suffixes=S("-cpu-whisper", "-gpu-rocm-hipblas-whisper", "-gpu-rocm-hipblas-gfx11-whisper"),
             reason="imports github.com/mudler/LocalAI/pkg/audio"),
    Scenario("pkg/httpclient reaches cloud-proxy and, through pkg/utils, whisper",
             edits=_append("pkg/httpclient/client.go", "\n// x\n"), darwin=S("whisper"),
             suffixes=S("-cpu-cloud-proxy", "-cpu-whisper", "-gpu-rocm-hipblas-whisper", "-gpu-rocm-hipblas-gfx11-whisper")),
    Scenario("pkg/sound reaches opus only", edits=_append("pkg/sound/sound.go", "\n// x\n"), suffixes=S("-cpu-opus")),
    Scenario("pkg/store reaches local-store only", edits=_append("pkg/store/client.go", "\n// x\n"),
             suffixes=S("-cpu-local-store")),
    Scenario("a Go backend's own _test.go file is not an input",
             edits=_append("backend/go/ced/main_test.go", "\n// x\n"), suffixes=S()),
    Scenario("a new requirement in go.mod, without the module graph (no toolchain asked): every Go leg (the Go "
             "backends build in the root module) and the Darwin Go build, saying why",
             edits=_append("go.mod", "\nrequire golang.org/x/sys v0.30.0\n"), darwin=S("whisper"),
             suffixes=GO_SUFFIXES, reason="golang.org/x/sys (none) -> v0.30.0); the Go module graph cannot be computed"),
    Scenario("a go.sum line added selects nothing: no build list changes", edits=_append(
             "go.sum", "golang.org/x/sys v0.30.0 h1:def=\n"), suffixes=S()),
    Scenario("a go.mod comment or `// indirect` marker selects nothing", edits=_replace(
             "go.mod", "require google.golang.org/grpc v1.70.0\n",
             "// the gRPC runtime\nrequire google.golang.org/grpc v1.70.0 // indirect\n"), suffixes=S()),
    Scenario("a changed go.sum hash of a required version, without the module graph: every Go leg",
             edits=_replace("go.sum", "h1:abc=", "h1:abd="), darwin=S("whisper"), suffixes=GO_SUFFIXES,
             reason="google.golang.org/grpc v1.70.0 (its go.sum hash h1:abc= -> h1:abd=)"),
    Scenario("the go line of go.mod changes every package of the module: every Go leg",
             edits=_replace("go.mod", "go 1.26.0", "go 1.26.1"), darwin=S("whisper"), suffixes=GO_SUFFIXES,
             reason="`go` 1.26.0 -> 1.26.1 (every package of module github.com/mudler/LocalAI)"),
    Scenario("python-darwin.sh selects the Darwin Python entries only",
             edits=_append("scripts/build/python-darwin.sh", "# x\n"), darwin=S("diffusers", "mlx"), suffixes=S()),
    Scenario("llama-cpp-darwin.sh selects the Darwin llama-cpp entry only",
             edits=_append("scripts/build/llama-cpp-darwin.sh", "# x\n"), darwin=S("llama-cpp"), suffixes=S()),
    Scenario("the bind-mounted compile script selects the llama-cpp legs of both builder stages",
             edits=_append(".docker/llama-cpp-compile.sh", "# x\n"), suffixes=LLAMA_SUFFIXES,
             reason="RUN --mount=type=bind,source=.docker/llama-cpp-compile.sh"),
    Scenario("the script the compile script runs is an input too (LocalAI's ROCm fix that reached no image)",
             edits=_replace(".docker/llama-cpp-build-target.sh", "sycl*|hipblas*)", "sycl*)"),
             suffixes=LLAMA_SUFFIXES, reason="/LocalAI/.docker/llama-cpp-build-target.sh"),
    Scenario("a directory a Makefile writes into counts through its nearest existing directory",
             edits=_append("backend/cpp/grpc/Makefile", "# x\n"), suffixes=LLAMA_SUFFIXES | {"-turboquant"},
             darwin=S("llama-cpp"), reason="$(CURDIR)/../grpc/installed_packages"),
    Scenario("turboquant's own build-target script selects turboquant only",
             edits=_append(".docker/turboquant-build-target.sh", "# x\n"), suffixes=S("-turboquant")),
    Scenario("a script only the from-source builder stage mounts selects the from-source legs only (BUILDER_TARGET)",
             edits=_append(".docker/install-base-deps.sh", "# x\n"), suffixes=S("-llama-cpp", "-turboquant")),
    Scenario("an edit of the builder-prebuilt stage selects only the legs built from it",
             edits=_replace("backend/Dockerfile.llama-cpp", "RUN cp -a /opt/grpc/. /usr/local/",
                            "RUN cp -a /opt/grpc/. /usr/local/ && ldconfig"),
             suffixes=S("-gpu-nvidia-cuda-12-llama-cpp"), reason="stage builder-prebuilt changed"),
    Scenario("a comment in a Dockerfile selects nothing",
             edits=_replace("backend/Dockerfile.golang", "COPY . /LocalAI", "# copy the tree\nCOPY . /LocalAI"),
             suffixes=S()),
    Scenario("apt-mirror.sh reaches every leg that bind-mounts it", edits=_append(".docker/apt-mirror.sh", "# x\n"),
             suffixes=EVERY_LINUX),
    Scenario("the Makefile target the Go Dockerfile runs (make protogen-go) selects the Go legs",
             edits=_replace("Makefile", "PROTOC_VERSION?=31.1", "PROTOC_VERSION?=31.2"), darwin=S("whisper"),
             suffixes=GO_SUFFIXES, reason="var PROTOC_VERSION"),
    Scenario("another Makefile target selects nothing",
             edits=_replace("Makefile", "cd docs && hugo", "cd docs && hugo --minify"), suffixes=S()),
    Scenario("a new workflow default for amdgpu-targets selects the legs that build with it",
             edits=_replace(".github/workflows/backend.yml", "gfx908,gfx90a,gfx942", "gfx908,gfx90a,gfx942,gfx950"),
             suffixes=(GO_SUFFIXES - {"-gpu-rocm-hipblas-gfx11-whisper"}) | {"-llama-cpp", "-turboquant"},
             reason="changed the default amdgpu-targets"),
    Scenario("a caller-workflow edit that passes nothing new to the build selects nothing",
             edits=_replace(".github/workflows/backend.yml", "on: push", "on:\n  push:\n    branches: [master]"),
             suffixes=S()),
    Scenario("a new input the caller passes to the build selects every leg",
             edits=_replace(".github/workflows/backend.yml", "      build-type: ${{ matrix.build-type }}\n",
                            "      build-type: ${{ matrix.build-type }}\n      apt-mirror: http://mirror\n"),
             suffixes=EVERY_LINUX),
    Scenario("a file the .dockerignore now leaves out selects the legs that read it",
             edits=_append(".dockerignore", "backend/cpp/llama-cpp/grpc-server.cpp\n"),
             suffixes=LLAMA_SUFFIXES | {"-turboquant"}, reason=".dockerignore changed"),
    Scenario("a file under a .dockerignore'd directory is not an input (the Darwin build has no .dockerignore)",
             edits=lambda r: {"backend/go/whisper/build/libgowhisper.so": "binary\n"}, suffixes=S(),
             darwin=S("whisper")),
    Scenario("an edit of one leg of a pair selects the whole suffix",
             edits=_matrix(lambda t: t.replace("platforms: 'linux/arm64'\n    tag-latest: 'auto'\n    tag-suffix: "
                                               "'-cpu-whisper'\n    runs-on: 'ubuntu-latest'",
                                               "platforms: 'linux/arm64'\n    tag-latest: 'auto'\n    tag-suffix: "
                                               "'-cpu-whisper'\n    runs-on: 'ubuntu-24.04-arm'")),
             suffixes=S("-cpu-whisper")),
    Scenario("this project's build code selects every Linux leg", edits=lambda r: {"ci/build.py": "# the tool\n"},
             suffixes=EVERY_LINUX),
    Scenario("--strict-proto rebuilds an additive proto edit", edits=_proto(FIELDS + "\n  bool cache_prompt = 8;"),
             strict_proto=True, suffixes=EVERY_LINUX, darwin=ALL),
    Scenario("a Dockerfile of a kind no rule knows is still derived (its sources select it)",
             base_edits=lambda r: {MATRIX_PATH: matrix_text(PEER_INCLUDES + MORE_INCLUDES + (
                 entry("-cpu-newthing", "newthing", "newthing"),)),
                 "backend/Dockerfile.newthing": "FROM ubuntu:24.04 AS builder\nCOPY backend/newthing/ /src/\n"
                                                "RUN make -C /src\nFROM scratch\nCOPY --from=builder /src/out /\n",
                 "backend/newthing/Makefile": "all:\n\techo hi\n"},
             edits=_append("backend/newthing/Makefile", "# x\n"), suffixes=S("-cpu-newthing")),
    Scenario("a leg whose Dockerfile is missing is selected by any change",
             base_edits=lambda r: {MATRIX_PATH: matrix_text(PEER_INCLUDES + MORE_INCLUDES + (
                 entry("-cpu-ghost", "ghost", "ghost"),))},
             edits=_append("README.md", "x\n"), suffixes=S("-cpu-ghost"), reason="cannot be derived"),
)


def view_of(s: Scenario) -> tuple[str, ...]:
    return s.view or PEER_SUFFIXES


DARWIN_BACKENDS = frozenset({"diffusers", "mlx", "whisper", "llama-cpp", "ds4"})


def expand(expected: frozenset[str], universe: frozenset[str]) -> frozenset[str]:
    return universe if expected == ALL else expected


def peer_view_backends(suffixes: frozenset[str], view: tuple[str, ...]) -> frozenset[str]:
    """Backend names of the view's entries among ``suffixes`` (the peer's tests speak backends)."""
    names = {}
    for block in PEER_INCLUDES + MORE_INCLUDES:
        sfx = next(line.split("'")[1] for line in block.splitlines() if "tag-suffix" in line)
        be = next(line.split("'")[1] for line in block.splitlines() if "backend:" in line)
        names[sfx] = be
    return frozenset(names[s] for s in suffixes if s in view and s in names)


def view_universe(view: tuple[str, ...]) -> frozenset[str]:
    return peer_view_backends(frozenset(view), view)


@dataclass
class Outcome:
    linux_suffixes: frozenset[str]
    darwin_backends: frozenset[str]
    backends_true: frozenset[str]
    first_reason: str
    selection: object = field(repr=False, default=None)
