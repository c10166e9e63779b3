"""Pipeline verb: the whole fan-out/fan-in locally, composed of the other verbs (``invoke pipeline``).

1. **Registries**: the families' configured images (``--images``/``--server-images`` or
   ``CI_BACKEND_IMAGES``/``CI_SERVER_IMAGES``), else the *embedded default*: two throwaway
   loopback registries (:func:`ci.localregistry.start_registry_set`) storing under
   ``<state>/registries/{quay,hub}`` on the ports they had last time when free, so a second run
   finds what the first published.
2. **Plan** (:func:`plan_pipeline`, read-only): the matrices are read once; the families'
   configurations, the event, the labels, the workflow's build args, the tag source and the
   credentials (one :class:`ci.clients.Keychain`) once per run; every selected leg is planned
   from its matrix ``Entry`` by :func:`ci.build.plan_leg` (the ``invoke build-backend``
   planning), with whether and how this builder can build it
   (:func:`ci.feasibility.leg_feasibility`: native, cross-build, QEMU, or skipped with the
   reason) and its input key (:mod:`ci.state`: the build-context files the leg reads, as
   change detection derives them with :mod:`ci.inputs`, the Dockerfile, build args, the ids
   of every base image); every suffix's merge: artifacts, tags (computed here, once), images.
3. **Legs** (``--jobs`` at a time): up to date (recorded key matches and the digest still
   exists in every registry: digest file re-written from the record), else
   :func:`ci.build.build_leg` (BuildKit, through :mod:`ci.builder`; ``ci-offline/`` bases served
   from the embedded "quay" registry) + :func:`ci.publish.publish_leg`.
4. **Merge**: :func:`ci.merge.merge_all` over the run's digests directory (``nox -s merge -- --all``).
5. **Inspect**: :func:`ci.inspection.inspect_refs` on every merged tag in every registry.
6. **Table**: suffix, legs, list digest, tags, result; failures listed last; exit 1 if any.
"""
from __future__ import annotations

import difflib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ..build.feasibility import leg_feasibility
from ..build.leg import build_leg, plan_leg, publish_built, settle_inline_cache
from ..changes.inputs import Deriver
from ..changes.tree import clean_path, join
from ..docker.builder import BuilderCaps, builder_for, builder_name
from ..docker.engine import IMAGE_STORE_CLASSIC, EngineFacts, connect
from ..docker.offline_bases import OfflineBases, is_offline_base, offline_image
from ..errors import CiError, OperationError, UserError
from ..git.repo import source_info
from ..git.worktree import working_tree
from ..github.actions import in_actions, resolve_event, tag_source
from ..github.artifacts import write_digest_file
from ..matrix.buildargs import workflow_build_args
from ..matrix.model import Entry, Matrix, load_matrix
from ..matrix.naming import Family, LegKey, normalize_suffix, suffix_label
from ..matrix.tags import TagSource
from ..merge.model import MergeOptions, Outcome
from ..merge.plan import tag_latest_of
from ..merge.run import FamilySetup, merge_all
from ..oci.blobcache import BlobCache, default_cache_dir
from ..oci.client import RegistryClients
from ..oci.keychain import Keychain
from ..oci.layout import remove_layout
from ..oci.localregistry import RegistrySet, planned_hosts, start_registry_set, unix_socket_present
from ..oci.platforms import Arch, Platform, host_arch
from ..oci.reference import sha256_digest
from ..output.console import redacted, say
from ..output.progress import Progress, Row, print_table
from ..settings import ENV_IMAGES, SETTINGS_FILE, Settings, family_config, load_settings
from ..verify.inspect import InspectRef, inspect_refs
from .state import (
    STATE_FILE,
    BuildInputs,
    State,
    context_files,
    hash_context,
    inputs_digest,
    load_state,
    lock_state_dir,
    save_state,
)

if TYPE_CHECKING:
    from ..build.feasibility import Feasibility
    from ..build.leg import LegPlan
    from ..docker.builder import Builder, BuilderCaps
    from ..docker.engine import Engine
    from ..docker.offline_bases import OfflineBases
    from ..merge.model import SuffixResult
    from ..oci.blobcache import BlobCache
    from ..oci.client import ClientFactory, RegistryClient
    from ..oci.keychain import Keychain
    from ..settings import FamilyConfig

STATE_DIR = ".localai-ci"
LOCAL_REF = "refs/heads/local"  # what tags come from in a directory that is no git checkout
REGISTRY_NAMES = ("quay", "hub")
# repositories in the two embedded registries, mirroring LocalAI's quay.io / Docker Hub pairs
EMBEDDED_REPOS = {Family.BACKENDS: ("localai/local-ai-backends", "localai/localai-backends"),
                  Family.SERVER: ("localai/local-ai", "localai/localai")}
QEMU_NAMES = {Arch.AMD64: "x86_64", Arch.ARM64: "aarch64", Arch.ARM: "arm", Arch.PPC64LE: "ppc64le",
              Arch.S390X: "s390x", Arch.RISCV64: "riscv64", Arch.I386: "i386"}
BINFMT_DIR = "/proc/sys/fs/binfmt_misc"


# ---- options --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PipelineOptions:
    """The options of ``invoke pipeline`` (paths relative to ``root`` unless absolute)."""

    matrix: str | None = None
    images_matrix: str | None = None
    only: tuple[str, ...] = ()
    images: str | None = None
    server_images: str | None = None
    jobs: int = 2
    keep: bool = False
    force: bool = False
    dry_run: bool = False
    root: str = "."
    state_dir: str | None = None  # default <root>/.localai-ci
    builder: str | None = None  # buildx builder instance (default: CI_BUILDER, else buildx's current one)
    apt_mirror: str | None = None  # APT_MIRROR / APT_PORTS_MIRROR build args (default: the environment's)
    apt_ports_mirror: str | None = None
    allow_skip: bool = False  # a leg this machine cannot build is skipped without failing the run
    push: bool = False  # needed to send legs to registries other than the embedded ones (--images, CI_*_IMAGES)
    plan_format: str = "text"  # --dry-run --format: text or json

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir) if self.state_dir else Path(self.root) / STATE_DIR


def parse_only(text: str | None) -> tuple[str, ...]:
    """``--only -cpu-hello,-core`` -> the suffixes (``-core``/``''`` is the server core image)."""
    return tuple(dict.fromkeys(s.strip() for s in (text or "").split(",") if s.strip()))


# ---- pure planning ----------------------------------------------------------------------------------
def builder_caps_without_engine(host: Arch, binfmt: frozenset[str]) -> BuilderCaps:
    """What a dry run without a reachable engine assumes: the docker driver on this machine's arch,
    emulating what binfmt_misc has a QEMU handler for (``ci.builder.BuilderCaps``)."""
    plats = [Platform("linux", host)] + [Platform("linux", a) for a, q in QEMU_NAMES.items()
                                         if a is not host and f"qemu-{q}" in binfmt]
    return BuilderCaps(name="default", driver="docker", platforms=tuple(plats),
                       engine=EngineFacts(version="", api_version="", arch=str(host), image_store=IMAGE_STORE_CLASSIC,
                                          has_bridge=True))


def select_legs(matrices: Sequence[Matrix], only: Sequence[str]) -> list[Entry]:
    """Every leg of the matrices, or those whose tag-suffix is in ``only`` (``-core``: the server core)."""
    legs = [e for m in matrices for e in m]
    if not only:
        return legs
    def named(e: Entry, s: str) -> bool:
        return normalize_suffix(e.family, s) == e.tag_suffix
    known = sorted({suffix_label(e.family, e.tag_suffix).removeprefix("server ") for e in legs})
    unknown = [s for s in only if not any(named(e, s) for e in legs)]
    if unknown:
        hints = []
        for s in unknown:
            close = difflib.get_close_matches(s, known, n=1, cutoff=0.5)
            hints.append(f"{s!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise UserError(f"--only: no leg with tag-suffix {', '.join(hints)} in "
                        f"{', '.join(str(m.path) for m in matrices)}; known: {', '.join(k or repr(k) for k in known)}")
    return [e for e in legs if any(named(e, s) for s in only)]


@dataclass(frozen=True)
class LegStep:
    """One leg of the plan: its build plan (from ci.build), feasibility and input key."""

    plan: LegPlan
    feasibility: Feasibility
    inputs: BuildInputs

    @property
    def title(self) -> str:
        return self.plan.key.label


@dataclass(frozen=True)
class SuffixStep:
    """One merge of the plan."""

    family: Family
    suffix: str
    legs: tuple[LegStep, ...]
    images: tuple[str, ...]
    tags: tuple[str, ...]
    platforms: tuple[Platform, ...]

    @property
    def title(self) -> str:
        return suffix_label(self.family, self.suffix)

    @property
    def blocked(self) -> str:
        """Why the merge cannot happen ('' when it can): a leg this engine cannot build."""
        bad = [leg for leg in self.legs if not leg.feasibility.runs]
        return "; ".join(f"{leg.plan.ptag} {leg.feasibility.how}" for leg in bad)


@dataclass(frozen=True)
class PipelinePlan:
    legs: tuple[LegStep, ...]
    suffixes: tuple[SuffixStep, ...]
    images: Mapping[Family, str]
    registries: str  # "embedded: ..." or "configured"
    digests_dir: str
    tag_source: TagSource
    state_file: str
    matrices: Mapping[Family, Matrix] = field(default_factory=dict)  # the matrices read once, by family
    notes: tuple[str, ...] = ()  # what planning left out (a family without a matrix file)
    configs: Mapping[Family, FamilyConfig] = field(default_factory=dict)  # the configuration of each family run
    keychain: Keychain | None = field(default=None, repr=False)  # every registry's credentials, looked up once

    def as_json(self) -> dict[str, object]:
        """The whole plan, as ``--dry-run --format json`` prints it: one object per leg (as
        ``build-backend --dry-run --format json``), then one per merge."""
        legs = []
        for leg in self.legs:
            item = leg.plan.as_json()
            item["feasibility"] = {"builds": leg.feasibility.runs, "how": leg.feasibility.how,
                                   "reason": leg.feasibility.reason}
            legs.append(item)
        merges = [{"family": str(s.family), "tag-suffix": s.suffix, "title": s.title,
                   "legs": [leg.plan.ptag for leg in s.legs], "tags": list(s.tags), "images": list(s.images),
                   "platforms": [str(p) for p in s.platforms], "skipped": s.blocked or None} for s in self.suffixes]
        return {"registries": self.registries, "images": {str(f): i for f, i in self.images.items()},
                "digests-dir": self.digests_dir, "state": self.state_file, "legs": legs, "merges": merges}

    def describe(self, state: State | None = None) -> str:
        """The whole plan, as ``--dry-run`` prints it."""
        out = [f"registries: {self.registries}"]
        out += [f"  {fam} images: {imgs}" for fam, imgs in self.images.items()]
        out.append(f"tags from:  event {self.tag_source.event}, ref {self.tag_source.ref or '-'}, "
                   f"sha {self.tag_source.sha or '-'}")
        out.append(f"digests:    {self.digests_dir}")
        out.append(f"state:      {self.state_file}")
        for i, leg in enumerate(self.legs, 1):
            out.append("")
            out.append(f"== leg {i}/{len(self.legs)}: {leg.title}: {leg.feasibility.how}")
            if not leg.feasibility.runs:
                out.append(f"   not built ({leg.feasibility.reason}); its suffix is not merged")
                continue
            rec = state.lookup(leg.inputs) if state is not None else None
            key = inputs_digest(leg.inputs)
            out.append(f"incremental: key {key[:16] if key else 'unknown (base image absent)'}; "
                       + (f"recorded {rec.digest}: up to date if it still exists in every registry"
                          if rec else "no matching record: build and publish"))
            out.append(leg.plan.describe())
        for s in self.suffixes:
            out.append("")
            out.append(f"== merge {s.title} ({s.family}): legs {', '.join(leg.plan.ptag for leg in s.legs)}")
            if s.blocked:
                out.append(f"   skipped: {s.blocked}")
                continue
            out.append("   artifacts: " + ", ".join(leg.plan.artifact for leg in s.legs))
            out.append("   tags:      " + ", ".join(s.tags))
            out.append("   lists:     " + ", ".join(f"{img}:{t}" for img in s.images for t in s.tags))
            out.append("   inspect:   expect " + ",".join(str(p) for p in s.platforms))
        return "\n".join(out)


def embedded_images(hosts: Sequence[str]) -> dict[Family, str]:
    """Each family's repositories in the two embedded registries (comma-separated, for --images)."""
    return {fam: ",".join(f"{h}/{r}" for h, r in zip(hosts, repos)) for fam, repos in EMBEDDED_REPOS.items()}


def configured_images(options: PipelineOptions, env: Mapping[str, str],
                      families: Sequence[Family]) -> dict[Family, str] | None:
    """The families' configured images, or None when nothing is configured (use the embedded default)."""
    given = {Family.BACKENDS: options.images or env.get(ENV_IMAGES[Family.BACKENDS], ""),
             Family.SERVER: options.server_images or env.get(ENV_IMAGES[Family.SERVER], "")}
    if not any(given.values()):
        return None
    missing = [f for f in families if not given[f]]
    if missing:
        flags = {Family.BACKENDS: "--images / CI_BACKEND_IMAGES", Family.SERVER: "--server-images / CI_SERVER_IMAGES"}
        raise UserError("registries are configured for one family only; also set "
                        + " and ".join(flags[f] for f in missing)
                        + " (or set none of them to use the embedded loopback registries)")
    return {f: given[f] for f in families}


# ---- adapters used by the plan (read-only) ------------------------------------------------------------
def registered_binfmt(directory: str = BINFMT_DIR) -> frozenset[str]:
    try:
        return frozenset(n for n in os.listdir(directory) if n.startswith("qemu-"))
    except OSError:
        return frozenset()


def base_images_key(names: Sequence[str], env: Mapping[str, str], engine: Engine | None) -> str | None:
    """One key over the ids of every image a leg's build starts from: the deterministic index digest
    :mod:`ci.baseimage` serves for ``ci-offline/`` names, else the engine's image id. None when one
    is absent from the engine (it would be pulled: the leg is never up to date)."""
    ids = []
    for name in sorted(set(names)):
        if is_offline_base(name):
            ids.append(f"{name}={offline_image(name, env).index.digest}")
            continue
        if engine is None:
            return None
        try:
            ids.append(f"{name}={engine.inspect(name).id}")
        except CiError:
            return None
    return sha256_digest("\n".join(ids).encode())


# ---- results -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LegOutcome:
    leg: LegKey
    result: str  # built / up to date / skipped / failed
    digest: str = ""
    reason: str = ""
    seconds: float = 0.0

    @property
    def title(self) -> str:
        return self.leg.label


@dataclass(frozen=True)
class PipelineReport:
    legs: tuple[LegOutcome, ...]
    rows: tuple[Row, ...]
    failures: tuple[str, ...]
    seconds: float
    dry_run: bool = False
    allow_skip: bool = False

    @property
    def skipped(self) -> tuple[LegOutcome, ...]:
        """The legs this machine could not build (no shell for an offline base, no QEMU, an old engine)."""
        return tuple(o for o in self.legs if o.result == "skipped")

    @property
    def exit_code(self) -> int:
        """1 when something failed, or when legs it was asked to build were skipped (unless ``allow_skip``)."""
        return 1 if self.failures or (self.skipped and not self.allow_skip) else 0


# ---- the verb -----------------------------------------------------------------------------------------
def _matrix_paths(options: PipelineOptions, settings: Settings) -> tuple[dict[Family, Path], list[str]]:
    """The matrix file of each family to run, and notes on those left out.

    A family whose matrix was not given and whose default file is absent (a repository with
    backends only, like LocalAI's) is left out with a note; a path given on the command line
    must exist (``load_matrix`` says so), and so must at least one of the two."""
    root = Path(options.root)
    given = {Family.BACKENDS: options.matrix, Family.SERVER: options.images_matrix}
    option = {Family.BACKENDS: "--matrix", Family.SERVER: "--images-matrix"}
    paths: dict[Family, Path] = {}
    notes: list[str] = []
    for fam, p in given.items():
        path = (Path(p) if Path(p).is_absolute() else root / p) if p else settings.matrix_path(fam)
        if p or path.exists():
            paths[fam] = path
        else:
            notes.append(f"no {path.relative_to(root)} under {root}: the {fam} family is not run "
                         f"(pass {option[fam]} PATH, or name it in {SETTINGS_FILE}, to run it)")
    if not paths:
        raise UserError(f"no matrix to run: neither {settings.matrix_path(Family.BACKENDS).relative_to(root)} nor "
                        f"{settings.matrix_path(Family.SERVER).relative_to(root)} exists under {root}; pass --matrix "
                        f"PATH (and/or --images-matrix PATH), name them in {SETTINGS_FILE}, or --root the "
                        "repository's top directory")
    return paths, notes


def plan_pipeline(options: PipelineOptions, env: Mapping[str, str], *, hosts: Sequence[str] | None,
                  engine: Engine | None, caps: BuilderCaps, digests_dir: Path) -> PipelinePlan:
    """Decide everything (reads matrices, git, the build context and, read-only, the engine).

    ``caps``: the builder's (``ci.builder.BuilderCaps``), for each leg's feasibility."""
    if options.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {options.jobs}")
    settings = load_settings(options.root)
    paths, notes = _matrix_paths(options, settings)
    matrices = {fam: load_matrix(p, fam) for fam, p in paths.items()}
    entries = select_legs(list(matrices.values()), options.only)
    families = [f for f in (Family.BACKENDS, Family.SERVER) if any(e.family is f for e in entries)]
    configured = configured_images(options, env, families)
    if configured is None:
        if hosts is None:
            raise OperationError("internal: the embedded registries' hosts are needed to plan")
        images = {f: embedded_images(hosts)[f] for f in families}
        registries = "embedded: " + ", ".join(hosts)
    else:
        images, registries = configured, "configured"
    # every family's configuration, the labels, the event, the workflow's build args and the
    # credentials are decided once for the run; each leg is planned from its matrix Entry
    configs = {f: family_config(f, images=images[f], env=env, settings=settings) for f in families}
    sibling_images = {f: (configs.get(f.sibling) or family_config(f.sibling, env=env, settings=settings)).images
                      for f in families}
    siblings = {f: (*sibling_images[f], configs[f].cache) for f in families}  # blob-mount sources
    publishing = {r for c in configs.values() for r in c.registries}
    keychain = Keychain(best_effort={c.cache.registry for c in configs.values()} - publishing).resolve(sorted(publishing))
    source, _ = tag_source(env, event="push", root=options.root, local_ref=LOCAL_REF)  # the plan prints it
    labels = source_info(Path(options.root), env)  # git, once for every leg
    event = resolve_event("push", env)
    extra = workflow_build_args(apt_mirror=options.apt_mirror, apt_ports_mirror=options.apt_ports_mirror,
                                deps_refresh=None, env=env, now=datetime.now(UTC))
    # what each leg reads: the derivation change detection uses (ci.inputs), over the files as they are
    deriver = Deriver(working_tree(options.root, skip=options.state_path))
    ctx_cache: dict[tuple[object, ...], str] = {}
    files_cache: dict[str, tuple[dict[str, tuple[str, bool, str]], list[str]]] = {}  # by repository path
    steps: list[LegStep] = []
    for e in entries:
        plan = plan_leg(e, configs[e.family], root=options.root, source=labels, event=event, digests_dir=digests_dir,
                        mount_from=siblings[e.family], extra_args=extra, push=configured is None or options.push)
        feas = leg_feasibility(plan, caps, env)
        bases = feas.resolved.external_images if feas.resolved is not None else (plan.base_image,)
        reads = deriver.leg(e, extra)
        ck = (plan.context, plan.dockerfile, reads.identity())
        if ck not in ctx_cache:
            if plan.context not in files_cache:  # one walk per context, however many Dockerfiles share it
                ctx = clean_path(e.context)
                files = {join(ctx, f[0]): f for f in context_files(plan.context, skip=options.state_path)}
                files_cache[plan.context] = (files, sorted(files))
            files, ordered = files_cache[plan.context]
            ctx_cache[ck] = hash_context(plan.context, plan.dockerfile, [files[p] for p in reads.read_paths(ordered)])
        inputs = BuildInputs(family=str(plan.family), suffix=plan.suffix, ptag=plan.ptag, platform=str(plan.platform),
                           dockerfile=plan.dockerfile, context_hash=ctx_cache[ck], build_args=plan.build_args,
                           base_image=",".join(bases), base_id=base_images_key(bases, env, engine),
                           images=tuple(str(i) for i in plan.images))
        steps.append(LegStep(plan=plan, feasibility=feas, inputs=inputs))
    suffixes: list[SuffixStep] = []
    for fam in families:
        m = matrices[fam]
        for suf in dict.fromkeys(e.tag_suffix for e in entries if e.family is fam):
            legs = tuple(s for s in steps if s.plan.family is fam and s.plan.suffix == suf)
            latest = tag_latest_of(m.legs_of(suf), suffix_label(fam, suf))
            tags = source.tags(suf, latest, fam)
            suffixes.append(SuffixStep(fam, suf, legs, tuple(str(i) for i in configs[fam].images), tags,
                                       tuple(sorted(e.platform for e in m.legs_of(suf)))))
    return PipelinePlan(tuple(steps), tuple(suffixes), images, registries, str(digests_dir), source,
                str((options.state_path / STATE_FILE).resolve()), matrices=matrices, notes=tuple(notes), configs=configs,
                keychain=keychain)


class _Runner:
    """Runs the legs of a plan; shared state guarded by locks."""

    def __init__(self, plan: PipelinePlan, options: PipelineOptions, env: Mapping[str, str], engine: Engine,
                 builder: Builder, bases: OfflineBases, progress: Progress, state: State, state_file: Path) -> None:
        self.plan, self.options, self.env, self.engine = plan, options, env, engine
        self.builder, self.bases = builder, bases
        self.digests_dir = Path(plan.digests_dir)  # every leg's digest file (the run's push event)
        self.content_dirs = engine.content_store(env)  # the containerd store's blobs, when on this machine
        self.config_dirs = engine.config_store(env)  # the classic store's image configs, when readable here
        self.progress, self.state, self.state_file = progress, state, state_file
        self._state_lock = threading.Lock()

    def _clients(self, step: LegStep) -> list[RegistryClient]:
        make = RegistryClients(self.plan.keychain)
        return [make(img, step.plan.config.plain_http) for img in step.plan.images]

    def up_to_date(self, step: LegStep) -> str | None:
        """The recorded digest when the leg is up to date (key matches, digest in every registry)."""
        if self.options.force:
            return None
        rec = self.state.lookup(step.inputs)
        if rec is None:
            return None
        clients = self._clients(step)
        try:
            for cl in clients:
                if cl.head_manifest(rec.digest) is None:
                    self.progress.log(f"{step.title}: recorded {rec.digest[:19]} is gone from {cl.image}; rebuilding")
                    return None
        finally:
            for cl in clients:
                cl.close()
        return rec.digest

    def run(self, step: LegStep, cache: BlobCache) -> LegOutcome:
        p = step.plan
        t0 = time.monotonic()

        def outcome(result: str, digest: str = "", reason: str = "") -> LegOutcome:
            return LegOutcome(p.key, result, digest, reason, time.monotonic() - t0)

        if not step.feasibility.runs:
            self.progress.leg_done(step.title, f"skipped: {step.feasibility.how}")
            return outcome("skipped", reason=step.feasibility.reason or step.feasibility.how)
        try:
            self.progress.step(step.title, "checking the record")
            digest = self.up_to_date(step)
            if digest is not None:
                write_digest_file(self.digests_dir, p.key, digest)
                self.progress.leg_done(step.title, f"up to date ({digest[:19]})")
                return outcome("up to date", digest)
            self.progress.step(step.title, f"building ({step.feasibility.how})")
            built = build_leg(p, self.builder, self.bases, on_event=self.progress.build_event(step.title))
            self.progress.step(step.title, "publishing by digest")
            clients = RegistryClients(self.plan.keychain, on_retry=lambda msg: self.progress.log(f"{step.title}: retry: {msg}"))
            try:
                res = publish_built(p, built, self.engine, cache, clients, content_dirs=self.content_dirs,
                                    log=lambda msg: self.progress.step(step.title, msg))
                cache_warning = settle_inline_cache(p, built, self.engine, cache, clients,
                                                    log=lambda msg: self.progress.step(step.title, msg),
                                                    config_dirs=self.config_dirs) or built.cache_warning
            finally:
                if built.layout:  # published or not, the OCI layout has done its job
                    remove_layout(built.layout)
            if cache_warning:
                self.progress.log(f"{step.title}: warning: {cache_warning}")
            with self._state_lock:
                self.state.remember(step.inputs, res.digest)
                save_state(self.state_file, self.state)
            self.progress.leg_done(step.title, f"built and published {res.digest[:19]} "
                                               f"({res.report.bytes_uploaded} bytes uploaded)")
            return outcome("built", res.digest)
        except CiError as exc:
            self.progress.leg_done(step.title, "FAILED")
            return outcome("failed", reason=str(exc))


def _merge_word(r: SuffixResult) -> str:
    if r.outcome.value == "merged" and not r.changed:
        return "unchanged (already published)"
    return str(r.outcome.value)


def _short(text: str, limit: int = 160) -> str:
    first = " ".join(text.split())
    return first if len(first) <= limit else first[:limit] + "..."


def _inspect(s: SuffixStep, tags: Sequence[str], config: FamilyConfig, clients: ClientFactory,
             env: Mapping[str, str]) -> list[str]:
    """Inspect every tag of a merged suffix in every registry; the failed checks (empty: verified)."""
    targets = [InspectRef(img, t) for img in config.images for t in tags]
    report = inspect_refs(targets, partial(clients, plain_http=config.plain_http), expected=s.platforms,
                          plain_http=config.plain_http, env=env)
    return [str(f) for f in report.failures]


def run_pipeline(options: PipelineOptions, env: Mapping[str, str] | None = None, out: TextIO | None = None,
                 err: TextIO | None = None, tty: bool | None = None) -> PipelineReport:
    """``invoke pipeline``: plan, legs, merges, inspection, table (see the module docstring). A run (not a
    dry run) holds its state directory for its whole length (``state.lock_state_dir``): a second run there
    is refused, naming the first, instead of adopting its registries and clearing its digests."""
    environ = dict(os.environ if env is None else env)
    stdout, stderr = redacted(out or sys.stdout), redacted(err or sys.stderr)  # the one output path (redacted)
    t0 = time.monotonic()
    state_dir = options.state_path.resolve()
    name = builder_name(options.builder, environ)  # --builder / CI_BUILDER: bad input before anything is touched
    if options.dry_run:  # reads, starts and writes nothing
        return _run(options, environ, stdout, stderr, tty, t0, state_dir, name)
    with lock_state_dir(state_dir):
        return _run(options, environ, stdout, stderr, tty, t0, state_dir, name)


def _run(options: PipelineOptions, environ: dict[str, str], stdout: TextIO, stderr: TextIO, tty: bool | None,
         t0: float, state_dir: Path, name: str) -> PipelineReport:
    state_file = state_dir / "state.json"
    digests_dir = state_dir / "digests"
    engine = _connect(environ, required=not options.dry_run)
    if engine is not None:
        made = builder_for(engine, environ, name)
        builder: Builder | None = made
        caps = made.caps()
    else:
        builder, caps = None, builder_caps_without_engine(host_arch(os.uname().machine), registered_binfmt())
    state = load_state(state_file)
    for note in state.notes:
        say(f"note: {note}", file=stderr)

    configured = bool(options.images or options.server_images or any(environ.get(v) for v in ENV_IMAGES.values()))
    emb: RegistrySet | None = None
    hosts: tuple[str, ...] | None = None
    if not configured:
        if options.dry_run:
            hosts = planned_hosts(state_dir / "registries", REGISTRY_NAMES)
        else:
            emb = start_registry_set(state_dir / "registries", REGISTRY_NAMES, keep=options.keep,
                                     log=lambda s: say(s, file=stderr, flush=True))
            hosts = emb.hosts
    try:
        plan = plan_pipeline(options, environ, hosts=hosts, engine=engine, caps=caps, digests_dir=digests_dir)
        for note in plan.notes:
            say(f"note: {note}", file=stderr)
        say(f"builder: {caps.describe()}", file=stderr, flush=True)
        if options.dry_run:
            if options.plan_format == "json":
                say(json.dumps(plan.as_json(), indent=2), file=stdout)
                return PipelineReport((), (), (), time.monotonic() - t0, dry_run=True)
            if emb is None and hosts is not None:
                say(f"note: dry run: the embedded registries would start on {', '.join(hosts)} "
                      f"(storage under {state_dir / 'registries'}); nothing was started", file=stdout)
            say(plan.describe(state), file=stdout)
            blocked = [leg for leg in plan.legs if not leg.feasibility.runs]
            if blocked:
                say(f"note: {len(blocked)} of {len(plan.legs)} leg(s) would be skipped (not built above); a run "
                      f"fails on them unless --allow-skip is given", file=stdout)
            return PipelineReport((), (), (), time.monotonic() - t0, dry_run=True)
        if hosts is None and not options.push:
            targets = sorted({str(i) for imgs in plan.images.values() for i in imgs.split(",")})
            raise UserError(f"invoke pipeline is pointed at registries that are not its own ({', '.join(targets)}): "
                            "nothing is sent there without --push; pass --push, or drop --images/--server-images "
                            "and CI_BACKEND_IMAGES/CI_SERVER_IMAGES to use the embedded loopback registries")
        if engine is None or builder is None:  # _connect raised for a run that is not dry
            raise OperationError("internal: no engine for a pipeline run")
        return _execute(plan, options, environ, engine, builder, state, state_file, digests_dir, stdout, stderr,
                        tty, t0, emb)
    finally:
        if emb is not None and not options.keep:
            emb.stop()
        if engine is not None:
            engine.client.close()


def _connect(env: Mapping[str, str], required: bool) -> Engine | None:
    """The engine; for a dry run None when it is unreachable (the plan then uses the machine's arch)."""
    if not required and not unix_socket_present(env.get("DOCKER_HOST", "")):
        return None

    try:
        return connect(env)
    except CiError:
        if required:
            raise
        return None


def _execute(plan: PipelinePlan, options: PipelineOptions, env: dict[str, str], engine: Engine, builder: Builder, state: State,
             state_file: Path, digests_dir: Path, stdout: TextIO, stderr: TextIO, tty: bool | None,
             t0: float, emb: RegistrySet | None) -> PipelineReport:
    shutil.rmtree(digests_dir, ignore_errors=True)  # this run's artifacts only
    digests_dir.mkdir(parents=True, exist_ok=True)
    outcomes: dict[LegKey, LegOutcome] = {}
    # offline bases are served from the embedded "quay" registry, else from a private one
    bases = OfflineBases(env, host=emb.hosts[0] if emb is not None else None,
                         root=options.state_path.resolve() / "registries" / "bases")
    with Progress(len(plan.legs), stderr, tty, actions=in_actions(env)) as progress, bases:
        runner = _Runner(plan, options, env, engine, builder, bases, progress, state, state_file)
        with BlobCache(default_cache_dir(env), warn=lambda text: progress.log(f"warning: {text}")) as cache:
            with ThreadPoolExecutor(max_workers=options.jobs, thread_name_prefix="leg") as pool:
                for o in pool.map(lambda s: runner.run(s, cache), plan.legs):
                    outcomes[o.leg] = o
        merged: dict[tuple[Family, str], SuffixResult] = {}
        clients = RegistryClients(plan.keychain)
        if any(o.digest for o in outcomes.values()):
            progress.step("merge", "merging every suffix (merge --all)")
            setups = {fam: FamilySetup(config=plan.configs[fam], matrix=plan.matrices[fam]) for fam in plan.configs}
            mopts = MergeOptions(tag_source=plan.tag_source, jobs=options.jobs,
                                 planned_tags={(s.family, s.suffix): s.tags for s in plan.suffixes})
            report = merge_all(digests_dir, setups, mopts, factory=clients,
                               on_result=lambda r: progress.log(f"merge {r.label}: {_merge_word(r)}"
                                                                + (f" {r.digest[:19]}" if r.digest else "")))
            merged = {(r.family, r.suffix): r for r in report.results}
        verified: dict[tuple[Family, str], list[str]] = {}
        for s in plan.suffixes:
            r = merged.get((s.family, s.suffix))
            if r is not None and r.outcome is Outcome.MERGED:
                progress.step("inspect", s.title)
                try:
                    verified[(s.family, s.suffix)] = _inspect(s, r.tags, plan.configs[s.family], clients, env)
                except CiError as exc:
                    verified[(s.family, s.suffix)] = [str(exc)]
    rows, failures = _rows(plan, outcomes, merged, verified)
    seconds = time.monotonic() - t0
    done = PipelineReport(tuple(outcomes.values()), tuple(rows), tuple(failures), seconds,
                          allow_skip=options.allow_skip)
    print_table(rows, stdout, tty)
    say(f"{len(plan.legs)} leg(s): " + ", ".join(
        f"{sum(1 for o in outcomes.values() if o.result == k)} {k}" for k in ("built", "up to date", "skipped", "failed"))
          + f"; {seconds:.1f}s", file=stdout)
    if any(o.digest for o in outcomes.values()):
        say("published to: " + "; ".join(f"{fam}: {imgs}" for fam, imgs in plan.images.items()), file=stdout)
    else:
        say("published: nothing (no leg was built or up to date)", file=stdout)
    say(f"state: {plan.state_file} (what each leg was built from); digests: {plan.digests_dir}; to start from "
          f"scratch: rm -rf {Path(plan.state_file).parent} (or --force to rebuild every leg)", file=stdout)
    if emb is not None and emb.detached:
        say(emb.how_to_reach(EMBEDDED_REPOS[Family.BACKENDS][0]), file=stdout)
    elif emb is not None:
        say("the embedded registries stop now; run with --keep to look at the images afterwards", file=stdout)
    if failures:  # listed last: the first line of each, then its details (e.g. the build log tail)
        say(f"failures ({len(failures)}):", file=stderr)
        for f in failures:
            first, *rest = f.splitlines() or [""]
            say(f"error: {first}", file=stderr)
            for line in rest:
                say(f"  | {line}", file=stderr)
    if done.skipped:
        say(skip_summary(done.skipped, len(plan.legs), options.allow_skip), file=stderr)
    return done


def skip_summary(skipped: Sequence[LegOutcome], total: int, allowed: bool) -> str:
    """One line on the legs this machine could not build: how many, why (each reason carries its fix:
    a static busybox for the offline bases, QEMU, a newer engine) and what ``--allow-skip`` does."""
    reasons = list(dict.fromkeys(o.reason for o in skipped if o.reason))
    why = "; ".join(reasons[:3]) + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
    if allowed:
        return f"note: {len(skipped)} of {total} leg(s) skipped (--allow-skip): {why}"
    return (f"error: {len(skipped)} of {total} leg(s) were skipped, this machine cannot build them: {why}. Fix that "
            f"and run again, or pass --allow-skip to accept a run that builds only what this machine can")


def _rows(plan: PipelinePlan, outcomes: Mapping[LegKey, LegOutcome], merged: Mapping[tuple[Family, str], SuffixResult],
          verified: Mapping[tuple[Family, str], list[str]]) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    failures: list[str] = []
    for s in plan.suffixes:
        legs = [outcomes[LegKey(s.family, s.suffix, leg.plan.ptag)] for leg in s.legs]
        leg_text = " ".join(f"{o.leg.ptag}({o.result})" for o in legs)
        failed_legs = [o for o in legs if o.result == "failed"]
        r = merged.get((s.family, s.suffix))
        digest, tags, bad = "-", "-", False
        if failed_legs:
            result, bad = "failed: leg " + ", ".join(o.leg.ptag for o in failed_legs), True
            failures += [f"{o.title}: {o.reason}" for o in failed_legs]
        elif s.blocked:
            result = f"skipped: {s.blocked}"
        elif r is None:
            result, bad = "failed: not merged (no digest artifact)", True
            failures.append(f"{s.title}: not merged: no digest artifact was produced")
        elif r.outcome is Outcome.MERGED:
            digest, tags = r.digest, ", ".join(r.tags)
            problems = verified.get((s.family, s.suffix), [])
            if problems:
                result, bad = "failed: inspect", True
                failures += [f"{s.title}: inspect: {p}" for p in problems]
            elif not r.changed and all(o.result == "up to date" for o in legs):
                result = "up to date"
            else:
                result = "merged (verified)"
        elif r.outcome is Outcome.SKIPPED:
            result = f"skipped: {_short(r.reason, 80)}"
        else:
            result, bad = "failed: merge", True
            failures.append(f"{s.title}: merge: {r.reason}")
        rows.append(Row(s.title, leg_text, digest, tags, result, bad))
    return rows, failures
