"""The one way a registry client is made: the keychain's credentials, the family's transport."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from localai_ci.oci.client import RegistryClients
from localai_ci.oci.keychain import Credentials, Keychain, login_keychain
from localai_ci.errors import RegistryError, UserError
from localai_ci.settings import family_config
from localai_ci.matrix.naming import Family
from localai_ci.oci.reference import ImageName

ROBOT = Credentials("robot", "Quay-robot-pw-31")


class Lookups:
    """A credential lookup that counts what it is asked (the Docker config is never read)."""

    def __init__(self, found: dict[str, Credentials | None], broken: frozenset[str] = frozenset()) -> None:
        self.found, self.broken, self.asked = found, broken, []
        self._lock = threading.Lock()

    def __call__(self, registry: str) -> Credentials | None:
        with self._lock:
            self.asked.append(registry)
        if registry in self.broken:
            raise RegistryError(f"reading Docker credentials for {registry}: helper crashed", registry=registry)
        return self.found.get(registry)


def test_each_registry_is_looked_up_once_however_many_clients() -> None:
    lookups = Lookups({"quay.io": ROBOT})
    chain = Keychain(lookup=lookups)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(chain.get, ["quay.io", "docker.io"] * 50))
    assert got == [ROBOT, None] * 50
    assert sorted(lookups.asked) == ["docker.io", "quay.io"]


def test_a_broken_helper_fails_the_plan_unless_the_registry_is_best_effort() -> None:
    lookups = Lookups({}, broken=frozenset({"cache.example", "quay.io"}))
    chain = Keychain(best_effort={"cache.example"}, lookup=lookups)
    assert chain.get("cache.example") is None  # the build cache: anonymous, the leg still publishes
    with pytest.raises(RegistryError, match="helper crashed"):
        Keychain(best_effort={"cache.example"}, lookup=lookups).resolve(["quay.io"])


def test_login_keychain_sends_the_password_to_its_registry_only(monkeypatch: pytest.MonkeyPatch) -> None:
    import localai_ci.oci.keychain

    lookups = Lookups({"docker.io": Credentials("hub-user", "from-config")})
    monkeypatch.setattr(localai_ci.oci.keychain, "credentials_for",
                        lambda reg, username=None, password=None: Credentials(username, password) if username
                        else lookups(reg))
    chain = login_keychain(["quay.io", "docker.io"], username="robot", password="Quay-robot-pw-31", named="quay.io")
    assert chain.get("quay.io") == ROBOT and chain.get("docker.io") == Credentials("hub-user", "from-config")
    assert lookups.asked == ["docker.io"]  # looked up when the keychain was made, not at the first push
    with pytest.raises(UserError, match="--login-registry") as err:
        login_keychain(["quay.io", "docker.io"], username="robot", password="Quay-robot-pw-31", named=None)
    assert "Quay-robot-pw-31" not in str(err.value)


def test_clients_get_the_keychain_credentials_and_the_family_transport() -> None:
    config = family_config(Family.BACKENDS, images="127.0.0.1:5000/a/b,quay.io/a/b,reg.lan:5000/a/b",
                           env={"CI_INSECURE_REGISTRIES": "reg.lan:5000"})
    make = RegistryClients(Keychain({"quay.io": ROBOT}, lookup=Lookups({})))
    clients = [make(img, config.plain_http) for img in config.images]
    try:
        assert [c._plain_http for c in clients] == [True, False, True]
        assert [c._credentials for c in clients] == [None, ROBOT, None]
        assert "Quay-robot-pw-31" not in repr(clients[1]) and "robot" in repr(clients[1])
        loopback = RegistryClients(Keychain.anonymous())(ImageName("127.0.0.1:5000", "x/y"), lambda h: True)
        assert loopback._credentials is None
        loopback.close()
    finally:
        for c in clients:
            c.close()
