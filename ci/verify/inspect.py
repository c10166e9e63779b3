"""Inspect verb: verification that asserts, for merged manifest lists in every registry.

The rules are pure (:func:`verify` over :class:`ListObservation` values); :func:`observe`
reads the registries; :func:`inspect_refs` does both (and cosign verification on request).
Checks, each named in a failure:

- ``resolves``: the tag (or digest) resolves in that registry;
- ``is-list``: it is a manifest list / OCI index;
- ``no-attestation``: no attestation or ``unknown/unknown`` child;
- ``platforms``: the children's platforms are exactly the expected ones (when given), and distinct;
- ``same-digest``: the list digest is identical in every registry for one tag;
- ``tag-matches-digest``: when digests are given beside tags for a repository (``--tag <list
  digest> --tag <tag>``, as the merge workflow runs it), every tag resolves to one of them;
- ``child-resolves``: every child manifest resolves in that registry, with the size the list says;
- ``child-platform``: each child's config os/architecture(/variant) matches its descriptor;
- ``signature`` (``--verify-signatures``): the list and each child verify with cosign.

Named ``inspection`` (not ``inspect``) so it cannot shadow the standard library module.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import CiError, UserError
from ..oci.client import RegistryClient
from ..oci.manifest import (
    MAX_CONFIG_BYTES,
    Descriptor,
    config_platform,
    is_attestation,
    is_attestation_manifest,
    parse_manifest,
)
from ..oci.platforms import Platform, normalize, parse_platform, same_platform
from ..oci.reference import ImageName, has_userinfo, mask_userinfo, parse_digest, parse_image_name, parse_tag
from ..oci.sign import VerifyOptions, verify_image
from ..output.markdown import code, md_cell, md_table
from ..textfile import read_user_text

CHECKS = ("resolves", "is-list", "no-attestation", "platforms", "same-digest", "tag-matches-digest",
          "child-resolves", "child-platform", "signature")


@dataclass(frozen=True)
class InspectRef:
    """One reference to inspect: a repository and a tag or digest."""

    image: ImageName
    reference: str  # tag, or sha256:...

    def __str__(self) -> str:
        return self.image.with_digest(self.reference) if self.reference.startswith("sha256:") else self.image.with_tag(self.reference)


def parse_reference(text: str) -> InspectRef:
    """``[registry/]repo:tag`` or ``[registry/]repo@sha256:...``; UserError otherwise."""
    raw = text.strip()
    try:
        if has_userinfo(raw):
            raise ValueError("text before '@' (credentials?) is not accepted in a reference; log in with "
                             "`docker login` instead")
        if "@" in raw:
            name, digest = raw.rsplit("@", 1)
            return InspectRef(parse_image_name(name), parse_digest(digest))
        slash = raw.rfind("/")
        colon = raw.rfind(":")
        if colon <= slash:
            raise ValueError(f"{text!r} has no tag or digest (expected REPO:TAG or REPO@sha256:...)")
        return InspectRef(parse_image_name(raw[:colon]), parse_tag(raw[colon + 1:]))
    except ValueError as exc:
        raise UserError(f"reference {mask_userinfo(text)!r}: {exc}") from exc


def parse_platforms(text: str) -> tuple[Platform, ...]:
    try:
        plats = tuple(parse_platform(p) for p in text.split(",") if p.strip())
    except ValueError as exc:
        raise UserError(f"--expect-platforms: {exc}") from exc
    if not plats:
        raise UserError("--expect-platforms: give at least one platform, e.g. linux/amd64,linux/arm64")
    return plats


@dataclass(frozen=True)
class ChildObservation:
    descriptor: Descriptor
    found: bool = True
    size: int = -1  # as served by the registry
    config_platform: Platform | None = None
    error: str = ""


@dataclass(frozen=True)
class ListObservation:
    target: InspectRef
    digest: str = ""  # '' when it does not resolve
    media_type: str = ""
    is_index: bool = False
    children: tuple[ChildObservation, ...] = ()
    error: str = ""  # why it does not resolve (not found, registry error)
    signature_errors: tuple[str, ...] = ()

    @property
    def platforms(self) -> list[str]:
        return [str(c.descriptor.platform or "unknown/unknown") for c in self.children]


@dataclass(frozen=True)
class Failure:
    check: str
    ref: str
    message: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.ref}: {self.message}"


@dataclass(frozen=True)
class InspectReport:
    observations: tuple[ListObservation, ...]
    failures: tuple[Failure, ...]
    expected: tuple[Platform, ...] | None = None
    signatures_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


# ---- pure rules ------------------------------------------------------------------------------

def _group_key(t: InspectRef) -> str:
    return t.reference


def verify(observations: Sequence[ListObservation], expected: Sequence[Platform] | None = None) -> list[Failure]:
    """Every failed check, named (pure)."""
    out: list[Failure] = []
    want = sorted({str(normalize(p)) for p in expected}) if expected else None
    for ob in observations:
        ref = str(ob.target)
        if not ob.digest:
            out.append(Failure("resolves", ref, ob.error or "does not resolve"))
            continue
        if not ob.is_index:
            out.append(Failure("is-list", ref, f"is a single image ({ob.media_type}), not a manifest list"))
            continue
        bad = [c for c in ob.children if is_attestation(c.descriptor)]
        for c in bad:
            out.append(Failure("no-attestation", ref, f"child {c.descriptor.digest} is an attestation or "
                                                      "unknown/unknown entry"))
        plats = sorted(str(normalize(c.descriptor.platform)) for c in ob.children  # type: ignore[arg-type]
                       if not is_attestation(c.descriptor))
        if len(set(plats)) != len(plats):
            out.append(Failure("platforms", ref, f"duplicate platforms: {', '.join(plats)}"))
        if want is not None and sorted(set(plats)) != want:
            missing = sorted(set(want) - set(plats))
            extra = sorted(set(plats) - set(want))
            parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unexpected {', '.join(extra)}"] if extra else [])
            out.append(Failure("platforms", ref, f"platforms are {', '.join(plats) or 'none'}; expected "
                                                 f"{', '.join(want)} ({'; '.join(parts)})"))
        for c in ob.children:
            d = c.descriptor
            if is_attestation(d):
                continue
            if not c.found:
                out.append(Failure("child-resolves", ref, f"child {d.digest} ({d.platform}) does not resolve: "
                                                          f"{c.error or 'not found'}"))
                continue
            if c.size >= 0 and c.size != d.size:
                out.append(Failure("child-resolves", ref, f"child {d.digest} is {c.size} bytes, the list says {d.size}"))
            if c.config_platform is None or d.platform is None or not same_platform(c.config_platform, d.platform):
                out.append(Failure("child-platform", ref, f"child {d.digest}: the list says {d.platform}, its config "
                                                          f"says {c.config_platform or 'unknown'}"
                                                          + (f" ({c.error})" if c.error else "")))
        for err in ob.signature_errors:
            out.append(Failure("signature", ref, err))
    groups: dict[str, list[ListObservation]] = {}
    for ob in observations:
        if ob.digest:
            groups.setdefault(_group_key(ob.target), []).append(ob)
    for key, obs in groups.items():
        digests = {ob.digest for ob in obs}
        if len(digests) > 1:
            detail = "; ".join(f"{ob.target.image}: {ob.digest}" for ob in obs)
            out.append(Failure("same-digest", key, f"the list differs between registries: {detail}"))
    given: dict[ImageName, list[str]] = {}
    for ob in observations:
        if ob.target.reference.startswith("sha256:"):
            given.setdefault(ob.target.image, []).append(ob.target.reference)
    for ob in observations:
        wanted = given.get(ob.target.image)
        if wanted and ob.digest and not ob.target.reference.startswith("sha256:") and ob.digest not in wanted:
            out.append(Failure("tag-matches-digest", str(ob.target),
                               f"the tag resolves to {ob.digest}, but the list digest given with it is "
                               f"{' or '.join(dict.fromkeys(wanted))}; the tag serves another list"))
    return out


# ---- reading ---------------------------------------------------------------------------------

def observe(target: InspectRef, client: RegistryClient) -> ListObservation:
    """Read one list and its children from a registry; registry errors become observations."""
    try:
        got = client.get_manifest(target.reference)
    except CiError as exc:
        return ListObservation(target, error=str(exc))
    if got is None:
        return ListObservation(target, error=f"not found in {target.image}")
    body, media, digest = got
    try:
        parsed = parse_manifest(body, media)
    except ValueError as exc:
        return ListObservation(target, digest=digest, media_type=media, error=str(exc))
    if not parsed.is_index:
        return ListObservation(target, digest=digest, media_type=parsed.media_type)
    kids: list[ChildObservation] = []
    for d in parsed.children:
        if is_attestation(d):
            kids.append(ChildObservation(d))
            continue
        kids.append(_observe_child(d, client))
    return ListObservation(target, digest=digest, media_type=parsed.media_type, is_index=True, children=tuple(kids))


def _observe_child(d: Descriptor, client: RegistryClient) -> ChildObservation:
    try:
        got = client.get_manifest(d.digest)
        if got is None:
            return ChildObservation(d, found=False)
        parsed = parse_manifest(got[0], got[1])
        if parsed.is_index or parsed.config is None:
            return ChildObservation(d, size=len(got[0]), error="the child is itself a list")
        if is_attestation_manifest(parsed):
            return ChildObservation(d, size=len(got[0]), error="the child is an attestation (in-toto layers)")
        plat = config_platform(client.get_blob(parsed.config.digest, MAX_CONFIG_BYTES))
        return ChildObservation(d, size=len(got[0]), config_platform=plat)
    except (CiError, ValueError) as exc:
        return ChildObservation(d, found=False, error=str(exc))


def expand_targets(refs: Iterable[str], images: Sequence[ImageName], tags: Sequence[str]) -> list[InspectRef]:
    """Positional references plus the cross product of ``--images`` and ``--tag``."""
    out = [parse_reference(r) for r in refs]
    tags = [t.strip() for group in tags for t in group.split(",") if t.strip()]  # "a,b" as the merge writes them
    for t in tags:
        try:
            ref = parse_digest(t) if t.startswith("sha256:") else parse_tag(t)
        except ValueError as exc:
            raise UserError(f"--tag: {exc}") from exc
        out += [InspectRef(img, ref) for img in images]
    if tags and not images:
        raise UserError("--tag needs --images (or a family's configured images)")
    if not out:
        raise UserError("nothing to inspect: give REF... (e.g. quay.io/org/repo:tag) or --images with --tag")
    return list(dict.fromkeys(out))


def inspect_refs(targets: Sequence[InspectRef], client_for: Callable[[ImageName], RegistryClient], *,
                 expected: Sequence[Platform] | None = None, verify_signatures: VerifyOptions | None = None,
                 plain_http: Callable[[str], bool] = lambda reg: False,
                 env: Mapping[str, str] | None = None) -> InspectReport:
    """Observe every target, verify signatures when asked, apply the rules."""
    obs: list[ListObservation] = []
    clients: dict[ImageName, RegistryClient] = {}
    try:
        for t in targets:
            if t.image not in clients:
                clients[t.image] = client_for(t.image)
            ob = observe(t, clients[t.image])
            if verify_signatures is not None and ob.digest and ob.is_index:
                errs: list[str] = []
                for dig in [ob.digest] + [c.descriptor.digest for c in ob.children if not is_attestation(c.descriptor)]:
                    why = verify_image(t.image.with_digest(dig), verify_signatures,
                                       plain_http=plain_http(t.image.registry), env=env)
                    if why:
                        errs.append(f"{t.image.with_digest(dig)}: {why}")
                ob = ListObservation(ob.target, ob.digest, ob.media_type, ob.is_index, ob.children, ob.error, tuple(errs))
            obs.append(ob)
    finally:
        for c in clients.values():
            c.close()
    fails = verify(obs, expected)
    return InspectReport(tuple(obs), tuple(fails), tuple(expected) if expected else None,
                         verify_signatures is not None)


# ---- presentation ----------------------------------------------------------------------------

def _rows(report: InspectReport) -> list[list[str]]:
    return [[ob.target.reference, str(ob.target.image), ob.digest or "-", ", ".join(ob.platforms) or "-",
             " ".join(c.descriptor.digest for c in ob.children) or "-"] for ob in report.observations]


HEADERS = ["tag", "registry", "list digest", "platforms", "children"]


def format_text(report: InspectReport) -> str:
    rows = [HEADERS] + _rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if report.ok:
        extra = " and signatures" if report.signatures_checked else ""
        lines.append(f"ok: {len(report.observations)} list(s) verified (checks: {', '.join(c for c in CHECKS if c != 'signature')}{extra})")
    else:
        lines.append(f"FAILED: {len(report.failures)} check(s):")
        lines += [f"  {f}" for f in report.failures]
    return "\n".join(lines)


def to_json(report: InspectReport) -> str:
    return json.dumps({
        "ok": report.ok,
        "expected_platforms": [str(p) for p in report.expected] if report.expected else None,
        "lists": [{
            "ref": str(ob.target), "tag": ob.target.reference, "image": str(ob.target.image),
            "digest": ob.digest or None, "media_type": ob.media_type or None, "platforms": ob.platforms,
            "children": [{"digest": c.descriptor.digest, "platform": str(c.descriptor.platform or "unknown/unknown"),
                          "config_platform": str(c.config_platform) if c.config_platform else None}
                         for c in ob.children],
            "error": ob.error or None,
        } for ob in report.observations],
        "failures": [{"check": f.check, "ref": f.ref, "message": f.message} for f in report.failures],
    }, indent=2)


def summary_markdown(report: InspectReport) -> str:
    text = "### Inspected manifest lists\n\n" + md_table(HEADERS, [[code(c) if c != "-" else c for c in r]
                                                                    for r in _rows(report)])
    if report.ok:
        return text + "\nAll checks passed.\n"
    return text + "\n**Failed checks:**\n\n" + "".join(
        f"- {md_cell(code(f.check))} {md_cell(f.ref)}: {md_cell(f.message)}\n" for f in report.failures)



# ---- a merge's report (``merge --all --report``) ---------------------------------------------

def merged_suffixes(path: str) -> list[tuple[str, str, tuple[str, ...], tuple[Platform, ...]]]:
    """``(suffix, list digest, tags, platforms)`` of every suffix a ``merge --report`` file says was merged."""
    text = read_user_text(path, what="merge report", limit=32 << 20,
                          missing_hint="pass --merged FILE as written by nox -s merge -- --report FILE", error=UserError)
    try:
        doc = json.loads(text)
        out = []
        for r in doc["results"]:
            if r["outcome"] != "merged" or r.get("dry_run"):
                continue
            out.append((str(r["suffix"]), parse_digest(str(r["digest"])), tuple(parse_tag(str(t)) for t in r["tags"]),
                        tuple(parse_platform(str(p)) for p in r["platforms"])))
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{Path(path)}: not a merge report ({exc}); write it with nox -s merge -- --report FILE") from exc
    return out


def inspect_merged(merged: Sequence[tuple[str, str, tuple[str, ...], tuple[Platform, ...]]],
                   images: Sequence[ImageName], client_for: Callable[[ImageName], RegistryClient]) -> InspectReport:
    """Every merged list, by digest and by each of its tags, in every repository: the usual checks with its
    own platforms, and each tag must serve the digest the merge published."""
    obs: list[ListObservation] = []
    fails: list[Failure] = []
    for _suffix, digest, tags, platforms in merged:
        targets = [InspectRef(img, ref) for img in images for ref in (digest, *tags)]
        report = inspect_refs(targets, client_for, expected=platforms)
        obs += report.observations
        fails += report.failures
    return InspectReport(tuple(obs), tuple(fails))
