"""Bad input is refused with a clear message and exit status 2, and changes nothing.

One table, every case through a real command-line entry point as a subprocess
(``invoke matrix.lint`` for matrices, ``python -m localai_ci merge`` / ``nox -s merge`` for digests
directories, event environments and registry names, ``invoke build-backend --dry-run`` for
credentials). For each case: exit status 2, ``error:`` on stderr with the expected text
(naming the file/line/field or the bad value), no traceback, and -- snapshotted before and
after -- no file under the case's directory and no repository or tag in the two registries
changed. Matrix fixtures live in ``tests/resources/bad/``; the huge ones are generated.

The registries are this module's own pair (started in a temporary directory, stopped at the end),
not the session's shared ones: the snapshot covers every repository and tag of both registries, so
any other writer -- another test, another session using ``CI_TEST_REGISTRIES`` -- pushing between
the two snapshots would fail a case that changed nothing. Each case's repository is seeded with
the tags a merge of its event would write (``master-cpu-hello``, ``sha-89abcde-cpu-hello``), and
the snapshot records each tag's digest, so a refusal that moved a tag is caught too.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from localai_ci.oci.localregistry import LocalRegistry
from tests.conftest import registry_pair

ROOT = Path(__file__).resolve().parents[1]
BAD = ROOT / "tests" / "resources" / "bad"
HEX = "0123456789abcdef" * 4
HEX2 = "fedcba9876543210" * 4
SHA = "89abcdef0123456789abcdef0123456789abcdef"
QUICK = 10.0  # seconds: a refusal, huge inputs included, is quick

pytestmark = [pytest.mark.registry, pytest.mark.slow]


# ---- how a case runs ------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    tool: str  # lint | merge | nox | build
    expect: tuple[str, ...]  # regexes, all must be found in stderr
    args: tuple[str, ...] = ()  # extra arguments ({d} = the case directory, {img} = --images value)
    matrix: str = "good.yml"  # a fixture name in tests/resources/bad, or "gen:<name>"
    setup: Callable[[Path], None] = field(default=lambda d: _digests(d), compare=False)
    env: tuple[tuple[str, str], ...] = ()
    stdin: str = ""
    secret: str = ""  # must appear nowhere in the output


def _digests(d: Path, legs: dict[str, list[str]] | None = None) -> Path:
    """A valid digests dir: -cpu-hello amd64 + arm64 (overridden per leg by ``legs``)."""
    root = d / "digests"
    for name, files in (legs or {"digests-cpu-hello--amd64": [HEX], "digests-cpu-hello--arm64": [HEX2]}).items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for f in files:
            (root / name / f).write_bytes(b"")
    return root


def _with(**legs: list[str]) -> Callable[[Path], None]:
    def setup(d: Path) -> None:
        base = {"digests-cpu-hello--amd64": [HEX], "digests-cpu-hello--arm64": [HEX2]}
        base.update({k.replace("_", "-"): v for k, v in legs.items()})
        _digests(d, base)
    return setup


def _extra_file(d: Path) -> None:
    (_digests(d) / "notes.txt").write_text("hello")


def _nested(d: Path) -> None:
    root = _digests(d, {"digests-cpu-hello--amd64": [], "digests-cpu-hello--arm64": [HEX2]})
    (root / "digests-cpu-hello--amd64" / HEX).mkdir()


def _symlink_leg(d: Path) -> None:
    root = _digests(d, {"digests-cpu-hello--arm64": [HEX2]})
    outside = d / "outside"
    outside.mkdir()
    (outside / HEX).write_bytes(b"")
    (root / "digests-cpu-hello--amd64").symlink_to(outside)


def _symlink_file(d: Path) -> None:
    root = _digests(d, {"digests-cpu-hello--amd64": [], "digests-cpu-hello--arm64": [HEX2]})
    (d / "secret").write_text("not a digest")
    (root / "digests-cpu-hello--amd64" / HEX).symlink_to(d / "secret")


def _non_empty(d: Path) -> None:
    root = _digests(d)
    (root / "digests-cpu-hello--amd64" / HEX).write_text("sha256:" + HEX)


def _dir_is_file(d: Path) -> None:
    (d / "digests").write_text("not a directory")


def _huge_matrix(d: Path) -> None:
    """5 MiB: over the 4 MiB limit (refused on its size, before parsing)."""
    text = "include:\n" + "  # padding padding padding padding padding padding padding padding\n" * 80_000
    (d / "huge.yml").write_text(text)


def _many_nodes(d: Path) -> None:
    """Under the byte limit but 300k YAML nodes."""
    (d / "nodes.yml").write_text("include:\n" + "- x\n" * 300_000)


def _deep_nesting(d: Path) -> None:
    """Deeply nested flow sequences (a stack bomb for recursive loaders)."""
    (d / "deep.yml").write_text("include: " + "[" * 20_000 + "]" * 20_000 + "\n")


GEN: dict[str, tuple[str, Callable[[Path], None]]] = {
    "huge": ("huge.yml", _huge_matrix), "nodes": ("nodes.yml", _many_nodes), "deep": ("deep.yml", _deep_nesting),
}

M = "--tag-suffix=-cpu-hello"
GOOD_EVENT = (("GITHUB_EVENT_NAME", "push"), ("GITHUB_REF", "refs/heads/master"), ("GITHUB_SHA", SHA))

CASES: list[Case] = [
    # -- matrices (invoke matrix.lint) --------------------------------------------------------
    Case("yaml-bomb", "lint", (r"bomb\.yml line 2", r"anchors \(&name\) are not allowed"), matrix="bomb.yml"),
    Case("python-tag", "lint", (r"python-tag\.yml line 3", r"not a mapping"), matrix="python-tag.yml"),
    Case("huge-file", "lint", (r"huge\.yml", r"larger than the \d+ byte limit"), matrix="gen:huge"),
    Case("too-many-nodes", "lint", (r"nodes\.yml", r"more than \d+ YAML nodes"), matrix="gen:nodes"),
    Case("deep-nesting", "lint", (r"deep\.yml line 1", r"nested deeper than 16 levels"), matrix="gen:deep"),
    Case("top-level-list", "lint", (r"top-list\.yml line 2", r"top level must be a mapping"), matrix="top-list.yml"),
    Case("include-mapping", "lint", (r"include-mapping\.yml line 3", r"'include:' must be a list"), matrix="include-mapping.yml"),
    Case("wrong-type", "lint", (r"wrong-type\.yml line 6", r"'platforms' must be a string, not a list"), matrix="wrong-type.yml"),
    Case("unknown-key", "lint", (r"unknown-key\.yml line 6", r"unknown field 'platfroms'; did you mean 'platforms'"), matrix="unknown-key.yml"),
    Case("unknown-top-key", "lint", (r"unknown-top\.yml line 2", r"'includes'; did you mean 'include'"), matrix="unknown-top.yml"),
    Case("duplicate-leg", "lint", (r"duplicate-leg\.yml line 17", r"duplicate leg", r"line 3"), matrix="duplicate-leg.yml"),
    Case("duplicate-field", "lint", (r"duplicate-field\.yml line 17", r"'backend' appears twice"), matrix="duplicate-field.yml"),
    Case("suffix-shell", "lint", (r"suffix-shell\.yml line 9", r"'; rm -rf /' is not a safe tag fragment"), matrix="suffix-shell.yml"),
    Case("suffix-traversal", "lint", (r"suffix-traversal\.yml line 9", r"'\.\./x' is not a safe tag fragment"), matrix="suffix-traversal.yml"),
    Case("suffix-200-chars", "lint", (r"suffix-long\.yml line 9", r"200 characters long; at most 64"), matrix="suffix-long.yml"),
    Case("bad-arch", "lint", (r"bad-platform\.yml line 6", r"unknown architecture 'amd46'"), matrix="bad-platform.yml"),
    Case("bad-os", "lint", (r"bad-os\.yml line 6", r"plan9"), matrix="bad-os.yml"),
    Case("ptag-mismatch", "lint", (r"ptag-mismatch\.yml line 7", r"'amd64' does not match platforms 'linux/arm64'"), matrix="ptag-mismatch.yml"),
    Case("missing-field", "lint", (r"missing-field\.yml line 3", r"missing required field 'runs-on'"), matrix="missing-field.yml"),
    Case("bad-tag-latest", "lint", (r"bad-latest\.yml line 8", r"'sometimes' is not one of auto, true, false"), matrix="bad-latest.yml"),
    Case("dockerfile-escape", "lint", (r"dockerfile-escape\.yml line 14", r"'\.\./\.\./etc/passwd' must be a relative"), matrix="dockerfile-escape.yml"),
    Case("yaml-syntax", "lint", (r"syntax\.yml line \d+", r"not valid YAML"), matrix="syntax.yml"),
    Case("control-char", "lint", (r"control-char\.yml line 13", r"'backend' has control characters"), matrix="control-char.yml"),
    Case("not-utf8", "lint", (r"not-utf8\.yml", r"not UTF-8"), matrix="not-utf8.yml"),
    Case("empty-matrix", "lint", (r"empty\.yml", r"the file is empty"), matrix="empty.yml"),
    Case("runner-marker-no-reason", "lint", (r"runner-marker\.yml line 10", r"malformed runner exception",
                                             r"# localai-ci: allow-runner RUNNER \(why it stays there\)"),
         matrix="runner-marker.yml"),
    # -- digests directories (python -m localai_ci merge) ---------------------------------------------
    Case("digest-non-hex", "merge", (r"digests-cpu-hello--amd64/zz", r"not a digest \(64 lowercase hex"),
         (M,), setup=_with(digests_cpu_hello__amd64=["zz" + HEX[2:]])),
    Case("digest-short", "merge", (r"'" + HEX[:63] + "'", r"not a digest"),
         (M,), setup=_with(digests_cpu_hello__amd64=[HEX[:63]])),
    Case("digest-uppercase", "merge", (HEX.upper(), r"not a digest"),
         ("--all",), setup=_with(digests_cpu_hello__amd64=[HEX.upper()])),
    Case("digest-extra-file", "merge", (r"digests/notes\.txt", r"unexpected file"), (M,), setup=_extra_file),
    Case("digest-two-for-one-leg", "merge", (r"digests-cpu-hello--amd64", r"exactly one digest file, found 2"),
         (M,), setup=_with(digests_cpu_hello__amd64=[HEX, HEX2])),
    Case("digest-nested-dir", "merge", (r"digests-cpu-hello--amd64/" + HEX, r"not a regular file"),
         (M,), setup=_nested),
    Case("digest-symlinked-leg", "merge", (r"digests-cpu-hello--amd64", r"is a symlink"), (M,), setup=_symlink_leg),
    Case("digest-symlinked-file", "merge", (r"digests-cpu-hello--amd64/" + HEX, r"is a symlink"),
         ("--all",), setup=_symlink_file),
    Case("digest-not-empty", "merge", (r"digest files are empty; this one has \d+ bytes",), (M,), setup=_non_empty),
    Case("artifact-name-unsafe", "merge", (r"digests;rm -rf", r"not a (valid )?digest artifact name"),
         ("--all",), setup=_with(**{"digests;rm -rf x--amd64": [HEX]})),
    Case("digests-dir-is-file", "merge", (r"not a directory of digest artifacts",), (M,), setup=_dir_is_file),
    # -- event environment (nox -s merge and python -m localai_ci merge) --------------------------------
    Case("ref-with-space", "nox", (r"refs/heads/ma ster",), (M,),
         env=(("GITHUB_REF", "refs/heads/ma ster"), ("GITHUB_SHA", SHA))),
    Case("ref-with-newline", "merge", (r"refs/heads/master\\nlatest",), (M,),
         env=(("GITHUB_REF", "refs/heads/master\nlatest"), ("GITHUB_SHA", SHA))),
    Case("bad-sha", "merge", (r"'xyz;id'",), (M,), env=(("GITHUB_REF", "refs/heads/master"), ("GITHUB_SHA", "xyz;id"))),
    Case("unknown-event", "merge", (r"unknown event 'pwn'", r"push"), (M,),
         env=(("GITHUB_EVENT_NAME", "pwn"), ("GITHUB_REF", "refs/heads/master"), ("GITHUB_SHA", SHA))),
    Case("bad-run-id", "merge", (r"run id '1;id'",), (M, "--anchor", "--run-id", "1;id")),
    # -- registry names and credentials ------------------------------------------------------
    Case("images-uppercase", "merge", (r"Quay\.IO/Upper", r"invalid path component 'Upper'"),
         (M, "--images", "Quay.IO/Upper")),
    Case("images-bad-port", "merge", (r"reg:notaport/x", r"invalid registry host 'reg:notaport'"),
         (M, "--images", "reg:notaport/x")),
    Case("images-with-tag", "build", (r"carries a tag",),
         ("--tag-suffix=-cpu-hello", "--platform-tag", "amd64", "--images", "quay.io/x/y:latest")),
    Case("password-without-username", "build", (r"give both --username and --password-stdin",),
         ("--tag-suffix=-cpu-hello", "--platform-tag", "amd64", "--password-stdin", "--images", "quay.io/x/y"),
         stdin="Pw-in-bad-input-0451\n", secret="Pw-in-bad-input-0451"),
    Case("build-suffix-shell", "build", (r"no leg with tag-suffix '; rm -rf /'",),
         ("--tag-suffix", "; rm -rf /", "--platform-tag", "amd64", "--images", "quay.io/x/y")),
]


def _command(case: Case, d: Path, images: str) -> tuple[list[str], Path]:
    """The argv of one case and the matrix path it uses."""
    if case.matrix.startswith("gen:"):
        name, make = GEN[case.matrix[4:]]
        make(d)
        matrix = d / name
    else:
        matrix = BAD / case.matrix
    extra = [a.replace("{d}", str(d)) for a in case.args]
    if case.tool == "lint":
        return [sys.executable, "-m", "invoke", "-r", str(ROOT), "matrix.lint", "--matrix", str(matrix)], matrix
    merge = ["--digests-dir", str(d / "digests"), "--matrix", str(matrix)]
    if "--images" not in extra:
        merge += ["--images", images]
    if case.tool == "merge":
        return [sys.executable, "-m", "localai_ci", "merge", *merge, *extra], matrix
    if case.tool == "nox":
        return [sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "-s", "merge", "--", *merge, *extra], matrix
    assert case.tool == "build"
    return [sys.executable, "-m", "invoke", "-r", str(ROOT), "build-backend", "--dry-run", "--root", str(ROOT),
            "--matrix", str(matrix), "--digests-dir", str(d / "digests"), *extra], matrix


# ---- registries ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def own_registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRegistry, LocalRegistry]]:
    """Two registries ("quay", "hub") that only this module uses (see the module docstring)."""
    with registry_pair(tmp_path_factory.mktemp("bad-input-registries"), "this module's registries") as pair:
        yield pair


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MANIFEST_TYPES = ", ".join((OCI_MANIFEST, "application/vnd.oci.image.index.v1+json",
                            "application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.docker.distribution.manifest.list.v2+json"))
SEED_TAGS = ("master-cpu-hello", f"sha-{SHA[:7]}-cpu-hello")  # what merging GOOD_EVENT's -cpu-hello would tag


def seed(host: str, repo: str) -> None:
    """A small image tagged with SEED_TAGS in ``host/repo`` (plain HTTP, the distribution API directly)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cdigest = "sha256:" + hashlib.sha256(config).hexdigest()
    with urllib.request.urlopen(urllib.request.Request(f"http://{host}/v2/{repo}/blobs/uploads/", data=b"",
                                                       method="POST"), timeout=10) as r:
        location = urllib.parse.urljoin(f"http://{host}/", r.headers["Location"])
    sep = "&" if "?" in location else "?"
    put = urllib.request.Request(f"{location}{sep}digest={cdigest}", data=config, method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(put, timeout=10) as r:
        assert r.status == 201, r.status
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest,
                                      "size": len(config)}}).encode()
    for tag in SEED_TAGS:
        put = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", data=manifest, method="PUT",
                                     headers={"Content-Type": OCI_MANIFEST})
        with urllib.request.urlopen(put, timeout=10) as r:
            assert r.status == 201, r.status


# ---- state snapshots ------------------------------------------------------------------------
def tree(root: Path) -> dict[str, tuple[str, int, int, str]]:
    """Every entry under ``root``: kind, size, mtime, symlink target."""
    out: dict[str, tuple[str, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            kind = "link" if p.is_symlink() else "dir" if p.is_dir() else "file"
            out[str(p.relative_to(root))] = (kind, st.st_size, st.st_mtime_ns, os.readlink(p) if kind == "link" else "")
    return out


def registry_state(hosts: list[str]) -> dict[str, dict[str, dict[str, str]]]:
    """Catalog and every repository's tags with the digest each one names, per registry."""
    state: dict[str, dict[str, dict[str, str]]] = {}
    for host in hosts:
        repos: list[str] = []
        url: str | None = f"http://{host}/v2/_catalog?n=1000"
        while url:  # paginated by Link: </v2/_catalog?last=...&n=1000>; rel="next"
            with urllib.request.urlopen(url, timeout=10) as r:
                repos += json.load(r).get("repositories") or []
                link = re.match(r'<([^>]+)>', r.headers.get("Link") or "")
            url = f"http://{host}{link.group(1)}" if link else None
        repos.sort()
        tags: dict[str, dict[str, str]] = {}
        for repo in repos:
            try:
                with urllib.request.urlopen(f"http://{host}/v2/{repo}/tags/list", timeout=10) as r:
                    names = sorted(json.load(r).get("tags") or [])
            except OSError as exc:
                tags[repo] = {"<unreadable>": str(exc)}
                continue
            tags[repo] = {}
            for tag in names:
                head = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", method="HEAD",
                                              headers={"Accept": MANIFEST_TYPES})
                with urllib.request.urlopen(head, timeout=10) as r:
                    tags[repo][tag] = r.headers.get("Docker-Content-Digest", "")
        state[host] = tags
    return state


def test_case_table_is_big_enough() -> None:
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    for c in CASES:
        if not c.matrix.startswith("gen:"):
            assert (BAD / c.matrix).is_file(), c.matrix


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_with_exit_2_and_changes_nothing(
        case: Case, tmp_path: Path, own_registries: tuple[LocalRegistry, LocalRegistry], unique: str) -> None:
    hosts = [r.host for r in own_registries]
    images = ",".join(f"{h}/{unique}/backends" for h in hosts)
    for h in hosts:
        seed(h, f"{unique}/backends")
    d = tmp_path / "case"
    d.mkdir()
    case.setup(d)
    argv, matrix = _command(case, d, images)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_") and k != "CI_DEBUG"}
    env.update({"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "docker-config"),
                "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"), "GITHUB_OUTPUT": str(tmp_path / "output")})
    env.update(dict(case.env or GOOD_EVENT))
    matrix_before = matrix.read_bytes()
    files_before, regs_before = tree(tmp_path), registry_state(hosts)

    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=d, input=case.stdin, timeout=120)
    took = time.monotonic() - t0

    where = f"{' '.join(argv)}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode == 2, where
    assert "error:" in done.stderr and "Traceback" not in done.stderr + done.stdout, where
    for pattern in case.expect:
        assert re.search(pattern, done.stderr), f"{pattern!r} not in stderr\n{where}"
    assert took < QUICK, f"refusal took {took:.1f}s\n{where}"
    if case.secret:
        assert case.secret not in done.stdout + done.stderr
    assert tree(tmp_path) == files_before, "a file or directory changed"
    assert matrix.read_bytes() == matrix_before
    assert all(regs_before[h][f"{unique}/backends"].keys() == set(SEED_TAGS) for h in hosts), regs_before
    assert registry_state(hosts) == regs_before, "registry state changed"
    assert not Path("/tmp/pwned-by-matrix").exists()
    shutil.rmtree(d)
