"""localai_ci.settings: a repository's .github/localai-ci.yml, what it leaves to discovery and defaults,
and its precedence under the command line and the environment."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from localai_ci.errors import UserError
from localai_ci.matrix.model import load_matrix
from localai_ci.matrix.naming import Family
from localai_ci.oci.platforms import Arch
from localai_ci.settings import DEFAULT_BUILD_ARGS, SETTINGS_FILE, family_config, load_settings, parse_settings
from tests.support.oci_images import write_matrix

FULL = """\
backends:
  matrix: ci/matrix.yml
  images: [quay.io/org/backends, org/backends]
  build-args:
    AMDGPU_TARGETS: gfx1100
    EXTRA: ''
server:
  images: quay.io/org/server
cache-image: quay.io/org/cache
pr-image: quay.io/org/pr
runners:
  amd64: big-x64
  arm64: big-arm
  retired: [old-runner]
  allow:
    - tag-suffix: -cpu-a
      runs-on: old-runner
      reason: 5-6 hour builds
"""


def test_a_repository_without_settings_discovers_its_matrix(tmp_path: Path) -> None:
    s = load_settings(tmp_path)
    assert s.source == "" and s.matrix_path(Family.BACKENDS) == tmp_path / "backends" / "matrix.yml"
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "backend-matrix.yml").write_text("include: []\n")
    (tmp_path / "backends").mkdir()
    (tmp_path / "backends" / "matrix.yml").write_text("include: []\n")
    # LocalAI's place wins over this project's example layout
    assert load_settings(tmp_path).matrix_path(Family.BACKENDS) == tmp_path / ".github" / "backend-matrix.yml"
    assert s.build_arg_defaults(Family.BACKENDS) == DEFAULT_BUILD_ARGS[Family.BACKENDS]
    assert s.build_arg_defaults(Family.SERVER) == ()


def test_every_key_is_read(tmp_path: Path) -> None:
    s = parse_settings(FULL, "s.yml", tmp_path)
    assert s.matrix_path(Family.BACKENDS) == tmp_path / "ci" / "matrix.yml"
    assert s.build_arg_defaults(Family.BACKENDS) == (("AMDGPU_TARGETS", "gfx1100"), ("EXTRA", ""))
    policy = s.runner_policy()
    assert policy.native[Arch.AMD64] == "big-x64" and policy.native[Arch.ARM64] == "big-arm"
    assert policy.retired == ("old-runner",)
    assert [(e.tag_suffix, e.runs_on, e.reason, e.line) for e in s.exceptions] == [
        ("-cpu-a", "old-runner", "5-6 hour builds", 16)]


def test_option_beats_environment_beats_settings_beats_defaults(tmp_path: Path) -> None:
    s = parse_settings(FULL, "s.yml", tmp_path)
    assert [str(i) for i in family_config(Family.BACKENDS, settings=s).images] == ["quay.io/org/backends", "org/backends"]
    env = {"CI_BACKEND_IMAGES": "ghcr.io/env/b", "CI_CACHE_IMAGE": "ghcr.io/env/cache"}
    from_env = family_config(Family.BACKENDS, env=env, settings=s)
    assert [str(i) for i in from_env.images] == ["ghcr.io/env/b"] and str(from_env.cache) == "ghcr.io/env/cache"
    flag = family_config(Family.BACKENDS, images="ghcr.io/flag/b", env=env, settings=s)
    assert [str(i) for i in flag.images] == ["ghcr.io/flag/b"]
    c = family_config(Family.BACKENDS, settings=s)
    assert (str(c.cache), str(c.pr_image)) == ("quay.io/org/cache", "quay.io/org/pr")
    assert c.build_arg_defaults == (("AMDGPU_TARGETS", "gfx1100"), ("EXTRA", ""))
    assert [str(i) for i in family_config(Family.BACKENDS).images] == ["quay.io/go-skynet/local-ai-backends",
                                                                       "localai/localai-backends"]


@pytest.mark.parametrize("text, message", [
    ("backend:\n  images: [x/y]\n", r"s.yml line 1: the settings: unknown key 'backend'; did you mean 'backends'\?"),
    ("backends:\n  imgs: [x/y]\n", r"s.yml line 2: backends: unknown key 'imgs'; did you mean 'images'\?"),
    ("backends:\n  images: ['Bad Name']\n", r"s.yml line 2: backends.images"),
    ("backends:\n  matrix: ../outside.yml\n", r"must be a path inside the repository"),
    ("backends:\n  build-args: [A]\n", r"s.yml line 2: backends.build-args must be a mapping"),
    ("backends:\n  build-args:\n    1A: x\n", r"'1A' is not a build arg name"),
    ("runners:\n  retired: ['a b']\n", r"'a b' is not a runner label"),
    ("runners:\n  allow:\n    - tag-suffix: -x\n", r"missing runs-on, reason"),
    ("runners:\n  allow:\n    - {tag-suffix: '; rm -rf /', runs-on: r, reason: x}\n", r"not a safe tag fragment"),
    ("cache-image: [a]\n", r"s.yml line 1: cache-image must be a string"),
    ("backends:\n  images: [x/y]\nbackends: {}\n", r"s.yml line 3: the settings: 'backends' is given twice"),
    ("a: &x 1\nb: *x\n", r"anchors \(&name\) are not allowed"),
])
def test_bad_settings_are_refused_naming_the_line_and_key(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as err:
        parse_settings(text, "s.yml")
    assert err.value.exit_code == 2


def test_a_malformed_settings_file_is_exit_2_from_the_console_script(tmp_path: Path) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / SETTINGS_FILE).write_text("backends:\n  imags: []\n")
    done = subprocess.run([sys.executable, "-m", "localai_ci", "pipeline", "--dry-run"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 2 and f"{SETTINGS_FILE} line 2: backends: unknown key 'imags'" in done.stderr
    assert "Traceback" not in done.stderr


def test_runner_exceptions_of_the_settings_are_neither_reported_nor_moved(tmp_path: Path) -> None:
    """Like a `# localai-ci: allow-runner` marker on the entry, a `runners: allow:` exception keeps
    a leg on its runner: matrix.lint does not report it, matrix.split does not move it."""
    from localai_ci.matrix.lint import lint_file
    from localai_ci.matrix.split import split_file

    matrix = tmp_path / "m.yml"
    write_matrix(matrix, [("-cpu-a", "amd64"), ("-cpu-b", "amd64")])
    text = matrix.read_text().replace("runs-on: 'ubuntu-latest'", "runs-on: 'old-runner'")
    matrix.write_text(text)
    s = parse_settings(FULL, "s.yml", tmp_path)
    policy = s.runner_policy()
    without = lint_file(matrix, policy)
    assert {f.suffix for f in without.findings if f.rule == "retired-runner"} == {"-cpu-a", "-cpu-b"}
    kept = lint_file(matrix, policy, recorded=s.runner_allowances)
    assert {f.suffix for f in kept.findings if f.rule == "retired-runner"} == {"-cpu-b"}
    split = split_file(matrix, dry_run=True, policy=policy, recorded=s.runner_allowances)
    moved = load_matrix(matrix)  # unchanged on disk (dry run); the report says what would move
    assert [e.runs_on for e in moved] == ["old-runner", "old-runner"]
    assert "-cpu-b" in split.diff and "-cpu-a" not in split.diff.replace("tag-suffix: '-cpu-a'", "")
