"""Image families and the registries they publish to: configuration, overridable (pure).

Every task takes ``--images`` (comma-separated repositories) to override the
defaults; the environment variables below do the same for CI and local runs.
The function takes ``env`` as a mapping instead of reading ``os.environ``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .errors import UserError
from .matrix.naming import Family
from .oci.reference import ImageName, is_loopback, parse_image_name, registry_set, uses_plain_http

DEFAULT_IMAGES: dict[Family, tuple[str, ...]] = {
    Family.BACKENDS: ("quay.io/go-skynet/local-ai-backends", "localai/localai-backends"),
    Family.SERVER: ("quay.io/go-skynet/local-ai", "localai/localai"),
}
DEFAULT_CACHE = "quay.io/go-skynet/ci-cache"
DEFAULT_PR_IMAGE = "quay.io/go-skynet/ci-tests"

ENV_IMAGES = {Family.BACKENDS: "CI_BACKEND_IMAGES", Family.SERVER: "CI_SERVER_IMAGES"}
ENV_CACHE = "CI_CACHE_IMAGE"
ENV_PR_IMAGE = "CI_PR_IMAGE"
ENV_INSECURE = "CI_INSECURE_REGISTRIES"
ENV_TLS = "CI_TLS_REGISTRIES"


@dataclass(frozen=True)
class FamilyConfig:
    """Where one image family is published."""

    family: Family
    images: tuple[ImageName, ...]
    cache: ImageName
    pr_image: ImageName
    insecure: frozenset[str] = frozenset()
    tls: frozenset[str] = frozenset()  # loopback registries that serve TLS

    @property
    def registries(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.registry for i in self.images))

    def plain_http(self, registry: str) -> bool:
        return uses_plain_http(registry, self.insecure, self.tls)


def _parse_list(text: str, what: str) -> tuple[ImageName, ...]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UserError(f"{what}: no image given; pass one or more repositories separated by commas")
    out: list[ImageName] = []
    for n in names:
        try:
            img = parse_image_name(n)
        except ValueError as exc:
            raise UserError(f"{what}: {exc}") from None
        if img in out:
            raise UserError(f"{what}: {n!r} is listed twice")
        out.append(img)
    return tuple(out)


def _parse_one(text: str, what: str) -> ImageName:
    try:
        return parse_image_name(text)
    except ValueError as exc:
        raise UserError(f"{what}: {exc}") from None


def family_config(family: Family, *, images: str | None = None, cache: str | None = None,
                  pr_image: str | None = None, insecure: str | None = None,
                  env: Mapping[str, str] | None = None) -> FamilyConfig:
    """Resolve a family's registries: flag, else environment, else LocalAI's defaults."""
    env = env or {}
    if images:
        imgs = _parse_list(images, "--images")
    elif env.get(ENV_IMAGES[family]):
        imgs = _parse_list(env[ENV_IMAGES[family]], ENV_IMAGES[family])
    else:
        imgs = _parse_list(",".join(DEFAULT_IMAGES[family]), "default images")
    cache_img = _parse_one(cache, "--cache-image") if cache else (
        _parse_one(env[ENV_CACHE], ENV_CACHE) if env.get(ENV_CACHE) else None)
    if cache_img is None:
        # local runs point images at loopback registries: keep the cache beside the first image
        first = imgs[0]
        cache_img = ImageName(first.registry, "ci-cache") if is_loopback(first.registry) else parse_image_name(DEFAULT_CACHE)
    pr_img = _parse_one(pr_image, "--pr-image") if pr_image else (
        _parse_one(env[ENV_PR_IMAGE], ENV_PR_IMAGE) if env.get(ENV_PR_IMAGE) else None)
    if pr_img is None:
        first = imgs[0]
        pr_img = ImageName(first.registry, "ci-tests") if is_loopback(first.registry) else parse_image_name(DEFAULT_PR_IMAGE)
    insec = registry_set(insecure if insecure is not None else env.get(ENV_INSECURE, ""))
    return FamilyConfig(family=family, images=imgs, cache=cache_img, pr_image=pr_img, insecure=insec,
                        tls=registry_set(env.get(ENV_TLS, "")))
