"""cosign adapter: sign and verify images *by digest* (never by tag).

``cosign sign --recursive`` on a manifest list signs the list and every child, so one call
per registry covers "the list and, recursively, every child". Verification checks the list
and each child separately (``cosign verify`` has no recursive mode).

Key pairs (``cosign generate-key-pair``) need ``COSIGN_PASSWORD`` in the environment (it may
be empty); without ``key`` cosign signs keyless (OIDC; that is for CI). For offline and
loopback use pass ``tlog=False`` (``--tlog-upload=false`` / ``--insecure-ignore-tlog=true``);
``--allow-http-registry`` is added only for registries reached over plain HTTP.
Subprocesses get argument lists, never a shell; stdin is closed so cosign never prompts.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import OperationError, UserError
from .reference import parse_digest

TIMEOUT = 180.0
REFERRERS_MODES = ("legacy", "oci-1-1")


@dataclass(frozen=True)
class SignOptions:
    """How to sign: a private key file (None = keyless) and whether to use the transparency log."""

    key: str | None = None
    tlog: bool = True
    cosign: str = "cosign"
    #: ``--registry-referrers-mode``: ``oci-1-1`` stores the signatures as OCI 1.1 referrers (LocalAI's
    #: merge; cosign 2.4 needs COSIGN_EXPERIMENTAL=1 for it), '' for cosign's default
    referrers_mode: str = ""
    # environment for cosign (COSIGN_PASSWORD, DOCKER_CONFIG); None: this process's. Never shown.
    env: Mapping[str, str] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class VerifyOptions:
    """How to verify: the public key file and whether the transparency log is required."""

    key: str
    tlog: bool = True
    cosign: str = "cosign"


def _by_digest(ref: str) -> str:
    if "@" not in ref:
        raise UserError(f"{ref!r}: cosign is given images by digest only (repo@sha256:...), never by tag")
    try:
        parse_digest(ref.rsplit("@", 1)[1])
    except ValueError as exc:
        raise UserError(f"{ref!r}: {exc}") from exc
    return ref


def sign_command(ref: str, opts: SignOptions, *, plain_http: bool) -> list[str]:
    args = [opts.cosign, "sign", "--yes", "--recursive"]
    if opts.key:
        args += ["--key", opts.key]
    if not opts.tlog:
        args.append("--tlog-upload=false")
    if opts.referrers_mode:
        if opts.referrers_mode not in REFERRERS_MODES:
            raise UserError(f"--registry-referrers-mode {opts.referrers_mode!r}: use one of {', '.join(REFERRERS_MODES)}")
        args.append(f"--registry-referrers-mode={opts.referrers_mode}")
    if plain_http:
        args.append("--allow-http-registry")
    return args + [_by_digest(ref)]


def verify_command(ref: str, opts: VerifyOptions, *, plain_http: bool) -> list[str]:
    args = [opts.cosign, "verify", "--key", opts.key, "--output", "json"]
    if not opts.tlog:
        args.append("--insecure-ignore-tlog=true")
    if plain_http:
        args.append("--allow-http-registry")
    return args + [_by_digest(ref)]


def _run(args: list[str], env: Mapping[str, str] | None, what: str) -> subprocess.CompletedProcess[str]:
    if shutil.which(args[0]) is None:
        raise OperationError(f"{what}: {args[0]!r} not found on PATH; install cosign (Debian: apt-get install "
                             "cosign) or pass its path")
    try:
        return subprocess.run(args, env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OperationError(f"{what}: cosign did not finish within {TIMEOUT:.0f}s") from exc
    except OSError as exc:
        raise OperationError(f"{what}: cannot run cosign: {exc.strerror or exc}") from exc


def _tail(text: str, lines: int = 4) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def sign_image(ref: str, opts: SignOptions, *, plain_http: bool, env: Mapping[str, str] | None = None) -> None:
    """Sign ``ref`` (``repo@sha256:...``) and, when it is a list, every child."""
    given = env if env is not None else opts.env
    environ = dict(os.environ if given is None else given)
    if opts.key and "COSIGN_PASSWORD" not in environ:
        raise UserError("signing with a key needs COSIGN_PASSWORD in the environment (empty for a key "
                        "without a password); cosign would otherwise prompt")
    if opts.key and not os.path.isfile(opts.key):
        raise UserError(f"--key {opts.key}: no such file (create a pair with `cosign generate-key-pair`)")
    proc = _run(sign_command(ref, opts, plain_http=plain_http), environ, f"signing {ref}")
    if proc.returncode != 0:
        raise OperationError(f"signing {ref}: cosign exited {proc.returncode}: {_tail(proc.stderr)}")


def verify_image(ref: str, opts: VerifyOptions, *, plain_http: bool, env: Mapping[str, str] | None = None) -> str:
    """'' when ``ref`` carries a valid signature for the key, else the reason."""
    if not os.path.isfile(opts.key):
        raise UserError(f"--key {opts.key}: no such public key file")
    proc = _run(verify_command(ref, opts, plain_http=plain_http), env, f"verifying {ref}")
    if proc.returncode != 0:
        return f"cosign verify exited {proc.returncode}: {_tail(proc.stderr)}"
    return ""
