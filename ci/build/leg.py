"""Build one matrix leg and publish it by digest (verb).

``ci.matrix.resolve_leg`` picks the leg, ``plan_leg`` (pure) turns it into a frozen :class:`LegPlan`
-- what ``--dry-run`` prints and what ``invoke pipeline`` reuses -- ``build_leg`` checks the
leg is buildable here (:mod:`ci.feasibility`), builds it through the builder seam
(:mod:`ci.builder`, BuildKit) and checks the architecture, and ``run_leg`` does build +
publish + outputs.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..docker.builder import BuildSpec, CacheSpec, builder_for, builder_name, layout_parent
from ..docker.disk import DiskWatch, check_free, disk_path, parse_min_free
from ..docker.engine import Engine, ImageInfo, check_platform, connect
from ..docker.offline_bases import OfflineBases
from ..errors import CiError, EngineError, UserError
from ..git.repo import SourceInfo, source_info
from ..github.actions import Event, in_actions, resolve_event, write_outputs, write_summary
from ..github.artifacts import remove_digest_file
from ..github.jobs import check_leg_fields
from ..matrix import naming
from ..matrix.buildargs import workflow_build_args
from ..matrix.model import Entry, load_matrix, resolve_leg
from ..matrix.naming import Family, LegKey, backend_label, cache_tag, check_run_id, keepalive_tag
from ..oci.blobcache import BlobCache, default_cache_dir
from ..oci.client import RegistryClients
from ..oci.keychain import login_keychain
from ..oci.layout import read_layout, remove_layout
from ..oci.platforms import Platform, RunnerPolicy
from ..oci.reference import DOCKER_HUB, ImageName, is_loopback, parse_image_name, parse_tag
from ..output.console import redacted, say
from ..output.markdown import code, md_cell
from ..output.progress import Progress
from ..publish.leg import publish_layout_leg, publish_leg
from ..publish.upload import PushTarget, push_image
from ..settings import FamilyConfig, family_config, load_settings
from .feasibility import leg_feasibility

if TYPE_CHECKING:
    from ..docker.builder import Builder, BuildSpec, BuiltImage
    from ..docker.buildprogress import BuildEvent
    from ..docker.disk import DiskUse
    from ..docker.offline_bases import OfflineBases
    from ..oci.blobcache import BlobCache
    from ..oci.client import ClientFactory
    from ..oci.keychain import Keychain
    from ..publish.leg import PublishResult
    from ..publish.upload import PushTarget

LABEL_SOURCE = "org.opencontainers.image.source"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_CREATED = "org.opencontainers.image.created"
LABEL_BACKEND = "org.localai.ci.backend"
LABEL_LEG = "org.localai.ci.leg"
ENV_ANCHOR_REGISTRIES = "CI_ANCHOR_REGISTRIES"  # registries that get keepalive anchors (default: all but Docker Hub)


# ---- planning (pure) -------------------------------------------------------------------------
@dataclass(frozen=True)
class LegPlan:
    """Everything one leg will do, decided before anything runs."""

    family: Family
    suffix: str
    ptag: str
    platform: Platform
    runs_on: str
    backend: str
    matrix: str
    line: int
    context: str  # absolute path
    dockerfile: str  # relative to the context, as the engine wants it
    base_image: str
    build_args: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]
    local_tag: str  # engine tag of the built image (repository:tag)
    images: tuple[ImageName, ...]  # publish targets (empty on a PR without credentials)
    mount_from: tuple[ImageName, ...]
    artifact: str
    digests_dir: str | None  # None: no digest file (PR events)
    cache_ref: str
    cache_write: bool  # push events export the registry cache; pull requests only import it
    event: str
    publishes: bool  # push event: publish by digest + digest file
    tags: tuple[str, ...]  # tags added in every target (the PR tag)
    anchor: str  # keepalive tag (--anchor), '' for none: in the anchor repository, never in a target
    anchor_registries: tuple[str, ...]  # target registries whose untagged children the anchor protects
    config: FamilyConfig  # resolved once in planning: transports (plain HTTP), cache repository
    notes: tuple[str, ...] = field(default=())
    #: whether anything may leave this machine (``--push``): without it the leg is built and nothing is
    #: sent -- no digest, tag, anchor or cache export -- and the plan says what --push would send where
    push: bool = True

    @property
    def sends(self) -> bool:
        """The leg is pushed somewhere (by digest, or as a PR tag) -- only with ``push``."""
        return self.push and bool(self.images)

    @property
    def writes_cache(self) -> bool:
        """BuildKit exports the registry cache (push events, with ``push``)."""
        return self.push and self.cache_write

    @property
    def key(self) -> LegKey:
        return LegKey(self.family, self.suffix, self.ptag)

    @property
    def anchored_images(self) -> tuple[ImageName, ...]:
        """Where the keepalive anchor goes: the family's cache repository (LocalAI's internal
        ``ci-cache``), never a target users browse. It protects the untagged children in the targets
        on the same registry: the merge copies a reaped child back from the anchor."""
        return (self.config.cache,) if self.anchor and self.anchor_registries else ()

    def target_tags(self, image: ImageName) -> tuple[str, ...]:
        """Every tag one target repository gets: the PR tag (a push by digest gets none)."""
        return self.tags

    def as_json(self) -> dict[str, object]:
        """The plan as ``--dry-run --format json`` prints it: the same data as :meth:`describe`."""
        return {
            "family": str(self.family), "tag-suffix": self.suffix, "platform-tag": self.ptag,
            "platform": str(self.platform), "runs-on": self.runs_on, "backend": self.backend,
            "matrix": self.matrix, "line": self.line, "dockerfile": self.dockerfile, "context": self.context,
            "base-image": self.base_image, "build-args": dict(self.build_args), "labels": dict(self.labels),
            "local-tag": self.local_tag, "event": self.event, "push": self.push, "publishes": self.publishes,
            "images": [str(i) for i in self.images], "tags": list(self.tags),
            "anchor": ({"tag": self.anchor, "images": [str(i) for i in self.anchored_images]} if self.anchor else None),
            "artifact": self.artifact, "digests-dir": self.digests_dir,
            "cache-ref": self.cache_ref, "cache-write": self.cache_write, "notes": list(self.notes),
        }

    def describe(self) -> str:
        """The plan as ``--dry-run`` prints it."""
        lines = [f"leg:        {self.family} tag-suffix {self.suffix!r} platform-tag {self.ptag} "
                 f"({self.matrix} line {self.line})",
                 f"platform:   {self.platform} (runs-on: {self.runs_on})",
                 f"build:      context {self.context}, dockerfile {self.dockerfile}, base {self.base_image}",
                 f"local tag:  {self.local_tag}",
                 "build args:"]
        lines += [f"  {k}={v}" for k, v in self.build_args]
        lines.append("labels:")
        lines += [f"  {k}={v}" for k, v in self.labels]
        lines.append(f"event:      {self.event} ({'publish by digest' if self.publishes else 'pull request'})")
        if self.push:
            lines.append("push:       yes (--push): what follows is sent")
        else:
            lines.append("push:       no: nothing leaves this machine (no digest, tag, anchor or cache export); "
                         "with --push, what follows would be sent")
        lines.append("images:     " + (", ".join(str(i) for i in self.images) or "none (build only)"))
        if self.tags:
            lines.append("tags:       " + ", ".join(self.tags) + " (in every image above)")
        if self.anchor:
            lines.append(f"anchor:     {self.anchor} in " + (", ".join(str(i) for i in self.anchored_images) or "none")
                         + " (the cache repository: it keeps the untagged child alive in "
                         + (", ".join(self.anchor_registries) or "no target registry")
                         + f" until the merge; registries that garbage-collect untagged manifests: default all but "
                         f"{DOCKER_HUB}; {ENV_ANCHOR_REGISTRIES} overrides)")
        lines.append(f"artifact:   {self.artifact}" + (f" -> {self.digests_dir}/{self.artifact}/<hex>"
                                                       if self.digests_dir else " (no digest file)"))
        lines.append(f"cache ref:  {self.cache_ref} (BuildKit imports it"
                     + ("; exports it after the build: mode=max where the builder can, else inline cache re-tagged "
                        "after publishing)" if self.cache_write else "; a pull request never writes it)"))
        if not self.push and self.cache_write:
            lines.append("            (without --push: imported only, never exported)")
        lines += [f"note:       {n}" for n in self.notes]
        return "\n".join(lines)


def checked_pr_tag(pr_number: str, run_id: str, family: Family, suffix: str, ptag: str) -> str:
    """``pr-<number><suffix>-<ptag>`` (server: ``pr-<n>-localai<suffix|-core>-<ptag>``): the fragments
    checked, then :func:`localai_ci.matrix.naming.pr_tag`.

    UserError naming where a bad fragment came from (the PR number from GITHUB_REF, the run id).
    """
    if pr_number and not pr_number.isdigit():
        raise UserError(f"pull request number {pr_number!r} (from GITHUB_REF) is not a number; "
                        "expected GITHUB_REF=refs/pull/<number>/merge")
    if not pr_number and run_id:
        _checked_run_id(run_id, "--run-id / GITHUB_RUN_ID")
    ident = pr_number or (f"run{run_id}" if run_id else "local")
    try:
        return parse_tag(naming.pr_tag(ident, family, suffix, ptag))
    except ValueError as exc:
        raise UserError(f"PR tag for tag-suffix {suffix!r} platform-tag {ptag!r}: {exc}") from exc


def _checked_run_id(run_id: str, source: str) -> str:
    """``ci.naming.check_run_id`` as a UserError naming the flag or variable it came from."""
    try:
        return check_run_id(run_id)
    except ValueError as exc:
        raise UserError(f"{source}: {exc}") from exc


def anchor_registries(env: Mapping[str, str]) -> frozenset[str] | None:
    """Registries named in ``CI_ANCHOR_REGISTRIES`` (comma list; None: unset, the default applies)."""
    names = [t.strip() for t in env.get(ENV_ANCHOR_REGISTRIES, "").split(",") if t.strip()]
    out: set[str] = set()
    for n in names:
        try:
            out.add(parse_image_name(f"{n}/x").registry)  # validates the host, folds Docker Hub's aliases
        except ValueError as exc:
            raise UserError(f"{ENV_ANCHOR_REGISTRIES}: {n!r} is not a registry host[:port] "
                            "(e.g. quay.io,ghcr.io)") from exc
    return frozenset(out) if names else None


def inside_root(root: Path, entry: Entry, field: str) -> Path:
    """The entry's ``context`` or ``dockerfile`` with every symlink resolved; bad input (exit 2) unless it
    lies inside the repository root (``root``, resolved): the matrix's ``..``/absolute-path check cannot see
    a committed symlink to a directory elsewhere, through which the build would read and publish files
    from outside the repository."""
    value = str(getattr(entry, field))
    resolved = (root / value).resolve()
    if resolved != root and root not in resolved.parents:
        raise UserError(f"{entry.where}: {field} {value!r} resolves to {resolved}, outside the repository root {root} "
                        "(a symlink on the way leads out); the build would read and publish files from outside the "
                        f"repository: point {field} at a path inside it")
    return resolved


def plan_leg(entry: Entry, config: FamilyConfig, *, root: str | Path, source: SourceInfo, event: Event,
             digests_dir: str | Path = "digests", anchor: bool = False, run_id: str = "",
             pr_push: bool = False, mount_from: tuple[ImageName, ...] = (),
             local_tag: str | None = None, anchor_in: frozenset[str] | None = None,
             extra_args: Mapping[str, str] | None = None, push: bool = True) -> LegPlan:
    """Decide one leg's build and publication (pure: no engine, no network, no env reads).

    ``pr_push``: on a pull request, whether PR credentials are configured (push to the PR image).
    ``extra_args``: build args the workflow adds to the matrix's (see :func:`workflow_build_args`).
    ``push``: whether anything may be sent (``--push``); the plan is the same either way, so a plan
    without it says what --push would send.
    ``anchor_in``: registries that get the keepalive anchor (``CI_ANCHOR_REGISTRIES``); None: every
    target registry but Docker Hub, which does not reap untagged manifests the way Quay does and
    cannot delete a tag through the registry API (405), so anchors would pile up there.
    """
    family, suffix, ptag = entry.family, entry.tag_suffix, entry.ptag
    if entry.multi_platform:
        raise UserError(f"{entry.where}: tag-suffix {suffix!r} lists {len(entry.platforms)} platforms; a leg builds "
                        "one platform on its native runner: split the entry (invoke matrix split)")
    root_path = Path(root).resolve()
    context = inside_root(root_path, entry, "context")
    dockerfile = inside_root(root_path, entry, "dockerfile")
    try:
        df_rel = str(dockerfile.relative_to(context))
    except ValueError as exc:
        raise UserError(f"{entry.where}: dockerfile {entry.dockerfile!r} is not inside context {entry.context!r}; "
                        "the engine only reads Dockerfiles from the build context") from exc
    labels = {LABEL_SOURCE: source.url, LABEL_REVISION: source.revision, LABEL_CREATED: source.created,
              LABEL_BACKEND: entry.backend or backend_label(family, suffix),
              LABEL_LEG: f"{family}{suffix}-{ptag}"}
    notes: list[str] = []
    tags: tuple[str, ...] = ()
    anchor_tag = ""
    anchored: tuple[str, ...] = ()
    if event.publishes:
        images, publishes, ddir = config.images, True, str(digests_dir)
        if anchor:
            rid = run_id or event.run_id
            if not rid:
                raise UserError("--anchor needs a run id: pass --run-id ID (GITHUB_RUN_ID in Actions)")
            try:
                anchor_tag = keepalive_tag(rid, family, suffix, ptag)
            except ValueError as exc:
                raise UserError(f"--anchor: {exc}") from exc
            reaping = [r for r in config.registries if (r in anchor_in if anchor_in is not None else r != DOCKER_HUB)]
            anchored = tuple(r for r in reaping if r == config.cache.registry)
            unprotected = [r for r in reaping if r != config.cache.registry]
            if unprotected:
                notes.append(f"--anchor: no anchor repository in {', '.join(unprotected)} (the anchor goes to the "
                             f"cache repository {config.cache}, which protects children in its own registry only; "
                             f"CI_CACHE_IMAGE or the settings' cache-image names it)")
            if not reaping:
                notes.append(f"--anchor: no keepalive anchor for {', '.join(config.registries)} (default: every "
                             f"registry but {DOCKER_HUB}; {ENV_ANCHOR_REGISTRIES} names those that need one)")
    else:
        publishes, ddir = False, None
        if pr_push:
            images = (config.pr_image,)
            tags = (checked_pr_tag(event.pr_number, run_id or event.run_id, family, suffix, ptag),)
        else:
            images = ()
            notes.append(f"pull request without credentials for {config.pr_image.registry}: build only, no push")
    try:  # the matrix validated these; a hand-made Entry is still refused as bad input, not a traceback
        artifact = entry.key.artifact
        cache_ref = config.cache.with_tag(cache_tag(family, suffix, entry.platform_tag_field))
    except ValueError as exc:
        raise UserError(f"{entry.where}: {exc}") from exc
    return LegPlan(
        family=family, suffix=suffix, ptag=ptag, platform=entry.platform, runs_on=entry.runs_on,
        backend=entry.backend, matrix=entry.source, line=entry.line, context=str(context), dockerfile=df_rel,
        base_image=entry.base_image, build_args=leg_build_args(entry, config, extra_args),
        labels=tuple((k, v) for k, v in labels.items() if v), local_tag=local_tag or naming.local_tag(family, suffix, ptag),
        images=tuple(images), mount_from=tuple(m for m in mount_from if m not in images),
        artifact=artifact, digests_dir=ddir, cache_ref=cache_ref, cache_write=publishes, event=event.name,
        publishes=publishes, tags=tags, anchor=anchor_tag, anchor_registries=anchored, config=config,
        notes=tuple(notes), push=push)


def leg_build_args(entry: Entry, config: FamilyConfig,
                   extra_args: Mapping[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    """The build args of a leg, as LocalAI's workflows pass them: the entry's (``Entry.build_args``),
    then the family's defaults for those the entry leaves empty (``AMDGPU_TARGETS``: LocalAI's
    ``matrix.amdgpu-targets || '<list>'``; the settings file's ``build-args``), then the workflow's own
    (``APT_MIRROR``, ``DEPS_REFRESH``, ...)."""
    args = entry.build_args()
    for name, value in config.build_arg_defaults:
        if not args.get(name):
            args[name] = value
    args.update(extra_args or {})
    return tuple(args.items())


# ---- building ----------------------------------------------------------------------------------
def build_spec(plan: LegPlan, contexts: Sequence[tuple[str, str]] = (), *, load: bool = False) -> BuildSpec:
    """The builder's input for a planned leg (``ci.builder.BuildSpec``); ``load``: the image must end up
    in the engine even where the builder hands the publisher an OCI layout (tests that read its files)."""
    reg = plan.config.cache.registry
    return BuildSpec(context=plan.context, dockerfile=str(Path(plan.context) / plan.dockerfile), platform=plan.platform,
                     tag=plan.local_tag, build_args=plan.build_args, labels=plan.labels,
                     cache=CacheSpec(plan.cache_ref, write=plan.writes_cache,
                                     insecure=plan.config.plain_http(reg) and not is_loopback(reg)),
                     contexts=tuple(contexts), load=load)


def build_leg(plan: LegPlan, builder: Builder, bases: OfflineBases, *, on_event: Callable[[BuildEvent], None],
              runners: RunnerPolicy | None = None, load: bool = False) -> BuiltImage:
    """Build the leg with ``builder`` (``ci.builder.Builder``), then check the image is the leg's platform.

    Before anything runs, the Dockerfile is read and resolved with the leg's build args
    (:func:`ci.feasibility.leg_feasibility`): an engine too old for its features, a stage that
    needs emulation the builder lacks, or an offline base without a shell is an EngineError
    saying what is needed. ``bases`` (``ci.baseimage.OfflineBases``) serves ``ci-offline/`` bases.
    Returns ``ci.builder.BuiltImage``.
    """
    feas = leg_feasibility(plan, builder.caps(), bases.env)
    if not feas.runs:
        raise EngineError(f"{plan.key.phrase}: {feas.reason}")
    built = builder.build(build_spec(plan, bases.contexts(feas.offline_bases), load=load), on_event)
    check_platform(built.info, plan.platform, plan.key.phrase, runners)
    return built


def publish_cache(plan: LegPlan, image_id: str, engine: Engine, cache: BlobCache, clients: ClientFactory, *,
                  log: Callable[[str], None], config_dirs: Sequence[str] = ()) -> str | None:
    """Inline-cache builders (docker driver, classic store): push ``image_id`` (the leg's inline-cache image,
    ``ci.builder.BuiltImage.cache_image``: the leg's layers, a config carrying the cache record) as
    ``cache<suffix>-<ptag>`` in the cache repository, so the next build imports its inline cache from
    there (blobs mounted from the targets on the same registry, uploaded otherwise: publish's own
    pipeline; ``config_dirs``: :meth:`ci.docker.engine.Engine.config_store`, where its config is read
    without exporting the image again). Builders that export registry cache write that tag themselves. Returns a warning
    instead of raising: a stale cache slows the next build, it never fails this leg."""
    repo = plan.config.cache
    target = PushTarget(repo, plain_http=plan.config.plain_http(repo.registry),
                    tags=(plan.cache_ref.rsplit(":", 1)[1],), plain_http_policy=plan.config.plain_http)
    try:  # its layers are the leg's, gzipped and published moments ago: only its config is new
        push_image(engine, image_id, [target], cache=cache, client_factory=clients,
                   mount_from=plan.images, log=log, config_dirs=config_dirs)
    except CiError as exc:
        return f"registry cache {plan.cache_ref} not updated: {exc}; the leg is published, its next build runs without it"
    return None


def settle_inline_cache(plan: LegPlan, built: BuiltImage, engine: Engine, cache: BlobCache | None,
                        clients: ClientFactory | None, *, log: Callable[[str], None],
                        config_dirs: Sequence[str] = ()) -> str | None:
    """The inline-cache image a classic-store build made (``built.cache_image``): published as the
    leg's cache ref when the leg publishes (:func:`publish_cache`), then its engine tag removed either
    way -- it exists only to be published, and would otherwise stay in the engine, one per leg.
    Returns the cache warning, if any (never raises for the cache)."""
    if not built.cache_image:
        return None
    try:
        if plan.publishes and plan.push and cache is not None and clients is not None:
            return publish_cache(plan, built.cache_image, engine, cache, clients, log=log, config_dirs=config_dirs)
        return None
    finally:
        try:
            engine.untag(built.cache_image)
        except CiError as exc:
            log(f"note: {exc}")


def env_dict(env: Mapping[str, str] | None) -> dict[str, str]:
    return dict(os.environ if env is None else env)


# ---- the whole verb: resolve, plan, build, publish, report --------------------------------------
@dataclass(frozen=True)
class BuildRequest:
    """The options of ``invoke build-backend`` / ``build-image``."""

    family: Family
    tag_suffix: str | None = None
    platform_tag: str | None = None
    backend: str | None = None
    matrix: str | None = None
    images: str | None = None
    digests_dir: str = "digests"
    event: str | None = None
    anchor: bool = False
    run_id: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    login_registry: str | None = None  # the one registry --username/--password-stdin apply to
    root: str = "."
    dry_run: bool = False
    local_tag: str | None = None
    cache_dir: str | None = None
    builder: str | None = None  # buildx builder instance (default: CI_BUILDER, else buildx's current one)
    apt_mirror: str | None = None  # APT_MIRROR build arg (default: the environment's, else '')
    apt_ports_mirror: str | None = None
    deps_refresh: str | None = None  # DEPS_REFRESH build arg (default: the environment's, else the ISO week)
    min_free_disk: str | None = None  # GiB that must be free for the engine's data before building (ci.disk)
    push: bool = False  # --push: publish (digests, tags, anchors, cache export); without it nothing is sent
    plan_format: str = "text"  # --dry-run --format: text or json
    # matrix-element fields passed by the workflow (kebab-case key, value); cross-checked with the leg
    leg_fields: tuple[tuple[str, str], ...] = ()
    # publish this OCI layout or image archive as the leg instead of building it (a leg another tool built,
    # e.g. LocalAI's Darwin backends: ``local-ai util create-oci-image`` on a macOS runner)
    from_oci: str | None = None


@dataclass(frozen=True)
class LegResult:
    plan: LegPlan
    image_id: str = ""
    cache: str = ""  # how the registry cache was used (ci.builder.BuiltImage.cache)
    cache_warning: str = ""  # the registry cache was not updated (the leg itself is fine)
    steps_run: tuple[str, ...] = ()  # build steps that executed (not cached)
    disk: DiskUse | None = None  # free space before the leg, peak use during it
    digest: str = ""
    digest_file: str = ""
    bytes_uploaded: int = 0
    seconds: float = 0.0
    refs: tuple[str, ...] = ()


def prepare(req: BuildRequest, env: Mapping[str, str],
            now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> tuple[LegPlan, Keychain]:
    """Resolve the leg the command line names and plan it (reads the matrix, git and the Docker
    config; writes nothing); the keychain holds the credentials of its registries, looked up now.
    ``invoke pipeline`` plans from the matrix entries it read with :func:`plan_leg` directly."""
    root = Path(req.root)
    settings = load_settings(root)
    matrix = load_matrix(Path(req.matrix) if req.matrix else settings.matrix_path(req.family), req.family)
    entry = resolve_leg(matrix, req.tag_suffix, req.platform_tag, req.backend, darwin=bool(req.from_oci))
    if req.leg_fields:
        check_leg_fields(entry, dict(req.leg_fields))
    config = family_config(req.family, images=req.images, env=env, settings=settings)
    siblings = (*family_config(req.family.sibling, env=env, settings=settings).images, config.cache)  # blob-mount sources
    event = resolve_event(req.event, env)
    if req.run_id:  # validated whenever given, not only with --anchor
        _checked_run_id(req.run_id, "--run-id")
    elif event.run_id:
        _checked_run_id(event.run_id, "GITHUB_RUN_ID")
    run_id = req.run_id or event.run_id
    registries = [config.pr_image.registry] if not event.publishes else list(config.registries)
    cache_reg = config.cache.registry  # the registry cache is best effort: so is its login
    keychain = login_keychain(registries, username=req.username, password=req.password, named=req.login_registry,
                              best_effort=() if cache_reg in registries else (cache_reg,)).resolve([cache_reg])
    pr_push = not event.publishes and keychain.has(config.pr_image.registry)
    extra = workflow_build_args(apt_mirror=req.apt_mirror, apt_ports_mirror=req.apt_ports_mirror,
                                deps_refresh=req.deps_refresh, env=env, now=now())
    plan = plan_leg(entry, config, root=root, source=source_info(root, env), event=event,
                    digests_dir=req.digests_dir, anchor=req.anchor, run_id=run_id or "", pr_push=pr_push,
                    mount_from=siblings, local_tag=req.local_tag,
                    anchor_in=anchor_registries(env) if req.anchor else None, extra_args=extra, push=req.push)
    return plan, keychain


def publish_targets(plan: LegPlan) -> list[PushTarget]:
    """Where a planned leg is published: one PushTarget per image, with its transport (the family's
    configuration is the one planning resolved, ``plan.config``; credentials: the run's keychain)."""
    targets = [PushTarget(img, plain_http=plan.config.plain_http(img.registry), tags=plan.target_tags(img),
                          plain_http_policy=plan.config.plain_http) for img in plan.images]
    # the keepalive anchor: the leg by digest in the cache repository, tagged there only (its blobs are
    # mounted from the target on the same registry)
    targets += [PushTarget(img, plain_http=plan.config.plain_http(img.registry), tags=(plan.anchor,),
                           plain_http_policy=plan.config.plain_http) for img in plan.anchored_images]
    return targets


def publish_built(plan: LegPlan, built: BuiltImage, engine: Engine, cache: BlobCache, clients: ClientFactory, *,
                  log: Callable[[str], None], content_dirs: Sequence[str] = ()) -> PublishResult:
    """Publish a built leg by digest to every target (shared by ``invoke build-*`` and ``invoke pipeline``):
    the OCI layout the build exported (its blobs and manifest as they are), else the engine image
    (``content_dirs``: :meth:`ci.docker.engine.Engine.content_store`)."""
    if built.layout:
        return publish_layout_leg(built.layout, leg=plan.key, platform=plan.platform, targets=publish_targets(plan),
                                  cache=cache, client_factory=clients, digests_dir=plan.digests_dir,
                                  mount_from=plan.mount_from, log=log)
    return publish_leg(engine, built.info.id, leg=plan.key,
                       targets=publish_targets(plan), cache=cache, client_factory=clients,
                       digests_dir=plan.digests_dir, mount_from=plan.mount_from, log=log, content_dirs=content_dirs)


def disk_paths(engine_root: str, cache: Path, env: Mapping[str, str]) -> list[Path]:
    """What a leg fills: the engine's data root (when on this machine), where OCI layouts are exported,
    the blob cache (:class:`ci.docker.disk.DiskWatch` counts each filesystem once)."""
    return [disk_path(engine_root), layout_parent(env), cache]


def run_leg(req: BuildRequest, env: Mapping[str, str] | None = None, out: TextIO | None = None,
            engine: Engine | None = None, err: TextIO | None = None) -> LegResult:
    """``invoke build-backend``/``build-image``: build one leg and publish it (or print the plan).

    The plan and the results go to ``out``; build progress (steps, warnings) to ``err``."""
    environ = env_dict(env)
    stdout = redacted(out or sys.stdout)  # the one output path (redacted), whoever passed the stream
    plan, keychain = prepare(req, environ)
    min_free = parse_min_free(req.min_free_disk, environ)
    if req.dry_run:
        if req.plan_format == "json":
            say(json.dumps({"legs": [plan.as_json()]}, indent=2), file=stdout)
        else:
            say(plan.describe(), file=stdout)
        if req.from_oci:
            say(f"from:       {req.from_oci} (published as it is, not built)", file=stdout)
        return LegResult(plan)
    builder_to_use = builder_name(req.builder, environ)  # bad input before anything changes
    if plan.sends and plan.digests_dir:
        # this run writes the leg's digest file: the one an earlier run left goes first, so a build or a
        # publish that fails leaves none (the merge would tag the older image as this run's)
        for old in remove_digest_file(plan.digests_dir, plan.key):
            say(f"note: removed the previous digest file of {plan.key.label} ({old}); it is written again "
                "once every registry has the new image", file=stdout)
    if req.from_oci:
        return publish_from_oci(req, plan, keychain, environ, stdout)
    t0 = time.monotonic()
    eng = engine or connect(environ)
    builder = builder_for(eng, environ, builder_to_use)
    data = disk_path(builder.caps().engine.root_dir)
    check_free(data, min_free, plan.key.phrase)

    def log(msg: str) -> None:
        say(msg, file=stdout, flush=True)

    def on_retry(msg: str) -> None:
        say(f"retry: {msg}", file=stdout, flush=True)

    title = plan.key.label
    say(builder.caps().describe(), file=stdout, flush=True)
    cache_dir = Path(req.cache_dir) if req.cache_dir else default_cache_dir(environ)
    # the peak over the whole leg: build, export, publish, blob cache (every filesystem they write to)
    watch = DiskWatch(disk_paths(builder.caps().engine.root_dir, cache_dir, environ))
    with watch:
        with OfflineBases(environ) as bases, Progress(1, redacted(err or sys.stderr), actions=in_actions(environ)) as progress:
            progress.step(title, f"building for {plan.platform}")
            try:
                built = build_leg(plan, builder, bases, on_event=progress.build_event(title))
            except CiError:
                progress.leg_done(title, "build FAILED")
                raise
            progress.leg_done(title, "built")
        watch.sample()  # the build's output complete (the OCI layout, or the engine's image)
        try:
            info = built.info
            ran = tuple(s.name for s in built.ran())
            where = f"OCI layout {built.layout}" if built.layout else f"the engine as {plan.local_tag}"
            say(f"built image {info.id} ({info.platform_text}) into {where}: {len(built.steps)} steps, "
                  f"{len(ran)} run, {len(built.steps) - len(ran)} cached; registry cache: {built.cache}",
                  file=stdout, flush=True)
            for n in plan.notes:
                say(f"note: {n}", file=stdout)
            if not plan.sends:
                if plan.images:  # a plan that would publish, without --push
                    say(f"not pushed (no --push): nothing left this machine; with --push the digest would go to "
                          f"{', '.join(str(i) for i in plan.images)}", file=stdout)
                settle_inline_cache(plan, built, eng, None, None, log=log)  # untags the inline-cache image
                watch.sample()
                disk = watch.result()
                say(disk.describe(), file=stdout, flush=True)
                return LegResult(plan, image_id=info.id, cache=built.cache, steps_run=ran,
                                 seconds=time.monotonic() - t0, disk=disk)
            targets = publish_targets(plan)
            clients = RegistryClients(keychain, on_retry=on_retry)
            cache_repo = (plan.config.cache,) if plan.publishes else ()
            for reg in dict.fromkeys([*(t.image.registry for t in targets if t.plain_http),
                                      *(c.registry for c in cache_repo if plan.config.plain_http(c.registry))]):
                say(f"note: using plain HTTP for {reg} (loopback or listed in CI_INSECURE_REGISTRIES)", file=stdout)
            cache = BlobCache(cache_dir, warn=lambda text: say(f"warning: {text}", file=stdout, flush=True))
            warning = built.cache_warning or None
            with cache:
                res = publish_built(plan, built, eng, cache, clients, log=log, content_dirs=eng.content_store(environ))
                watch.sample()
                warning = settle_inline_cache(plan, built, eng, cache, clients, log=log,
                                              config_dirs=eng.config_store(environ)) or warning
        finally:
            if built.layout:  # published (or failed): the next build exports a fresh one
                remove_layout(built.layout)
    disk = watch.result()
    say(disk.describe(), file=stdout, flush=True)
    seconds = time.monotonic() - t0
    _report(plan, res, seconds, disk, stdout, environ, cache_note=warning or (f"{plan.cache_ref} ({built.cache})"
                                                                          if plan.publishes else ""),
            warned=bool(warning))
    rep = res.report
    return LegResult(plan, image_id=info.id, cache=built.cache, cache_warning=warning or "", digest=rep.digest,
                     digest_file=str(res.digest_file) if res.digest_file else "",
                     bytes_uploaded=rep.bytes_uploaded, seconds=seconds, refs=res.refs, steps_run=ran, disk=disk)


def _report(plan: LegPlan, res: PublishResult, seconds: float, disk: DiskUse, stdout: TextIO,
            environ: Mapping[str, str], *, cache_note: str = "", warned: bool = False) -> None:
    """What a published leg prints, and its step outputs and job summary line."""
    title = plan.key.label
    rep = res.report
    for t in rep.targets:
        say(f"pushed {t.image}@{rep.digest}: {t.uploaded} uploaded ({t.bytes_uploaded} bytes), "
              f"{t.mounted} mounted, {t.present} already present, {t.retries} retries", file=stdout)
    for tag in dict.fromkeys(t for i in plan.images for t in plan.target_tags(i)):
        say(f"tagged {tag} in {', '.join(str(i) for i in plan.images if tag in plan.target_tags(i))}", file=stdout)
    if warned:
        say(f"warning: {cache_note}", file=stdout)
    elif cache_note:
        say(f"registry cache: {cache_note}", file=stdout)
    say(f"digest: {rep.digest}", file=stdout)
    if plan.publishes:
        say(f"artifact-name: {res.artifact}", file=stdout)
        say(f"digest file: {res.digest_file}", file=stdout)
    if in_actions(environ) or environ.get("GITHUB_OUTPUT"):
        outputs: dict[str, object] = {"digest": rep.digest}
        if plan.publishes:
            outputs["artifact-name"] = res.artifact
        write_outputs(outputs, environ)
    where = (f"artifact {md_cell(code(res.artifact))}" if plan.publishes
             else f"PR image {md_cell(code(*res.refs))}")
    write_summary(f"- {md_cell(code(title))} {plan.platform}: {md_cell(code(rep.digest))} -> {where}"
                  f" ({seconds:.1f}s; {md_cell(disk.describe())})", environ)


def publish_from_oci(req: BuildRequest, plan: LegPlan, keychain: Keychain, environ: Mapping[str, str],
                     stdout: TextIO) -> LegResult:
    """``--from-oci PATH``: publish the leg from an OCI layout or image archive another tool built, by
    digest, as a build would (its platform checked against the leg's, the same digest in every
    registry, the digest artifact written): LocalAI's Darwin backends, for one."""
    t0 = time.monotonic()
    path = Path(req.from_oci or "")
    if not plan.images:
        raise UserError(f"{plan.key.phrase}: nothing to publish {path} to (a pull request without credentials "
                        f"for {plan.config.pr_image.registry})")
    cache_dir = Path(req.cache_dir) if req.cache_dir else default_cache_dir(environ)
    if not plan.sends:  # read and checked, nothing sent
        with BlobCache(cache_dir, warn=lambda text: say(f"warning: {text}", file=stdout)) as cache:
            image = read_layout(path, cache, platform=plan.platform)
        os_, arch, variant = image.platform
        check_platform(ImageInfo(id="", os=os_, architecture=arch, variant=variant, diff_ids=image.diff_ids, size=0),
                       plan.platform, f"{plan.key.phrase} ({path})")
        say(f"not pushed (no --push): {image.kind} {path} ({image.platform_text}) is {plan.key.label}; with --push "
              f"it would go to {', '.join(str(i) for i in plan.images)}", file=stdout)
        return LegResult(plan)

    def log(msg: str) -> None:
        say(msg, file=stdout, flush=True)

    with DiskWatch([cache_dir]) as watch, BlobCache(cache_dir, warn=lambda text: log(f"warning: {text}")) as cache:
        image = read_layout(path, cache, platform=plan.platform, log=log)
        os_, arch, variant = image.platform
        check_platform(ImageInfo(id=image.manifest_digest or image.config_digest, os=os_, architecture=arch,
                                 variant=variant, diff_ids=image.diff_ids, size=image.size, labels=image.labels),
                       plan.platform, f"{plan.key.phrase} ({path})")
        say(f"publishing {image.kind} {path} ({image.platform_text}, {len(image.layers)} layer(s), "
              f"{image.size / 2**20:.1f} MiB compressed) as {plan.key.label}", file=stdout, flush=True)
        for reg in dict.fromkeys(i.registry for i in plan.images if plan.config.plain_http(i.registry)):
            say(f"note: using plain HTTP for {reg} (loopback or listed in CI_INSECURE_REGISTRIES)", file=stdout)
        res = publish_layout_leg(path, leg=plan.key, platform=plan.platform, targets=publish_targets(plan),
                                 cache=cache, client_factory=RegistryClients(keychain), digests_dir=plan.digests_dir,
                                 mount_from=plan.mount_from, log=log)
    disk = watch.result()
    seconds = time.monotonic() - t0
    _report(plan, res, seconds, disk, stdout, environ)
    rep = res.report
    return LegResult(plan, image_id=rep.digest, digest=rep.digest,
                     digest_file=str(res.digest_file) if res.digest_file else "",
                     bytes_uploaded=rep.bytes_uploaded, seconds=seconds, refs=res.refs, disk=disk)
