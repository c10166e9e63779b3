"""The Go import graph within a module (ci/gograph.py)."""
from __future__ import annotations

from localai_ci.changes.gograph import GoGraph, go_imports, parse_go_mod
from localai_ci.changes.tree import Tree


def test_import_declarations() -> None:
    src = ('// Package main\n/* import "not/this" */\npackage main\n\nimport "fmt"\nimport (\n\t"os"\n'
           '\tpb "github.com/mudler/LocalAI/pkg/grpc/proto" // generated\n\t_ "embed"\n)\n'
           'import z "q/r"\n\nfunc main() { _ = `import "nope"` }\n')
    assert go_imports(src) == ("fmt", "os", "github.com/mudler/LocalAI/pkg/grpc/proto", "embed", "q/r")


def test_go_mod_and_local_replacements() -> None:
    mod = parse_go_mod("module github.com/mudler/LocalAI\n\nreplace (\n\texample.com/x => ./third/x\n"
                       "\texample.com/y v1 => example.com/y v2\n)\n", "")
    assert mod is not None and mod.path == "github.com/mudler/LocalAI"
    assert mod.directory_of("example.com/x/sub") == "third/x/sub"
    assert mod.directory_of("example.com/y") is None
    assert mod.directory_of("github.com/mudler/LocalAI/pkg/utils") == "pkg/utils"


def pkg(name: str, *imports: str, extra: str = "") -> str:
    return f"package {name}\n" + "".join(f'import "github.com/mudler/LocalAI/{i}"\n' for i in imports) + extra


TREE = Tree.from_mapping({
    "go.mod": "module github.com/mudler/LocalAI\n",
    "backend/go/w/main.go": pkg("main", "pkg/utils", "pkg/grpc/proto"),
    "backend/go/w/main_test.go": pkg("main", "pkg/testonly"),
    "pkg/utils/u.go": pkg("utils", "pkg/audio"),
    "pkg/audio/a.go": pkg("audio", extra='//go:embed assets\nvar f string\n'),
    "pkg/audio/assets/x.bin": "x",
    "pkg/testonly/t.go": pkg("testonly"),
    "pkg/unused/u.go": pkg("unused"),
})


def test_closure_chains_generated_packages_and_embeds() -> None:
    c = GoGraph(TREE).closure(["backend/go/w"])
    assert c is not None
    assert sorted(c.packages) == ["backend/go/w", "pkg/audio", "pkg/utils"]  # not what only a _test.go imports
    assert [(e.importer, e.import_path.rsplit("/", 2)[-2:]) for e in c.chain("pkg/audio")] == [
        ("backend/go/w/main.go", ["pkg", "utils"]), ("pkg/utils/u.go", ["pkg", "audio"])]
    assert list(c.generated) == ["pkg/grpc/proto"]
    assert c.embeds == frozenset({"pkg/audio"})
