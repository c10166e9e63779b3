"""Quay's REST API, for what its registry API refuses (adapter): deleting a tag.

Quay deletes manifests by digest through the registry API, never a tag alone (``DELETE
/v2/<repo>/manifests/<tag>`` answers 405); its REST API does, with an OAuth token:
``DELETE https://<host>/api/v1/repository/<namespace>/<repo>/tag/<tag>``. The merge deletes its
keepalive anchors this way (LocalAI's ``cleanup-keepalive-tags.sh``); without a token the anchors
stay in the cache repository until its retention removes them.

Which registries speak it: ``quay.io`` and the hosts in ``CI_QUAY_REGISTRIES`` (comma list: a
self-hosted Quay, or a test's stand-in). The token: ``QUAY_TOKEN`` (the secret LocalAI's workflows
already have). It is sent only to those hosts, over HTTPS unless the host is one the plain-HTTP
policy allows (loopback), and registered for redaction.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import requests

from ..redaction import register_secret
from .reference import ImageName, parse_tag, registry_set

ENV_TOKEN = "QUAY_TOKEN"
ENV_REGISTRIES = "CI_QUAY_REGISTRIES"
DEFAULT_REGISTRIES = frozenset({"quay.io"})
TIMEOUT = 30.0


@dataclass(frozen=True)
class QuayApi:
    """The REST API of the Quay registries an environment names, with its token ('' for none)."""

    registries: frozenset[str]
    token: str = ""

    def speaks(self, registry: str) -> bool:
        return registry in self.registries

    def delete_tag(self, image: ImageName, tag: str, *, plain_http: Callable[[str], bool]) -> tuple[bool, str]:
        """(deleted, why not): one DELETE of ``image:tag`` through the REST API. A tag already gone counts
        as deleted. Never raises for the registry's answer: the caller reports it and goes on."""
        parse_tag(tag)
        if not self.token:
            return False, f"no {ENV_TOKEN} for {image.registry}'s REST API (Quay deletes tags only through it)"
        scheme = "http" if plain_http(image.registry) else "https"
        url = (f"{scheme}://{image.api_host}/api/v1/repository/{quote(image.repository, safe='/')}/tag/"
               f"{quote(tag, safe='')}")
        try:
            r = requests.delete(url, headers={"Authorization": f"Bearer {self.token}"}, timeout=TIMEOUT,
                                allow_redirects=False)
        except requests.RequestException as exc:
            return False, f"{image.registry}'s REST API: {type(exc).__name__}"
        if r.status_code in (200, 202, 204, 404):
            return True, ""
        if r.status_code in (401, 403):
            return False, (f"{image.registry}'s REST API refused {ENV_TOKEN} (HTTP {r.status_code}): it needs an "
                           "OAuth token with write access to the repository")
        return False, f"{image.registry}'s REST API answered HTTP {r.status_code}"


def quay_api(env: Mapping[str, str]) -> QuayApi:
    """The Quay REST API the environment names (``CI_QUAY_REGISTRIES``, ``QUAY_TOKEN``)."""
    token = env.get(ENV_TOKEN, "").strip()
    register_secret(token)
    extra = registry_set(env.get(ENV_REGISTRIES, ""))
    return QuayApi(registries=DEFAULT_REGISTRIES | extra, token=token)
