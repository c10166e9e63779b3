"""What a `make TARGET` run uses of a Makefile (ci/makefile.py), compared between revisions."""
from __future__ import annotations

import pytest

from localai_ci.changes.makefile import parse_make_args, parse_makefile

MK = """GOCMD?=go
PROTOC_VERSION?=31.1
# a comment that mentions $(UNUSED)
define BANNER
echo building
endef

protogen-go: protoc install-go-tools
\tmkdir -p pkg/grpc/proto
\t./protoc -Ibackend/ --go_out=pkg/grpc/proto/ backend/backend.proto

protoc:
\tcurl -o protoc.zip https://example.invalid/protoc-$(PROTOC_VERSION).zip

install-go-tools:
\t$(GOCMD) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.34.2
\t$(MAKE) banner

banner:
\t$(BANNER)

docs:
\tcd docs && hugo

backends/%:
\tdocker build -t $* .
"""


def test_a_targets_fingerprint_holds_its_rules_prerequisites_sub_makes_and_variables() -> None:
    fp = parse_makefile(MK).fingerprint(["protogen-go"])
    assert sorted(fp) == ["rule banner", "rule install-go-tools", "rule protoc", "rule protogen-go",
                          "var BANNER", "var GOCMD", "var PROTOC_VERSION"]


@pytest.mark.parametrize("edit, changed", [
    (("hugo", "hugo --minify"), []),  # another target
    (("PROTOC_VERSION?=31.1", "PROTOC_VERSION?=31.2"), ["var PROTOC_VERSION"]),
    (("echo building", "echo Building"), ["var BANNER"]),  # through $(MAKE) banner and define
    (("# a comment that mentions $(UNUSED)", "# another comment"), []),
    (("\tmkdir -p pkg/grpc/proto\n", "\tmkdir -p pkg/grpc/proto\n\t@echo done\n"), ["rule protogen-go"]),
])
def test_only_what_the_target_uses_differs(edit: tuple[str, str], changed: list[str]) -> None:
    before = parse_makefile(MK).fingerprint(["protogen-go"])
    after = parse_makefile(MK.replace(*edit)).fingerprint(["protogen-go"])
    assert sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k)) == changed


def test_pattern_rules_and_unknown_targets() -> None:
    mk = parse_makefile(MK)
    assert [r.targets for r in mk.rules_for("backends/vllm")] == [("backends/%",)]
    assert "file" in mk.fingerprint(["no-such-target"])  # nothing this model sees: the whole file counts
    assert mk.default_goal == "protogen-go"


@pytest.mark.parametrize("words, directory, targets", [
    ("-BC /LocalAI/backend/cpp/llama-cpp package", "/LocalAI/backend/cpp/llama-cpp", ("package",)),
    ("-C a -C b build", "a/b", ("build",)),
    ("--directory=x -j4 BUILD_TYPE=cublas grpc-server package", "x", ("grpc-server", "package")),
    ("-j 8 -f other.mk all", None, ("all",)),
])
def test_make_command_lines(words: str, directory: str | None, targets: tuple[str, ...]) -> None:
    args = parse_make_args(words.split())
    assert (args.directory, args.targets) == (directory, targets)
