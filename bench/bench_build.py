"""Benchmark: build + publish the LocalAI-shaped example leg, ours vs LocalAI's way, on every engine.

Not a test. Run::

    python bench/bench_build.py [--engines HOST1,HOST2] [--runs 3] [--fresh-registries]

The leg is ``-cpu-tiny-cpp`` amd64 of ``backends/matrix.yml`` (``backends/Dockerfile.cpp``,
context ``backends/``), exactly as in the matrix, from a fresh git copy of ``backends/`` so other
edits in the work tree do not change it between runs. On each engine of ``--engines`` (default:
``$CI_TEST_ENGINES``, else ``$DOCKER_HOST``), both sides build and publish it to two loopback
registries of their own:

- ours, as a user runs it (a subprocess): ``invoke build-backend --tag-suffix=-cpu-tiny-cpp
  --platform-tag amd64 --images R1/...,R2/... --root COPY --digests-dir TMP`` with
  ``CI_BLOB_CACHE`` in a temporary directory. Everything it does is in its time: BuildKit
  through ``localai_ci.docker.builder`` (the ``ci-offline/`` bases served from a private loopback registry it
  starts), the registry cache (import; export ``mode=max`` on the containerd store, inline +
  re-tag on the classic store), the publish by digest to both registries, the digest file;
- LocalAI's way: ``docker buildx build --load`` with the same build args, labels, named contexts
  for the offline bases (served once, by this script, from a loopback registry) and network mode
  (what ``localai_ci.build.leg.prepare`` planned for ours), ``--provenance=false --sbom=false`` as ours, tagged
  for both registries, then ``docker push`` to one registry and to the other. No registry cache.

Warm cache: each side runs once untimed (the engine's BuildKit cache then holds every step for
both: same inputs, same cache keys), then ``--runs`` timed runs each, interleaved, their order
alternating. By default the registries are kept across runs (a CI re-run: the registries hold
the leg's blobs already); ``--fresh-registries`` gives each timed run empty registries (the
publish uploads the whole leg; ours then also finds no registry cache to import).

Prints per engine the medians (build, push, total), ours' total, and the ratio ours / LocalAI's.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    ENGINES_HELP,
    ROOT,
    EngineInfo,
    default_engines,
    engine_info,
    fresh_clone,
    leg_env,
    median,
    note,
    parse_engines,
    print_table,
    scratch_dir,
    spread,
)

SUFFIX = "-cpu-tiny-cpp"
PTAG = "amd64"
REPOS = ("localai/local-ai-backends", "localai/localai-backends")  # as in LocalAI's quay.io / Docker Hub pair
PEER_TAG = f"bench{SUFFIX}-{PTAG}"
TIMEOUT = 1800


class Registries:
    """The loopback registries of one side (``ours`` or ``peer``), restarted empty on request."""

    def __init__(self, base: Path, side: str) -> None:
        self.base = base
        self.side = side
        self.generation = 0
        self.regs: list = []  # localai_ci.oci.localregistry.LocalRegistry
        self.fresh()

    def fresh(self) -> None:
        from localai_ci.oci.localregistry import start_registry

        self.stop()
        self.generation += 1
        root = self.base / f"{self.side}-{self.generation}"
        self.regs = [start_registry(root / name) for name in ("quay", "hub")]

    @property
    def images(self) -> list[str]:
        return [f"{r.host}/{repo}" for r, repo in zip(self.regs, REPOS)]

    def stop(self) -> None:
        for r in self.regs:
            r.stop()
            if r.root is not None:
                shutil.rmtree(r.root, ignore_errors=True)
        self.regs = []


def manifest_digest(image: str, tag: str) -> str:
    host, _, repo = image.partition("/")
    accept = ("application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, "
              "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json")
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", method="HEAD", headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as res:
        return str(res.headers.get("Docker-Content-Digest", ""))


def run(args: list[str], env: dict[str, str], what: str) -> tuple[float, str]:
    t0 = time.monotonic()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, check=False)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        sys.exit(f"{what} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return seconds, done.stdout + done.stderr


# ---- the two sides ------------------------------------------------------------------------------
@dataclass
class Ours:
    seconds: list[float] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    steps_run: list[int] = field(default_factory=list)  # Dockerfile steps BuildKit executed (not cached)
    uploaded: list[int] = field(default_factory=list)  # bytes, both registries
    dry_run: list[float] = field(default_factory=list)  # the same command with --dry-run: start + plan only
    bases: list[float] = field(default_factory=list)  # serving the offline bases as it does: registry start + push

    def serve_bases(self, env: dict[str, str], names: tuple[str, ...], work: Path) -> None:
        from localai_ci.docker.offline_bases import OfflineBases

        t0 = time.monotonic()
        with OfflineBases(env, root=Path(tempfile.mkdtemp(prefix="bases-", dir=work))) as bases:
            bases.contexts(names)
        self.bases.append(time.monotonic() - t0)

    def args(self, root: Path, images: list[str], tmp: Path) -> list[str]:
        return [sys.executable, "-m", "invoke", "build-backend", "--push", f"--tag-suffix={SUFFIX}", "--platform-tag", PTAG,
                "--images", ",".join(images), "--root", str(root), "--digests-dir", str(tmp / "digests")]

    def once(self, env: dict[str, str], root: Path, images: list[str], tmp: Path, record: bool = True) -> None:
        seconds, out = run(self.args(root, images, tmp), env, "invoke build-backend")
        digest = re.search(r"^digest: (sha256:[0-9a-f]{64})$", out, re.M)
        # progress lines: "... done     [builder-prebuilt 3/4] RUN ..." for a Dockerfile step that ran
        ran = re.findall(r": done +\[[\w.-]+ \d+/\d+\]", out)
        sent = sum(int(m) for m in re.findall(r"^pushed \S+: \d+ uploaded \((\d+) bytes\)", out, re.M))
        if not record:
            return
        self.seconds.append(seconds)
        self.digests.append(digest.group(1) if digest else "?")
        self.steps_run.append(len(ran))
        self.uploaded.append(sent)

    def plan_only(self, env: dict[str, str], root: Path, images: list[str], tmp: Path) -> None:
        self.dry_run.append(run([*self.args(root, images, tmp), "--dry-run"], env, "invoke build-backend --dry-run")[0])


@dataclass
class Peer:
    """LocalAI's way: ``docker buildx build --load`` then ``docker push`` to each registry."""

    command: list[str]  # the build, without the tags and the context
    context: str
    build: list[float] = field(default_factory=list)
    push: list[float] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    tagged: set[str] = field(default_factory=set)  # engine tags made, removed at the end

    def once(self, env: dict[str, str], images: list[str], record: bool = True) -> None:
        refs = [f"{i}:{PEER_TAG}" for i in images]
        self.tagged.update(refs)
        tags = [a for r in refs for a in ("--tag", r)]
        b, _ = run([*self.command, *tags, self.context], env, "docker buildx build")
        p = sum(run(["docker", "push", "--quiet", r], env, f"docker push {r}")[0] for r in refs)
        if not record:
            return
        self.build.append(b)
        self.push.append(p)
        self.digests.append(manifest_digest(images[0], PEER_TAG))

    @property
    def total(self) -> list[float]:
        return [b + p for b, p in zip(self.build, self.push)]


def peer_command(plan: object, caps: object, contexts: tuple[tuple[str, str], ...], builder: str) -> list[str]:
    """LocalAI's ``docker buildx build`` for the planned leg: same args, labels, contexts, network mode."""
    p, c = plan, caps
    args = ["docker", "buildx", "build", *(["--builder", builder] if builder else []), "--progress=quiet",
            "--platform", str(p.platform), "--file", str(Path(p.context) / p.dockerfile),  # type: ignore[attr-defined]
            "--load", "--provenance=false", "--sbom=false"]
    if c.driver == "docker" and not c.engine.has_bridge:  # type: ignore[attr-defined]
        args += ["--network", "host"]  # as localai_ci.docker.builder does: RUN steps need it on an engine without a bridge
    for k, v in p.build_args:  # type: ignore[attr-defined]
        args += ["--build-arg", f"{k}={v}"]
    for k, v in p.labels:  # type: ignore[attr-defined]
        args += ["--label", f"{k}={v}"]
    for name, ref in contexts:
        args += ["--build-context", f"{name}={ref}"]
    return args


# ---- one engine ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    info: EngineInfo
    ours: Ours
    peer: Peer

    @property
    def ratio(self) -> float:
        return median(self.ours.seconds) / median(self.peer.total)


def bench_engine(info: EngineInfo, args: argparse.Namespace, tmp: Path) -> Result:
    from localai_ci.build.feasibility import leg_feasibility
    from localai_ci.build.leg import BuildRequest, prepare
    from localai_ci.docker.builder import BuildxBuilder
    from localai_ci.docker.engine import connect
    from localai_ci.docker.offline_bases import OfflineBases
    from localai_ci.matrix.naming import Family
    from localai_ci.oci.localregistry import start_registry

    work = tmp / info.store
    root = fresh_clone(work)
    (work / "tmp").mkdir()
    # TMPDIR: what the subprocesses leave in temporary directories (ours: the offline bases' registry
    # storage, one directory per run) goes away with this benchmark's own directory
    env = leg_env(info.host, CI_BLOB_CACHE=str(work / "blobs"), TMPDIR=str(work / "tmp"))
    builder = env.get("CI_BUILDER", "")
    ours_regs, peer_regs = Registries(work, "ours"), Registries(work, "peer")
    bases_reg = start_registry(work / "bases")
    eng = connect(env)
    peer: Peer | None = None
    try:
        plan, _ = prepare(BuildRequest(push=True, family=Family.BACKENDS, tag_suffix=SUFFIX, platform_tag=PTAG,
                                       images=",".join(peer_regs.images), root=str(root)), env)
        caps = BuildxBuilder(eng, env, name=builder).caps()
        feas = leg_feasibility(plan, caps, env)
        if not feas.runs:
            sys.exit(f"{info.label}: the leg cannot be built here: {feas.reason}")
        with OfflineBases(env, host=bases_reg.host) as bases:
            contexts = bases.contexts(feas.offline_bases)
        peer = Peer(peer_command(plan, caps, contexts, builder), plan.context)
        ours = Ours()
        print(f"== {info.label}: warm-up (untimed) ...", file=sys.stderr, flush=True)
        ours.once(env, root, ours_regs.images, work, record=False)
        peer.once(env, peer_regs.images, record=False)
        for i in range(args.runs):
            if args.fresh_registries:
                ours_regs.fresh()
                peer_regs.fresh()
            sides = [lambda: ours.once(env, root, ours_regs.images, work), lambda: peer.once(env, peer_regs.images),
                     lambda: ours.plan_only(env, root, ours_regs.images, work),
                     lambda: ours.serve_bases(env, feas.offline_bases, work)]
            for side in sides if i % 2 == 0 else sides[::-1]:
                side()
            print(f"   run {i + 1}: ours {ours.seconds[-1]:.2f}s, LocalAI's {peer.total[-1]:.2f}s "
                  f"(build {peer.build[-1]:.2f}s + push {peer.push[-1]:.2f}s)", file=sys.stderr, flush=True)
    finally:
        if peer is not None and peer.tagged:  # the engines are shared: untag what LocalAI's side tagged
            subprocess.run(["docker", "rmi", *sorted(peer.tagged)], env=env, capture_output=True, check=False)
        eng.client.close()
        ours_regs.stop()
        peer_regs.stop()
        bases_reg.stop()
    return Result(info, ours, peer)


def report(res: Result, fresh: bool) -> None:
    o, p = res.ours, res.peer
    ours, peer = median(o.seconds), median(p.total)
    same = len(set(o.digests)) == 1
    equal = o.digests[0] == p.digests[0]
    rows = [
        ("LocalAI's: docker buildx build --load", f"{median(p.build):.2f} s", spread(p.build)),
        ("LocalAI's: docker push x2 (one after the other)", f"{median(p.push):.2f} s", spread(p.push)),
        ("LocalAI's: build + push", f"{peer:.2f} s", spread(p.total)),
        ("ours: invoke build-backend (build + publish x2)", f"{ours:.2f} s",
         note(spread(o.seconds), f"{res.ratio:.2f}x LocalAI's")),
        ("ours: the same with --dry-run", f"{median(o.dry_run):.2f} s",
         note(spread(o.dry_run), "interpreter, invoke, matrix, git, plan: no engine, no registry")),
        ("ours: serving the offline bases alone", f"{median(o.bases):.2f} s",
         note(spread(o.bases), "a private loopback registry started, bases pushed, stopped: in ours' time, "
              f"served once for LocalAI's; ours less this ~{ours - median(o.bases):.2f} s, "
              f"~{(ours - median(o.bases)) / peer:.2f}x")),
        ("ours: Dockerfile steps run (not cached)", ", ".join(map(str, o.steps_run)), "0 every run: the cache was warm"),
        ("ours: bytes uploaded (both registries)", ", ".join(map(str, o.uploaded)),
         "fresh registries each run" if fresh else "registries kept: 0 expected"),
        ("ours: same digest every run", str(same), o.digests[0][:19]),
        ("same digest as LocalAI's docker push", str(equal), p.digests[0][:19]),
    ]
    print(f"\n{res.info.label}: {SUFFIX} {PTAG}, warm build cache, "
          f"{'fresh' if fresh else 'kept'} registries, {len(o.seconds)} timed run(s) each, medians")
    print_table(("measure", "value", "note"), rows, right=(1,))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=default_engines(os.environ), help=ENGINES_HELP)
    ap.add_argument("--runs", type=int, default=3, help="timed runs of each side per engine (default 3)")
    ap.add_argument("--fresh-registries", action="store_true",
                    help="empty registries for every timed run (default: kept, as in a CI re-run)")
    ap.add_argument("--keep-dir", action="store_true", help="keep the temporary directory (copy, blob cache)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be at least 1")
    if shutil.which("docker") is None:
        sys.exit("the docker CLI with the buildx plugin is needed (both sides build with it)")
    results: list[Result] = []
    with scratch_dir("bench-build-", keep=args.keep_dir) as tmp:
        for host in parse_engines(args.engines):
            results.append(bench_engine(engine_info(host), args, tmp))
            report(results[-1], args.fresh_registries)
    if len(results) > 1:
        print("\nsummary (medians)")
        rows = [(r.info.store, f"{median(r.ours.seconds):.2f} s", f"{median(r.peer.total):.2f} s", f"{r.ratio:.2f}x")
                for r in results]
        print_table(("image store", "ours", "LocalAI's", "ours / LocalAI's"), rows, right=(1, 2, 3))


if __name__ == "__main__":
    main()
