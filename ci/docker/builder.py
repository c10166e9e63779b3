"""The build step (adapter): BuildKit through ``docker buildx build``, behind one small interface.

Why the CLI and not the Docker SDK: the SDK drives only the classic builder (docker/docker-py
issue 2230; the engine API's ``version=2`` without a BuildKit gRPC session works on the classic
image store only and gives no auth, secrets or cache export). What LocalAI's Dockerfiles need
(heredoc ``RUN``, ``RUN --mount``, automatic ``TARGETARCH``, a ``FROM scratch`` final stage of the
leg's architecture, registry cache, base images pulled with the Docker config's credentials)
comes with buildx's session. So :class:`BuildxBuilder` runs ``docker buildx build`` with an
argument list, reads BuildKit's solve status as JSON (``--progress=rawjson``) and its result
from ``--metadata-file``; the SDK keeps everything else (facts, inspect, export, pull).

The seam: :class:`Builder` -- ``build(spec, on_event) -> BuiltImage``. ``ci.build``,
``ci.pipeline`` and the tests use only that; swapping the builder touches this module.

Builders and what they support (``caps()``):

============================  ==============  ==================  ==============================================
builder                       registry cache  hand-off            notes
============================  ==============  ==================  ==============================================
docker driver, classic store  import only     ``--load``, export  cache export falls back to ``inline`` (min mode)
docker driver, containerd     import, export  OCI layout          ``mode=max``
docker-container / remote     import, export  OCI layout          ``mode=max``; offline (loopback) bases unreachable
============================  ==============  ==================  ==============================================

The hand-off to the publisher: where the builder can export an OCI image layout
(``caps().oci_export``), the build writes one (``--output type=oci,dest=DIR,tar=false``: the blobs
as BuildKit compressed them, its manifest) and the image never enters the engine -- no ``--load``,
no ``docker save``, no second gzip; ``BuiltImage.layout`` names the directory and ``info`` is read
from its config. Elsewhere (the classic store's docker driver refuses the OCI exporter) the image is
loaded into the engine (``--load``) and published from there. ``BuildSpec.load`` asks for the engine
image anyway (tests that read files out of the image).

Emulation: ``RUN`` steps of a stage whose platform is not the host's run under QEMU when the
kernel has a binfmt handler (the builder then lists that platform); ``caps().platforms`` says.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from ..errors import EngineError, UserError
from ..oci.layout import LayoutError, new_layout_dir, read_layout_image, remove_layout, remove_stale_layouts
from ..oci.platforms import Platform, parse_platform
from .buildprogress import BuildEvent, EventSink, SolveStatusReader, StepRecord, _hint
from .engine import Engine, EngineFacts, ImageInfo

ENV_BUILDER = "CI_BUILDER"  # the buildx builder instance to use (default: buildx's current one)


ENV_LAYOUT_DIR = "CI_LAYOUT_DIR"  # where OCI layouts are exported (default: $TMPDIR/localai-ci-layouts)


@dataclass(frozen=True)
class CacheSpec:
    """The leg's registry cache (LocalAI: ``cache<suffix>-<platform-tag>`` in the cache repository)."""

    ref: str = ""  # repository:tag; '' for no cache
    write: bool = False  # export after the build (push events); pull requests only read it
    insecure: bool = False  # plain HTTP to a non-loopback registry (CI_INSECURE_REGISTRIES)


@dataclass(frozen=True)
class BuildSpec:
    """One build, fully decided: what ``docker buildx build`` gets."""

    context: str  # absolute path
    dockerfile: str  # absolute path (need not be inside the context)
    platform: Platform
    tag: str  # engine tag of the result (repository:tag)
    build_args: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    cache: CacheSpec = CacheSpec()
    target: str = ""  # stage to build; '' for the last one
    contexts: tuple[tuple[str, str], ...] = ()  # named build contexts: (name, docker-image://... | path)
    load: bool = False  # the image must be in the engine afterwards (--load) even where a layout could be exported
    layout: str = ""  # where to export the OCI layout (a path not yet existing); '' -> under layout_parent()


@dataclass(frozen=True)
class BuiltImage:
    ref: str  # the engine tag; '' when the image was exported as an OCI layout and not loaded
    info: ImageInfo  # from the engine, or from the layout's config (id: the manifest digest)
    config_digest: str
    steps: tuple[StepRecord, ...] = field(default=(), repr=False)
    cache: str = ""  # how the registry cache was used ("registry mode=max", "inline", "read only", "none")
    cache_image: str = ""  # inline mode: the engine tag of the image to publish as the cache ref
    cache_warning: str = ""  # the cache export failed (the build itself is fine)
    layout: str = ""  # the OCI image layout directory the build exported (the publisher's input), '' if none

    def ran(self) -> tuple[StepRecord, ...]:
        """Steps that executed (not cached)."""
        return tuple(s for s in self.steps if not s.cached)


class Builder(Protocol):
    """The build seam: a planned build in, events out, the built image (in the engine) back."""

    def caps(self) -> BuilderCaps: ...
    def build(self, spec: BuildSpec, on_event: EventSink) -> BuiltImage: ...


@dataclass(frozen=True)
class BuilderCaps:
    name: str
    driver: str  # docker, docker-container, remote, kubernetes
    platforms: tuple[Platform, ...]  # what RUN steps can run for (native + QEMU binfmt)
    engine: EngineFacts

    @property
    def cache_export(self) -> bool:
        """Registry cache export: every driver but ``docker`` on the classic image store."""
        return self.driver != "docker" or self.engine.containerd_store

    @property
    def oci_export(self) -> bool:
        """BuildKit's own OCI exporter (``--output type=oci``): every driver but ``docker`` on the classic
        image store, which refuses it ("turn on the containerd image store")."""
        return self.driver != "docker" or self.engine.containerd_store

    @property
    def reaches_loopback(self) -> bool:
        """BuildKit runs in the engine itself, so it reaches registries on the host's loopback."""
        return self.driver == "docker"

    def can_run(self, platform: Platform) -> bool:
        return any(p.os == platform.os and p.arch == platform.arch for p in self.platforms)

    def describe(self) -> str:
        return (f"buildx builder {self.name!r} ({self.driver} driver) on {self.engine.describe()}; "
                f"registry cache {'import+export (mode=max)' if self.cache_export else 'import only (inline export)'}; "
                f"hand-off {'OCI layout' if self.oci_export else '--load into the engine, then export'}; runs "
                + ", ".join(dict.fromkeys(f"{p.os}/{p.arch}" for p in self.platforms)))


def parse_buildx_inspect(text: str) -> tuple[str, str, tuple[Platform, ...]]:
    """(name, driver, platforms) from ``docker buildx inspect`` (buildx 0.13 prints no JSON)."""
    name = driver = ""
    platforms: list[Platform] = []
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "Name" and not name:
            name = value
        elif key == "Driver" and not driver:
            driver = value
        elif key == "Platforms" and value:
            for p in value.split(","):
                try:
                    platforms.append(parse_platform(p.strip().rstrip("*")))
                except ValueError:
                    continue  # a platform this project does not model (e.g. linux/mips64)
    return name, driver, tuple(dict.fromkeys(platforms))


INLINE_CACHE_SUFFIX = "-inline-cache"  # tag suffix of the inline-cache image (classic store, docker driver)


def cache_args(cache: CacheSpec, caps: BuilderCaps) -> tuple[list[str], str, str]:
    """(arguments of the leg's build, how the cache is used, a warning or '').

    Where the builder cannot export registry cache, the leg's own image carries none (the inline
    cache record would change its config, and so its digest, on every rebuild): a second, fully
    cached build makes the inline-cache image (:func:`inline_cache_command`) that is published
    as the cache ref instead."""
    if not cache.ref:
        return [], "none", ""
    attrs = f"type=registry,ref={cache.ref}" + (",registry.insecure=true" if cache.insecure else "")
    args = ["--cache-from", attrs]
    if not cache.write:
        return args, "read only (pull request)", ""
    if caps.cache_export:
        return args + ["--cache-to", f"{attrs},mode=max,ignore-error=true"], "registry mode=max", ""
    warning = (f"the {caps.driver} driver on the {caps.engine.image_store} image store cannot export registry cache: "
               "publishing inline cache instead (min mode: it keeps the final stage's layers, so on a clean runner a "
               "change late in a FROM scratch image's builder stage reruns the whole stage); turn on the containerd "
               "image store or use a docker-container builder for mode=max")
    return args, "inline", warning


def inline_cache_tag(tag: str) -> str:
    """The engine tag of a leg's inline-cache image."""
    return tag + INLINE_CACHE_SUFFIX


def exports_layout(spec: BuildSpec, caps: BuilderCaps) -> bool:
    """Whether the build hands the publisher an OCI layout (else it loads the image into the engine)."""
    return caps.oci_export and not spec.load


def buildx_command(spec: BuildSpec, caps: BuilderCaps, metadata_file: str, docker: str = "docker", *,
                   inline_cache: bool = False, layout: str = "") -> list[str]:
    """The ``docker buildx build`` argument list for ``spec`` (no shell, ever); ``inline_cache``: the
    second build that tags :func:`inline_cache_tag` with inline cache embedded; ``layout``: export the
    OCI image layout there (``tar=false``: the compressed blobs as files) instead of ``--load``."""
    tag = inline_cache_tag(spec.tag) if inline_cache else spec.tag
    output = [f"--output=type=oci,{_csv_field('dest=' + layout)},tar=false"] if layout else ["--load"]
    args = [docker, "buildx", "build", "--builder", caps.name, "--progress=rawjson", "--metadata-file", metadata_file,
            "--platform", str(spec.platform), "--file", spec.dockerfile, "--tag", tag, *output,
            "--provenance=false", "--sbom=false"]
    if caps.driver == "docker" and not caps.engine.has_bridge:
        args += ["--network", "host"]  # dockerd runs with --bridge none: RUN steps need the host network
    if spec.target:
        args += ["--target", spec.target]
    for k, v in spec.build_args:
        args += ["--build-arg", f"{k}={v}"]
    for k, v in spec.labels:
        args += ["--label", f"{k}={v}"]
    for name, value in spec.contexts:
        args += ["--build-context", f"{name}={value}"]
    args += cache_args(spec.cache, caps)[0]
    if inline_cache:
        args += ["--cache-to", "type=inline"]
    args.append(spec.context)
    return args


def _csv_field(text: str) -> str:
    """One field of buildx's comma-separated ``--output`` value (quoted when it holds ``,`` or ``"``)."""
    return '"' + text.replace('"', '""') + '"' if ("," in text or '"' in text) else text


def layout_parent(env: Mapping[str, str]) -> Path:
    """Where builds export their OCI layouts: ``$CI_LAYOUT_DIR``, else ``localai-ci-layouts`` in the
    temporary directory (``$TMPDIR``: LocalAI's hosted runners point it at the big disk, ``/mnt``)."""
    if env.get(ENV_LAYOUT_DIR):
        return Path(env[ENV_LAYOUT_DIR])
    return Path(env.get("TMPDIR") or tempfile.gettempdir()) / "localai-ci-layouts"


class BuildxBuilder:
    """:class:`Builder` driving ``docker buildx build`` (see the module docstring)."""

    def __init__(self, engine: Engine, env: Mapping[str, str] | None = None, *, name: str = "",
                 docker: str = "docker") -> None:
        self.engine = engine
        self.env = dict(os.environ if env is None else env)
        self.name = builder_name(name, self.env)
        self.docker = docker
        self._caps: BuilderCaps | None = None
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def _docker(self) -> str:
        found = shutil.which(self.docker, path=self.env.get("PATH"))
        if not found:
            raise EngineError(f"the docker CLI ({self.docker}) is not on PATH; builds run `docker buildx build`: "
                              "install docker-cli and the buildx plugin (Debian: apt-get install docker.io docker-buildx)")
        return found

    def caps(self) -> BuilderCaps:
        with self._lock:
            if self._caps is None:
                args = [self._docker(), "buildx", "inspect"] + ([self.name] if self.name else [])
                try:
                    done = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=120,
                                          stdin=subprocess.DEVNULL, check=False)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise EngineError(f"running docker buildx inspect: {exc}") from exc
                if done.returncode != 0:
                    detail = " ".join(done.stderr.split())[:300]
                    if "not a docker command" in done.stderr or "unknown command" in done.stderr:
                        raise EngineError("docker buildx is not installed; builds need the buildx plugin (Debian: "
                                          "apt-get install docker-buildx; Docker Desktop and Docker CE include it)")
                    raise EngineError(f"docker buildx inspect {self.name}: {detail}; "
                                      f"list builders with `docker buildx ls` (--builder / {ENV_BUILDER} names one)")
                name, driver, platforms = parse_buildx_inspect(done.stdout)
                errors = [ln.strip() for ln in done.stdout.splitlines() if ln.strip().startswith("Error:")]
                if not driver or errors:
                    raise EngineError(f"docker buildx inspect {self.name}: {'; '.join(errors) or 'no driver reported'}; "
                                      "is the engine at DOCKER_HOST running?")
                facts = self.engine.facts()
                self._check_same_engine(facts)
                self._caps = BuilderCaps(name=name or self.name or "default", driver=driver, platforms=platforms,
                                         engine=facts)
            return self._caps

    def _check_same_engine(self, facts: EngineFacts) -> None:
        """The docker CLI (this builder's environment) must reach the engine the tool inspects and exports from."""
        try:
            done = subprocess.run([self._docker(), "info", "--format", "{{.ID}}"], capture_output=True, text=True,
                                  env=self.env, timeout=60, stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineError(f"running docker info: {exc}") from exc
        cli_id = done.stdout.strip()
        if done.returncode != 0 or (facts.id and cli_id != facts.id):
            where = self.env.get("DOCKER_HOST", "the default socket")
            raise EngineError(f"the docker CLI at DOCKER_HOST={where} reaches another engine than the one this tool "
                              f"uses ({' '.join(done.stderr.split())[:200] or 'engine ' + cli_id[:12]}); give both "
                              "the same DOCKER_HOST")

    def warn_once(self, text: str, on_event: EventSink) -> None:
        with self._lock:
            first = text not in self._warned
            self._warned.add(text)
        if first:
            on_event(BuildEvent("warning", text=text))

    def build(self, spec: BuildSpec, on_event: EventSink) -> BuiltImage:
        caps = self.caps()
        _, cache_mode, warning = cache_args(spec.cache, caps)
        if warning:
            self.warn_once(warning, on_event)
        layout = ""
        if exports_layout(spec, caps):
            layout = spec.layout or str(new_layout_dir(layout_parent(self.env), spec.tag))
            for gone in remove_stale_layouts(Path(layout).parent):
                on_event(BuildEvent("note", text=f"removed {gone}, the OCI layout of a build whose process is gone"))
        try:
            reader, meta = self._buildx(spec, caps, on_event, layout=layout)
            if layout:
                return self._from_layout(spec, layout, meta, reader)
        except BaseException:
            if layout:
                remove_layout(layout)
            raise
        cache_image = cache_warning = ""
        failed_cache = reader.cache_export_failed()
        if failed_cache:
            cache_warning = f"registry cache {spec.cache.ref} not exported ({failed_cache}); the leg is fine, its next " \
                            "build runs without that cache"
            on_event(BuildEvent("warning", text=cache_warning))
        if cache_mode == "inline":
            try:  # every step is cached now: this only makes the image that carries the inline cache
                self._buildx(spec, caps, lambda ev: None, inline_cache=True)
                cache_image = inline_cache_tag(spec.tag)
            except EngineError as exc:
                cache_warning = f"inline cache image not made ({exc}); the leg is fine"
                on_event(BuildEvent("warning", text=cache_warning))
        info = self.engine.inspect(spec.tag)
        config = str(meta.get("containerimage.config.digest", "")) if isinstance(meta, dict) else ""
        return BuiltImage(ref=spec.tag, info=info, config_digest=config, steps=reader.steps(), cache=cache_mode,
                          cache_image=cache_image, cache_warning=cache_warning)

    def _from_layout(self, spec: BuildSpec, layout: str, meta: Any, reader: SolveStatusReader) -> BuiltImage:
        """The built image as the exported layout says (no engine image): its config, manifest digest."""
        try:
            image = read_layout_image(layout, platform=spec.platform)
        except LayoutError as exc:
            raise EngineError(f"building {spec.tag} for {spec.platform}: reading the exported OCI layout: {exc}") from exc
        reported = str(meta.get("containerimage.digest", "")) if isinstance(meta, dict) else ""
        if reported and image.manifest_digest and reported != image.manifest_digest:
            raise EngineError(f"building {spec.tag}: BuildKit reported manifest {reported}, but the layout at {layout} "
                              f"holds {image.manifest_digest}; build again")
        cache_warning = ""
        failed_cache = reader.cache_export_failed()
        if failed_cache:
            cache_warning = f"registry cache {spec.cache.ref} not exported ({failed_cache}); the leg is fine, its next " \
                            "build runs without that cache"
            self.warn_once(cache_warning, reader.on_event)
        os_, arch, variant = image.platform
        info = ImageInfo(id=image.manifest_digest or image.config_digest, os=os_, architecture=arch, variant=variant,
                         diff_ids=image.diff_ids, size=0, labels=image.labels)
        return BuiltImage(ref="", info=info, config_digest=image.config_digest, steps=reader.steps(),
                          cache=cache_args(spec.cache, self.caps())[1], cache_warning=cache_warning, layout=layout)

    def _buildx(self, spec: BuildSpec, caps: BuilderCaps, on_event: EventSink, *,
                inline_cache: bool = False, layout: str = "") -> tuple[SolveStatusReader, Any]:
        """One ``docker buildx build``: its solve status and its metadata; EngineError on failure."""
        with tempfile.TemporaryDirectory(prefix="localai-ci-build-") as tmp:
            meta_path = os.path.join(tmp, "metadata.json")
            args = buildx_command(spec, caps, meta_path, self._docker(), inline_cache=inline_cache, layout=layout)
            reader = SolveStatusReader(on_event)
            env = dict(self.env)
            env["BUILDX_NO_DEFAULT_ATTESTATIONS"] = "1"
            rc = _run(args, env, reader)
            if rc != 0:
                text = reader.failure()
                raise EngineError(f"building {spec.tag} for {spec.platform}: {text}{_hint(text)}")
            try:
                with open(meta_path, encoding="utf-8") as fh:
                    return reader, json.load(fh)
            except (OSError, ValueError) as exc:
                raise EngineError(f"building {spec.tag}: buildx wrote no build result ({exc}); "
                                  "is the buildx plugin 0.10 or newer?") from exc


def _run(args: Sequence[str], env: Mapping[str, str], reader: SolveStatusReader) -> int:
    """Run buildx, feeding its stderr to ``reader`` as it arrives; its exit status."""
    try:
        proc = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=dict(env))
    except OSError as exc:
        raise EngineError(f"starting docker buildx build: {exc}") from exc
    assert proc.stderr is not None
    err: IO[bytes] = proc.stderr
    try:
        with err:
            while chunk := err.read1(1 << 16):  # type: ignore[attr-defined]
                reader.feed(chunk.decode("utf-8", "replace"))
    finally:
        reader.close()
        rc = proc.wait()
    return rc


def builder_for(engine: Engine, env: Mapping[str, str] | None = None, name: str = "") -> Builder:
    """The builder this tool uses: ``docker buildx build`` on ``name`` (``--builder``/CI_BUILDER, else buildx's current)."""
    return BuildxBuilder(engine, env, name=name)


_BUILDER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_builder_name(name: str, source: str = "--builder") -> str:
    """A buildx builder instance name ('' for buildx's current one); UserError naming ``source`` for anything
    else: a name starts with a letter or digit (one starting with '-' would be an option of
    ``docker buildx``) and has ASCII letters, digits, '-', '_' and '.' only."""
    if name and (len(name) > 128 or not _BUILDER_NAME.match(name)):
        raise UserError(f"{source} {name!r}: a buildx builder name starts with a letter or digit and has letters, "
                        "digits, '-', '_' and '.' only (see `docker buildx ls`)")
    return name


def builder_name(option: str | None, env: Mapping[str, str]) -> str:
    """The builder to build with: ``--builder``, else ``CI_BUILDER``, else '' (buildx's current), checked
    whichever it comes from (:func:`check_builder_name`)."""
    if option:
        return check_builder_name(option, "--builder")
    return check_builder_name(env.get(ENV_BUILDER, ""), ENV_BUILDER)
