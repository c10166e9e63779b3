"""Every name this project derives from a (family, tag-suffix, platform-tag) leg (pure).

Digest artifacts, registry cache tags and keepalive tags live here and nowhere else.

Artifact names use LocalAI's collision-free form ``digests<suffix>--<platform-tag>``
(server image: ``digests-localai<suffix>--<platform-tag>``, ``-core`` for the empty
suffix). A tag-suffix never contains ``--`` nor ends with ``-``, and a platform tag
never starts with ``-`` nor contains ``--``, so the first ``--`` of an artifact name
is the separator: a name parses back to exactly one leg, and the download pattern
``digests<suffix>--*`` cannot match another suffix's artifacts.
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

MAX_SUFFIX_LEN = 64
MAX_PTAG_LEN = 16

_SUFFIX_RE = re.compile(r"^(-[A-Za-z0-9._]+)*$")  # empty, or '-word' repeated: no '--', no trailing '-'
_PTAG_RE = re.compile(r"^[A-Za-z0-9._]+(-[A-Za-z0-9._]+)*$")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9._]{1,20}$")

SERVER_PREFIX = "-localai"
CORE = "-core"
SEPARATOR = "--"


class Family(StrEnum):
    """An image family: the backend images or the LocalAI server image."""

    BACKENDS = "backends"
    SERVER = "server"

    @property
    def sibling(self) -> Family:
        """The other family (its images are blob-mount sources for this one's legs)."""
        return Family.SERVER if self is Family.BACKENDS else Family.BACKENDS


def check_suffix(suffix: str, family: Family = Family.BACKENDS) -> str:
    """Validate a tag-suffix as a safe tag fragment; raise ValueError saying what is allowed."""
    if len(suffix) > MAX_SUFFIX_LEN:
        raise ValueError(f"tag-suffix is {len(suffix)} characters long; at most {MAX_SUFFIX_LEN} are allowed")
    if not _SUFFIX_RE.match(suffix):
        raise ValueError(
            f"tag-suffix {suffix!r} is not a safe tag fragment: use only [A-Za-z0-9._-], "
            "start with '-', and no '--' or trailing '-' (e.g. '-cpu-llama-cpp'), or leave it empty")
    if family is Family.SERVER and suffix == CORE:
        raise ValueError(f"tag-suffix {CORE!r} is reserved: it names the server image's empty suffix in artifacts")
    if family is Family.BACKENDS and (suffix == SERVER_PREFIX or suffix.startswith(SERVER_PREFIX + "-")):
        raise ValueError(f"tag-suffix {suffix!r} is reserved: names starting with {SERVER_PREFIX!r} are the server image's")
    return suffix


def check_platform_tag(ptag: str) -> str:
    if len(ptag) > MAX_PTAG_LEN or not _PTAG_RE.match(ptag):
        raise ValueError(
            f"platform-tag {ptag!r} is not a safe tag fragment: 1-{MAX_PTAG_LEN} characters of [A-Za-z0-9._-], "
            "not starting or ending with '-', no '--' (e.g. 'amd64')")
    return ptag


def check_run_id(run_id: str) -> str:
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} must be 1-20 characters of [A-Za-z0-9._] (GITHUB_RUN_ID is digits)")
    return run_id


def family_stem(family: Family, suffix: str) -> str:
    """``<suffix>`` for backends, ``-localai<suffix or -core>`` for the server image: the part of
    every per-leg name (artifacts, keepalive and PR tags, local tags) that says which suffix it is."""
    if family is Family.SERVER:
        return SERVER_PREFIX + (suffix or CORE)
    return suffix


def normalize_suffix(family: Family, suffix: str) -> str:
    """The one place ``-core`` is read back: for the server family it names the empty suffix
    (``--tag-suffix -core``, ``--only -core``, artifact names); a backend suffix is itself."""
    return "" if family is Family.SERVER and suffix == CORE else suffix


def suffix_label(family: Family, suffix: str) -> str:
    """How a suffix is named to users: ``-cpu-hello``; server: ``server -core`` / ``server -gpu-vulkan``."""
    if family is Family.SERVER:
        return f"server {suffix or CORE}"
    return suffix


@dataclass(frozen=True, order=True)
class LegKey:
    """What identifies one per-arch leg from planning to publishing: family, tag-suffix, platform tag."""

    family: Family
    suffix: str
    ptag: str

    @property
    def label(self) -> str:
        """``-cpu-hello [amd64]``, ``server -core [arm64]``: progress lines, tables, summaries."""
        return f"{suffix_label(self.family, self.suffix)} [{self.ptag}]"

    @property
    def phrase(self) -> str:
        """``backends tag-suffix '-cpu-hello' platform-tag amd64``: the leg named in an error message."""
        return f"{self.family} tag-suffix {self.suffix!r} platform-tag {self.ptag}"

    @property
    def artifact(self) -> str:
        """The leg's digest artifact name (:func:`artifact_name`)."""
        return artifact_name(self.family, self.suffix, self.ptag)

    def __str__(self) -> str:
        return self.label


def artifact_name(family: Family, suffix: str, ptag: str) -> str:
    """The digest artifact (and directory) name of one leg."""
    check_suffix(suffix, family)
    check_platform_tag(ptag)
    return f"digests{family_stem(family, suffix)}{SEPARATOR}{ptag}"


def artifact_pattern(family: Family, suffix: str) -> str:
    """Download pattern for every leg of one suffix; cannot match another suffix (see module doc)."""
    check_suffix(suffix, family)
    return f"digests{family_stem(family, suffix)}{SEPARATOR}*"


def class_artifact_pattern(family: Family, suffixes: Sequence[str]) -> str:
    """One download pattern for the artifacts of exactly ``suffixes`` (a merge class): the per-suffix
    patterns as one brace alternation, ``digests{-a,-b}--*`` (``actions/download-artifact`` matches
    with minimatch, which expands braces). Each alternative is :func:`artifact_pattern`'s, so the
    whole matches no other suffix's artifacts; a tag-suffix holds no ``{``, ``}`` nor ``,``."""
    if not suffixes:
        raise ValueError("a merge class needs at least one tag-suffix")
    for s in suffixes:
        check_suffix(s, family)
    stems = list(dict.fromkeys(family_stem(family, s) for s in suffixes))
    inner = stems[0] if len(stems) == 1 else "{" + ",".join(stems) + "}"
    return f"digests{inner}{SEPARATOR}*"


def parse_artifact_name(name: str) -> LegKey:
    """Inverse of :func:`artifact_name`; ValueError for anything else."""
    if not name.startswith("digests") or SEPARATOR not in name:
        raise ValueError(f"{name!r} is not a digest artifact name (expected digests<suffix>--<platform-tag>)")
    stem, ptag = name[len("digests"):].split(SEPARATOR, 1)
    if stem == SERVER_PREFIX or stem.startswith(SERVER_PREFIX + "-"):
        family = Family.SERVER
        rest = stem[len(SERVER_PREFIX):]
        suffix = normalize_suffix(family, rest)
        if rest == "":
            raise ValueError(f"{name!r}: server artifact without a suffix (the empty suffix is written {CORE!r})")
    else:
        family, suffix = Family.BACKENDS, stem
    try:
        check_suffix(suffix, family)
        check_platform_tag(ptag)
    except ValueError as exc:
        raise ValueError(f"{name!r} is not a valid digest artifact name: {exc}") from exc
    key = LegKey(family, suffix, ptag)
    if artifact_name(family, suffix, ptag) != name:  # pragma: no cover - defensive round-trip
        raise ValueError(f"{name!r} does not round-trip as an artifact name")
    return key


def cache_tag(family: Family, suffix: str, ptag_field: str) -> str:
    """Registry build-cache tag of one leg: ``cache<suffix>-<platform-tag>`` (server
    ``cache-localai<suffix>-<platform-tag>``), with the matrix entry's ``platform-tag`` *as written*:
    empty for a single-arch entry that gives none (``cache-cpu-foo-``). That is the ref LocalAI's
    workflows use (``cache${{ inputs.tag-suffix }}-${{ inputs.platform-tag }}``), so an adopting
    repository's first run reads the caches its old workflows wrote instead of starting cold."""
    check_suffix(suffix, family)
    if ptag_field:
        check_platform_tag(ptag_field)
    stem = SERVER_PREFIX + suffix if family is Family.SERVER else suffix
    return f"cache{stem}-{ptag_field}"


def local_tag(family: Family, suffix: str, ptag: str) -> str:
    """The engine tag a leg is built as: ``localai-ci/backend<suffix>:<ptag>`` (server
    ``localai-ci/localai<suffix|-core>:<ptag>``)."""
    stem = family_stem(family, suffix)[1:] if family is Family.SERVER else "backend" + suffix
    return f"localai-ci/{stem}:{ptag}"


def pr_tag(ident: str, family: Family, suffix: str, ptag: str) -> str:
    """A pull request's tag: ``pr-<ident><suffix>-<ptag>`` (server ``pr-<ident>-localai<suffix|-core>-<ptag>``);
    ``ident`` is the PR number, ``run<id>`` or ``local``."""
    return f"pr-{ident}{family_stem(family, suffix)}-{ptag}"


def backend_label(family: Family, suffix: str) -> str:
    """The backend a leg's image is labelled with when its entry names none: the suffix
    (server ``localai<suffix|-core>``)."""
    return family_stem(family, suffix)[1:] if family is Family.SERVER else suffix


def keepalive_tag(run_id: str, family: Family, suffix: str, ptag: str) -> str:
    """Tag that anchors a pushed-by-digest leg until its merge: ``keepalive-<run-id><suffix>-<ptag>``."""
    check_run_id(run_id)
    check_suffix(suffix, family)
    check_platform_tag(ptag)
    return f"keepalive-{run_id}{family_stem(family, suffix)}-{ptag}"


# --- LocalAI PR #9730 naming, kept only to lint matrices for glob over-match ----------------

def pr9730_artifact_name(suffix: str, ptag: str) -> str:
    return f"digests{suffix}-{ptag}"


def pr9730_download_glob(suffix: str) -> str:
    return f"digests{suffix}-*"


def glob_overmatches(pattern: str, name: str) -> bool:
    """True when an actions/download-artifact style glob matches ``name``."""
    return fnmatch.fnmatchcase(name, pattern)
