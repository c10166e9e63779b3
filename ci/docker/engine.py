"""Docker engine adapter (Docker SDK): facts (version, image store, bridge), inspect, export, pull, tag.

The client is injected (:class:`Engine` wraps a ``docker.DockerClient``); :func:`connect`
makes one from the environment (``DOCKER_HOST`` etc.). Engine failures become
:class:`EngineError` with what failed and what to do next.

Builds are not here: the Docker SDK drives only the classic builder (no BuildKit, see
``ci/builder.py``), so building is the builder module's job and this module keeps what the
SDK does well. :func:`check_platform` verifies a built image's architecture.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests
import urllib3

from ..errors import EngineError
from ..oci.platforms import Platform, RunnerPolicy, host_arch, parse_platform, same_platform

EXPORT_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageInfo:
    """What this project needs from ``docker image inspect``."""

    # sha256:<hex>: the digest of the image config on the classic image store, but of the image's
    # manifest (or index) on the containerd image store: never assume it names the config
    id: str
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
class EngineFacts:
    """What the builder needs to know about the engine (``docker version`` / ``docker info``)."""

    version: str  # e.g. 26.1.5+dfsg1
    api_version: str
    arch: str  # amd64, arm64 (as in image configs)
    image_store: str  # IMAGE_STORE_CLASSIC or IMAGE_STORE_CONTAINERD
    has_bridge: bool  # False: dockerd runs with --bridge none; builds need the host network
    id: str = ""  # the daemon's ID (docker info), to tell engines apart
    root_dir: str = ""  # DockerRootDir (on the engine's machine)
    storage_driver: str = ""  # Driver (docker info): overlay2, overlayfs, ...

    @property
    def containerd_store(self) -> bool:
        return self.image_store == IMAGE_STORE_CONTAINERD

    def describe(self) -> str:
        return f"Docker Engine {self.version} ({self.image_store} image store, {self.arch})"


IMAGE_STORE_CLASSIC = "classic"
IMAGE_STORE_CONTAINERD = "containerd"


def connect(env: Mapping[str, str] | None = None, timeout: int = 600) -> Engine:
    """An :class:`Engine` for the engine named by ``DOCKER_HOST`` (default: the local socket)."""
    try:
        client = docker.from_env(environment=dict(env) if env is not None else None, timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        host = (env or {}).get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise EngineError(f"cannot reach the Docker engine at {host}: {_short(exc)}; start dockerd or set "
                          "DOCKER_HOST to a running engine") from exc
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
            except urllib3.exceptions.HTTPError as exc:  # requests' own errors already are OSErrors
                raise OSError(f"reading from the Docker engine: {_short(exc)}") from exc
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class Engine:
    """Facts, inspect, export, pull and tag through a Docker SDK client (builds: ``ci/builder.py``)."""

    def __init__(self, client: Any) -> None:
        self.client = client  # docker.DockerClient
        self.api = client.api  # docker.APIClient

    def host_arch(self) -> str:
        """The engine's architecture as in image configs (``amd64``, ``arm64``)."""
        return self.facts().arch

    def facts(self) -> EngineFacts:
        """Version, architecture, image store and bridge network of the engine (asked once per call)."""
        try:
            version = self.api.version()
            info = self.api.info()
            bridge = any(n.get("Name") == "bridge" for n in self.api.networks(names=["bridge"]))  # the filter is a substring match
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise EngineError(f"asking the engine for its version and image store: {_short(exc)}") from exc
        status = dict((str(k), str(v)) for k, v in (info.get("DriverStatus") or []) if isinstance(k, str))
        containerd = "containerd" in status.get("driver-type", "") or "snapshotter" in status.get("driver-type", "")
        try:
            arch = str(host_arch(str(version.get("Arch", ""))))
        except ValueError:
            arch = str(version.get("Arch", ""))
        return EngineFacts(version=str(version.get("Version", "")), api_version=str(version.get("ApiVersion", "")),
                           arch=arch, image_store=IMAGE_STORE_CONTAINERD if containerd else IMAGE_STORE_CLASSIC,
                           has_bridge=bridge, id=str(info.get("ID", "")), root_dir=str(info.get("DockerRootDir", "")),
                           storage_driver=str(info.get("Driver", "")))

    def content_store(self, env: Mapping[str, str]) -> list[str]:
        """Directories that may hold the containerd image store's blobs (``blobs/sha256/<hex>``), when the
        engine runs on this machine (a unix socket): dockerd's own containerd under DockerRootDir, else the
        system containerd's. Empty for a remote engine or the classic store. Only a place to look: the
        caller checks every blob it reads there."""
        host = env.get("DOCKER_HOST", "")
        if host and not host.startswith("unix://"):
            return []
        facts = self.facts()
        if not facts.containerd_store:
            return []
        dirs = [f"{facts.root_dir}/containerd/daemon/io.containerd.content.v1.content"] if facts.root_dir else []
        return dirs + ["/var/lib/containerd/io.containerd.content.v1.content"]

    def config_store(self, env: Mapping[str, str]) -> list[str]:
        """Directories that may hold the classic image store's image configs (``sha256/<hex>``, the image id
        being the config's digest), when the engine runs on this machine and this process may read them
        (root; a hosted runner's user may not): the image database under DockerRootDir. Empty otherwise.
        Only a place to look: the caller checks every config it reads there against its digest."""
        host = env.get("DOCKER_HOST", "")
        if host and not host.startswith("unix://"):
            return []
        facts = self.facts()
        if facts.containerd_store or not facts.root_dir or not facts.storage_driver:
            return []
        d = f"{facts.root_dir}/image/{facts.storage_driver}/imagedb/content"
        return [d] if os.access(d, os.R_OK | os.X_OK) else []

    def inspect(self, image: str) -> ImageInfo:
        try:
            d = self.api.inspect_image(image)
        except docker.errors.ImageNotFound as exc:
            raise EngineError(f"image {image} is not in the engine; build it first") from exc
        except docker.errors.DockerException as exc:
            raise EngineError(f"inspecting image {image}: {_short(exc)}") from exc
        except (OSError, urllib3.exceptions.HTTPError, requests.exceptions.RequestException) as exc:
            raise EngineError(f"inspecting image {image}: lost the connection to the Docker engine "
                              f"({_short(exc)}); is dockerd still running?") from exc
        labels = (d.get("Config") or {}).get("Labels") or {}
        return ImageInfo(
            id=str(d["Id"]), os=str(d.get("Os", "")), architecture=str(d.get("Architecture", "")),
            variant=str(d.get("Variant", "") or ""), diff_ids=tuple((d.get("RootFS") or {}).get("Layers") or ()),
            size=int(d.get("Size", 0)), labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())))

    def has_image(self, ref: str) -> bool:
        """True when the engine holds ``ref`` (a tag or an id)."""
        try:
            self.api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.DockerException as exc:
            raise EngineError(f"looking up image {ref}: {_short(exc)}") from exc
        return True

    def pull(self, repository: str, tag: str, *, platform: str | None = None, credentials: Any = None) -> None:
        """Pull ``repository:tag`` (``credentials``: ``ci.registry.Credentials`` or None, sent to the engine only).

        The engine decides the transport itself: loopback registries over plain HTTP, others over
        TLS unless its ``insecure-registries`` lists them. EngineError with the engine's reason.
        """
        auth = {"username": credentials.username, "password": credentials.password} if credentials else None
        ref = f"{repository}:{tag}"
        try:
            for ev in self.api.pull(repository, tag=tag, platform=platform, auth_config=auth, stream=True,
                                    decode=True):
                if isinstance(ev, dict) and ("error" in ev or "errorDetail" in ev):
                    detail = ev.get("error") or (ev.get("errorDetail") or {}).get("message", "")
                    raise EngineError(f"pulling {ref}: {_short(str(detail))}")
        except docker.errors.APIError as exc:
            raise EngineError(f"pulling {ref}: {_short(exc.explanation or exc)}") from exc
        except docker.errors.DockerException as exc:
            raise EngineError(f"pulling {ref}: {_short(exc)}") from exc
        except (OSError, urllib3.exceptions.HTTPError, requests.exceptions.RequestException) as exc:
            raise EngineError(f"pulling {ref}: lost the connection to the Docker engine ({_short(exc)})") from exc

    def export(self, image: str) -> io.BufferedReader:
        """``docker save`` of one image as a streamed, read-only file (never held in memory).

        Docker < 25 writes a docker-archive; Docker >= 25 an OCI image layout (``index.json``,
        ``blobs/sha256/``) with uncompressed layers on the classic store and the stored compressed
        layers on the containerd store. Entry order is not fixed. Read errors are OSErrors.
        """
        # APIClient.get_image returns a bare generator whose HTTP response cannot be closed when
        # the reader stops early (tar stream mode stops at the end-of-archive marker); the same
        # request is made here through the SDK's request helpers so the response can be closed.
        try:
            res = self.api._get(self.api._url("/images/{0}/get", image), stream=True)
            try:
                self.api._raise_for_status(res)
            except BaseException:
                res.close()  # release the connection of a refused export
                raise
        except docker.errors.NotFound as exc:
            raise EngineError(f"exporting image {image}: it is no longer in the engine (removed or replaced "
                              "after it was inspected?); rebuild it and retry") from exc
        except docker.errors.DockerException as exc:
            raise EngineError(f"exporting image {image}: {_short(exc)}") from exc
        except (OSError, urllib3.exceptions.HTTPError, requests.exceptions.RequestException) as exc:
            raise EngineError(f"exporting image {image}: lost the connection to the Docker engine "
                              f"({_short(exc)}); is dockerd still running? retry") from exc
        return io.BufferedReader(_ChunkStream(res.iter_content(EXPORT_CHUNK, False), res.close),
                                 buffer_size=EXPORT_CHUNK)

    def tag(self, image: str, repository: str, tag: str) -> None:
        try:
            self.api.tag(image, repository, tag)
        except docker.errors.DockerException as exc:
            raise EngineError(f"tagging {image} as {repository}:{tag}: {_short(exc)}") from exc

    def untag(self, ref: str) -> None:
        """Remove the tag ``ref`` (``docker image rm REF``: the image goes with its last tag; layers
        other images use stay). A tag that is already gone is not an error."""
        try:
            self.api.remove_image(ref, noprune=False)
        except docker.errors.NotFound:
            return
        except docker.errors.DockerException as exc:
            raise EngineError(f"removing the tag {ref}: {_short(exc)}") from exc


def _arch_advice(platform: str, runners: RunnerPolicy | None = None) -> str:
    policy = runners or RunnerPolicy()
    try:
        arch = parse_platform(platform).arch
        runner = policy.runner_for(arch)
    except ValueError:
        arch, runner = None, None
    where = f"a native {arch} runner" + (f" (runs-on: {runner})" if runner else "")
    return ("BuildKit labels the image with the platform it was asked for; another architecture here means the "
            f"image did not come from this leg's BuildKit build for {platform} (a base or image of another "
            f"architecture used as it is, or a stale tag): rebuild it, or build this leg on {where}.")


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
