"""Docker engine adapter (Docker SDK): build with a streamed log, inspect, export, pull (registry cache).

The only module that talks to the engine for builds. The client is injected
(:class:`Engine` wraps a ``docker.DockerClient``); :func:`connect` makes one from
the environment (``DOCKER_HOST`` etc.). Engine failures become :class:`EngineError`
with what failed and what to do next.

Builds use the classic builder (``APIClient.build``, what the Docker SDK drives):
it builds the base image's architecture, requires the base to match ``platform``,
and may reuse a cached ``FROM scratch`` step of another architecture. Callers must
check the result with :func:`check_platform`.
"""
from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
import urllib3

from ci.errors import EngineError
from ci.platforms import Platform, RunnerPolicy, parse_platform, same_platform

LOG_TAIL_LINES = 40
MAX_LOG_LINES = 200_000
EXPORT_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageInfo:
    """What this project needs from ``docker image inspect``."""

    id: str  # sha256:<hex> = digest of the image config bytes
    os: str
    architecture: str
    variant: str
    diff_ids: tuple[str, ...]
    size: int
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def platform_text(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


@dataclass(frozen=True)
class BuildOutput:
    image_id: str
    log: tuple[str, ...] = field(repr=False)


def connect(env: Mapping[str, str] | None = None, timeout: int = 600) -> Engine:
    """An :class:`Engine` for the engine named by ``DOCKER_HOST`` (default: the local socket)."""
    import docker
    import docker.errors

    try:
        client = docker.from_env(environment=dict(env) if env is not None else None, timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        host = (env or {}).get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EngineError(f"cannot reach the Docker engine at {host}: {_short(exc)}; start dockerd or set "
                          "DOCKER_HOST to a running engine") from None
    return Engine(client)


def _short(exc: BaseException | str, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "..."


class _ChunkStream(io.RawIOBase):
    """A read-only file over an iterator of byte chunks (``docker save`` stream)."""

    def __init__(self, chunks: Iterator[bytes], on_close: Callable[[], None] = lambda: None) -> None:
        self._it = chunks
        self._buf = memoryview(b"")
        self._on_close = on_close

    def close(self) -> None:
        if not self.closed:
            self._on_close()  # release the HTTP response (and its socket), read to the end or not
        super().close()

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = memoryview(next(self._it))
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class Engine:
    """Build, inspect and export images through a Docker SDK client."""

    def __init__(self, client: Any) -> None:
        self.client = client  # docker.DockerClient
        self.api = client.api  # docker.APIClient

    def host_arch(self) -> str:
        """The engine's architecture as in image configs (``amd64``, ``arm64``)."""
        from ci.platforms import host_arch

        try:
            return str(host_arch(str(self.api.version().get("Arch", ""))))
        except Exception as exc:  # APIError, ValueError
            raise EngineError(f"asking the engine for its architecture: {_short(exc)}") from None

    def build(self, *, path: str, dockerfile: str, buildargs: Mapping[str, str], platform: str,
              labels: Mapping[str, str], tag: str | None = None,
              on_line: Callable[[str], None] | None = None, cache_from: Sequence[str] = ()) -> BuildOutput:
        """Build ``path`` with the classic builder, streaming the log to ``on_line``.

        ``cache_from``: images (already in the engine) whose steps may be reused. With it the
        classic builder reuses local steps only when they are ancestors of one of these images,
        so give it only images that exist. On failure the EngineError carries the log tail.
        """
        import docker.errors

        log: deque[str] = deque(maxlen=MAX_LOG_LINES)
        image_id = ""
        partial = ""

        def line(text: str) -> None:
            log.append(text)
            if on_line:
                on_line(text)

        try:
            stream = self.api.build(path=path, dockerfile=dockerfile, buildargs=dict(buildargs),
                                    platform=platform, labels=dict(labels), tag=tag, rm=True,
                                    forcerm=True, pull=False, decode=True, cache_from=list(cache_from) or None)
            for ev in stream:
                if "stream" in ev:
                    partial += str(ev["stream"])
                    *done, partial = partial.split("\n")
                    for d in done:
                        if d.strip():
                            line(d.rstrip())
                if "aux" in ev and isinstance(ev["aux"], dict) and "ID" in ev["aux"]:
                    image_id = str(ev["aux"]["ID"])
                if "error" in ev or "errorDetail" in ev:
                    detail = ev.get("error") or (ev.get("errorDetail") or {}).get("message", "")
                    if partial.strip():
                        line(partial.rstrip())
                    _drain(stream)  # the error is the last event; reading to the end releases the socket
                    raise EngineError(_build_failure(str(detail), log, platform))
                if "status" in ev and "stream" not in ev:
                    line(str(ev["status"]))
        except docker.errors.APIError as exc:
            raise EngineError(_build_failure(_short(exc.explanation or exc), log, platform)) from None
        except docker.errors.DockerException as exc:
            raise EngineError(_build_failure(_short(exc), log, platform)) from None
        except (OSError, TypeError) as exc:  # context not found, engine gone mid-build
            raise EngineError(_build_failure(_short(exc), log, platform)) from None
        except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException) as exc:
            # the engine went away mid-stream (dockerd stopped or crashed): no image, no digest file
            raise EngineError(_build_failure(
                f"lost the connection to the Docker engine ({_short(exc)}); is dockerd still running? "
                "restart it and retry", log, platform)) from None
        if partial.strip():
            line(partial.rstrip())
        if not image_id:
            raise EngineError(_build_failure("the engine finished without reporting an image id", log, platform))
        return BuildOutput(image_id=image_id, log=tuple(log))

    def inspect(self, image: str) -> ImageInfo:
        import docker.errors

        try:
            d = self.api.inspect_image(image)
        except docker.errors.ImageNotFound:
            raise EngineError(f"image {image} is not in the engine; build it first") from None
        except docker.errors.DockerException as exc:
            raise EngineError(f"inspecting image {image}: {_short(exc)}") from None
        labels = (d.get("Config") or {}).get("Labels") or {}
        return ImageInfo(
            id=str(d["Id"]), os=str(d.get("Os", "")), architecture=str(d.get("Architecture", "")),
            variant=str(d.get("Variant", "") or ""), diff_ids=tuple((d.get("RootFS") or {}).get("Layers") or ()),
            size=int(d.get("Size", 0)), labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())))

    def has_image(self, ref: str) -> bool:
        """True when the engine holds ``ref`` (a tag or an id)."""
        import docker.errors

        try:
            self.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.DockerException as exc:
            raise EngineError(f"looking up image {ref}: {_short(exc)}") from None
        return True

    def pull(self, repository: str, tag: str, *, platform: str | None = None, credentials: Any = None) -> None:
        """Pull ``repository:tag`` (``credentials``: ``ci.registry.Credentials`` or None, sent to the engine only).

        The engine decides the transport itself: loopback registries over plain HTTP, others over
        TLS unless its ``insecure-registries`` lists them. EngineError with the engine's reason.
        """
        import docker.errors

        auth = {"username": credentials.username, "password": credentials.password} if credentials else None
        ref = f"{repository}:{tag}"
        try:
            for ev in self.api.pull(repository, tag=tag, platform=platform, auth_config=auth, stream=True,
                                    decode=True):
                if isinstance(ev, dict) and ("error" in ev or "errorDetail" in ev):
                    detail = ev.get("error") or (ev.get("errorDetail") or {}).get("message", "")
                    raise EngineError(f"pulling {ref}: {_short(str(detail))}")
        except docker.errors.APIError as exc:
            raise EngineError(f"pulling {ref}: {_short(exc.explanation or exc)}") from None
        except docker.errors.DockerException as exc:
            raise EngineError(f"pulling {ref}: {_short(exc)}") from None
        except (OSError, urllib3.exceptions.HTTPError, requests.exceptions.RequestException) as exc:
            raise EngineError(f"pulling {ref}: lost the connection to the Docker engine ({_short(exc)})") from None

    def export(self, image: str) -> io.BufferedReader:
        """``docker save`` of one image as a streamed, read-only file (never held in memory)."""
        import docker.errors

        # APIClient.get_image returns a bare generator whose HTTP response cannot be closed when
        # the reader stops early (tar stream mode stops at the end-of-archive marker); the same
        # request is made here through the SDK's request helpers so the response can be closed.
        try:
            res = self.api._get(self.api._url("/images/{0}/get", image), stream=True)
            self.api._raise_for_status(res)
        except docker.errors.DockerException as exc:
            raise EngineError(f"exporting image {image}: {_short(exc)}") from None
        return io.BufferedReader(_ChunkStream(res.iter_content(EXPORT_CHUNK, False), res.close),
                                 buffer_size=EXPORT_CHUNK)

    def tag(self, image: str, repository: str, tag: str) -> None:
        import docker.errors

        try:
            self.api.tag(image, repository, tag)
        except docker.errors.DockerException as exc:
            raise EngineError(f"tagging {image} as {repository}:{tag}: {_short(exc)}") from None


def _drain(stream: Iterator[Any]) -> None:
    try:
        for _ in stream:
            pass
    except Exception:  # the engine went away: nothing left to release
        pass


def _build_failure(detail: str, log: deque[str], platform: str) -> str:
    tail = list(log)[-LOG_TAIL_LINES:]
    hint = ""
    if "does not match the specified platform" in detail or "no matching manifest" in detail:
        hint = "\n" + _arch_advice(platform)
    return (f"build failed: {detail.strip()}{hint}\n--- last {len(tail)} lines of the build log ---\n"
            + "\n".join(tail))


def _arch_advice(platform: str, runners: RunnerPolicy | None = None) -> str:
    policy = runners or RunnerPolicy()
    try:
        arch = parse_platform(platform).arch
        runner = policy.runner_for(arch)
    except ValueError:
        arch, runner = None, None
    where = f"a native {arch} runner" + (f" (runs-on: {runner})" if runner else "")
    return ("The classic builder driven by the Docker SDK builds the base image's architecture and ignores "
            "`platform` for FROM scratch (a cached step of another architecture may be reused); it does not "
            f"emulate. Run this leg on {where}, or load a {platform} base image into the engine.")


def check_platform(info: ImageInfo, expected: Platform, what: str, runners: RunnerPolicy | None = None) -> None:
    """EngineError when the built image's os/architecture(/variant) is not the leg's platform.

    Compared after :func:`ci.platforms.normalize`: an ``arm64/v8`` image (what real arm64 bases
    record) is a ``linux/arm64`` leg's platform."""
    found = info.platform_text
    try:
        built = parse_platform(found)
    except ValueError:
        built = None  # an architecture this project does not know: never the leg's
    if built is not None and same_platform(built, expected):  # arm64/v8 is arm64
        return
    raise EngineError(
        f"{what}: the built image {info.id[:19]} is {found}, but the leg's platform is {expected}. "
        + _arch_advice(str(expected), runners))
