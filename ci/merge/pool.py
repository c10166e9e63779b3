"""``ClientPool``: the registry clients the suffixes of one merge share, so their keep-alive connections
(and tokens) serve suffix after suffix.
"""
from __future__ import annotations

import threading

from ..oci.client import ClientFactory, RegistryClient
from ..oci.reference import ImageName
from ..settings import FamilyConfig


class ClientPool:
    """Registry clients shared by the suffixes of one merge (``--all``: hundreds of them).

    Per (image, family config), the idle clients, each holding its keep-alive connection (and
    token): a suffix leases one client per image, uses it in one thread, and gives it back, so
    a merge opens about ``jobs`` connections per registry instead of one per suffix. A client
    whose suffix failed is closed instead (the next suffix starts on a fresh one, as it would
    without the pool). Thread-safe; :meth:`close` closes every idle client.
    """

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._idle: dict[tuple[ImageName, FamilyConfig], list[RegistryClient]] = {}
        self._closed = False
        self.made = 0  # clients the factory made

    def lease(self, img: ImageName, config: FamilyConfig) -> RegistryClient:
        with self._lock:
            idle = self._idle.get((img, config))
            if idle:
                return idle.pop()
            self.made += 1
        return self._factory(img, config.plain_http)

    def give_back(self, img: ImageName, config: FamilyConfig, client: RegistryClient, *, reuse: bool = True) -> None:
        with self._lock:
            if reuse and not self._closed:
                self._idle.setdefault((img, config), []).append(client)
                return
        client.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for c in clients:
            c.close()

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
