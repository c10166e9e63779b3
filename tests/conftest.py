"""Shared fixtures for every test module.

Real components only: a Docker engine and CNCF distribution registries on loopback.
``.ci/run`` starts both and exports ``DOCKER_HOST`` and ``CI_TEST_REGISTRIES``; without it,
the fixtures use ``docker.from_env()`` and start registries themselves.

Prerequisites, one rule (:func:`unavailable`, used by every fixture below and nowhere else): when
something a test needs is missing -- the engine, the registry binary, buildx, QEMU binfmt for arm64
``RUN`` steps, a static busybox for the offline bases, cosign, Go, the second image store -- the test is
*skipped* on a developer machine, with what to install, and *fails* when ``CI=true``, so CI never
silently skips. The one other skip is a comparison with LocalAI's real tree (``localai_tree``),
which runs only when a tree is named (``CI_TEST_LOCALAI_TREE``).

Nothing outside the repository is read (:func:`_guard_reads`): an ``open``/``listdir``/``scandir``/
``glob`` of a path beside the repository (a sibling directory or checkout) fails the test that made
it, unless a user named that path (``CI_TEST_LOCALAI_TREE``).

Fixtures
--------
``engine`` (session)
    ``docker.DockerClient`` from ``docker.from_env()``, pinged once; closed at the end.
``registries`` (session)
    Two :class:`localai_ci.oci.localregistry.LocalRegistry` ("quay" and "hub"). From
    ``CI_TEST_REGISTRIES=127.0.0.1:P1,127.0.0.1:P2`` when set (attached: shared, never
    stopped or killed by tests), else started in a temporary directory and stopped at the end.
    Use ``reg.host`` in references: ``f"{reg.host}/{unique}/app:tag"``.
``registry_factory`` (function)
    ``make() -> LocalRegistry``: a fresh registry of the test's own, in ``tmp_path``; stop,
    kill and restart it freely (fault tests). All are stopped at teardown.
``unique`` (function)
    A short lowercase string (``t`` + 10 hex) unique per test, valid in repository names and
    tags: use it in every repository, tag and image name so parallel runs never collide.
``base_image`` (function)
    ``make(name, arch_or_platform, payload_bytes=0, keep=False) -> image id``: an offline base
    image (:mod:`localai_ci.docker.offline_bases`) of ``amd64``/``arm64``/``linux/arm64``/a ``Platform``. ``name``
    gets the ``ci-offline/`` prefix when it lacks it. Tags it made are removed at teardown
    unless ``keep=True`` (use unique names; a shared name such as ``ci-offline/ubuntu:24.04``
    can be retagged to another arch by a parallel run).

``busybox`` (session)
    ``{"CI_BUSYBOX_DIR": DIR}``: a directory holding a static busybox for amd64 and arm64 (the
    offline bases' shell); merge it into a test's environment.
``qemu`` (session)
    Checks that the builder runs ``linux/arm64`` ``RUN`` steps (QEMU in binfmt_misc).
``cosign`` (session)
    The path of ``cosign``.
``go`` (session)
    The path of ``go`` (the Go toolchain change detection asks for module graphs); the tests run it
    against a file-based module proxy they write (``tests/support/goproxy.py``), never the network.
``localai_tree`` (session)
    :class:`tests.support.localai_ref.LocalAITree` named by ``CI_TEST_LOCALAI_TREE``; skips (also in CI) without it.

``imagetools`` (session)
    ``run(*args) -> CompletedProcess``: ``docker buildx imagetools ARGS`` (the independent peer
    tool; text, captured, not checked). ``inspect_raw(ref) -> dict`` and ``inspect_image(ref) ->
    dict`` (the config, via ``--format '{{json .Image}}'``) assert success. Same skip/fail rule
    when the docker CLI or its buildx plugin is missing.

``builder`` (session)
    :class:`localai_ci.docker.builder.BuildxBuilder` on the engine (``docker buildx build``, the builder every
    build of this project uses).
``bases`` (session)
    :class:`localai_ci.docker.offline_bases.OfflineBases` serving ``ci-offline/`` base images from the "quay" test registry.
``build_image`` (function)
    ``build(dockerfile_text, platform="linux/amd64", files={}, build_args={}, tag=None, cache=None,
    contexts_for=(), load=True) -> BuiltImage``: writes a context in ``tmp_path`` and builds it through the
    builder seam; ``ci-offline/`` names in ``contexts_for`` are served by ``bases``. ``load`` (default):
    the image goes into the engine even where the builder hands the publisher an OCI layout, because
    these tests read files out of it, export it or publish it from the engine; ``load=False`` keeps the
    builder's own hand-off (the layout is removed at teardown).

Markers: ``engine`` (needs the engine: added automatically to every test using the ``engine``
fixture, so ``nox -s tests`` can run them again on a second engine), ``registry`` (needs
registries), ``slow``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from localai_ci.docker.offline_bases import OFFLINE_PREFIX, ensure_base_image
from localai_ci.errors import OperationError
from localai_ci.oci.localregistry import LocalRegistry, find_registry_binary, start_registry, unix_socket_present
from localai_ci.oci.platforms import Arch, Platform, parse_platform
from tests.support.localai_ref import ENV_TREE, SKIP_REASON, LocalAITree, named_tree
from tests.support.paths import REPO

ENV_REGISTRIES = "CI_TEST_REGISTRIES"
ENV_ENGINES = "CI_TEST_ENGINES"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def unavailable(message: str) -> None:
    """Skip on a developer machine; fail under CI=true (CI must never silently skip)."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: this is a failure, not a skip; see .ci/run)", pytrace=False)
    pytest.skip(message)


# --- nothing beside the repository is read --------------------------------------------------------
_BESIDE = str(REPO.parent).rstrip(os.sep) + os.sep
_AUDITED = frozenset({"open", "os.listdir", "os.scandir", "glob.glob", "shutil.copytree", "os.chdir"})
#: every path beside the repository that was read, in order (a test that made one fails)
READS_BESIDE: list[str] = []


def beside_the_repository(path: object) -> str | None:
    """The absolute path when ``path`` lies beside the repository (under its parent directory, not
    in it) and nobody named it; None for the repository, system paths, temporary files (``tempfile``'s
    ``tmp*`` and pytest's ``pytest-of-*``, also when the checkout itself sits in the temporary
    directory), Python's own directories, hidden directories (``~/.cache``, ``~/.docker`` when the
    checkout sits in a home directory) and the LocalAI tree named by ``CI_TEST_LOCALAI_TREE``."""
    if isinstance(path, int) or path is None or REPO.parent == Path(REPO.anchor):
        return None
    try:
        full = os.path.abspath(os.fsdecode(path))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not full.startswith(_BESIDE):
        return None
    first = full[len(_BESIDE):].split(os.sep, 1)[0]
    if first == REPO.name or first.startswith((".", tempfile.template, "pytest-of-")):
        return None
    allowed = [tempfile.gettempdir(), sys.prefix, sys.base_prefix, sys.exec_prefix, os.environ.get(ENV_TREE, "")]
    allowed += [p for p in sys.path if p and not p.startswith(str(REPO))]
    for root in filter(None, allowed):
        root = os.path.abspath(root).rstrip(os.sep)
        if _BESIDE.startswith(root + os.sep):
            continue  # a directory holding the checkout (the checkout sits in /tmp): it allows nothing beside it
        if full == root or full.startswith(root + os.sep):
            return None
    return full


def _guard_reads(event: str, args: tuple[Any, ...]) -> None:
    if event not in _AUDITED or not args:
        return
    found = beside_the_repository(args[0])
    if found is not None:
        READS_BESIDE.append(found)
        raise RuntimeError(f"read outside the repository: {found}; tests, benches and the tool read only the "
                           f"repository and what a user names (a LocalAI tree: {ENV_TREE}=PATH)")


sys.addaudithook(_guard_reads)


@pytest.fixture(autouse=True)
def _no_read_beside_the_repository() -> Iterator[None]:
    """Fails the test that read a path beside the repository, even where the code swallowed the error."""
    before = len(READS_BESIDE)
    yield
    if len(READS_BESIDE) > before:
        pytest.fail(f"the test read outside the repository: {', '.join(READS_BESIDE[before:])}", pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that uses the engine carries the ``engine`` marker (``-m engine`` selects exactly those)."""
    for item in items:
        if "engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.engine)


def pytest_report_header(config: pytest.Config) -> str:
    """Which engine and image store the engine-backed tests run on (``.ci/run`` checks this line)."""
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not unix_socket_present(os.environ.get("DOCKER_HOST", "")):
        return f"engine under test: none at {where}"
    try:
        from localai_ci.docker.engine import connect

        eng = connect(dict(os.environ), timeout=20)
        try:
            return f"engine under test: {eng.facts().describe()} at {where}"
        finally:
            eng.client.close()
    except Exception as exc:  # EngineError, connection errors: the tests themselves report it
        return f"engine under test: unreachable at {where} ({exc})"


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    """The Docker engine at DOCKER_HOST (default socket otherwise)."""
    import docker

    where = os.environ.get("DOCKER_HOST", "")
    if not unix_socket_present(where):
        unavailable(f"no Docker engine socket at {where or 'unix:///var/run/docker.sock'}; "
                    "start dockerd (see .ci/run) or set DOCKER_HOST")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # DockerException, connection errors
        unavailable(f"no Docker engine reachable at {os.environ.get('DOCKER_HOST', 'the default socket')}: "
                    f"{exc}; start dockerd (see .ci/run) or set DOCKER_HOST")
        return
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRegistry, LocalRegistry]]:
    """Two loopback registries ("quay", "hub"): from CI_TEST_REGISTRIES or started here."""
    given = [h.strip() for h in os.environ.get(ENV_REGISTRIES, "").split(",") if h.strip()]
    if given:
        if len(given) != 2:
            pytest.fail(f"{ENV_REGISTRIES}={os.environ[ENV_REGISTRIES]!r}: expected two hosts "
                        "127.0.0.1:P1,127.0.0.1:P2", pytrace=False)
        try:
            attached = (LocalRegistry.attach(given[0]), LocalRegistry.attach(given[1]))
        except OperationError as exc:
            unavailable(f"{ENV_REGISTRIES}: {exc}")
            return
        yield attached
        return
    with registry_pair(tmp_path_factory.mktemp("registries"), "the test registries") as pair:
        yield pair


@contextmanager
def registry_pair(root: Path, what: str) -> Iterator[tuple[LocalRegistry, LocalRegistry]]:
    """Two registries ("quay", "hub") started under ``root`` and stopped on exit (``what`` names them in errors)."""
    if find_registry_binary() is None:
        unavailable("the docker-registry binary is not on PATH; apt-get install docker-registry (or run .ci/run)")
    started: list[LocalRegistry] = []
    try:
        for name in ("quay", "hub"):
            started.append(start_registry(root / name))
    except OperationError as exc:
        for reg in started:
            reg.stop()
        unavailable(f"cannot start {what}: {exc}")
    try:
        yield (started[0], started[1])
    finally:
        for reg in started:
            reg.stop()


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[[], LocalRegistry]]:
    """``make()`` starts a fresh registry owned by the test; all are stopped at teardown."""
    if find_registry_binary() is None:
        unavailable("the docker-registry binary is not on PATH; apt-get install docker-registry (or run .ci/run)")
    made: list[LocalRegistry] = []

    def make() -> LocalRegistry:
        reg = start_registry(tmp_path / f"registry-{len(made)}")
        made.append(reg)
        return reg

    try:
        yield make
    finally:
        for reg in made:
            reg.stop()


@pytest.fixture
def unique() -> str:
    """A short unique name fragment: lowercase, valid in repository names and tags."""
    return "t" + uuid.uuid4().hex[:10]


def as_platform(arch_or_platform: str | Arch | Platform) -> Platform:
    """``amd64`` / ``Arch.ARM64`` / ``linux/arm64`` / a Platform -> Platform."""
    if isinstance(arch_or_platform, Platform):
        return arch_or_platform
    text = str(arch_or_platform)
    return parse_platform(text if "/" in text else f"linux/{text}")


@pytest.fixture
def base_image(engine: Any) -> Iterator[Callable[..., str]]:
    """``make(name, arch_or_platform, payload_bytes=0, keep=False) -> image id`` (see module doc)."""
    made: list[str] = []

    def make(name: str, arch_or_platform: str | Arch | Platform, payload_bytes: int = 0,
             keep: bool = False) -> str:
        full = name if name.startswith(OFFLINE_PREFIX) else OFFLINE_PREFIX + name
        image_id = ensure_base_image(engine, full, as_platform(arch_or_platform), payload_bytes=payload_bytes)
        if not keep and full not in made:
            made.append(full)
        return image_id

    try:
        yield make
    finally:
        for full in made:
            try:
                engine.images.remove(full)
            except Exception:  # already gone, or still used by an image a test kept
                pass


class Imagetools:
    """``docker buildx imagetools`` as a peer tool for reading registries back."""

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "buildx", "imagetools", *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)

    def _json(self, *args: str) -> Any:
        done = self.run(*args)
        assert done.returncode == 0, f"docker buildx imagetools {' '.join(args)} failed: {done.stderr.strip()}"
        return json.loads(done.stdout)

    def inspect_raw(self, ref: str) -> Any:
        """The manifest (or list) exactly as the registry serves it."""
        return self._json("inspect", "--raw", ref)

    def inspect_image(self, ref: str) -> Any:
        """The image config (architecture, os, ...) of a single-platform reference."""
        return self._json("inspect", "--format", "{{json .Image}}", ref)


@pytest.fixture(scope="session")
def imagetools() -> Imagetools:
    """``docker buildx imagetools`` (see module doc)."""
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not on PATH; apt-get install docker.io (or run .ci/run)")
    probe = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, check=False)
    if probe.returncode != 0:
        unavailable("docker buildx is missing; .ci/install-system.sh installs docker-buildx from Debian trixie")
    return Imagetools()


@pytest.fixture(scope="session")
def builder(engine: Any) -> Any:
    """The project's builder (``docker buildx build``) on the engine under test."""
    from localai_ci.docker.builder import BuildxBuilder
    from localai_ci.docker.engine import Engine

    b = BuildxBuilder(Engine(engine), dict(os.environ))
    try:
        b.caps()
    except Exception as exc:  # EngineError: buildx missing
        unavailable(f"no buildx builder: {exc}")
    return b


@pytest.fixture(scope="session")
def bases(registries: tuple[LocalRegistry, LocalRegistry], busybox: dict[str, str]) -> Iterator[Any]:
    """Offline base images served from the "quay" test registry, with a busybox shell for both arches."""
    from localai_ci.docker.offline_bases import OfflineBases

    with OfflineBases({**os.environ, **busybox}, host=registries[0].host) as served:
        yield served


@pytest.fixture
def build_image(builder: Any, bases: Any, engine: Any, tmp_path: Path, unique: str) -> Iterator[Callable[..., Any]]:
    """``build(dockerfile_text, ...) -> localai_ci.docker.builder.BuiltImage`` (see the module doc); its tags are removed
    at teardown."""
    from localai_ci.docker.builder import BuildSpec, CacheSpec

    made: list[str] = []
    layouts: list[str] = []

    def build(dockerfile: str, platform: str = "linux/amd64", files: dict[str, bytes | str] | None = None,
              build_args: dict[str, str] | None = None, tag: str | None = None, cache: CacheSpec | None = None,
              contexts_for: tuple[str, ...] = (), events: list[Any] | None = None, target: str = "",
              load: bool = True) -> Any:
        ctx = tmp_path / f"ctx-{len(made)}"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(dockerfile)
        for rel, data in (files or {}).items():
            f = ctx / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data.encode() if isinstance(data, str) else data)
        ref = tag or f"localai-ci-test/{unique}:{len(made)}"
        made.append(ref)
        spec = BuildSpec(context=str(ctx), dockerfile=str(ctx / "Dockerfile"), platform=parse_platform(platform),
                         tag=ref, build_args=tuple((build_args or {}).items()), cache=cache or CacheSpec(),
                         contexts=bases.contexts(contexts_for), target=target, load=load)
        built = builder.build(spec, events.append if events is not None else (lambda ev: None))
        if built.layout:
            layouts.append(built.layout)
        return built

    try:
        yield build
    finally:
        for layout in layouts:
            shutil.rmtree(layout, ignore_errors=True)
        for ref in made:
            try:
                engine.images.remove(ref, force=True)
            except Exception:  # never built (a failed build), or already removed by the test
                pass


# --- prerequisites besides the engine and the registries (the same rule: unavailable()) --------------

@pytest.fixture(scope="session")
def busybox() -> dict[str, str]:
    """``{"CI_BUSYBOX_DIR": DIR}`` with a static busybox for amd64 and arm64 in DIR (the offline bases'
    shell). Looks only (never downloads): ``CI_BUSYBOX_DIR``, else the default cache directory."""
    from localai_ci.docker.offline_bases import ENV_BUSYBOX_DIR, busybox_dir, find_busybox

    env = {ENV_BUSYBOX_DIR: str(busybox_dir(os.environ))}
    missing = [arch for arch in ("amd64", "arm64") if find_busybox(arch, env) is None]
    if missing:
        unavailable(f"no static busybox for {' and '.join(missing)} in {env[ENV_BUSYBOX_DIR]} (the offline base "
                    f"images' shell): bash .ci/install-system.sh DIR downloads Debian's busybox-static for both "
                    f"(or `apt-get download busybox-static:amd64 busybox-static:arm64` there); set {ENV_BUSYBOX_DIR}=DIR")
    return env


@pytest.fixture(scope="session")
def qemu(builder: Any) -> None:
    """The builder runs ``linux/arm64`` RUN steps (QEMU user emulation registered in binfmt_misc)."""
    if not builder.caps().can_run(parse_platform("linux/arm64")):
        unavailable("the builder cannot run linux/arm64 RUN steps: apt-get install qemu-user-static, then "
                    "bash .ci/binfmt.sh (registers qemu-aarch64 in binfmt_misc; root)")


@pytest.fixture(scope="session")
def cosign() -> str:
    """The ``cosign`` binary."""
    found = shutil.which("cosign")
    if found is None:
        unavailable("cosign is not installed: apt-get install -t trixie cosign (Debian 13), or see sigstore's releases")
    return str(found)


@pytest.fixture(scope="session")
def go() -> str:
    """The ``go`` binary (Go >= 1.21: ``go list -json=FIELDS``, ``GOTOOLCHAIN``)."""
    found = shutil.which("go")
    if found is None:
        unavailable("go is not installed: apt-get install -t trixie golang-go (Debian 13's Go 1.24; "
                    "bash .ci/install-system.sh installs it)")
    return str(found)


@pytest.fixture(scope="session")
def localai_tree() -> LocalAITree:
    """LocalAI's real tree, when a user names one (``CI_TEST_LOCALAI_TREE``); skipped otherwise, in CI too."""
    try:
        tree = named_tree()
    except ValueError as exc:
        pytest.fail(str(exc), pytrace=False)
    if tree is None:
        pytest.skip(SKIP_REASON)
    return tree


def engines_under_test() -> list[str]:
    """The engines ``nox -s tests`` runs the engine-backed tests on (``CI_TEST_ENGINES``), else DOCKER_HOST's."""
    given = [h.strip() for h in os.environ.get(ENV_ENGINES, "").split(",") if h.strip()]
    return given or [os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")]
