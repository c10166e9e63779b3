"""How every verb gets a registry client (adapter): credentials from a :class:`Keychain`, the
transport from the family's plain-HTTP policy, made by one :class:`RegistryClients` factory.

- A :class:`Keychain` resolves each registry's credentials once per run and hands out typed
  :class:`ci.registry.Credentials`: the explicit login (``--username``/``--password-stdin``) for
  the one registry it was given for (:func:`login_registry`: a Quay robot password must never
  reach Docker Hub's token service), else the Docker config and its credential helpers. A
  registry the run only uses on a best-effort basis (the build cache) is anonymous when its
  lookup fails; any other lookup failure is an error, raised where the keychain is filled
  (:meth:`Keychain.resolve`, before anything is built).
- A :data:`ClientFactory` is ``factory(image, plain_http) -> RegistryClient``: ``plain_http(host)``
  says whether a host is reached over plain HTTP (the registry itself, and any redirect target
  or upload ``Location``: ``ci.families.FamilyConfig.plain_http``). Publishing, merging,
  inspecting, auditing, signing and the pipeline all take one; tests pass their own to count
  clients or set a retry policy.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from ..errors import CiError, UserError
from .reference import DOCKER_HUB, DOCKER_HUB_API, ImageName
from .registry import Credentials, RegistryClient, RetryPolicy, credentials_for

PlainHttp = Callable[[str], bool]
Lookup = Callable[[str], "Credentials | None"]


class ClientFactory(Protocol):
    def __call__(self, image: ImageName, plain_http: PlainHttp) -> RegistryClient: ...


class Keychain:
    """Each registry's credentials, looked up once (thread-safe). See the module docstring."""

    def __init__(self, explicit: Mapping[str, Credentials | None] | None = None, *, best_effort: Iterable[str] = (),
                 lookup: Lookup | None = None) -> None:
        """``lookup``: how a registry's credentials are found (default: :func:`ci.registry.credentials_for`,
        the Docker config and its credential helpers)."""
        self._known: dict[str, Credentials | None] = dict(explicit or {})
        self._best_effort = frozenset(best_effort)
        self._lookup: Lookup = lookup or (lambda registry: credentials_for(registry))
        self._lock = threading.Lock()

    @classmethod
    def anonymous(cls) -> Keychain:
        """No credentials anywhere (registries this process started on loopback)."""
        return cls(lookup=lambda registry: None)

    def get(self, registry: str) -> Credentials | None:
        with self._lock:
            if registry in self._known:
                return self._known[registry]
        try:
            found = self._lookup(registry)
        except CiError:
            if registry not in self._best_effort:
                raise
            found = None
        with self._lock:
            return self._known.setdefault(registry, found)

    def resolve(self, registries: Iterable[str]) -> Keychain:
        """Look every registry up now (a broken credential helper fails the plan, not a push); self."""
        for r in registries:
            self.get(r)
        return self

    def has(self, registry: str) -> bool:
        """Whether ``registry`` has credentials (a pull request pushes to the PR image only then)."""
        return self.get(registry) is not None


def login_registry(registries: Sequence[str], *, explicit: bool, named: str | None) -> str | None:
    """The registry an explicit ``--username``/``--password-stdin`` applies to (None: none given).

    Explicit credentials go to one registry only: a Quay robot password sent to Docker Hub's
    token service would leak it. With one registry it is implied; with several it must be named
    (``--login-registry``)."""
    where = ", ".join(registries)
    if named is not None:
        host = named.strip()
        host = DOCKER_HUB if host in (DOCKER_HUB_API, "index.docker.io") else host
        if host not in registries:
            raise UserError(f"--login-registry {named!r}: this leg publishes to {where} only; name one of those")
        if not explicit:
            raise UserError("--login-registry names the registry --username/--password-stdin log in to; give them "
                            "too, or drop it to use the Docker config / credential helpers everywhere")
        return host
    if not explicit or len(registries) == 1:
        return registries[0] if explicit else None
    raise UserError(f"--username/--password-stdin: this leg publishes to {len(registries)} registries ({where}) "
                    "and one password must not be sent to the others; add --login-registry HOST to say which "
                    "registry it is for (the others use the Docker config / credential helpers: "
                    "docker login HOST)")


def login_keychain(registries: Sequence[str], *, username: str | None, password: str | None,
                   named: str | None, best_effort: Iterable[str] = ()) -> Keychain:
    """The keychain of a run that publishes to ``registries``: the explicit login for the registry
    :func:`login_registry` picks, the Docker config for every other; all looked up now."""
    explicit = username is not None or password is not None
    login = login_registry(registries, explicit=explicit, named=named)
    given = {login: credentials_for(login, username=username, password=password)} if login else {}
    return Keychain(given, best_effort=best_effort).resolve(registries)


class RegistryClients:
    """The :data:`ClientFactory` of this project: real :class:`ci.registry.RegistryClient`s with the
    keychain's credentials. ``on_retry`` hears every retried request; ``retry`` is the policy."""

    def __init__(self, keychain: Keychain | None = None, *, on_retry: Callable[[str], None] | None = None,
                 retry: RetryPolicy = RetryPolicy()) -> None:
        self.keychain = keychain if keychain is not None else Keychain()
        self.on_retry = on_retry
        self.retry = retry

    def __call__(self, image: ImageName, plain_http: PlainHttp) -> RegistryClient:
        return RegistryClient(image, plain_http=plain_http(image.registry), credentials=self.keychain.get(image.registry),
                              plain_http_policy=plain_http, on_retry=self.on_retry, retry=self.retry)

    def retrying(self, on_retry: Callable[[str], None] | None) -> RegistryClients:
        """The same keychain and policy, another retry listener."""
        return RegistryClients(self.keychain, on_retry=on_retry, retry=self.retry)
