"""The Go toolchain, asked what a module builds with (adapter: runs ``go``; argument lists only).

:class:`GoToolchain` answers :class:`ci.changes.gomod.ModuleGraphs` with the ``go`` command the
environment names (``CI_GO``, else ``go`` on ``PATH``) and that environment's module settings
(``GOPROXY``, ``GOFLAGS``, ``GONOSUMDB``, ``GOMODCACHE``, ...): in the workflow's matrix job,
after ``actions/setup-go``, with the module proxy.

Every command runs in a throwaway directory holding only the module's ``go.mod``, ``go.sum``
and the ``go.mod`` of its local replacements (the texts of the revision asked about): the
checkout is never written to, a base revision needs no checkout, and in-repository packages
are not listed (change detection follows them itself, build constraints not evaluated).
``-mod=mod`` lets ``go`` fill a go.sum it needs; ``GOTOOLCHAIN=local`` keeps it from
downloading another toolchain; ``GOWORK=off``. A failure (no ``go``, no proxy, a go.mod this
``go`` is too old for, a timeout) is an :class:`~ci.changes.gomod.Unavailable` with the
command's last lines, never an exception: the caller falls back and says why.

* :meth:`GoToolchain.build_list`: ``go list -m -json all``;
* :meth:`GoToolchain.package_graph`: ``go list -e -deps -json=...`` of the given import paths,
  once per platform with ``CGO_ENABLED=0`` and ``1``; the union of what each lists.
"""
from __future__ import annotations

import json
import posixpath
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .gomod import BuildList, ModuleFiles, Package, PackageGraph, Unavailable

DEFAULT_TIMEOUT = 600.0
#: ``go list -e`` reports a package all of whose files a platform's build constraints leave out as
#: an error; it is simply not built there (no imports), not unknown
_EXCLUDED = "build constraints exclude all Go files"
_FIELDS = "ImportPath,Module,Imports,Standard,Error,DepsErrors"

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def _json_stream(text: str) -> list[dict[str, Any]]:
    """The JSON objects ``go list -json`` prints one after the other."""
    dec = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        obj, pos = dec.raw_decode(text, pos)
        if isinstance(obj, dict):
            out.append(obj)


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return "; ".join(kept)[:600]


class GoToolchain:
    """:class:`ci.changes.gomod.ModuleGraphs` by the ``go`` command."""

    def __init__(self, go: str, env: Mapping[str, str], *, timeout: float = DEFAULT_TIMEOUT,
                 run: Runner = subprocess.run) -> None:
        self.go = go
        self.env = dict(env)
        self.timeout = timeout
        self._run = run
        self._version: str | None = None
        self._lists: dict[ModuleFiles, BuildList | Unavailable] = {}
        self._graphs: dict[tuple[object, ...], PackageGraph | Unavailable] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str], **kwargs: Any) -> GoToolchain | Unavailable:
        """The toolchain ``env`` names (``CI_GO``, else ``go`` on its ``PATH``), or why there is none."""
        named = env.get("CI_GO", "")
        go = named or (shutil.which("go", path=env["PATH"]) if env.get("PATH") else None)
        if not go or not Path(go).is_file():
            return Unavailable(f"CI_GO={named!r} is not a file" if named else
                               "no `go` on PATH (actions/setup-go in the matrix job provides it)")
        return cls(go, env, **kwargs)

    def describe(self) -> str:
        proxy = self.env.get("GOPROXY", "") or "the default proxy"
        return f"{self.version()} (GOPROXY={proxy})"

    def version(self) -> str:
        if self._version is None:
            res = self._go(["version"], cwd=None)
            self._version = res.stdout.split()[2] if isinstance(res, subprocess.CompletedProcess) and \
                res.returncode == 0 and len(res.stdout.split()) > 2 else "go (version unknown)"
        return self._version

    # ---- the commands ---------------------------------------------------------------------------
    def _environ(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in self.env.items() if k != "GOWORK"}
        env.update({"GOTOOLCHAIN": "local", "GOWORK": "off", "GO111MODULE": "on", "GOFLAGS":
                    " ".join(f for f in (self.env.get("GOFLAGS", "").split()) if not f.startswith("-mod="))
                    + " -mod=mod"})
        env.update(extra or {})
        return env

    def _go(self, args: Sequence[str], cwd: Path | None,
            extra: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str] | Unavailable:
        cmd = [self.go, *args]
        try:
            return self._run(cmd, cwd=cwd, env=self._environ(extra), capture_output=True, text=True,
                             timeout=self.timeout, check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return Unavailable(f"`go {' '.join(args[:3])}` took longer than {self.timeout:.0f} s")
        except OSError as exc:
            return Unavailable(f"cannot run {self.go}: {exc}")

    def _go_json(self, args: Sequence[str], cwd: Path, what: str,
                 extra: Mapping[str, str] | None = None) -> list[dict[str, Any]] | Unavailable:
        """The JSON objects ``go ARGS`` prints; Unavailable naming ``what`` when it fails or prints none."""
        res = self._go(args, cwd, extra)
        if isinstance(res, Unavailable):
            return res
        if res.returncode != 0:
            return Unavailable(f"{what} failed: {_tail(res.stderr)}")
        try:
            return _json_stream(res.stdout)
        except ValueError as exc:
            return Unavailable(f"{what} printed no JSON ({exc})")

    def _module_dir(self, files: ModuleFiles, tmp: Path) -> Path:
        """A directory holding the module's go.mod and go.sum, deep enough that every local
        replacement (``../x``) lands inside ``tmp`` with its own go.mod."""
        depth = max((len([p for p in posixpath.normpath(rel).split("/") if p == ".."]) for rel, _ in files.local),
                    default=0)
        root = tmp.joinpath(*[f"m{i}" for i in range(depth + 1)])
        root.mkdir(parents=True)
        (root / "go.mod").write_text(files.go_mod, encoding="utf-8")
        if files.go_sum is not None:
            (root / "go.sum").write_text(files.go_sum, encoding="utf-8")
        for rel, text in files.local:
            target = (root / rel).resolve()
            if not target.is_relative_to(tmp.resolve()):
                continue
            target.mkdir(parents=True, exist_ok=True)
            (target / "go.mod").write_text(text, encoding="utf-8")
        return root

    def build_list(self, files: ModuleFiles) -> BuildList | Unavailable:
        if files not in self._lists:
            self._lists[files] = self._build_list(files)
        return self._lists[files]

    def _build_list(self, files: ModuleFiles) -> BuildList | Unavailable:
        with tempfile.TemporaryDirectory(prefix="localai-ci-go-") as tmp:
            cwd = self._module_dir(files, Path(tmp))
            mods = self._go_json(["list", "-m", "-json", "all"], cwd, "`go list -m all`")
        if isinstance(mods, Unavailable):
            return mods
        out: dict[str, str] = {}
        for m in mods:
            if m.get("Main") or not isinstance(m.get("Path"), str):
                continue
            value = str(m.get("Version") or "")
            rep = m.get("Replace")
            if isinstance(rep, dict):
                value += f" => {rep.get('Path', '')}" + (f" {rep['Version']}" if rep.get("Version") else "")
            out[m["Path"]] = value
        return out

    def package_graph(self, files: ModuleFiles, patterns: Sequence[str],
                      platforms: Sequence[str]) -> PackageGraph | Unavailable:
        key = (files, tuple(sorted(set(patterns))), tuple(sorted(set(platforms))))
        if key not in self._graphs:
            self._graphs[key] = self._package_graph(files, key[1], key[2])  # type: ignore[arg-type]
        return self._graphs[key]

    def _package_graph(self, files: ModuleFiles, patterns: tuple[str, ...],
                       platforms: tuple[str, ...]) -> PackageGraph | Unavailable:
        versions = self.build_list(files)
        if isinstance(versions, Unavailable):
            return versions
        imports: dict[str, set[str]] = {}
        modules: dict[str, str] = {}
        standard: set[str] = set()
        errors: dict[str, str] = {}
        loaded: set[str] = set()
        configs: list[str] = []
        if not patterns:
            return PackageGraph(packages={}, configs=(), versions=versions)
        with tempfile.TemporaryDirectory(prefix="localai-ci-go-") as tmp:
            cwd = self._module_dir(files, Path(tmp))
            for platform in platforms:
                goos, _, goarch = platform.partition("/")
                goarch = goarch.split("/")[0]
                for cgo in ("0", "1"):
                    configs.append(f"{goos}/{goarch} CGO_ENABLED={cgo}")
                    listed = self._go_json(["list", "-e", "-deps", f"-json={_FIELDS}", *patterns], cwd,
                                           f"`go list -deps` ({configs[-1]})",
                                           {"GOOS": goos, "GOARCH": goarch, "CGO_ENABLED": cgo})
                    if isinstance(listed, Unavailable):
                        return listed
                    for p in listed:
                        path = p.get("ImportPath")
                        if not isinstance(path, str):
                            continue
                        mod = p.get("Module") if isinstance(p.get("Module"), dict) else None
                        if p.get("Standard"):
                            standard.add(path)
                        elif mod and isinstance(mod.get("Path"), str):
                            modules[path] = mod["Path"]
                        imports.setdefault(path, set()).update(i for i in p.get("Imports") or () if isinstance(i, str))
                        err = p.get("Error") if isinstance(p.get("Error"), dict) else None
                        text = str(err.get("Err", "")) if err else ""
                        if text and _EXCLUDED not in text:
                            errors.setdefault(path, text.splitlines()[0][:300] if text else "cannot be loaded")
                        else:
                            loaded.add(path)
        packages = {path: Package(path=path, module=modules.get(path, ""), imports=tuple(sorted(imps)),
                                  error="" if path in loaded else errors.get(path, ""), standard=path in standard)
                    for path, imps in imports.items()}
        return PackageGraph(packages=packages, configs=tuple(configs), versions=versions)
