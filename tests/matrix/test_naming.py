"""localai_ci.matrix.naming: artifact names round-trip, reserved names, and no download pattern over-matches (proved exhaustively)."""
from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from localai_ci.matrix.model import load_matrix
from localai_ci.matrix.naming import (
    Family,
    LegKey,
    backend_label,
    local_tag,
    normalize_suffix,
    pr_tag,
    suffix_label,
    artifact_name,
    artifact_pattern,
    cache_tag,
    check_platform_tag,
    check_suffix,
    glob_overmatches,
    keepalive_tag,
    parse_artifact_name,
    pr9730_artifact_name,
    pr9730_download_glob,
)
from tests.support.localai_ref import MATRICES

PTAGS = ("amd64", "arm64", "single", "armv7", "amd64-arm64")


def test_backend_and_server_artifact_names() -> None:
    assert artifact_name(Family.BACKENDS, "-cpu-vllm", "amd64") == "digests-cpu-vllm--amd64"
    assert artifact_pattern(Family.BACKENDS, "-cpu-vllm") == "digests-cpu-vllm--*"
    assert artifact_name(Family.SERVER, "", "arm64") == "digests-localai-core--arm64"  # -core for the empty suffix
    assert artifact_name(Family.SERVER, "-gpu-nvidia-cuda-12", "amd64") == "digests-localai-gpu-nvidia-cuda-12--amd64"
    assert artifact_pattern(Family.SERVER, "") == "digests-localai-core--*"
    assert artifact_name(Family.BACKENDS, "", "single") == "digests--single"


@pytest.mark.parametrize(("family", "suffix", "ptag"), [
    (Family.BACKENDS, "-cpu-vllm", "amd64"), (Family.BACKENDS, "-cpu-vllm-omni", "arm64"),
    (Family.BACKENDS, "", "single"), (Family.BACKENDS, "-a.b_c", "armv7"),
    (Family.SERVER, "", "amd64"), (Family.SERVER, "-gpu-vulkan", "arm64"), (Family.SERVER, "-core-x", "amd64-arm64"),
])
def test_parse_artifact_name_round_trips(family: Family, suffix: str, ptag: str) -> None:
    assert parse_artifact_name(artifact_name(family, suffix, ptag)) == LegKey(family, suffix, ptag)


def test_round_trip_every_real_leg() -> None:
    for path in MATRICES:
        for e in load_matrix(path):
            for fam in Family:
                assert parse_artifact_name(artifact_name(fam, e.tag_suffix, e.ptag)) == LegKey(fam, e.tag_suffix, e.ptag)


@pytest.mark.parametrize(("name", "why"), [
    ("digests-cpu-vllm-amd64", "expected digests<suffix>--<platform-tag>"),
    ("artifacts-cpu--amd64", "expected digests<suffix>--<platform-tag>"),
    ("digests-cpu--", "not a valid digest artifact name"),
    ("digests-cpu--amd64/../x", "not a valid digest artifact name"),
    ("digests-localai--amd64", "server artifact without a suffix"),
    ("digests; rm -rf /--amd64", "not a valid digest artifact name"),
])
def test_parse_artifact_name_rejects(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_artifact_name(name)


def test_reserved_and_unsafe_fragments() -> None:
    with pytest.raises(ValueError, match="'-core' is reserved"):
        check_suffix("-core", Family.SERVER)
    assert check_suffix("-core", Family.BACKENDS) == "-core"
    with pytest.raises(ValueError, match="reserved"):
        check_suffix("-localai", Family.BACKENDS)
    with pytest.raises(ValueError, match="reserved"):
        check_suffix("-localai-cpu", Family.BACKENDS)
    for bad in ("; rm -rf /", "../x", "-" + "a" * 200, "-a-", "-a--b", "a", "-a b", "-a/b"):
        with pytest.raises(ValueError):
            check_suffix(bad)
    for bad in ("", "-amd64", "amd64-", "a--b", "../x", "a" * 17, "arm 64"):
        with pytest.raises(ValueError):
            check_platform_tag(bad)


def test_cache_and_keepalive_tags() -> None:
    assert cache_tag(Family.BACKENDS, "-cpu-vllm", "arm64") == "cache-cpu-vllm-arm64"
    assert cache_tag(Family.SERVER, "-gpu-vulkan", "amd64") == "cache-localai-gpu-vulkan-amd64"
    # a single-arch entry without platform-tag: LocalAI's ref, ending in '-' (no cold start on adoption)
    assert cache_tag(Family.BACKENDS, "-cpu-whisper", "") == "cache-cpu-whisper-"
    assert cache_tag(Family.SERVER, "-gpu-vulkan", "") == "cache-localai-gpu-vulkan-"
    assert keepalive_tag("12345", Family.BACKENDS, "-cpu-vllm", "amd64") == "keepalive-12345-cpu-vllm-amd64"
    assert keepalive_tag("1", Family.SERVER, "", "arm64") == "keepalive-1-localai-core-arm64"
    with pytest.raises(ValueError, match="run id"):
        keepalive_tag("1;2", Family.BACKENDS, "-a", "amd64")


def test_pr9730_naming_does_overmatch() -> None:
    assert glob_overmatches(pr9730_download_glob("-cpu-vllm"), pr9730_artifact_name("-cpu-vllm-omni", "amd64"))
    assert not glob_overmatches(artifact_pattern(Family.BACKENDS, "-cpu-vllm"),
                                artifact_name(Family.BACKENDS, "-cpu-vllm-omni", "amd64"))


@pytest.mark.parametrize("path", MATRICES, ids=lambda p: p.name)
def test_project_naming_never_overmatches_on_localai_matrices(path: Path) -> None:
    """Exhaustive: every ordered pair of suffixes, every real platform tag plus a few more, both families."""
    m = load_matrix(path)
    suffixes = m.suffixes()
    ptags = sorted({e.ptag for e in m} | set(PTAGS))
    checked = 0
    for fam in Family:
        names = {t: [artifact_name(fam, t, p) for p in ptags] for t in suffixes}
        for s in suffixes:
            pattern = artifact_pattern(fam, s)
            own = [n for n in names[s] if glob_overmatches(pattern, n)]
            assert own == names[s]  # the pattern selects all of its own legs
            for t in suffixes:
                if t == s:
                    continue
                hits = [n for n in names[t] if glob_overmatches(pattern, n)]
                assert hits == [], f"{pattern} matches {hits} of {t}"
                checked += len(names[t])
    # the real files have 386 and 235 suffixes: every pair was looked at
    assert checked == 2 * len(suffixes) * (len(suffixes) - 1) * len(ptags)
    assert len(suffixes) in (386, 235)


def test_project_naming_separator_argument_over_generated_suffixes() -> None:
    """By construction: suffix words never contain '--', so 'digests<s>--*' only matches legs of <s>."""
    words = ["-a", "-b", "-a-b", "-a.b", "-a_b", "-ab", "-b-a", "", "-core", "-a-core"]
    for fam, s, t in itertools.product(Family, words, words):
        if s == t or (fam is Family.SERVER and "-core" in (s, t)):
            continue
        for p in PTAGS:
            assert not glob_overmatches(artifact_pattern(fam, s), artifact_name(fam, t, p)), (fam, s, t, p)


def test_one_core_normalizer_and_one_label_per_leg() -> None:
    assert normalize_suffix(Family.SERVER, "-core") == "" and normalize_suffix(Family.BACKENDS, "-core") == "-core"
    assert normalize_suffix(Family.SERVER, "-gpu-vulkan") == "-gpu-vulkan"
    assert suffix_label(Family.SERVER, "") == "server -core" and suffix_label(Family.BACKENDS, "-cpu") == "-cpu"
    server, backend = LegKey(Family.SERVER, "", "arm64"), LegKey(Family.BACKENDS, "-cpu-x", "amd64")
    assert (server.label, str(server)) == ("server -core [arm64]", "server -core [arm64]")
    assert backend.label == "-cpu-x [amd64]"
    assert backend.phrase == "backends tag-suffix '-cpu-x' platform-tag amd64"
    # every per-leg name spells the core image the same way its artifact does
    assert artifact_name(Family.SERVER, "", "arm64") == "digests-localai-core--arm64"
    assert local_tag(Family.SERVER, "", "arm64") == "localai-ci/localai-core:arm64"
    assert local_tag(Family.BACKENDS, "-cpu-x", "amd64") == "localai-ci/backend-cpu-x:amd64"
    assert pr_tag("12", Family.SERVER, "", "arm64") == "pr-12-localai-core-arm64"
    assert pr_tag("12", Family.BACKENDS, "-cpu-x", "amd64") == "pr-12-cpu-x-amd64"
    assert (backend_label(Family.SERVER, "-gpu"), backend_label(Family.BACKENDS, "-cpu-x")) == ("localai-gpu", "-cpu-x")
