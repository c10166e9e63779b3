"""localai_ci.matrix.model: the real LocalAI files load with the right numbers; bad input is refused with a clear message."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from localai_ci.errors import MatrixError
from localai_ci.matrix.model import MAX_MATRIX_BYTES, load_matrix, parse_matrix, read_matrix_text
from localai_ci.matrix.naming import Family, LegKey
from localai_ci.oci.platforms import Arch
from tests.support.localai_ref import M2608, M9730
from tests.support.paths import REPO, RESOURCES

RES = RESOURCES / "matrices"

FIELDS = {
    "build-type": "''", "cuda-major-version": "''", "cuda-minor-version": "''", "platforms": "'linux/amd64'",
    "tag-latest": "'auto'", "tag-suffix": "'-cpu-x'", "runs-on": "'ubuntu-latest'", "base-image": "'ubuntu:24.04'",
    "skip-drivers": "'false'", "backend": "'x'", "dockerfile": "'./Dockerfile'", "context": "'./'",
    "ubuntu-version": "'2404'",
}


def entry(**over: str | None) -> str:
    """One include entry as YAML text; keyword names use '_' for '-'; None drops a field."""
    fields = dict(FIELDS)
    for k, v in over.items():
        key = k.replace("_", "-")
        if v is None:
            fields.pop(key, None)
        else:
            fields[key] = v
    body = "".join(f"    {k}: {v}\n" for k, v in fields.items())
    return "  - " + body[4:]


def doc(*entries: str) -> str:
    return "include:\n" + "".join(entries)


# ---- the real files -----------------------------------------------------------------------------
def test_localai_2026_08_loads() -> None:
    m = load_matrix(M2608)
    assert len(m) == 457 and len(m.darwin) == 62
    assert sum(1 for e in m if e.platform_tag_field) == 145
    assert sum(1 for e in m if e.builder_base_image) == 37
    assert sum(1 for e in m if e.runs_on == "bigger-runner") == 6
    assert sum(e.multi_platform for e in m) == 0
    first = m.entries[0]
    assert (first.line, first.end_line, first.tag_suffix, first.ptag) == (30, 42, "-nvidia-l4t-diffusers", "arm64")


def test_localai_pr9730_loads() -> None:
    m = load_matrix(M9730)
    assert len(m) == 271 and len(m.darwin) == 34
    assert sum(1 for e in m if e.platform_tag_field) == 72
    assert {e.runs_on for e in m} == {"ubuntu-latest", "ubuntu-24.04-arm"}
    pairs = [s for s in m.suffixes() if {e.platform.arch for e in m.legs_of(s)} == {Arch.AMD64, Arch.ARM64}]
    assert len(pairs) == 36


def test_entry_spans_cover_exactly_the_entry_lines() -> None:
    """end_line is the entry's last value, not the next entry or the comments after it."""
    text = read_matrix_text(M2608)
    lines = text.splitlines()
    m = parse_matrix(text, "m")
    for a, b in zip(m.entries, m.entries[1:]):
        assert a.line <= a.end_line < b.line
        assert lines[a.line - 1].lstrip().startswith("- ")
        assert all(not ln.lstrip().startswith("- ") for ln in lines[a.line:a.end_line])
        between = lines[a.end_line:b.line - 1]
        assert all(not ln.strip() or ln.lstrip().startswith("#") for ln in between)
    e = m.find("-gpu-nvidia-cuda-12-llama-cpp", "amd64")
    assert e is not None and (e.line, e.end_line) == (448, 466)
    assert lines[e.end_line - 1] == "    ubuntu-version: '2404'"


def test_project_matrix_loads() -> None:
    m = load_matrix(REPO / "backends" / "matrix.yml")
    assert len(m) >= 1 and all(not e.multi_platform for e in m)


def test_entry_model() -> None:
    m = parse_matrix(doc(entry(platform_tag="'arm64'", platforms="'linux/arm64'", runs_on="'ubuntu-24.04-arm'"),
                         entry(tag_suffix="'-cpu-y'")), "m.yml")
    a, b = m.entries
    assert a.key == LegKey(Family.BACKENDS, "-cpu-x", "arm64") and b.ptag == "amd64"  # derived from platforms
    assert a.get("runs-on") == "ubuntu-24.04-arm" and a.get("amdgpu-targets") == ""
    assert b.build_args()["BACKEND"] == "x"


# ---- bad input: (case id, yaml text, fragments the message must contain) -------------------------
SUFFIX_200 = "-" + "a" * 199
BAD: list[tuple[str, str, list[str]]] = [
    ("not-yaml", "include: [\n", ["m.yml line 2", "not valid YAML"]),
    ("tab-indent", "include:\n\t- a: b\n", ["m.yml line 2", "not valid YAML"]),
    ("empty", "", ["m.yml", "empty", "'include:'"]),
    ("top-level-list", "- a\n", ["m.yml line 1", "top level must be a mapping"]),
    ("no-include", "includeDarwin: []\n", ["m.yml", "no 'include:' list"]),
    ("unknown-top-level", "inclde: []\n", ["line 1", "unknown top-level key 'inclde'", "did you mean 'include'?"]),
    ("include-not-list", "include:\n  a: b\n", ["line 2", "'include:' must be a list"]),
    ("entry-not-mapping", "include:\n  - just-a-string\n", ["line 2", "include entry #1 is not a mapping"]),
    ("entry-is-list", "include:\n  - [a, b]\n", ["line 2", "include entry #1 is not a mapping"]),
    ("missing-key", doc(entry(backend=None)), ["line 2", "'-cpu-x'", "missing required field 'backend'"]),
    ("unknown-key", doc(entry(platform_tags="'amd64'")),
     ["line 15", "'-cpu-x'", "unknown field 'platform-tags'", "did you mean 'platform-tag'?"]),
    ("unknown-key-underscore", doc(entry(**{"runs_on_": "'x'"})).replace("runs-on-:", "runs_on:"),
     ["'-cpu-x'", "unknown field 'runs_on'", "did you mean 'runs-on'?"]),
    ("duplicate-key", doc(entry()).replace("    backend: 'x'\n", "    backend: 'x'\n    backend: 'y'\n"),
     ["line 12", "field 'backend' appears twice"]),
    ("platform-no-slash", doc(entry(platforms="'linux'")),
     ["line 5", "'-cpu-x'", "'platforms'", "not a platform of the form os/arch[/variant]"]),
    ("platform-bad-arch", doc(entry(platforms="'linux/amd46'")), ["line 5", "'platforms'", "unknown architecture 'amd46'"]),
    ("platform-shell", doc(entry(platforms="'linux/amd64;reboot'")), ["line 5", "'platforms'", "os/arch[/variant]"]),
    ("platform-twice", doc(entry(platforms="'linux/amd64,linux/amd64'")), ["line 5", "lists a platform twice"]),
    ("suffix-shell", doc(entry(tag_suffix="'; rm -rf /'")),
     ["line 7", "'tag-suffix'", "not a safe tag fragment", "[A-Za-z0-9._-]"]),
    ("suffix-dotdot", doc(entry(tag_suffix="'../x'")), ["line 7", "'tag-suffix'", "not a safe tag fragment"]),
    ("suffix-200", doc(entry(tag_suffix=f"'{SUFFIX_200}'")), ["line 7", "'tag-suffix'", "200 characters long"]),
    ("suffix-no-dash", doc(entry(tag_suffix="'cpu-x'")), ["line 7", "start with '-'"]),
    ("suffix-double-dash", doc(entry(tag_suffix="'-cpu--x'")), ["line 7", "no '--'"]),
    ("suffix-space", doc(entry(tag_suffix="'-cpu x'")), ["line 7", "not a safe tag fragment"]),
    ("suffix-reserved", doc(entry(tag_suffix="'-localai-x'")), ["line 7", "reserved"]),
    ("ptag-shell", doc(entry(platform_tag="'; rm -rf /'")), ["line 15", "'platform-tag'", "not a safe tag fragment"]),
    ("ptag-dotdot", doc(entry(platform_tag="'../x'")), ["line 15", "'platform-tag'", "not a safe tag fragment"]),
    ("ptag-200", doc(entry(platform_tag="'" + "a" * 200 + "'")), ["line 15", "'platform-tag'", "1-16 characters"]),
    ("ptag-mismatch", doc(entry(platform_tag="'arm64'")),
     ["line 15", "'platform-tag'", "'arm64' does not match platforms 'linux/amd64'", "use 'amd64'"]),
    ("duplicate-leg", doc(entry(), entry()),
     ["line 15", "duplicate leg (tag-suffix '-cpu-x', platform-tag 'amd64') already defined at line 2"]),
    ("duplicate-leg-derived", doc(entry(), entry(platform_tag="'amd64'")), ["line 15", "duplicate leg"]),
    ("type-list", doc(entry(platforms="['linux/amd64']")), ["line 5", "field 'platforms' must be a string, not a list"]),
    ("type-mapping", doc(entry(runs_on="{labels: x}")), ["line 8", "field 'runs-on' must be a string, not a mapping"]),
    ("tag-latest-bad", doc(entry(tag_latest="'yes'")), ["line 6", "'tag-latest'", "not one of auto, true, false"]),
    ("dockerfile-absolute", doc(entry(dockerfile="'/etc/passwd'")), ["line 12", "relative path inside the repository"]),
    ("context-escapes", doc(entry(context="'../..'")), ["line 13", "'context'", "relative path inside the repository"]),
    ("empty-runner", doc(entry(runs_on="''")), ["line 8", "'runs-on'", "must not be empty"]),
    ("control-chars", doc(entry(backend='"x\\u0007"')), ["line 11", "'backend'", "control characters"]),
    ("darwin-not-list", doc(entry()) + "includeDarwin: x\n", ["'includeDarwin:' must be a list"]),
    ("alias", "x: &a 'linux/amd64'\ninclude: []\n", ["line 1", "anchors (&name) are not allowed"]),
]


@pytest.mark.parametrize(("text", "fragments"), [(t, f) for _, t, f in BAD], ids=[c for c, _, _ in BAD])
def test_bad_input_is_refused_with_a_clear_message(text: str, fragments: list[str]) -> None:
    with pytest.raises(MatrixError) as info:
        parse_matrix(text, "m.yml")
    msg = str(info.value)
    assert msg.startswith("m.yml")
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    assert info.value.exit_code == 2


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
    bomb = "\n".join(levels) + "\ninclude: *i\n"  # 9**9 = 387M nodes if expanded
    start = time.monotonic()
    with pytest.raises(MatrixError, match="anchors"):
        parse_matrix(bomb, "bomb.yml")
    assert time.monotonic() - start < 1.0


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yml"
    big.write_bytes(b"include:\n" + b"# " + b"x" * MAX_MATRIX_BYTES + b"\n")
    start = time.monotonic()
    with pytest.raises(MatrixError, match=r"big.yml: \d+ bytes is larger than the 4194304 byte limit"):
        load_matrix(big)
    assert time.monotonic() - start < 1.0


def test_too_many_nodes_refused() -> None:
    text = "include: [" + ", ".join(["[a]"] * 100_001) + "]\n"
    with pytest.raises(MatrixError, match="more than 200000 YAML nodes"):
        parse_matrix(text, "n.yml")


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(MatrixError, match="no such matrix file; pass --matrix PATH"):
        load_matrix(tmp_path / "nope.yml")
    with pytest.raises(MatrixError, match="not a regular file"):
        load_matrix(tmp_path)
    (tmp_path / "latin1.yml").write_bytes(b"include: []\n# caf\xe9\n")
    with pytest.raises(MatrixError, match="not UTF-8"):
        load_matrix(tmp_path / "latin1.yml")


@pytest.mark.parametrize("libyaml", [True, False])
def test_deep_nesting_is_refused_with_or_without_libyaml(libyaml: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI's venv and a developer's machine may differ in PyYAML's C extension; both refuse cleanly."""
    import yaml

    if libyaml and not getattr(yaml, "__with_libyaml__", False):
        from tests.conftest import unavailable

        unavailable("this PyYAML has no libyaml: pip install --force-reinstall PyYAML (its wheels carry it)")
    monkeypatch.setattr(yaml, "__with_libyaml__", libyaml)
    with pytest.raises(MatrixError, match=r"deep\.yml line 1: nested deeper than 16 levels"):
        parse_matrix("include: " + "[" * 20_000 + "]" * 20_000 + "\n", "deep.yml")


def test_derived_platform_tag_is_validated_like_a_written_one() -> None:
    """Three platforms derive 'amd64-arm64-armv7' (17 characters): it would reach names and tags."""
    with pytest.raises(MatrixError, match=r"line 5: .*field 'platforms': platform-tag 'amd64-arm64-armv7'.*"
                                          r"invoke matrix.split"):
        parse_matrix(doc(entry(platforms="'linux/amd64,linux/arm64,linux/arm/v7'")), "m.yml")
