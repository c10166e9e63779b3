"""localai_ci.docker.disk: the free-space check before a leg and the peak use during it (real filesystem)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from localai_ci.docker.disk import GiB, DiskWatch, check_free, disk_path, free_bytes, parse_min_free
from localai_ci.errors import OperationError, UserError


@pytest.mark.parametrize("value, env, expected", [
    (None, {}, 0.0), ("", {"CI_MIN_FREE_DISK_GIB": "12"}, 0.0), (None, {"CI_MIN_FREE_DISK_GIB": "12.5"}, 12.5),
    ("30", {"CI_MIN_FREE_DISK_GIB": "12"}, 30.0), ("0", {}, 0.0)])
def test_threshold_from_option_then_environment(value: str | None, env: dict[str, str], expected: float) -> None:
    assert parse_min_free(value, env) == expected


@pytest.mark.parametrize("bad", ["-1", "lots", "nan", "inf"])
def test_bad_threshold_is_a_user_error(bad: str) -> None:
    with pytest.raises(UserError, match="--min-free-disk / CI_MIN_FREE_DISK_GIB .*expected a number of GiB"):
        parse_min_free(bad, {})


def test_check_refuses_when_the_disk_is_too_full(tmp_path: Path) -> None:
    free = check_free(tmp_path, 0.001, "leg x")
    assert free == pytest.approx(free_bytes(tmp_path), rel=0.01)
    with pytest.raises(OperationError) as err:
        check_free(tmp_path, free / GiB + 1000, "backends tag-suffix '-x' platform-tag amd64")
    text = str(err.value)
    assert text.startswith("backends tag-suffix '-x' platform-tag amd64: only ") and "GiB free" in text
    assert "docker builder prune" in text and "/mnt" in text


def test_watch_reports_the_peak_even_when_the_space_is_freed_again(tmp_path: Path) -> None:
    size = 48 << 20
    with DiskWatch(tmp_path, interval=0.02) as watch:
        big = tmp_path / "big"
        with open(big, "wb") as fh:
            fh.write(os.urandom(size))
            fh.flush()
            os.fsync(fh.fileno())
        time.sleep(0.3)  # several samples while the file exists
        big.unlink()
    use = watch.result()
    assert use.peak_used >= 0.9 * size, use  # other writers on this filesystem can only make it larger
    assert "peak use during it" in use.describe() and str(tmp_path) in use.describe()


def test_disk_path_is_the_engine_data_root_when_local(tmp_path: Path) -> None:
    assert disk_path(str(tmp_path)) == tmp_path
    assert disk_path(str(tmp_path / "not-here"), fallback="/") == Path("/")  # remote engine: where we run


def test_watch_counts_each_filesystem_once_and_sees_paths_made_later(tmp_path: Path) -> None:
    """The leg's paths (engine data root, the layouts' directory, the blob cache) often share one filesystem:
    counted once, not twice; a directory the leg will create is watched through its nearest parent."""
    size = 32 << 20
    later = tmp_path / "layouts" / "not-yet"
    watch = DiskWatch([tmp_path, tmp_path / "cache-dir-to-be", later], interval=0.02)
    assert watch.paths == [tmp_path]  # one filesystem
    with watch:
        later.mkdir(parents=True)
        with open(later / "blob", "wb") as fh:
            fh.write(os.urandom(size))
            fh.flush()
            os.fsync(fh.fileno())
        watch.sample()  # a phase's end
    use = watch.result()
    assert 0.9 * size <= use.peak_used < 1.9 * size, use  # once, not once per path
