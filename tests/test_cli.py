"""argparse front-end (localai_ci.cli), ``python -m localai_ci`` and the nox sessions."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from localai_ci.cli import COMMANDS, build_parser, join_dash_values, main
from localai_ci.matrix.naming import Family, LegKey
from localai_ci.github.artifacts import write_digest_file

ROOT = Path(__file__).resolve().parents[1]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_option_of_every_command_is_explained() -> None:
    subs = _subparsers(build_parser())
    assert set(subs) == set(COMMANDS) >= {"merge", "inspect"}
    for name, sp in subs.items():
        assert sp.description, name
        for action in sp._actions:
            assert action.help and len(action.help) > 10, f"{name} {action.option_strings or action.dest} has no help"


def test_help_exits_0_and_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["merge", "--help"], env={}) == 0
    assert "--tag-suffix" in capsys.readouterr().out
    assert main(["merge"], env={}) == 2  # neither --tag-suffix nor --all
    assert main(["merge", "--all", "--tag-suffix", "-x"], env={}) == 2
    assert main(["frobnicate"], env={}) == 2


def test_dash_values_are_joined() -> None:
    assert join_dash_values(["merge", "--tag-suffix", "-cpu-x", "--all"]) == ["merge", "--tag-suffix=-cpu-x", "--all"]
    assert join_dash_values(["--tag-suffix=-a"]) == ["--tag-suffix=-a"]


def test_ci_error_prints_error_line_and_exit_code_traceback_only_with_debug(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["merge", "--tag-suffix", "-cpu-x", "--digests-dir", str(tmp_path / "none")]
    assert main(argv, env={}) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("error: ") and "Traceback" not in err  # notes may come first
    assert main([*argv, "--debug"], env={}) == 2
    assert "Traceback" in capsys.readouterr().err


def _digests(tmp_path: Path) -> Path:
    d = tmp_path / "digests"
    write_digest_file(d, LegKey(Family.BACKENDS, "-cpu-x", "amd64"), "sha256:" + "1" * 64)
    return d


@pytest.mark.parametrize("env,extra,needle", [
    ({"GITHUB_REF": "refs/heads/a b"}, [], "git ref"),
    ({"GITHUB_SHA": "xyz"}, [], "commit SHA"),
    ({}, ["--anchor"], "--run-id"),
    ({}, ["--jobs", "0", "--all"], "--jobs"),
    ({}, ["--key", "k"], "--key is only used with --sign"),
    ({"GITHUB_EVENT_NAME": "bogus"}, [], "unknown event"),
])
def test_bad_environment_and_flags_exit_2_before_any_network(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             env: dict[str, str], extra: list[str], needle: str) -> None:
    matrix = ROOT / "backends" / "matrix.yml"
    argv = ["merge", "--digests-dir", str(_digests(tmp_path)), "--matrix", str(matrix),
            "--images", "127.0.0.1:9/none"] + (["--tag-suffix", "-cpu-x"] if "--all" not in extra else []) + extra
    assert main(argv, env=env) == 2
    assert needle in capsys.readouterr().err


def test_python_dash_m_ci_works(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "localai_ci", "merge", "--tag-suffix", "-cpu-x", "--digests-dir",
                           str(tmp_path / "nothing")], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 2 and done.stderr.splitlines()[-1].startswith("error: ")
    done = subprocess.run([sys.executable, "-m", "localai_ci", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and "merge" in done.stdout and "inspect" in done.stdout


def test_nox_sessions_are_listed_documented_and_keep_exit_status(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "nox", "-l", "--json", "-s", "merge", "inspect"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    sessions = {s["session"]: s for s in json.loads(done.stdout)}
    for name in ("merge", "inspect"):
        assert sessions[name]["description"] and sessions[name]["python"] is False, name
    done = subprocess.run([sys.executable, "-m", "nox", "-s", "merge", "--", "--tag-suffix", "-cpu-x",
                           "--digests-dir", str(tmp_path / "nothing")], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "error: " in done.stderr


def test_one_error_mapper_for_both_front_ends() -> None:
    """nox/python -m localai_ci and invoke print the same words, redacted, with the same exit status."""
    import pytest
    from invoke import Exit

    from localai_ci import tasks
    from localai_ci.errors import RegistryError, UserError, failure
    from localai_ci.redaction import register_secret

    register_secret("Leaky-token-4242")
    bad = RegistryError("quay.io answered 'Leaky-token-4242 is not valid'", registry="quay.io")
    assert failure(bad) == ("error: quay.io answered '*** is not valid'", 1)
    assert failure(UserError("--jobs must be at least 1")) == ("error: --jobs must be at least 1", 2)
    assert failure(KeyboardInterrupt()) == ("interrupted", 130)

    def verb() -> None:
        raise bad

    try:
        verb()
    except RegistryError as raised:
        text, _ = failure(raised, debug=True)
    assert "Traceback" in text and "in verb" in text and "Leaky-token-4242" not in text

    with pytest.raises(Exit) as exited:
        tasks.run_verb(verb)
    assert (exited.value.message, exited.value.code) == failure(bad)
