"""Offline base images (``ci-offline/...``): synthesized per architecture, with a busybox shell.

Nothing can be pulled here, and this repository's examples must build their arm64 legs on an
amd64 machine. So base images named ``ci-offline/<name>:<tag>`` are synthesized, byte for
byte deterministic: one layer (``/etc/os-release``, ``/README.ci-offline``, optionally an
incompressible ``/payload.bin`` for benchmarks and, when a static busybox of that architecture
is found, ``/bin/busybox`` with ``sh``, the usual applets and a ``bash`` that runs busybox's
ash), a config naming os/architecture/variant.

Two ways to hand them to a build:

- **BuildKit** (:class:`OfflineBases`): a multi-platform index (amd64 and arm64) pushed to a
  loopback registry and given to ``docker buildx build`` as a named context
  (``--build-context ci-offline/ubuntu:24.04=docker-image://127.0.0.1:P/ci-offline/ubuntu:24.04@sha256:...``):
  ``FROM ${BASE_IMAGE}`` and ``FROM --platform=$BUILDPLATFORM ${BASE_IMAGE}`` in one build get
  their own architecture, on the classic and the containerd image store alike (the classic
  store holds one architecture per tag, and BuildKit on it refuses ``oci-layout://`` contexts).
- **The engine** (:func:`ensure_base_image`): a single-architecture docker-archive ``docker load``-ed
  under the name, for tests and benchmarks that publish an image without building one.

Busybox comes from ``$CI_BUSYBOX_DIR`` (default ``~/.cache/localai-ci/busybox``): a
``busybox-<arch>`` binary or Debian's ``busybox-static_*_<arch>.deb`` (``.ci/install-system.sh``
downloads both architectures there), else (``CI_BUSYBOX_DIR`` unset) the host's own static
``/bin/busybox`` for its architecture; when none is found and ``apt-get`` exists, Debian's package is
downloaded there (``apt-get download``, no root for the machine's own architecture). Without one
the image has no shell: Dockerfiles on it may COPY but not RUN. With ``CI_BUSYBOX_DIR`` set, only that
directory is looked at.

Names not starting with :data:`OFFLINE_PREFIX` are real images, left to the engine and the builder.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import random
import shutil
import struct
import subprocess
import tarfile
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import CiError, EngineError, UserError
from ..oci.client import RegistryClients
from ..oci.keychain import Keychain
from ..oci.localregistry import start_registry
from ..oci.manifest import OCI_CONFIG, OCI_MANIFEST, Composed, Descriptor, compose_image_manifest, compose_index
from ..oci.platforms import Platform, parse_platform
from ..oci.reference import parse_image_name, parse_tag

OFFLINE_PREFIX = "ci-offline/"
EPOCH = "1970-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CHUNK = 1 << 20


def is_offline_base(name: str) -> bool:
    """True when ``name`` is a base image this module synthesizes (``ci-offline/...``)."""
    return name.startswith(OFFLINE_PREFIX)


def split_name(name: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag), ``latest`` when no tag; UserError for anything else."""
    last = name.rsplit("/", 1)[-1]
    repo, tag = (name.rsplit(":", 1) if ":" in last else (name, "latest"))
    try:
        parse_image_name(repo)
        parse_tag(tag)
    except ValueError as exc:
        raise UserError(f"base image name {name!r}: {exc}") from exc
    if "@" in name:
        raise UserError(f"base image name {name!r}: use a tag, not a digest")
    return repo, tag


def _tarinfo(path: str, size: int = 0, mode: int = 0o644, kind: bytes = tarfile.REGTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.size, info.mode, info.type = size, mode, kind
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


class _Payload:
    """``size`` deterministic incompressible bytes (seeded PRNG), read in chunks, never held whole."""

    def __init__(self, size: int, seed: str) -> None:
        self._left = size
        self._rng = random.Random(seed)

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        self._left -= n
        return self._rng.randbytes(n)


def _os_release(repo: str, tag: str, platform: Platform) -> bytes:
    distro = repo.rsplit("/", 1)[-1]
    return (f'PRETTY_NAME="ci-offline {distro} {tag} ({platform})"\n'
            f'NAME="ci-offline {distro}"\nID=ci-offline\nID_LIKE={distro}\nVERSION_ID="{tag}"\n').encode()


_README = (b"Synthesized offline base image (localai-ci, ci/baseimage.py).\n"
           b"No shell and no packages: Dockerfiles built on it may use COPY, ENV, LABEL and ARG only.\n")
_README_SHELL = (b"Synthesized offline base image (localai-ci, ci/baseimage.py).\n"
                 b"A static busybox provides /bin/sh and the usual tools; /bin/bash runs busybox ash. No packages.\n")


_APPLETS = ("sh", "ash", "[", "awk", "base64", "basename", "cat", "chmod", "chown", "cmp", "cp", "cut", "date", "dd",
            "df", "diff", "dirname", "du", "echo", "env", "expr", "false", "find", "grep", "gunzip", "gzip", "head",
            "hexdump", "hostname", "id", "ln", "ls", "md5sum", "mkdir", "mktemp", "mv", "nproc", "od", "printf", "pwd",
            "readlink", "realpath", "rm", "rmdir", "sed", "seq", "sha256sum", "sleep", "sort", "stat", "tail", "tar",
            "tee", "test", "timeout", "touch", "tr", "true", "uname", "uniq", "wc", "which", "xargs", "yes")
_BASH = b"#!/bin/sh\n# ci-offline: busybox ash standing in for bash\nexec /bin/sh \"$@\"\n"


def _write_layer(out: IO[bytes], repo: str, tag: str, platform: Platform, payload_bytes: int,
                 busybox: bytes | None = None) -> None:
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_tarinfo("etc/", mode=0o755, kind=tarfile.DIRTYPE))
        osr = _os_release(repo, tag, platform)
        tar.addfile(_tarinfo("etc/os-release", len(osr)), io.BytesIO(osr))
        readme = _README if busybox is None else _README_SHELL
        tar.addfile(_tarinfo("README.ci-offline", len(readme)), io.BytesIO(readme))
        if busybox is not None:
            for d in ("bin/", "root/", "usr/", "usr/bin/"):
                tar.addfile(_tarinfo(d, mode=0o755, kind=tarfile.DIRTYPE))
            tar.addfile(_tarinfo("tmp/", mode=0o1777, kind=tarfile.DIRTYPE))
            tar.addfile(_tarinfo("bin/busybox", len(busybox), mode=0o755), io.BytesIO(busybox))
            tar.addfile(_tarinfo("bin/bash", len(_BASH), mode=0o755), io.BytesIO(_BASH))
            for app in _APPLETS:
                link = _tarinfo(f"bin/{app}", mode=0o777, kind=tarfile.SYMTYPE)
                link.linkname = "busybox"
                tar.addfile(link)
            env = _tarinfo("usr/bin/env", mode=0o777, kind=tarfile.SYMTYPE)
            env.linkname = "/bin/busybox"
            tar.addfile(env)
        if payload_bytes:
            tar.addfile(_tarinfo("payload.bin", payload_bytes),
                        _Payload(payload_bytes, f"{repo}:{tag}|{platform}"))


def _sha256_file(f: IO[bytes]) -> str:
    f.seek(0)
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    f.seek(0)
    return h.hexdigest()


def image_config(name: str, platform: Platform, diff_id: str, shell: bool = False) -> bytes:
    """The image config JSON (canonical bytes; its digest is the image id)."""
    inner: dict[str, Any] = {"Env": [PATH_ENV], "Labels": {"org.opencontainers.image.base.name": name,
                                                            "org.localai-ci.offline-base": "true"}}
    if shell:
        inner["Cmd"] = ["/bin/sh"]
    cfg: dict[str, Any] = {
        "architecture": str(platform.arch),
        "os": platform.os,
        "config": inner,
        "created": EPOCH,
        "history": [{"created": EPOCH, "created_by": "ci.baseimage: synthesized offline base image"}],
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    if platform.variant:
        cfg["variant"] = platform.variant
    return json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()


def write_base_archive(out: IO[bytes], name: str, platform: Platform, payload_bytes: int = 0) -> str:
    """Write the docker-archive of base image ``name`` for ``platform`` to ``out``; return its image id
    (the config digest: the id on the classic image store)."""
    return _write_base_archive(out, name, platform, payload_bytes)[0]


def _write_base_archive(out: IO[bytes], name: str, platform: Platform, payload_bytes: int = 0) -> tuple[str, str]:
    """(config digest, layer diff_id) of the archive written to ``out``."""
    if payload_bytes < 0:
        raise UserError(f"payload_bytes must be >= 0, not {payload_bytes}")
    repo, tag = split_name(name)
    with tempfile.TemporaryFile() as layer:
        _write_layer(layer, repo, tag, platform, payload_bytes)
        layer_size = layer.tell()
        layer_hex = _sha256_file(layer)
        config = image_config(f"{repo}:{tag}", platform, f"sha256:{layer_hex}")
        config_hex = hashlib.sha256(config).hexdigest()
        manifest = json.dumps([{"Config": f"{config_hex}.json", "RepoTags": [f"{repo}:{tag}"],
                                "Layers": [f"{layer_hex}/layer.tar"]}], separators=(",", ":")).encode()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
            tar.addfile(_tarinfo(f"{layer_hex}/", mode=0o755, kind=tarfile.DIRTYPE))
            tar.addfile(_tarinfo(f"{layer_hex}/layer.tar", layer_size), layer)
            tar.addfile(_tarinfo(f"{config_hex}.json", len(config)), io.BytesIO(config))
            tar.addfile(_tarinfo("manifest.json", len(manifest)), io.BytesIO(manifest))
    return f"sha256:{config_hex}", f"sha256:{layer_hex}"


def ensure_base_image(client: Any, name: str, platform: Platform, payload_bytes: int = 0) -> str:
    """Make ``name`` (``ci-offline/...``) an offline base image of ``platform`` in the engine; return its id.

    Does nothing when ``name`` already points at the expected image. ``client`` is a
    Docker SDK client; ``payload_bytes`` adds an incompressible file of that size (benchmarks).
    The id is the engine's: the config digest on the classic image store, the digest of the
    manifest the engine made on the containerd image store; the image is recognized on both by
    its platform and its layer.
    """
    if not is_offline_base(name):
        raise UserError(
            f"base image {name!r} is a real image: pull or build it with the engine; only names starting "
            f"with {OFFLINE_PREFIX!r} are synthesized offline")
    repo, tag = split_name(name)
    ref = f"{repo}:{tag}"
    with tempfile.SpooledTemporaryFile(max_size=8 * _CHUNK) as archive:
        _, diff_id = _write_base_archive(archive, ref, platform, payload_bytes)
        previous = _image_id(client, ref)
        if previous and _is_the_base(client, ref, platform, diff_id):
            return previous
        archive.seek(0)
        try:
            client.images.load(archive.read() if payload_bytes < 8 * _CHUNK else archive)
        except Exception as exc:  # docker.errors.APIError and connection errors
            raise EngineError(f"loading offline base image {ref} ({platform}) into the engine: {exc}") from exc
    found = _image_id(client, ref)
    if found is None or not _is_the_base(client, ref, platform, diff_id):
        raise EngineError(f"loading offline base image {ref} ({platform}): the tag points at {found or 'nothing'}, "
                          f"not the image just loaded; is another process loading the same name for another arch?")
    if previous and previous != found:
        _drop_if_unused(client, previous)
    return found


def _is_the_base(client: Any, ref: str, platform: Platform, diff_id: str) -> bool:
    """``ref`` is the offline base of ``platform`` whose one layer is ``diff_id`` (both image stores)."""
    try:
        attrs = client.images.get(ref).attrs
    except Exception:  # docker.errors.ImageNotFound and connection errors
        return False
    return (attrs.get("Os") == platform.os and attrs.get("Architecture") == str(platform.arch)
            and (attrs.get("Variant") or "") == (platform.variant or "")
            and list((attrs.get("RootFS") or {}).get("Layers") or []) == [diff_id])


def _drop_if_unused(client: Any, image_id: str) -> None:
    """Remove a replaced offline base image that nothing uses any more (no tag, no child, no container)."""
    try:
        image = client.images.get(image_id)
        if image.tags or image.labels.get("org.localai-ci.offline-base") != "true":
            return
        client.images.remove(image_id, force=False, noprune=False)
    except Exception:  # in use (child image, container) or already gone: leave it to the engine
        pass


def _image_id(client: Any, ref: str) -> str | None:
    try:
        return str(client.images.get(ref).id)
    except Exception:  # docker.errors.ImageNotFound; keep the SDK out of the import graph
        return None


# ---- busybox ------------------------------------------------------------------------------------
ENV_BUSYBOX_DIR = "CI_BUSYBOX_DIR"
_ELF_MACHINES = {0x3E: "amd64", 0xB7: "arm64", 0x28: "arm", 0x15: "ppc64le", 0x16: "s390x", 0xF3: "riscv64",
                 0x03: "386"}
_HOST_BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")


def busybox_dir(env: Mapping[str, str]) -> Path:
    """``$CI_BUSYBOX_DIR``, else ``$XDG_CACHE_HOME/localai-ci/busybox`` (``~/.cache/...``)."""
    if env.get(ENV_BUSYBOX_DIR):
        return Path(env[ENV_BUSYBOX_DIR])
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "localai-ci" / "busybox"


def static_elf_arch(data: bytes) -> str | None:
    """The architecture of a statically linked little-endian ELF executable (no PT_INTERP), else None."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[5] != 1:
        return None
    is64 = data[4] == 2
    machine = struct.unpack_from("<H", data, 18)[0]
    if is64:
        phoff, phentsize, phnum = struct.unpack_from("<Q", data, 32)[0], *struct.unpack_from("<HH", data, 54)
    else:
        phoff, phentsize, phnum = struct.unpack_from("<I", data, 28)[0], *struct.unpack_from("<HH", data, 42)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 4 > len(data):
            return None
        if struct.unpack_from("<I", data, off)[0] == 3:  # PT_INTERP: dynamically linked
            return None
    return _ELF_MACHINES.get(machine)


def deb_member(deb: Path, member: str) -> bytes | None:
    """One file of a .deb (an ``ar`` archive holding ``data.tar.{xz,gz,bz2}``), or None."""
    with open(deb, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            return None
        while header := fh.read(60):
            if len(header) < 60:
                return None
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
            if name.startswith("data.tar"):
                with tarfile.open(fileobj=io.BytesIO(fh.read(size)), mode="r:*") as tar:
                    for m in tar:
                        if m.isfile() and m.name.lstrip("./") == member:
                            f = tar.extractfile(m)
                            return f.read() if f is not None else None
                return None
            fh.seek(size + (size & 1), 1)
    return None


_FETCHED: set[tuple[str, str]] = set()  # (directory, arch) apt-get download was tried for, once per process


def fetch_busybox_deb(arch: str, d: Path) -> None:
    """``apt-get download busybox-static:<arch>`` into ``d`` (Debian/Ubuntu: no root needed for the
    machine's own architecture; another one needs ``dpkg --add-architecture``). Best effort, once."""
    key = (str(d), arch)
    if key in _FETCHED or shutil.which("apt-get") is None:
        return
    _FETCHED.add(key)
    try:
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", "-qq", f"busybox-static:{arch}"], cwd=d, capture_output=True,
                       timeout=120, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass


def find_busybox(arch: str, env: Mapping[str, str]) -> bytes | None:
    """A static busybox for ``arch`` (see the module docstring for where it is looked for). With
    ``CI_BUSYBOX_DIR`` unset, Debian's package is downloaded into the default directory when none is
    found; with it set, only that directory counts."""
    d = busybox_dir(env)
    found = _find_busybox(arch, env, d)
    if found is None and not env.get(ENV_BUSYBOX_DIR):
        fetch_busybox_deb(arch, d)
        found = _find_busybox(arch, env, d)
    return found


def _find_busybox(arch: str, env: Mapping[str, str], d: Path) -> bytes | None:
    candidates: list[bytes] = []
    binary = d / f"busybox-{arch}"
    try:
        candidates.append(binary.read_bytes())
    except OSError:
        pass
    for deb in sorted(d.glob(f"busybox-static_*_{arch}.deb")) if d.is_dir() else []:
        try:
            data = deb_member(deb, "bin/busybox")
        except (OSError, ValueError, tarfile.TarError):
            data = None
        if data is not None:
            candidates.append(data)
            try:  # extracted once: the next lookup reads the binary
                binary.write_bytes(data)
            except OSError:
                pass
    for host in () if env.get(ENV_BUSYBOX_DIR) else _HOST_BUSYBOX:  # CI_BUSYBOX_DIR set: only there
        try:
            candidates.append(Path(host).read_bytes())
        except OSError:
            pass
    return next((c for c in candidates if static_elf_arch(c) == arch), None)


# ---- multi-platform images for BuildKit -----------------------------------------------------------
OFFLINE_PLATFORMS = ("linux/amd64", "linux/arm64")


@dataclass(frozen=True)
class OfflineImage:
    """A multi-platform offline base image: its index and every blob, in memory (a few MiB)."""

    name: str  # repo:tag as written in FROM
    index: Composed
    manifests: tuple[Composed, ...]
    blobs: tuple[tuple[str, bytes], ...] = field(repr=False)
    shells: tuple[str, ...]  # architectures that have a busybox shell


def offline_image(name: str, env: Mapping[str, str], platforms: Sequence[str] = OFFLINE_PLATFORMS) -> OfflineImage:
    """The deterministic multi-platform image for ``name`` (``ci-offline/...``): same inputs, same digest.

    Made once per process for a name, platforms and busybox directory (planning, the pipeline's input
    keys and serving all ask for it)."""
    if not is_offline_base(name):
        raise UserError(f"base image {name!r} is a real image; only names starting with {OFFLINE_PREFIX!r} are "
                        "synthesized offline")
    where = {k: env[k] for k in (ENV_BUSYBOX_DIR, "XDG_CACHE_HOME", "HOME") if env.get(k)}
    return _offline_image(name, tuple(platforms), tuple(sorted(where.items())))


@functools.lru_cache(maxsize=64)
def _offline_image(name: str, platforms: tuple[str, ...], where: tuple[tuple[str, str], ...]) -> OfflineImage:
    env = dict(where)
    repo, tag = split_name(name)
    blobs: dict[str, bytes] = {}
    children: list[tuple[Descriptor, Composed]] = []
    shells: list[str] = []
    for text in platforms:
        platform = parse_platform(text)
        busybox = find_busybox(str(platform.arch), env)
        if busybox is not None:
            shells.append(str(platform.arch))
        buf = io.BytesIO()
        _write_layer(buf, repo, tag, platform, 0, busybox)
        layer = buf.getvalue()
        layer_digest = "sha256:" + hashlib.sha256(layer).hexdigest()
        config = image_config(f"{repo}:{tag}", platform, layer_digest, shell=busybox is not None)
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        blobs[layer_digest], blobs[config_digest] = layer, config
        manifest = compose_image_manifest(Descriptor(OCI_CONFIG, config_digest, len(config)),
                                          [Descriptor(OCI_LAYER_TAR, layer_digest, len(layer))], OCI_MANIFEST)
        children.append((Descriptor(manifest.media_type, manifest.digest, manifest.size, platform=platform), manifest))
    index = compose_index([d for d, _ in children])
    return OfflineImage(f"{repo}:{tag}", index, tuple(m for _, m in children), tuple(blobs.items()), tuple(shells))


OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def push_offline_image(img: OfflineImage, client: Any, tag: str) -> None:
    """Push every blob and manifest of ``img`` with ``client`` (``ci.registry.RegistryClient``), then tag the index."""
    for digest, data in img.blobs:
        client.push_blob(digest, len(data), lambda data=data: io.BytesIO(data))
    for m in img.manifests:
        client.put_manifest(m.digest, m.body, m.media_type)
    client.put_manifest(tag, img.index.body, img.index.media_type)


class OfflineBases:
    """Serves ``ci-offline/`` bases to BuildKit from a loopback registry, as named build contexts.

    ``host``: a running loopback registry to push to (``invoke pipeline`` passes its embedded
    one); None starts a private one under ``root`` on first use (stopped by :meth:`close`).
    Each name is pushed once per process (blobs already there are skipped).
    """

    def __init__(self, env: Mapping[str, str], *, host: str | None = None, root: Path | None = None) -> None:
        self.env = dict(env)
        self.host = host
        self.root = root
        self._registry: Any = None
        self._tmp: Path | None = None  # a root this object made (removed by close())
        self._served: dict[str, str] = {}
        self._lock = threading.Lock()

    def _ensure_host(self) -> str:
        if self.host is None:
            root = self.root
            if root is None:
                root = self._tmp = Path(tempfile.mkdtemp(prefix="localai-ci-bases-"))
            self._registry = start_registry(root)
            self.host = str(self._registry.host)
        return self.host

    def context(self, name: str) -> str:
        """``docker-image://<host>/<repo>:<tag>@<index digest>`` for base ``name`` (pushed on first use)."""
        with self._lock:
            if name in self._served:
                return self._served[name]
            img = offline_image(name, self.env)
            host = self._ensure_host()
            repo, tag = split_name(name)
            target = parse_image_name(f"{host}/{repo}")
            try:
                with RegistryClients(Keychain.anonymous())(target, plain_http=lambda host: True) as client:
                    push_offline_image(img, client, tag)
            except CiError as exc:
                raise EngineError(f"serving offline base image {name} from {host}: {exc}") from exc
            ref = f"docker-image://{host}/{repo}:{tag}@{img.index.digest}"
            self._served[name] = ref
            return ref

    def contexts(self, names: Sequence[str]) -> tuple[tuple[str, str], ...]:
        """Named build contexts for every ``ci-offline/`` name among ``names``."""
        return tuple((n, self.context(n)) for n in dict.fromkeys(names) if is_offline_base(n))

    def close(self) -> None:
        if self._registry is not None:
            self._registry.stop()
            self._registry = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> OfflineBases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
