"""Make-style incrementality record for ``invoke pipeline``: leg input keys and published digests.

A leg is *up to date* when the key of its inputs equals the key recorded at its last
successful publish and its digest still exists in every target registry (the caller
checks that with a HEAD). The key covers exactly what decides the built image:

- the Dockerfile bytes and the content of every build-context file the leg *reads*, with
  paths and the executable bit: the context as BuildKit sends it (``.dockerignore`` applied
  with BuildKit's semantics, :mod:`ci.dockerignore`), narrowed to the leg's inputs as change
  detection derives them (:meth:`ci.inputs.LegInputs.read_paths`: the reached stages' COPY/ADD
  and bind-mount sources, what their RUN steps' scripts and ``make`` runs use, Go packages;
  the whole context when they cannot be derived). One answer to "what are this leg's inputs?"
  for ``matrix.github`` and the pipeline: a file no leg reads (the matrix file in the context,
  another backend's sources) rebuilds nothing. The pipeline's own state directory is left out
  when it lies inside the context;
- the build args, the platform, the Dockerfile path inside the context;
- the base image id (for ``ci-offline/`` bases the deterministic id :mod:`ci.baseimage`
  would load; for real bases the engine's id, ``None`` when absent: never up to date);
- the target repositories (a different registry set is a different publication).

OCI labels (revision, created) are metadata, not inputs: an unchanged leg keeps the image
it was published with, like a make target whose prerequisites did not change.

Layout: :func:`inputs_digest` and :func:`context_digest` are pure; :func:`context_files` (one walk
per context, however many Dockerfiles share it), :func:`hash_context`,
:func:`load_state` and :func:`save_state` read and write local files (the save is atomic:
temporary file + ``os.replace``). A corrupt or foreign state file is treated as empty
(everything rebuilds) and says so, never crashes the pipeline. :func:`lock_state_dir`: one run at a
time per state directory (its registries, digests and record are that run's).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..dockerfile.ignore import Ignore, parse_dockerignore
from ..errors import OperationError
from ..oci.reference import is_hex64, parse_digest

STATE_VERSION = 1
STATE_FILE = "state.json"


# ---- pure ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildInputs:
    """Everything that decides one leg's image and where it is published."""

    family: str
    suffix: str
    ptag: str
    platform: str
    dockerfile: str  # path inside the context
    context_hash: str  # sha256 hex over the context's files (see hash_context)
    build_args: tuple[tuple[str, str], ...]
    base_image: str
    base_id: str | None  # None: unknown (real base absent): the leg is never up to date
    images: tuple[str, ...]

    @property
    def leg(self) -> str:
        """The record's key: ``backends -cpu-hello arm64`` / ``server '' amd64``."""
        return leg_name(self.family, self.suffix, self.ptag)


def leg_name(family: str, suffix: str, ptag: str) -> str:
    return f"{family} {suffix or repr('')} {ptag}"


def inputs_digest(inputs: BuildInputs) -> str | None:
    """sha256 hex of the canonical JSON of ``inputs``; None when the base image id is unknown."""
    if inputs.base_id is None:
        return None
    doc = {"v": STATE_VERSION, "family": inputs.family, "suffix": inputs.suffix, "ptag": inputs.ptag,
           "platform": inputs.platform, "dockerfile": inputs.dockerfile, "context": inputs.context_hash,
           "build_args": sorted([k, v] for k, v in inputs.build_args), "base": inputs.base_image,
           "base_id": inputs.base_id, "images": sorted(inputs.images)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def context_digest(files: Iterable[tuple[str, bool, str]]) -> str:
    """sha256 hex over ``(relative path, executable, content sha256 hex)`` triples, order-independent."""
    h = hashlib.sha256()
    for rel, exe, content in sorted(files):
        h.update(f"{rel}\0{int(exe)}\0{content}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class Record:
    """The last successful publish of one leg."""

    key: str
    digest: str
    images: tuple[str, ...]
    at: str = ""


@dataclass
class State:
    """The whole record (mutable; save with :func:`save_state`)."""

    legs: dict[str, Record] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. "state file was corrupt: starting fresh"

    def lookup(self, inputs: BuildInputs) -> Record | None:
        """The record when its key equals the key of ``inputs`` (and the key is known)."""
        key = inputs_digest(inputs)
        rec = self.legs.get(inputs.leg)
        return rec if key is not None and rec is not None and rec.key == key else None

    def remember(self, inputs: BuildInputs, digest: str, now: datetime | None = None) -> None:
        key = inputs_digest(inputs)
        if key is None:
            self.legs.pop(inputs.leg, None)
            return
        at = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        self.legs[inputs.leg] = Record(key=key, digest=parse_digest(digest), images=inputs.images, at=at)


def state_to_json(state: State) -> str:
    return json.dumps({"version": STATE_VERSION, "legs": {
        k: {"key": r.key, "digest": r.digest, "images": list(r.images), "at": r.at}
        for k, r in sorted(state.legs.items())}}, indent=2) + "\n"


def state_from_json(text: str, source: str = "state") -> State:
    """Parse a state document; anything unexpected gives an empty state with a note."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION:
            raise ValueError(f"version {doc.get('version') if isinstance(doc, dict) else '?'!r}, "
                             f"expected {STATE_VERSION}")
        legs: dict[str, Record] = {}
        for name, r in dict(doc.get("legs") or {}).items():
            if not (isinstance(r, dict) and is_hex64(str(r.get("key", ""))) and isinstance(r.get("images"), list)):
                raise ValueError(f"leg {name!r} has a malformed record")
            legs[str(name)] = Record(key=str(r["key"]), digest=parse_digest(str(r.get("digest", ""))),
                                     images=tuple(str(i) for i in r["images"]), at=str(r.get("at", "")))
        return State(legs)
    except (ValueError, TypeError, AttributeError) as exc:
        return State(notes=[f"{source} is unreadable ({exc}); every leg is rebuilt and the file rewritten"])


# ---- filesystem adapter -----------------------------------------------------------------------
def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def context_files(context: str | Path, skip: Path | None = None) -> tuple[tuple[str, bool, str], ...]:
    """(path, executable, content) of every entry BuildKit sends from ``context``: the files its
    ``.dockerignore`` keeps (:class:`ci.dockerignore.Ignore`, moby's semantics), symlinks as
    their target, directories as themselves. ``skip``: a directory left out (the pipeline's own
    state directory, when it lies inside the context: it changes on every run).

    One walk per context: ``invoke pipeline`` hashes a context shared by many Dockerfiles once.
    """
    root = Path(context)
    try:
        di = root / ".dockerignore"
        ignore = Ignore(parse_dockerignore(di.read_text()), ".dockerignore") if di.is_file() else Ignore()
        can_reinclude = any(p.exclusion for p in ignore.patterns)  # '!' lines: never prune a directory
        skip_at = skip.resolve() if skip is not None else None
        out: list[tuple[str, bool, str]] = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir
            kept_dirs = []
            for d in sorted(dirnames):
                rel = f"{rel_dir}/{d}" if rel_dir else d
                full = Path(dirpath) / d
                if skip_at is not None and full.resolve() == skip_at:
                    continue
                if os.path.islink(full):  # a link to a directory: sent as a link, not followed
                    if not ignore.excludes(rel):
                        out.append((rel, False, "link:" + os.readlink(full)))
                    continue
                excluded = ignore.excludes(rel)
                if excluded and not can_reinclude:
                    continue
                if not excluded:
                    out.append((rel + "/", False, "dir"))
                kept_dirs.append(d)
            dirnames[:] = kept_dirs
            for f in filenames:
                rel = f"{rel_dir}/{f}" if rel_dir else f
                if ignore.excludes(rel):
                    continue
                full = Path(dirpath) / f
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    out.append((rel, False, "link:" + os.readlink(full)))
                elif stat.S_ISREG(st.st_mode):
                    out.append((rel, bool(st.st_mode & 0o111), _file_sha256(full)))
    except OSError as exc:
        raise OperationError(f"hashing build context {root}: {exc.strerror or exc}; check the matrix's "
                             "context and dockerfile paths") from exc
    return tuple(sorted(out))


def hash_context(context: str | Path, dockerfile: str,
                 files: Sequence[tuple[str, bool, str]] | None = None) -> str:
    """Content hash of what a build receives: the context's files (:func:`context_files`, or
    ``files`` when the caller has them) plus the Dockerfile (``dockerfile``, relative to the
    context), which BuildKit reads apart from the context."""
    root = Path(context)
    triples = list(context_files(root) if files is None else files)
    try:
        triples.append(("\0dockerfile", False, _file_sha256(root / dockerfile)))
    except OSError as exc:
        raise OperationError(f"hashing build context {root}: {exc.strerror or exc}; check the matrix's "
                             "context and dockerfile paths") from exc
    return context_digest(triples)


def load_state(path: str | Path) -> State:
    """The state at ``path``; an empty State when the file does not exist."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        return State()
    except OSError as exc:
        raise OperationError(f"reading pipeline state {p}: {exc.strerror or exc}; fix its permissions or "
                             "delete it (everything is rebuilt)") from exc
    return state_from_json(text, str(p))


def save_state(path: str | Path, state: State) -> None:
    """Write atomically (temporary file in the same directory, then ``os.replace``)."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(state_to_json(state))
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise OperationError(f"writing pipeline state {p}: {exc.strerror or exc}") from exc


LOCK_FILE = "lock"


@contextmanager
def lock_state_dir(state_dir: str | Path) -> Iterator[None]:
    """Hold the state directory for one run (an exclusive ``flock`` on ``<dir>/lock``, which holds the
    holder's pid): a second run in the same directory would adopt the first's registries and clear its
    digests. Not waited for: OperationError naming the run that holds it. The kernel releases the
    lock when the holder ends, however it ends (a killed run leaves no stale lock)."""
    d = Path(state_dir)
    path = d / LOCK_FILE
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        raise OperationError(f"locking {path}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise OperationError(f"another invoke pipeline (pid {holder}) is running with the state directory {d}; "
                                 "wait for it to finish, or give this run its own --root") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
