"""Consumer references to published images (galleries, docs, manifests): can the matrix produce each tag?

LocalAI's users meet a missing tag as a failed install (``MANIFEST_UNKNOWN`` on
``latest-cublas-cuda13-trl``; gallery entries naming backend images no matrix entry builds).
``invoke matrix.lint --references FILE`` reads the files that name the images and reports every
reference the matrix cannot back:

- ``reference-unknown-suffix``: the tag's suffix is no tag-suffix of the matrix (the closest is named);
- ``reference-latest-never-published``: ``latest-<suffix>`` of a suffix whose legs say ``tag-latest: false``;
- ``reference-unknown-tag``: the suffix exists but the rest of the tag is no shape the merge
  produces (a branch that is not configured, ``stable-...``);
- ``reference-unknown-repository``: a repository that looks like one of the family's but is not
  (``quay.io/go-skynet/local-ai-backend``).

Tag shapes come from :func:`ci.tags.compute_tags` itself (run on sample refs and turned into
patterns), so the lint and the merge cannot disagree. Which branches publish images is a setting
(``--branches``, default ``master``: LocalAI's default branch, whose pushes give ``master-<suffix>``).

Reading: YAML is composed, never constructed (aliases and merge keys such as ``<<: *whispercpp``
are not expanded: every scalar is read once, where it is written; bounded size and node count);
other files (JSON, Markdown, text) are scanned line by line. :func:`find_references` and
:func:`check_references` are pure; :func:`read_references` reads a file.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError
from ..oci.reference import ImageName, parse_image_name
from ..settings import FamilyConfig, family_config
from ..textfile import read_user_text
from .lint import Finding, LintResult
from .model import Matrix, load_matrix
from .naming import Family
from .tags import Latest, TagInput, check_ref, compute_tags, parse_latest

REFERENCE_RULES: dict[str, str] = {
    "reference-unknown-suffix": "a reference's tag names a tag-suffix no matrix entry builds",
    "reference-latest-never-published": "a latest-<suffix> reference for a suffix whose legs say tag-latest: false",
    "reference-unknown-tag": "a reference's tag is no shape the merge produces (branch, release, sha, latest)",
    "reference-unknown-repository": "a reference to a repository that is close to, but not, one of the family's",
}
DEFAULT_BRANCHES = ("master",)
MAX_REFERENCE_FILE = 32 << 20
MAX_NODES = 5_000_000
SIMILAR = 0.88  # difflib ratio above which an unknown repository is taken for a misspelt family one

# [registry/]path/...:tag or @sha256:digest, with at least one '/': 'a:b' alone is not an image
_REF = re.compile(r"(?<![\w./:@-])((?:[a-z0-9][a-z0-9.-]*(?::\d{1,5})?/)?[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)+)"
                  r"(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@(sha256:[0-9a-f]{64}))(?![\w.:@-])")
_SAMPLE_SHA = "abcdef0123456789abcdef0123456789abcdef01"
_SAMPLE_VERSION = "v9.8.7"
_SEMVER_PATTERN = r"v?(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?"


@dataclass(frozen=True)
class Reference:
    source: str
    line: int
    text: str  # as written
    image: ImageName
    tag: str  # '' for a digest reference


def find_references(text: str, source: str, yaml_file: bool) -> list[Reference]:
    """Every image reference in ``text`` (YAML scalars, or every line of a text file)."""
    out: list[Reference] = []
    for line, value in (_yaml_scalars(text, source) if yaml_file else enumerate(text.splitlines(), 1)):
        for m in _REF.finditer(value):
            try:
                image = parse_image_name(m.group(1))
            except ValueError:
                continue
            tag, written = m.group(2) or "", m.group(0)
            if tag.endswith("."):  # prose: the sentence's full stop, not the tag's
                tag, written = tag.rstrip("."), written.rstrip(".")
            out.append(Reference(source, line, written, image, tag))
    return out


def _yaml_scalars(text: str, source: str) -> list[tuple[int, str]]:
    """(line, value) of every scalar of the YAML stream, each node once (aliases are not followed twice)."""
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{source}{where}: not valid YAML ({getattr(exc, 'problem', exc)}); fix the file or pass it "
                        "as plain text") from exc
    out: list[tuple[int, str]] = []
    seen: set[int] = set()
    stack = [n for n in nodes if n is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if len(seen) > MAX_NODES:
            raise UserError(f"{source}: more than {MAX_NODES} YAML nodes; refusing to read further")
        if isinstance(node, yaml.ScalarNode):
            out.append((node.start_mark.line + 1, str(node.value)))
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                stack.extend((k, v))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return sorted(out)


def read_references(path: str | Path) -> list[Reference]:
    """The references of one file (``.yml``/``.yaml`` as YAML, anything else as text)."""
    text = read_user_text(path, what="references file", limit=MAX_REFERENCE_FILE,
                          missing_hint="pass --references FILE[,FILE...]", error=UserError)
    return find_references(text, str(path), Path(path).suffix.lower() in (".yml", ".yaml"))


# ---- tag shapes, from the merge's own tag computation ---------------------------------------------------
def tag_shapes(suffix: str, latest: Latest, family: Family, branches: Sequence[str]) -> tuple[re.Pattern[str], ...]:
    """Patterns of every tag the merge gives ``suffix`` (:func:`ci.tags.compute_tags` on sample refs)."""
    tags: list[str] = []
    for ref in (*(f"refs/heads/{b}" for b in branches), f"refs/tags/{_SAMPLE_VERSION}"):
        tags += compute_tags(TagInput(event="push", ref=ref, sha=_SAMPLE_SHA, suffix=suffix, latest=latest,
                                      family=family))
    pats = []
    for t in dict.fromkeys(tags):
        p = re.escape(t).replace(re.escape(f"sha-{_SAMPLE_SHA[:7]}"), "sha-[0-9a-f]{7}")
        p = p.replace(re.escape(_SAMPLE_VERSION), _SEMVER_PATTERN)
        pats.append(re.compile(p))
    return tuple(pats)


def _latest_of(matrix: Matrix, suffix: str) -> Latest:
    values = {leg.tag_latest for leg in matrix.legs_of(suffix)} or {
        str(d.get("tag-latest", "auto")) for d in matrix.darwin if d.get("tag-suffix") == suffix}
    try:
        return parse_latest(sorted(values)[0]) if len(values) == 1 else Latest.AUTO  # disagreement: lint says so
    except UserError:
        return Latest.AUTO


def published_suffixes(matrix: Matrix) -> list[str]:
    """Every tag-suffix the matrix publishes: its Linux legs' and its ``includeDarwin`` entries' (built elsewhere)."""
    darwin = [str(d["tag-suffix"]) for d in matrix.darwin if isinstance(d.get("tag-suffix"), str)]
    return list(dict.fromkeys([*matrix.suffixes(), *darwin]))


def _prefix_shape(tag: str, branches: Sequence[str]) -> str | None:
    """The merge-shaped prefix a tag starts with (``latest``, a branch, a version, ``sha-<7>``), else None."""
    alts = ["latest", "sha-[0-9a-f]{7}", _SEMVER_PATTERN, *(re.escape(b) for b in branches)]
    m = re.match(rf"^(?:{'|'.join(alts)})(?=-|$)", tag)
    return m.group(0) if m else None


def check_references(refs: Iterable[Reference], matrices: Mapping[Family, Matrix],
                     configs: Mapping[Family, FamilyConfig], branches: Sequence[str] = DEFAULT_BRANCHES) -> list[Finding]:
    """A finding for every reference to a family repository whose tag the family's matrix cannot produce."""
    owner: dict[ImageName, Family] = {img: fam for fam, c in configs.items() for img in c.images}
    names = {f"{i.registry}/{i.repository}": fam for i, fam in owner.items()}
    shapes: dict[tuple[Family, str], tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]]] = {}
    findings: list[Finding] = []

    def add(rule: str, r: Reference, message: str, fix: str) -> None:
        findings.append(Finding(rule=rule, source=r.source, line=r.line, suffix="", ptag="", message=message,
                                fix=fix, reference=r.text))

    for r in refs:
        fam = owner.get(r.image)
        if fam is None:
            full = f"{r.image.registry}/{r.image.repository}"
            close = difflib.get_close_matches(full, list(names), n=1, cutoff=SIMILAR)
            if close:
                add("reference-unknown-repository", r, f"repository {full} is none of the published ones",
                    f"use {close[0]} (the {names[close[0]]} images are published to {', '.join(names)})")
            continue
        if not r.tag or fam not in matrices:
            continue  # a digest reference names no tag
        m = matrices[fam]
        known = published_suffixes(m)
        suffixes = sorted(known, key=len, reverse=True)
        matched = False
        for suffix in suffixes:
            if suffix and not r.tag.endswith(suffix):
                continue
            key = (fam, suffix)
            if key not in shapes:
                shapes[key] = (tag_shapes(suffix, _latest_of(m, suffix), fam, branches),
                               tag_shapes(suffix, Latest.TRUE, fam, branches))
            published, with_latest = shapes[key]
            if any(p.fullmatch(r.tag) for p in published):
                matched = True
                break
            if any(p.fullmatch(r.tag) for p in with_latest):
                add("reference-latest-never-published", r,
                    f"tag-suffix {suffix or repr('')} has tag-latest: false in {m.path}, so {r.tag} is never published",
                    f"point at a release or branch tag of {suffix or 'the core image'}, or set tag-latest: auto on its legs")
                matched = True
                break
        if matched:
            continue
        prefix = _prefix_shape(r.tag, branches)
        rest = r.tag[len(prefix):] if prefix is not None else ""
        if prefix is not None and rest not in known:
            nearest = closest_suffix(rest, known)
            add("reference-unknown-suffix", r, f"no entry of {m.path} has tag-suffix {rest!r}",
                f"use {prefix}{nearest} (tag-suffix {nearest!r}), or add {rest} to the matrix" if nearest else
                f"add {rest} to the matrix or drop the reference")
        else:
            add("reference-unknown-tag", r, f"tag {r.tag} is no shape the merge publishes (branches: "
                f"{', '.join(branches)}; releases vX.Y.Z; sha-<7 hex>; latest)",
                "use latest-<suffix>, <branch>-<suffix> or a release tag, or add the branch with --branches")
    return findings


def closest_suffix(suffix: str, known: Sequence[str]) -> str | None:
    """The known suffix most like ``suffix``: first those that build the same backend (the longest shared
    trailing ``-`` components: ``-gpu-rocm-hipblas-turboquant`` -> ``-gpu-vulkan-turboquant``, not
    ``-gpu-rocm-hipblas-coqui``), then by similarity."""
    parts = suffix.strip("-").split("-")

    def shared_tail(k: str) -> int:
        other = k.strip("-").split("-")
        n = 0
        while n < min(len(parts), len(other)) and parts[-1 - n] == other[-1 - n]:
            n += 1
        return n

    best = max((shared_tail(k) for k in known), default=0)
    pool = [k for k in known if shared_tail(k) == best] if best else list(known)
    close = difflib.get_close_matches(suffix, pool, n=1, cutoff=0.0 if best else 0.6)
    return close[0] if close else None


def parse_branches(text: str | None) -> tuple[str, ...]:
    """``--branches master,main`` (default :data:`DEFAULT_BRANCHES`); UserError for a name git refuses."""
    names = tuple(dict.fromkeys(b.strip() for b in (text or "").split(",") if b.strip())) or DEFAULT_BRANCHES
    for b in names:
        try:
            check_ref(f"refs/heads/{b}")
        except UserError as exc:
            raise UserError(f"--branches: {b!r} is not a branch name (e.g. master,main)") from exc
    return names


def lint_references(paths: Sequence[str | Path], matrices: Mapping[Family, Matrix],
                    configs: Mapping[Family, FamilyConfig], branches: Sequence[str] = DEFAULT_BRANCHES,
                    ignore: Iterable[str] = ()) -> Any:
    """``invoke matrix.lint --references``: read every file, check every reference; a ``ci.lint.LintResult``."""
    skip = set(ignore)
    refs = [r for p in paths for r in read_references(p)]
    found = [f for f in check_references(refs, matrices, configs, branches) if f.rule not in skip]
    found.sort(key=lambda f: (f.source, f.line, f.reference))
    return LintResult(source=", ".join(str(p) for p in paths), entries=len(refs),
                      rules=tuple(r for r in REFERENCE_RULES if r not in skip), findings=tuple(found),
                      counted="references")


def lint_references_of(paths: str, *, matrix: str | Path, images: str | None, server_matrix: str | Path | None,
                       server_images: str | None, branches: str | None, ignore: Iterable[str],
                       env: Mapping[str, str]) -> Any:
    """The task's verb: the families from options and environment, then :func:`lint_references`."""
    files = [p.strip() for p in paths.split(",") if p.strip()]
    matrices: dict[Family, Matrix] = {Family.BACKENDS: load_matrix(matrix, Family.BACKENDS)}
    if server_matrix:
        matrices[Family.SERVER] = load_matrix(server_matrix, Family.SERVER)
    configs = {Family.BACKENDS: family_config(Family.BACKENDS, images=images, env=env),
               Family.SERVER: family_config(Family.SERVER, images=server_images, env=env)}
    return lint_references(files, matrices, configs, parse_branches(branches), ignore)
