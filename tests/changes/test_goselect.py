"""The go.mod/go.sum rule with the real Go toolchain (ci/changes/goselect.py, ci/changes/gotool.py).

The fixture repository (``tests/support/localai_tree.py``) builds its Go backends in the root module;
here its go.mod requires small modules a file-based module proxy serves (``tests/support/goproxy.py``):
gRPC, which every Go backend reaches through ``pkg/grpc`` and which imports ``golang.org/x/net``;
containerd, imported only by the server's ``pkg/oci``; go-processmanager, imported only by the
server, whose next version raises ``golang.org/x/net`` through its own go.mod. Every commit goes
through ``select_from_git`` and ``invoke matrix.github``'s verb, with the real ``go``, no network.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.support.change_scenarios import GO_SUFFIXES
from tests.support.goproxy import GoProxy, go_env, go_sum, localai_go_files, localai_go_mod, localai_world
from localai_ci.changes.gomod import ModuleFiles, Unavailable
from localai_ci.changes.gotool import GoToolchain
from localai_ci.changes.select import Selection
from localai_ci.github.changed_jobs import go_toolchain, select_from_git, write_github_matrices
from localai_ci.matrix.model import load_matrix
from tests.support.localai_tree import MATRIX_PATH, Repo

DARWIN_GO = "darwin -metal-darwin-arm64-whisper"


class World:
    def __init__(self, tmp: Path, go: str) -> None:
        self.go = go
        self.proxy = GoProxy(tmp / "proxy")
        localai_world(self.proxy)
        self.env = go_env(tmp / "go", self.proxy.root, go)
        self.sums: dict[str, str] = {}
        self.tmp = tmp
        base_mod = localai_go_mod()
        self.repo = Repo(tmp / "repo", extra={"go.mod": base_mod, "go.sum": self.sum(base_mod), **localai_go_files()})

    def sum(self, mod: str) -> str:
        if mod not in self.sums:
            self.sums[mod] = go_sum(self.go, self.env, mod, self.tmp / f"sum{len(self.sums)}")
        return self.sums[mod]

    def bump(self, tidy: bool = True, **versions: str) -> str:
        """A commit requiring other versions (module name with '_' for '/'), go.sum as tidy writes it."""
        req = {m.replace("__", "/"): v for m, v in versions.items()}
        mod = localai_go_mod(req)
        edits = {"go.mod": mod}
        if tidy:
            edits["go.sum"] = self.sum(mod)
        self.repo.change(edits)
        return self.repo.base

    def select(self, env: dict[str, str] | None = None) -> Selection:
        m = load_matrix(self.repo.path / MATRIX_PATH)
        return select_from_git(m, self.repo.base, matrix_file=self.repo.path / MATRIX_PATH,
                               go=go_toolchain(env if env is not None else self.env))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, go: str) -> World:
    return World(tmp_path_factory.mktemp("goworld"), go)


CONTAINERD = "github.com__containerd__containerd"
XNET = "golang.org__x__net"
PM = "github.com__mudler__go-processmanager"


def suffixes(sel: Selection) -> frozenset[str]:
    return frozenset(e.tag_suffix for e in sel.entries)


def test_the_toolchain_lists_build_lists_and_package_graphs(world: World) -> None:
    go = GoToolchain.from_env(world.env)
    assert isinstance(go, GoToolchain) and go.describe().startswith("go1.")
    files = ModuleFiles(root="", go_mod=localai_go_mod(), go_sum=None)
    assert go.build_list(files) == {**{m: v for m, v in (
        ("github.com/containerd/containerd", "v1.7.32"), ("github.com/mudler/go-processmanager", "v0.1.0"),
        ("golang.org/x/net", "v0.54.0"), ("google.golang.org/grpc", "v1.70.0"),
        ("google.golang.org/protobuf", "v1.36.0"))}}
    graph = go.package_graph(files, ["google.golang.org/grpc/status", "google.golang.org/grpc"], ["linux/arm64"])
    assert not isinstance(graph, Unavailable)
    assert graph.packages["google.golang.org/grpc"].imports == ("golang.org/x/net/http2", "google.golang.org/grpc/codes")
    assert graph.packages["golang.org/x/net/http2"].module == "golang.org/x/net"
    assert graph.configs == ("linux/arm64 CGO_ENABLED=0", "linux/arm64 CGO_ENABLED=1")
    # raised by minimal version selection: go-processmanager v0.1.1 requires x/net v0.55.0
    untidy = ModuleFiles(root="", go_mod=localai_go_mod({"github.com/mudler/go-processmanager": "v0.1.1"}))
    assert go.build_list(untidy)["golang.org/x/net"] == "v0.55.0"  # type: ignore[index]


def test_a_module_no_go_backend_builds_with_selects_no_go_leg(world: World) -> None:
    world.bump(**{CONTAINERD: "v1.7.33"})
    sel = world.select()
    assert suffixes(sel) == frozenset() and sel.darwin == (), sel.details
    why = sel.spared["-cpu-whisper (amd64)"]
    assert any("go.mod and go.sum changed (github.com/containerd/containerd v1.7.32 -> v1.7.33" in w
               and "this leg builds with none of those modules" in w for w in why), why
    assert DARWIN_GO in sel.spared
    assert any("the legs that build with a changed module are selected" in n for n in sel.notes), sel.notes


def test_a_module_reached_through_another_selects_every_go_leg_with_the_import_path(world: World) -> None:
    world.bump(**{XNET: "v0.55.0"})
    sel = world.select()
    assert suffixes(sel) == GO_SUFFIXES and [d["backend"] for d in sel.darwin] == ["whisper"]
    reason = sel.details["-cpu-whisper (amd64)"][0]
    assert reason.startswith(
        "go.mod and go.sum changed: golang.org/x/net v0.54.0 -> v0.55.0, a module this leg builds with: "
        "golang.org/x/net/http2 <- google.golang.org/grpc imports golang.org/x/net/http2 <- "
        "pkg/grpc/server.go imports google.golang.org/grpc <- "), reason
    assert "backend/Dockerfile.golang line" in reason


def test_a_version_raised_through_the_module_graph_is_found(world: World) -> None:
    """go.mod names only go-processmanager (server-only); its new version raises x/net, which gRPC uses."""
    world.bump(tidy=False, **{PM: "v0.1.1"})
    sel = world.select()
    assert suffixes(sel) == GO_SUFFIXES, sel.spared
    assert "golang.org/x/net v0.54.0 -> v0.55.0, a module this leg builds with" in sel.details["-ced (amd64)"][0]


def test_without_a_module_graph_every_go_leg_and_the_summary_says_why(world: World, tmp_path: Path) -> None:
    world.bump(**{CONTAINERD: "v1.7.33"})
    offline = go_env(tmp_path / "empty", "off", world.go)  # no proxy, an empty module cache
    sel = world.select(offline)
    assert suffixes(sel) == GO_SUFFIXES
    reason = sel.details["-cpu-opus (amd64)"][0]
    assert "the Go module graph cannot be computed (`go list -m all` failed:" in reason
    assert "so every leg building in module github.com/mudler/LocalAI is selected" in reason
    assert any("actions/setup-go" in n for n in sel.notes)
    nogo = world.select({"PATH": str(tmp_path)})
    assert "no `go` on PATH" in nogo.details["-cpu-opus (amd64)"][0]
    summary = tmp_path / "summary.md"
    out = io.StringIO()
    write_github_matrices(matrix=str(world.repo.path / MATRIX_PATH), family="backends", changed_files=None,
                          base=world.repo.base, force_all=False, shards=4, github_output=str(tmp_path / "out"),
                          env={**offline, "GITHUB_STEP_SUMMARY": str(summary)}, out=out, err=io.StringIO(),
                          explain_suffixes=("-cpu-opus",))
    assert "the Go module graph cannot be computed" in summary.read_text()
    assert "the Go module graph cannot be computed (`go list -m all` failed:" in out.getvalue()


def test_explain_names_the_module_and_the_path_or_why_not(world: World, tmp_path: Path) -> None:
    world.bump(**{XNET: "v0.55.0", CONTAINERD: "v1.7.33"})
    out, err = io.StringIO(), io.StringIO()
    summary = tmp_path / "summary.md"
    write_github_matrices(matrix=str(world.repo.path / MATRIX_PATH), family="backends", changed_files=None,
                          base=world.repo.base, force_all=False, shards=4, github_output=str(tmp_path / "out"),
                          env={**world.env, "GITHUB_STEP_SUMMARY": str(summary)}, out=out, err=err,
                          explain_suffixes=("-cpu-whisper",))
    text = out.getvalue()
    assert "because go.mod and go.sum changed: golang.org/x/net v0.54.0 -> v0.55.0, a module this leg builds with: " \
           "golang.org/x/net/http2 <- google.golang.org/grpc imports golang.org/x/net/http2" in text, text
    assert "containerd" not in text.split("inputs (")[0]  # containerd reaches no Go backend: not a reason
    assert "the legs that build with a changed module are selected" in summary.read_text()


def test_explain_says_why_a_go_leg_is_left_out(world: World, tmp_path: Path) -> None:
    world.bump(**{CONTAINERD: "v1.7.33"})
    out = io.StringIO()
    write_github_matrices(matrix=str(world.repo.path / MATRIX_PATH), family="backends", changed_files=None,
                          base=world.repo.base, force_all=False, shards=4, github_output=str(tmp_path / "out"),
                          env=world.env, out=out, err=io.StringIO(), explain_suffixes=("-cpu-opus",))
    text = out.getvalue()
    assert "-cpu-opus (amd64) [" in text and ": not selected" in text
    assert "left out: go.mod and go.sum changed (github.com/containerd/containerd v1.7.32 -> v1.7.33), but this " \
           "leg builds with none of those modules" in text, text
