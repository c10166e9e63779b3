"""The build args a leg gets beside its matrix entry's (pure): what LocalAI's ``backend_build.yml``
passes every build (APT mirrors, the weekly ``DEPS_REFRESH`` cache key). The entry's own
(``BUILDER_TARGET`` from ``builder-base-image``) are ``ci.matrix.Entry.build_args``."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlsplit

from ..errors import UserError

ENV_APT_MIRROR = "APT_MIRROR"
ENV_APT_PORTS_MIRROR = "APT_PORTS_MIRROR"
ENV_DEPS_REFRESH = "DEPS_REFRESH"


def deps_refresh_key(now: datetime) -> str:
    """The ISO week (``2026-W49``) LocalAI's workflow passes as DEPS_REFRESH: a weekly cache buster for the
    unpinned-dependency install layer. ISO year, so the week of 1 January keeps one key (LocalAI's
    ``date +%Y-W%V`` gives that week two)."""
    year, week, _ = now.isocalendar()
    return f"{year}-W{week:02d}"


def _mirror(value: str, what: str) -> str:
    """An APT mirror URL (http/https, no credentials: build args end up in the image history)."""
    value = value.strip()
    if not value:
        return ""
    try:
        p = urlsplit(value)
    except ValueError:
        p = None
    if p is None or p.scheme not in ("http", "https") or not p.netloc:
        raise UserError(f"{what} {value!r}: expected an http(s) URL such as http://azure.archive.ubuntu.com")
    if "@" in p.netloc:
        raise UserError(f"{what}: the URL carries credentials, which would be stored in the image history "
                        "(build args are recorded there); use a mirror without them")
    return value


def workflow_build_args(*, apt_mirror: str | None, apt_ports_mirror: str | None, deps_refresh: str | None,
                        env: Mapping[str, str], now: datetime) -> dict[str, str]:
    """The build args LocalAI's ``backend_build.yml`` adds to the matrix's: APT_MIRROR/APT_PORTS_MIRROR (option,
    else environment, else empty: the Dockerfile's ``apt-mirror.sh`` then leaves the sources alone) and
    DEPS_REFRESH (option, else environment, else the ISO week). BUILDER_TARGET comes from the matrix entry."""
    refresh = (deps_refresh if deps_refresh is not None else env.get(ENV_DEPS_REFRESH, "")).strip() \
        or deps_refresh_key(now)
    if not all(c.isalnum() or c in "-_." for c in refresh):
        raise UserError(f"--deps-refresh / {ENV_DEPS_REFRESH} {refresh!r}: use letters, digits, '-', '_', '.' "
                        "(it is a cache key such as 2026-W49)")
    return {
        "APT_MIRROR": _mirror(apt_mirror if apt_mirror is not None else env.get(ENV_APT_MIRROR, ""),
                              f"--apt-mirror / {ENV_APT_MIRROR}"),
        "APT_PORTS_MIRROR": _mirror(apt_ports_mirror if apt_ports_mirror is not None
                                    else env.get(ENV_APT_PORTS_MIRROR, ""), f"--apt-ports-mirror / {ENV_APT_PORTS_MIRROR}"),
        "DEPS_REFRESH": refresh,
    }
