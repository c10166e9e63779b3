"""Final image tags, computed exactly as docker/metadata-action v6 does for LocalAI (pure).

LocalAI's merge jobs configure the action with::

    tags: |
      type=ref,event=branch
      type=semver,pattern={{raw}}
      type=sha
    flavor: |
      latest=${{ matrix.tag-latest }}
      suffix=${{ matrix.tag-suffix }},onlatest=true

The action's rules for that configuration (``src/meta.ts``), reproduced here:

- tag types are processed by priority: ``semver`` (900), ``ref`` (600), ``sha`` (100);
  the first value produced is the main tag, the others follow in that order, duplicates dropped;
- ``type=semver``: only for ``refs/tags/<v>`` where ``<v>`` (``/`` -> ``-``) is valid strict
  semver (a leading ``v`` is allowed); ``{{raw}}`` keeps the ref's text, pre-releases included.
  A tag ref that is not semver (``v3.4``) gives no semver tag;
- ``type=ref,event=branch``: only for ``refs/heads/<branch>``;
- ``type=sha``: ``sha-<first 7 hex>`` when a SHA is known;
- the suffix is appended to every value, then each value is sanitised (``Meta.sanitizeTag``,
  ``tag.replace(/[^a-zA-Z0-9._-]+/g, '-')``, the same in v5 and v6): every run of characters
  outside ``[A-Za-z0-9._-]`` becomes one ``-`` (``feature/Foo_bar`` -> ``feature-Foo_bar``,
  ``v1.0.0+b1`` -> ``v1.0.0-b1``, ``fix-ü`` -> ``fix--``: git allows any non-control character
  in a branch name, and the JavaScript regex replaces a non-ASCII letter -- or the two UTF-16
  halves of one outside the BMP, a single run -- like any other);
- ``latest``: ``true`` always adds it, ``false`` never, ``auto`` only when the first value
  came from a non-prerelease semver tag; it comes last, with the suffix (``onlatest=true``);
  no tag at all is produced when no type produced a value.

One deliberate difference: for ``pull_request``/``pull_request_target`` events only the sha
tag is computed (the action would give ``pull_request_target``'s base branch a branch tag,
publishing a PR's image under the branch's tag). Every tag is validated as an image tag;
bad refs, SHAs and tags are :class:`~ci.errors.UserError` (exit 2).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from ..errors import UserError
from ..oci.reference import parse_tag
from .naming import Family, check_suffix

PR_EVENTS = ("pull_request", "pull_request_target")
SHORT_SHA = 7

# node-semver strict FULL: v?MAJOR.MINOR.PATCH(-PRERELEASE)?(+BUILD)?
_NUM = r"(?:0|[1-9]\d*)"
_PRE_ID = r"(?:0|[1-9]\d*|\d*[a-zA-Z-][a-zA-Z0-9-]*)"
_SEMVER = re.compile(
    rf"^v?{_NUM}\.{_NUM}\.{_NUM}(?P<pre>-{_PRE_ID}(?:\.{_PRE_ID})*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$")
_SANITIZE = re.compile(r"[^a-zA-Z0-9._-]+")
_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
# git check-ref-format: no ASCII control character, space ~ ^ : ? * [ \, no '..' or '@{', no component starting
# with '.' or ending in '.lock', no '//', no trailing '/' or '.'. Anything else is a valid ref, non-ASCII
# included (a push to 'fix-ü' is one); metadata-action's sanitizeTag then makes its tag ('fix--cpu-x').
_REF = re.compile(r"^refs/(?:heads|tags|pull|remotes)/[^\x00-\x20\x7f\ud800-\udfff]+$")
_REF_FORBIDDEN = re.compile(r"[~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(?:/|$)|/$|\.$")
MAX_REF_LEN = 255


class Latest(StrEnum):
    """The ``latest=`` flavor of metadata-action (the matrix's ``tag-latest``)."""

    AUTO = "auto"
    TRUE = "true"
    FALSE = "false"


def parse_latest(text: str) -> Latest:
    try:
        return Latest(text.strip().lower())
    except ValueError as exc:
        raise UserError(f"tag-latest {text!r} is not one of auto, true, false "
                        "(metadata-action refuses an empty or other value)") from exc


def is_semver(text: str) -> bool:
    """Strict node-semver validity (``semver.valid``), a leading ``v`` allowed."""
    return len(text) <= 256 and bool(_SEMVER.match(text))


def is_prerelease(text: str) -> bool:
    m = _SEMVER.match(text)
    return bool(m and m["pre"])


def sanitize_tag(value: str) -> str:
    """metadata-action's ``sanitizeTag``: runs of disallowed characters become one ``-``."""
    return _SANITIZE.sub("-", value)


def check_sha(sha: str) -> str:
    """A full commit SHA (40, or 64 for SHA-256 repositories, lowercase hex) or ''."""
    if sha and not _SHA.match(sha):
        raise UserError(f"commit SHA {sha!r} is not 40 (or 64) lowercase hex characters; "
                        "pass --sha with the full commit id (git rev-parse HEAD) or fix GITHUB_SHA")
    return sha


def check_ref(ref: str) -> str:
    """A fully qualified git ref (``refs/heads/...``, ``refs/tags/...``, ``refs/pull/...``) or ''."""
    if not ref:
        return ref
    if len(ref) > MAX_REF_LEN or not _REF.match(ref) or _REF_FORBIDDEN.search(ref):
        raise UserError(f"git ref {ref!r} is not a valid fully qualified ref (e.g. refs/heads/master, "
                        "refs/tags/v3.4.0, refs/pull/12/merge); pass --ref or fix GITHUB_REF")
    return ref


@dataclass(frozen=True)
class TagInput:
    """What metadata-action reads: the event, ref and SHA, and the flavor."""

    event: str
    ref: str
    sha: str
    suffix: str
    latest: Latest = Latest.AUTO
    family: Family = Family.BACKENDS


@dataclass(frozen=True)
class TagSource:
    """What metadata-action reads of a run: the event name, ref and SHA (one per run; every suffix's
    tags come from it, see :meth:`tags`). ``ci.github.tag_source`` resolves it from the flags, the
    Actions environment or the checkout."""

    event: str = "push"
    ref: str = ""
    sha: str = ""

    def tags(self, suffix: str, latest: Latest = Latest.AUTO, family: Family = Family.BACKENDS) -> tuple[str, ...]:
        """:func:`compute_tags` for one suffix of this run."""
        return compute_tags(TagInput(event=self.event, ref=self.ref, sha=self.sha, suffix=suffix, latest=latest,
                                     family=family))


def compute_tags(inp: TagInput) -> tuple[str, ...]:
    """The ordered final tags (main tag first, ``latest`` last). Raises UserError on bad input.

    An empty result is an error too: nothing could be tagged (no ref and no SHA).
    """
    try:
        check_suffix(inp.suffix, inp.family)
    except ValueError as exc:
        raise UserError(f"--tag-suffix: {exc}") from exc
    ref = check_ref(inp.ref)
    sha = check_sha(inp.sha)
    is_pr = inp.event in PR_EVENTS
    values: list[str] = []  # (already suffixed) values in priority order
    first_latest: bool | None = None

    def add(value: str, latest_auto: bool) -> None:
        nonlocal first_latest
        if not value:
            return
        val = sanitize_tag(value + inp.suffix)
        if val not in values:
            values.append(val)
        if first_latest is None:
            first_latest = latest_auto

    if not is_pr and ref.startswith("refs/tags/"):  # type=semver,pattern={{raw}} (priority 900)
        raw = ref.removeprefix("refs/tags/").replace("/", "-")
        if is_semver(raw):
            add(raw, not is_prerelease(raw))
    if not is_pr and ref.startswith("refs/heads/"):  # type=ref,event=branch (600)
        add(ref.removeprefix("refs/heads/"), False)
    if sha:  # type=sha (100)
        add("sha-" + sha[:SHORT_SHA], False)
    if not values:
        raise UserError(
            f"no tag can be computed for event {inp.event!r} ref {ref or '(none)'!r} sha {sha or '(none)'!r}: "
            "a branch or semver tag ref, or a commit SHA, is needed; pass --ref refs/heads/<branch> and/or "
            "--sha <40 hex> (in Actions GITHUB_REF and GITHUB_SHA are set)")
    want_latest = {Latest.TRUE: True, Latest.FALSE: False}.get(inp.latest, bool(first_latest))
    if want_latest:
        latest = sanitize_tag("latest" + inp.suffix)
        if latest not in values:
            values.append(latest)
    for v in values:
        try:
            parse_tag(v)
        except ValueError as exc:
            raise UserError(f"computed tag is invalid: {exc}; from ref {ref!r}, suffix {inp.suffix!r} "
                            "(rename or shorten the branch, pass another --ref, or shorten the tag-suffix)") from exc
    return tuple(values)
