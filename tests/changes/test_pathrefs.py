"""Paths named by scripts, recipes and RUN steps (ci/pathrefs.py): how words become repository paths."""
from __future__ import annotations

import pytest

from localai_ci.changes.pathrefs import Where, make_runs, references
from localai_ci.changes.tree import Tree

TREE = Tree.from_mapping({
    ".docker/llama-cpp-build-target.sh": "", ".docker/apt-mirror.sh": "", "backend/backend.proto": "",
    "backend/cpp/llama-cpp/Makefile": "", "backend/cpp/llama-cpp/grpc-server.cpp": "",
    "backend/cpp/grpc/Makefile": "", "backend/go/whisper/main.go": "", "backend/python/common/libbackend.sh": "",
    "scripts/build/package-gpu-libs.sh": "", "src/tiny/a.c": "", "src/tiny/b.c": "", "src/tiny/backend.yaml": "",
    "Makefile": "",
})
IMAGE = (("/LocalAI", ""), ("/usr/local/sbin/compile.sh", ".docker/llama-cpp-compile.sh"))


def refs(text: str, here: str = "backend/cpp/llama-cpp", env: tuple[tuple[str, str], ...] = ()) -> list[str]:
    return sorted(r.path + ("/" if r.is_dir else "") for r in references(text, Where(here, "", IMAGE, env), TREE))


@pytest.mark.parametrize("text", [
    'CURDIR=$(dirname "$(realpath $0)")\nsource "$CURDIR/../../../scripts/build/package-gpu-libs.sh"\n',
    'source $(dirname $0)/../../../scripts/build/package-gpu-libs.sh\n',
    'D := $(dir $(abspath $(lastword $(MAKEFILE_LIST))))\nall:\n\tbash $(D)/../../../scripts/build/package-gpu-libs.sh\n',
    'REPO_ROOT="${CURDIR}/../../.."\nbash "${REPO_ROOT}/scripts/build/package-gpu-libs.sh"\n',  # CURDIR: make's/the shell's
])
def test_the_files_own_directory_idioms(text: str) -> None:
    assert refs(text) == ["scripts/build/package-gpu-libs.sh"]


def test_image_paths_map_back_through_the_copies_and_substitutions_are_scanned() -> None:
    text = 'cd /LocalAI/backend/cpp/llama-cpp\nT=$(/LocalAI/.docker/llama-cpp-build-target.sh "$A")\n' \
           'sh /LocalAI/.docker/apt-mirror.sh || true\nls /opt/grpc /usr/local/sbin/compile.sh\n'
    assert refs(text, here=".docker") == [".docker/apt-mirror.sh", ".docker/llama-cpp-build-target.sh",
                                          "backend/cpp/llama-cpp/"]


def test_dotdot_stops_at_the_root_and_cmake_source_dir_is_here() -> None:
    assert refs('get_filename_component(p "../../../../../../backend/backend.proto" ABSOLUTE)\n') == [
        "backend/backend.proto"]
    assert refs('set(P "${CMAKE_CURRENT_SOURCE_DIR}/../../backend.proto")\n') == ["backend/backend.proto"]


def test_a_proto_on_a_protoc_line_is_found_below_its_include_dirs() -> None:
    assert refs("python -m grpc_tools.protoc -I../../ -I./ --python_out=. backend.proto\n",
                here="backend/python/common") == ["backend/backend.proto"]


def test_unknown_variables() -> None:
    # a leading unknown variable: tried below the context root and below the file's directory
    assert refs("bash $SOMEWHERE/scripts/build/package-gpu-libs.sh\n") == ["scripts/build/package-gpu-libs.sh"]
    # one after the first segment names nothing (it would name every sibling)
    assert refs("$(MAKE) -C $(CURDIR)/../$(VARIANT) grpc-server\n") == []
    # a build arg expands
    assert refs("make -C /LocalAI/backend/go/${BACKEND} build\n", env=(("BACKEND", "whisper"),)) == [
        "backend/go/whisper/"]


def test_globs_comments_urls_and_places() -> None:
    assert refs('cat /build/src/"${B}"/*.c\n', env=(("B", "tiny"),)) == []  # /build is not a copy
    assert refs('cat src/"${B}"/*.c\n', here="", env=(("B", "tiny"),)) == ["src/tiny/a.c", "src/tiny/b.c"]
    assert refs("# see scripts/build/package-gpu-libs.sh\necho hi\n") == []
    assert refs("curl -L https://example.invalid/backend/backend.proto\n") == []
    assert refs("cd /LocalAI && make\ncd $(dirname $0)/..\n") == []  # the root and a parent are places


def test_a_path_an_output_will_have_counts_as_its_nearest_existing_directory() -> None:
    assert refs("INSTALLED=$(CURDIR)/../grpc/installed_packages\n") == ["backend/cpp/grpc/"]
    assert refs("mkdir -p /LocalAI/build-output/x\n") == []  # a top-level directory would be too broad
    # not when a build arg made the missing path: backend/go/<a backend with no directory>
    assert refs("make -C /LocalAI/backend/go/${BACKEND}/sub build\n", env=(("BACKEND", "nope"),)) == []


def make_dirs(text: str, where: Where, cwd: str | None = None, cwd_known: bool = True) -> list[tuple[str | None, tuple[str, ...]]]:
    return [(m.directory, m.args.targets) for m in make_runs(text, where, TREE, cwd=cwd, cwd_known=cwd_known)]


def test_make_runs_follow_cd_pushd_and_dash_c() -> None:
    w = Where("", "", IMAGE, (("BACKEND", "whisper"),))
    assert make_dirs("cd /LocalAI && make protogen-go && make -C /LocalAI/backend/go/${BACKEND} build", w, cwd="/") == [
        ("", ("protogen-go",)), ("backend/go/whisper", ("build",))]
    assert make_dirs("make -BC /LocalAI/backend/cpp/llama-cpp package", w, cwd="/") == [
        ("backend/cpp/llama-cpp", ("package",))]
    # a shell script runs where its caller is: a bare make has no known directory; pushd/popd are followed
    script = Where("scripts/build", "", (), ())
    assert make_dirs("make x\npushd backend/cpp/llama-cpp\nmake grpc-server\npopd\nmake y", script, cwd_known=False) == [
        (None, ("x",)), ("backend/cpp/llama-cpp", ("grpc-server",)), (None, ("y",))]
