"""Image names, references, digests and tags as parsed types (pure).

Bad input is rejected with the expected shape and the value seen.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]{1,5})?$")
_IPV6_HOST = re.compile(r"^\[[0-9a-fA-F:]+\](?::[0-9]{1,5})?$")


def is_hex64(text: str) -> bool:
    return bool(_HEX64.match(text))


def parse_digest(text: str) -> str:
    """Validate ``sha256:<64 lowercase hex>`` and return it."""
    if not _DIGEST.match(text):
        raise ValueError(f"{text!r} is not a digest of the form sha256:<64 lowercase hex characters>")
    return text


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_tag(text: str) -> str:
    if not _TAG.match(text):
        raise ValueError(
            f"{text!r} is not a valid image tag (1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-')")
    return text


@dataclass(frozen=True, order=True)
class ImageName:
    """A repository in a registry, e.g. ``quay.io`` + ``go-skynet/local-ai``."""

    registry: str
    repository: str

    def __str__(self) -> str:
        if self.registry == DOCKER_HUB:
            return self.repository.removeprefix("library/") if self.repository.startswith("library/") else self.repository
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """Host to talk the distribution API to."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    def with_digest(self, digest: str) -> str:
        return f"{self}@{digest}"

    def with_tag(self, tag: str) -> str:
        return f"{self}:{tag}"


def mask_userinfo(text: str) -> str:
    """``text`` with anything before an ``@`` (other than a digest's) replaced by ``***``.

    ``user:password@host/repo`` -> ``***@host/repo`` (also with ``@sha256:...`` after it): what
    users paste from URLs must never be repeated in a message; ``repo@sha256:...`` stays as it is.
    """
    name, digest = text, ""
    head, sep, tail = text.rpartition("@")
    if sep and tail.startswith("sha256:"):
        name, digest = head, sep + tail
    if "@" in name:
        name = "***@" + name.rpartition("@")[2]
    return name + digest


def has_userinfo(text: str) -> bool:
    """An ``@`` other than the one before a digest (``user:password@host/...``)."""
    head, sep, tail = text.rpartition("@")
    return "@" in (head if sep and tail.startswith("sha256:") else text)


def parse_image_name(text: str) -> ImageName:
    """Parse a repository name without tag or digest (``[registry/]path``)."""
    raw = text.strip()
    if has_userinfo(raw):
        raise ValueError(f"{mask_userinfo(raw)!r} is not an image name: text before '@' (credentials?) is not "
                         "accepted in an image name; log in with `docker login` or --username/--password-stdin")
    if not raw or any(c.isspace() for c in raw) or "@" in raw:
        raise ValueError(f"{text!r} is not an image name (expected [registry/]repository, e.g. quay.io/org/repo)")
    parts = raw.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, path = first, parts[1:]
        if not (_HOST.match(registry) or _IPV6_HOST.match(registry)):
            raise ValueError(f"{text!r} has an invalid registry host {registry!r}")
        port = registry.rpartition("]")[2].rpartition(":")[2] if ":" in registry.rpartition("]")[2] else ""
        if port and not 1 <= int(port) <= 65535:
            raise ValueError(f"{text!r} has registry port {int(port)}, outside 1-65535")
    else:
        registry, path = DOCKER_HUB, parts
    if registry == DOCKER_HUB_API or registry == "index.docker.io":
        registry = DOCKER_HUB
    if ":" in path[-1]:
        raise ValueError(f"{text!r} carries a tag; give the repository only (e.g. {raw.rsplit(':', 1)[0]})")
    for comp in path:
        if not _COMPONENT.match(comp):
            raise ValueError(
                f"{text!r} has an invalid path component {comp!r} (lowercase letters, digits, '.', '_', '-')")
    repository = "/".join(path)
    if registry == DOCKER_HUB and len(path) == 1:
        repository = "library/" + repository
    if len(repository) > 255:
        raise ValueError(f"{text!r}: repository name longer than 255 characters")
    return ImageName(registry=registry, repository=repository)


def registry_hostname(registry: str) -> str:
    """The host part of ``host[:port]`` (brackets removed for IPv6)."""
    if registry.startswith("["):
        return registry[1:registry.index("]")]
    return registry.rsplit(":", 1)[0] if ":" in registry else registry


def is_loopback(registry: str) -> bool:
    host = registry_hostname(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uses_plain_http(registry: str, insecure: frozenset[str] | set[str] = frozenset(),
                    tls: frozenset[str] | set[str] = frozenset()) -> bool:
    """Plain HTTP only for loopback registries or ones named explicitly as insecure.

    ``tls`` names loopback registries that serve TLS (a local registry with its own certificate):
    they are reached over verified HTTPS like any other.
    """
    if registry in tls:
        return False
    return is_loopback(registry) or registry in insecure


def registry_set(text: str) -> frozenset[str]:
    """A comma-separated list of registries (``host[:port]``) from the environment."""
    return frozenset(t.strip() for t in text.split(",") if t.strip())
