"""A Go module proxy on disk, for tests that run the real ``go`` without the network (not a test module).

``GOPROXY=file:///DIR`` serves the layout ``go`` documents for module proxies:
``DIR/<module>/@v/list`` (one version a line), ``<version>.info`` (``{"Version", "Time"}``),
``<version>.mod`` (the module's go.mod) and ``<version>.zip`` (every file under
``<module>@<version>/``). :class:`GoProxy` writes small modules there; :func:`go_env` is the
environment every command of a test runs with: that proxy, no checksum database, its own
module cache and build cache under the test's directory, no go env file, no toolchain download.
"""
from __future__ import annotations

import json
import os
import subprocess
import zipfile
from collections.abc import Mapping
from pathlib import Path

TIME = "2026-01-01T00:00:00Z"


def go_env(tmp: Path, proxy: Path | str, go: str) -> dict[str, str]:
    """The environment of a test's ``go`` commands (``proxy``: a directory, or ``off``)."""
    home = tmp / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": f"{Path(go).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "HOME": str(home),
        "GOPATH": str(tmp / "gopath"),
        "GOMODCACHE": str(tmp / "gopath" / "mod"),
        "GOCACHE": str(tmp / "gocache"),
        "GOENV": "off",
        "GOPROXY": proxy if isinstance(proxy, str) else proxy.resolve().as_uri(),
        "GOSUMDB": "off",
        "GONOSUMDB": "*",
        "GOFLAGS": "-modcacherw",  # the cache's files stay deletable by the test's cleanup
        "GOTOOLCHAIN": "local",
        "CI_GO": go,
    }


def _escape(path: str) -> str:
    """The proxy protocol's case encoding of a module path (``A`` -> ``!a``)."""
    return "".join(f"!{c.lower()}" if c.isupper() else c for c in path)


class GoProxy:
    """Modules written as a file-based module proxy under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def add(self, module: str, version: str, files: Mapping[str, str], requires: Mapping[str, str] | None = None,
            go_version: str = "1.21") -> None:
        """Module ``module`` at ``version`` with ``files`` (paths relative to the module root) and a
        go.mod requiring ``requires`` (module -> version)."""
        req = "".join(f"require {m} {v}\n" for m, v in sorted((requires or {}).items()))
        mod = f"module {module}\n\ngo {go_version}\n" + (f"\n{req}" if req else "")
        d = self.root / _escape(module) / "@v"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{version}.mod").write_text(mod)
        (d / f"{version}.info").write_text(json.dumps({"Version": version, "Time": TIME}))
        with zipfile.ZipFile(d / f"{version}.zip", "w") as z:
            z.writestr(f"{module}@{version}/go.mod", mod)
            for name, text in sorted(files.items()):
                z.writestr(f"{module}@{version}/{name}", text)
        listed = (d / "list").read_text().split() if (d / "list").exists() else []
        (d / "list").write_text("".join(f"{v}\n" for v in sorted(set(listed) | {version})))


def go_package(name: str, *imports: str) -> str:
    """A Go file of package ``name`` importing ``imports``."""
    block = "".join(f'import _ "{i}"\n' for i in imports)
    return f"package {name}\n\n{block}\nfunc X() {{}}\n"


def go_sum(go: str, env: Mapping[str, str], go_mod: str, workdir: Path) -> str:
    """The go.sum of ``go_mod``'s build list (``go mod download -json all`` in ``workdir``), as
    ``go mod tidy`` writes it: the zip and go.mod hash of every module."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "go.mod").write_text(go_mod)
    (workdir / "go.sum").write_text("")
    proc = subprocess.run([go, "mod", "download", "-json", "all"], cwd=workdir, env={**env, "GOFLAGS": "-mod=mod -modcacherw"},
                          capture_output=True, text=True, check=True, timeout=300)
    dec, pos, lines = json.JSONDecoder(), 0, []
    text = proc.stdout
    while pos < len(text.rstrip()):
        while text[pos].isspace():
            pos += 1
        obj, pos = dec.raw_decode(text, pos)
        if obj.get("Sum"):
            lines.append(f"{obj['Path']} {obj['Version']} {obj['Sum']}")
        if obj.get("GoModSum"):
            lines.append(f"{obj['Path']} {obj['Version']}/go.mod {obj['GoModSum']}")
    return "".join(f"{line}\n" for line in sorted(lines))


# --- a LocalAI-shaped module world ----------------------------------------------------------------

#: the modules of the world, at their base versions (what the fixture's go.mod requires)
LOCALAI_REQUIRES = {
    "github.com/containerd/containerd": "v1.7.32",
    "github.com/mudler/go-processmanager": "v0.1.0",
    "golang.org/x/net": "v0.54.0",
    "google.golang.org/grpc": "v1.70.0",
    "google.golang.org/protobuf": "v1.36.0",
}


def localai_go_mod(requires: Mapping[str, str] | None = None) -> str:
    req = {**LOCALAI_REQUIRES, **(requires or {})}
    body = "".join(f"\t{m} {v}\n" for m, v in sorted(req.items()))
    return f"module github.com/mudler/LocalAI\n\ngo 1.21\n\nrequire (\n{body})\n"


def localai_world(proxy: GoProxy) -> None:
    """Small stand-ins for the modules LocalAI builds with: gRPC reaches golang.org/x/net (as the
    real one does through its transport), containerd is imported only by the server's pkg/oci, and
    go-processmanager v0.1.1 raises golang.org/x/net through its own requirement."""
    for v in ("v0.54.0", "v0.55.0"):
        proxy.add("golang.org/x/net", v, {"http2/http2.go": go_package("http2")})
    proxy.add("google.golang.org/grpc", "v1.70.0", {
        "grpc.go": go_package("grpc", "golang.org/x/net/http2", "google.golang.org/grpc/codes"),
        "codes/codes.go": go_package("codes"),
        "status/status.go": go_package("status", "google.golang.org/grpc/codes"),
    }, requires={"golang.org/x/net": "v0.54.0"})
    proxy.add("google.golang.org/protobuf", "v1.36.0", {
        "reflect/protoreflect/r.go": go_package("protoreflect"),
        "runtime/protoimpl/i.go": go_package("protoimpl", "google.golang.org/protobuf/reflect/protoreflect"),
    })
    for v in ("v1.7.32", "v1.7.33"):
        proxy.add("github.com/containerd/containerd", v, {"containerd.go": go_package("containerd")})
    proxy.add("github.com/mudler/go-processmanager", "v0.1.0", {"pm.go": go_package("processmanager")})
    proxy.add("github.com/mudler/go-processmanager", "v0.1.1", {"pm.go": go_package("processmanager")},
              requires={"golang.org/x/net": "v0.55.0"})


def localai_go_files() -> dict[str, str]:
    """The fixture repository's Go files that import other modules (tests/support/localai_tree.py has the rest):
    every Go backend reaches gRPC through pkg/grpc; only the server reaches pkg/oci and go-processmanager."""
    lai = "github.com/mudler/LocalAI"
    return {
        "pkg/grpc/server.go": go_package("grpc", f"{lai}/pkg/grpc/proto", f"{lai}/pkg/grpc/base",
                                         f"{lai}/pkg/grpc/grpcerrors", "google.golang.org/grpc"),
        "pkg/oci/oci.go": go_package("oci", "github.com/containerd/containerd"),
        "core/application/app.go": go_package("application", f"{lai}/pkg/model", f"{lai}/pkg/oci",
                                              "github.com/mudler/go-processmanager"),
    }
