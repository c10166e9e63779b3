"""Registry credentials (adapter): typed :class:`Credentials`, where they are found
(:func:`credentials_for`: an explicit login, else the Docker config and its credential helpers),
and the :class:`Keychain` of a run.

- A :class:`Keychain` resolves each registry's credentials once per run and hands out typed
  :class:`Credentials`: the explicit login (``--username``/``--password-stdin``) for
  the one registry it was given for (:func:`login_registry`: a Quay robot password must never
  reach Docker Hub's token service), else the Docker config and its credential helpers. A
  registry the run only uses on a best-effort basis (the build cache) is anonymous when its
  lookup fails; any other lookup failure is an error, raised where the keychain is filled
  (:meth:`Keychain.resolve`, before anything is built).
- Which host a credential may be sent to is not decided here: :mod:`ci.oci.auth` (the registry's
  own challenge and token realm) and :mod:`ci.oci.transport` (every request) keep it there.
  Clients are made with a keychain by :class:`ci.oci.client.RegistryClients`.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import docker.auth
import docker.errors

from ..errors import CiError, RegistryError, UserError
from ..redaction import register_secret, secret_forms
from .answers import first_line
from .reference import DOCKER_HUB, DOCKER_HUB_API

Lookup = Callable[[str], "Credentials | None"]


@dataclass(frozen=True)
class Credentials:
    """Registry login; the password never appears in repr/str."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        register_secret(*secret_forms(self.username, self.password))

    def __str__(self) -> str:
        return f"Credentials(username={self.username!r}, password=***)"


def credentials_for(registry: str, *, username: str | None = None, password: str | None = None,
                    config_dir: str | None = None) -> Credentials | None:
    """Credentials for ``registry``: explicit > Docker ``config.json`` ``auths`` > ``credHelpers``/``credsStore``.

    ``config_dir`` is a Docker config directory (default: ``$DOCKER_CONFIG`` or ``~/.docker``,
    resolved by the Docker SDK). Returns None for anonymous access. A half-given explicit
    pair (only username or only password) is a :class:`ci.errors.UserError`.
    """
    if username is not None or password is not None:
        if not username or password is None:
            raise UserError(f"credentials for {registry}: give both --username and --password-stdin "
                            "(or neither, to use the Docker config / credential helpers)")
        return Credentials(username, password)
    path = os.path.join(config_dir, "config.json") if config_dir else None
    try:
        cfg = docker.auth.load_config(config_path=path)
        entry = cfg.resolve_authconfig(registry)
    except (docker.errors.DockerException, OSError, ValueError) as exc:
        # helper failures: the message names the helper, never a secret (the cause, shown with --debug
        # only, is redacted like every other text)
        raise RegistryError(f"reading Docker credentials for {registry}: {type(exc).__name__}: "
                            f"{first_line(str(exc))}; run `docker login {registry}` or pass "
                            "--username/--password-stdin", registry=registry) from exc
    if not entry:
        return None
    user = entry.get("Username") or entry.get("username")
    secret = entry.get("Password") or entry.get("password")
    if not user or not secret:
        return None  # identity tokens (OAuth refresh) are not supported: anonymous
    return Credentials(str(user), str(secret))


class Keychain:
    """Each registry's credentials, looked up once (thread-safe). See the module docstring."""

    def __init__(self, explicit: Mapping[str, Credentials | None] | None = None, *, best_effort: Iterable[str] = (),
                 lookup: Lookup | None = None) -> None:
        """``lookup``: how a registry's credentials are found (default: :func:`credentials_for`,
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
