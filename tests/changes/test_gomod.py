"""go.mod/go.sum, build lists and package graphs (ci/changes/gomod.py): pure, no toolchain."""
from __future__ import annotations

import pytest

from localai_ci.changes.gomod import (
    GoModError,
    Package,
    PackageGraph,
    chain_text,
    diff_build_lists,
    diff_module_files,
    generator_imports,
    local_replacements,
    parse_go_mod_file,
    reach,
)

MOD = """// LocalAI
module github.com/mudler/LocalAI

go 1.24.0

toolchain go1.24.4

require (
\tgithub.com/containerd/containerd v1.7.32
\tgolang.org/x/net v0.54.0 // indirect
\t"example.com/quoted" v1.0.0
)

require google.golang.org/grpc v1.70.0

exclude golang.org/x/net v0.50.0

replace (
\texample.com/local => ./third_party/local
\texample.com/fork v1.0.0 => github.com/me/fork v1.0.1
)

retract v0.1.0
tool golang.org/x/tools/cmd/stringer
"""


def test_parse_go_mod() -> None:
    m = parse_go_mod_file(MOD)
    assert m.module == "github.com/mudler/LocalAI"
    assert dict(m.directives) == {"module": "github.com/mudler/LocalAI", "go": "1.24.0", "toolchain": "go1.24.4"}
    assert m.requires == {"github.com/containerd/containerd": "v1.7.32", "golang.org/x/net": "v0.54.0",
                          "example.com/quoted": "v1.0.0", "google.golang.org/grpc": "v1.70.0"}
    assert m.excludes == {("golang.org/x/net", "v0.50.0")}
    assert m.replaces == {"example.com/local": "./third_party/local",
                          "example.com/fork v1.0.0": "github.com/me/fork v1.0.1"}
    assert local_replacements(m) == ("./third_party/local",)


@pytest.mark.parametrize("text,where", [
    ("module a\nrequire b\n", "go.mod line 2: expected `require PATH VERSION`"),
    ("module a\nreplace b v1 c v2\n", "go.mod line 2: expected `replace PATH"),
    ("module a\nrequire (\n b v1\n", "a `require (` block is not closed"),
    ("go 1.21\n", "no `module` line"),
])
def test_bad_go_mod_names_the_line(text: str, where: str) -> None:
    with pytest.raises(GoModError, match=where.replace("(", r"\(").replace("`", "`")):
        parse_go_mod_file(text)


def bump(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


def test_a_version_bump_is_a_change_of_that_module_only() -> None:
    d = diff_module_files(MOD, bump(MOD, "containerd v1.7.32", "containerd v1.7.33"), None, None)
    assert [m.text() for m in d.modules] == ["github.com/containerd/containerd v1.7.32 -> v1.7.33"]
    assert d.whole == ()


def test_nothing_that_decides_a_build_is_no_change() -> None:
    edited = bump(MOD, "// LocalAI", "// LocalAI, the server") .replace("v0.54.0 // indirect", "v0.54.0")
    edited = bump(edited, "retract v0.1.0", "retract v0.2.0")
    assert not diff_module_files(MOD, edited, "a v1 h1:x=\n", "a v1 h1:x=\nb v2 h1:y=\n").changed


def test_replace_exclude_and_requirements_added_or_dropped() -> None:
    new = bump(MOD, "example.com/fork v1.0.0 => github.com/me/fork v1.0.1", "example.com/fork v1.0.0 => github.com/me/fork v1.0.2")
    new = bump(new, "exclude golang.org/x/net v0.50.0", "exclude golang.org/x/net v0.51.0")
    new = bump(new, "require google.golang.org/grpc v1.70.0", "require example.com/new v1.0.0")
    d = diff_module_files(MOD, new, None, None)
    assert sorted(m.text() for m in d.modules) == [
        "example.com/fork (replace => github.com/me/fork v1.0.1 -> => github.com/me/fork v1.0.2)",
        "example.com/new (none) -> v1.0.0",
        "golang.org/x/net (exclude (none) -> v0.51.0)",
        "golang.org/x/net (exclude v0.50.0 -> (none))",
        "google.golang.org/grpc v1.70.0 -> (none)",
    ]


@pytest.mark.parametrize("old,new,why", [
    ("go 1.24.0", "go 1.25.0", "`go` 1.24.0 -> 1.25.0"),
    ("toolchain go1.24.4", "toolchain go1.24.5", "`toolchain` go1.24.4 -> go1.24.5"),
    ("module github.com/mudler/LocalAI", "module github.com/mudler/LocalAI/v2", "`module` github.com/mudler/LocalAI"),
    ("retract v0.1.0", "retract v0.1.0\ngodebug default=go1.21", "`godebug` (none) -> default=go1.21"),
    ("retract v0.1.0", "frobnicate x", "a directive this tool does not know changed (frobnicate)"),
    ("require google.golang.org/grpc v1.70.0", "require google.golang.org/grpc", "cannot be compared"),
])
def test_whole_module_changes(old: str, new: str, why: str) -> None:
    d = diff_module_files(MOD, bump(MOD, old, new), None, None)
    assert any(why in w for w in d.whole), d


def test_go_sum_changed_or_removed_hashes_count_added_ones_do_not() -> None:
    before = "a v1.0.0 h1:old=\na v1.0.0/go.mod h1:m=\nb v2.0.0 h1:b=\n"
    after = "a v1.0.0 h1:new=\na v1.0.0/go.mod h1:m=\nc v3.0.0 h1:c=\n"
    d = diff_module_files(MOD, MOD, before, after)
    assert [(m.path, m.version, m.what) for m in d.modules] == [("a", "v1.0.0", "go.sum"), ("b", "v2.0.0", "go.sum")]
    assert "its go.sum hash h1:old= -> h1:new=" in d.modules[0].text()


def test_missing_revisions() -> None:
    assert diff_module_files(None, MOD, None, None).whole == ("go.mod is new",)
    assert diff_module_files(MOD, None, None, None).whole == ("go.mod was removed",)


def test_build_lists() -> None:
    old = {"a": "v1.0.0", "b": "v1.0.0", "c": "v1.0.0 => ./c"}
    new = {"a": "v1.0.0", "b": "v1.1.0", "c": "v1.0.0 => ./c2", "d": "v0.1.0"}
    assert [m.text() for m in diff_build_lists(old, new)] == [
        "b v1.0.0 -> v1.1.0", "c v1.0.0 => ./c -> v1.0.0 => ./c2", "d (none) -> v0.1.0"]


GRAPH = PackageGraph(packages={
    "example.com/grpc": Package("example.com/grpc", "example.com/grpc", ("fmt", "example.com/net/http2",
                                                                        "example.com/grpc/codes")),
    "example.com/grpc/codes": Package("example.com/grpc/codes", "example.com/grpc", ()),
    "example.com/net/http2": Package("example.com/net/http2", "example.com/net", ("example.com/net/idna",)),
    "example.com/net/idna": Package("example.com/net/idna", "example.com/net", ("example.com/text",)),
    "example.com/text": Package("example.com/text", "example.com/text", ()),
    "example.com/oci": Package("example.com/oci", "example.com/containerd", ()),
    "example.com/broken": Package("example.com/broken", "", (), error="no required module provides it"),
    "fmt": Package("fmt", "", (), standard=True),
})


def test_reach_finds_the_shortest_import_path_to_each_changed_module() -> None:
    r = reach(GRAPH, ["example.com/grpc", "fmt"], {"example.com/text", "example.com/net", "example.com/containerd"})
    assert r.hits == {"example.com/net": ("example.com/grpc", "example.com/net/http2"),
                      "example.com/text": ("example.com/grpc", "example.com/net/http2", "example.com/net/idna",
                                           "example.com/text")}
    assert (r.packages, r.modules, r.unknown) == (5, 3, ())
    assert chain_text(r.hits["example.com/net"]) == "example.com/net/http2 <- example.com/grpc imports example.com/net/http2"


def test_reach_reports_what_it_cannot_follow() -> None:
    r = reach(GRAPH, ["example.com/broken", "example.com/missing"], {"example.com/text"})
    assert r.hits == {} and r.unknown == ("example.com/broken (no required module provides it)", "example.com/missing")


def test_generator_imports() -> None:
    recipe = ["mkdir -p pkg/grpc/proto",
              "./protoc -Ibackend/ --go_out=pkg/grpc/proto/ --go-grpc_out=pkg/grpc/proto/ backend/backend.proto"]
    assert generator_imports(recipe) == (
        "google.golang.org/protobuf/reflect/protoreflect", "google.golang.org/protobuf/runtime/protoimpl",
        "google.golang.org/grpc", "google.golang.org/grpc/codes", "google.golang.org/grpc/status")
    assert generator_imports(recipe[1:2], ['syntax = "proto3";\nimport "google/protobuf/field_mask.proto";\n'])[-1] \
        == "google.golang.org/protobuf/types/known/fieldmaskpb"
    assert generator_imports(["go generate ./..."]) is None
    assert generator_imports(["protoc --python_out=. x.proto"]) is None
