"""Digest files on disk (ci/github/artifacts.py) under concurrent and interrupted writers.

Real processes: several writers of one leg's digest file at once, and a reader watching the leg's
directory the whole time.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from localai_ci.github.artifacts import read_digests_dir, remove_digest_file, write_digest_file
from localai_ci.matrix.naming import Family, LegKey

LEG = LegKey(Family.BACKENDS, "-cpu-race", "amd64")
WRITER = """
import sys
from localai_ci.github.artifacts import write_digest_file
from localai_ci.matrix.naming import Family, LegKey
leg = LegKey(Family.BACKENDS, "-cpu-race", "amd64")
for _ in range(int(sys.argv[3])):
    write_digest_file(sys.argv[1], leg, "sha256:" + sys.argv[2] * 64)
"""
WATCHER = """
import os, sys, time
leg_dir, stop = sys.argv[1], sys.argv[2]
seen = empty = 0
while not os.path.exists(stop):
    try:
        names = [n for n in os.listdir(leg_dir) if len(n) == 64]
    except FileNotFoundError:
        names = None
    if names is not None:
        seen += 1
        empty += not names
print(seen, empty)
"""


def test_concurrent_writers_of_one_leg_leave_exactly_one_digest_and_never_none(tmp_path: Path) -> None:
    digests = tmp_path / "digests"
    write_digest_file(digests, LEG, "sha256:" + "0" * 64)  # the leg exists from here on
    stop = tmp_path / "stop"
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(digests / LEG.artifact), str(stop)],
                               stdout=subprocess.PIPE, text=True)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(digests), hexdigit, "300"],
                                stderr=subprocess.PIPE, text=True) for hexdigit in "abcdef"]
    try:
        errors = [w.communicate(timeout=120)[1] for w in writers]
    finally:
        stop.touch()
        seen, empty = map(int, watcher.communicate(timeout=60)[0].split())
    assert [w.returncode for w in writers] == [0] * len(writers), "\n".join(errors)
    artifacts = read_digests_dir(digests)
    assert len(artifacts) == 1 and artifacts[0].digest[7:8] in "abcdef", artifacts
    assert sorted(p.name for p in (digests / LEG.artifact).iterdir()) == [artifacts[0].digest[7:]]  # no temporaries
    assert seen > 0 and empty == 0, f"the leg had no digest file {empty} times out of {seen} looks"


def test_a_killed_writers_temporary_is_reclaimed_by_the_next_write(tmp_path: Path) -> None:
    digests = tmp_path / "digests"
    write_digest_file(digests, LEG, "sha256:" + "1" * 64)
    (digests / LEG.artifact / ".digest-abandoned.tmp").write_bytes(b"")  # what a SIGKILL mid-write leaves
    write_digest_file(digests, LEG, "sha256:" + "2" * 64)
    assert [p.name for p in (digests / LEG.artifact).iterdir()] == ["2" * 64]


def test_remove_digest_file_leaves_nothing_of_the_leg(tmp_path: Path) -> None:
    digests = tmp_path / "digests"
    other = LegKey(Family.BACKENDS, "-cpu-race", "arm64")
    write_digest_file(digests, LEG, "sha256:" + "3" * 64)
    write_digest_file(digests, other, "sha256:" + "4" * 64)
    assert remove_digest_file(digests, LEG) == ["sha256:" + "3" * 64]
    assert [a.key for a in read_digests_dir(digests)] == [other]
    assert remove_digest_file(digests, LEG) == []  # nothing left, nothing to do


def test_an_artifact_of_100000_files_is_refused_in_one_short_line(tmp_path: Path) -> None:
    """A leg directory holding 100,000 files was refused with a 6.6 MB one-line error naming every one."""
    import os

    leg = tmp_path / "digests" / LEG.artifact
    leg.mkdir(parents=True)
    for i in range(100_000):
        os.close(os.open(leg / f"{i:064x}", os.O_CREAT | os.O_WRONLY, 0o644))
    from tests.support.oci_images import write_matrix

    write_matrix(tmp_path / "matrix.yml", [("-cpu-race", "amd64")])
    done = subprocess.run([sys.executable, "-m", "localai_ci", "merge", "--tag-suffix=-cpu-race", "--digests-dir",
                           str(tmp_path / "digests"), "--matrix", str(tmp_path / "matrix.yml"), "--images",
                           "127.0.0.1:1/x/y", "--ref", "refs/heads/master", "--sha", "1" * 40],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout + done.stderr[:2000]
    assert "expected exactly one digest file, found 100000" in done.stderr and "and 99995 more" in done.stderr
    assert len(done.stderr) < 2000 and done.stderr.count("\n") <= 2, done.stderr[:2000]
