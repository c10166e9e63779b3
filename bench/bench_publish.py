"""Benchmark: publish a >= 256 MiB leg by digest to two registries vs ``docker push``, on every engine.

Not a test. Run::

    python bench/bench_publish.py [--engines HOST1,HOST2] [--mib 256] [--rounds 3] [--leg build|load]

``--engines`` (default: ``$CI_TEST_ENGINES``, else ``$DOCKER_HOST``) lists the engines to measure,
one after the other; ``.ci/run`` sets ``CI_TEST_ENGINES`` to the classic and the containerd image
store. On each engine the leg is made once, untimed:

- ``--leg build`` (default): a BuildKit build through :class:`localai_ci.docker.builder.BuildxBuilder`
  (``docker buildx build --load``: the engine-image path; ``bench_handoff.py`` measures the OCI
  layout hand-off) of ``FROM scratch`` + ``COPY`` of an incompressible
  ``--mib`` MiB file, so the engine holds what a real leg leaves there: uncompressed layers on
  the classic store, BuildKit's gzip layers (and manifest) on the containerd store;
- ``--leg load``: the offline payload base ``docker load``-ed (``localai_ci.docker.offline_bases.ensure_base_image``);
  its layer stays uncompressed on both stores (the old benchmark's leg).

Then ``--rounds`` rounds, each on fresh throwaway loopback registries and a fresh blob cache, the
two sides' order alternating between rounds:

- ours: ``localai_ci.publish.leg.push_image`` to two registries (in a subprocess, so its peak RSS is its own),
  then again with the same cache (the re-publish: 0 bytes must be uploaded);
- LocalAI's: ``docker push`` of the same image to one registry, and to two registries one after
  the other (what ``docker/build-push-action`` with two tags costs);
- for the explanation: ``docker save`` of the image read to the end and dropped (the engine's
  export alone, which our publish reads and ``docker push`` does not).

Prints one table per engine (medians over the rounds, min-max in the notes) and a summary with the
ratios against the targets: publish to both registries <= 1.0x one ``docker push``; 0 bytes
re-uploaded; peak RSS < 200 MiB; the same digest on both publishes.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    ENGINES_HELP,
    EngineInfo,
    default_engines,
    engine_env,
    engine_info,
    median,
    note,
    parse_engines,
    print_table,
    spread,
)

MIB = 1 << 20
TARGET_RATIO = 1.0
RSS_LIMIT_MIB = 200
LEG_REPO = "localai-ci-bench/publish"
FIXED_MTIME = 1_000_000_000  # the payload's mtime: the same bytes make the same layer, run after run


def child(image: str, targets: list[str], cache_dir: str) -> None:
    """Publish ``image`` to ``targets`` (in this process, engine from DOCKER_HOST) and print a JSON report."""
    from localai_ci.docker.engine import connect
    from localai_ci.oci.blobcache import BlobCache
    from localai_ci.oci.client import RegistryClients
    from localai_ci.oci.reference import parse_image_name
    from localai_ci.publish.upload import PushTarget, push_image

    t0 = time.monotonic()
    staged_at: list[float] = []  # when staging ended (the export read to its end, every blob in the cache)

    def log(text: str) -> None:
        if text.startswith(("exported ", "staged ")):
            staged_at.append(time.monotonic() - t0)
    with BlobCache(cache_dir) as cache:
        engine = connect()
        rep = push_image(engine, image, [PushTarget(parse_image_name(t), plain_http=True) for t in targets],
                         cache=cache, client_factory=RegistryClients(), log=log,
                         content_dirs=engine.content_store(os.environ))  # as invoke build-backend does
    seconds = time.monotonic() - t0
    hwm = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    print(json.dumps({"seconds": seconds, "bytes": rep.bytes_uploaded, "digest": rep.digest,
                      "exported": rep.exported, "staged": staged_at[0] if staged_at else -1.0, "media_type": rep.manifest.media_type,
                      "uploaded": [t.uploaded for t in rep.targets], "mounted": [t.mounted for t in rep.targets],
                      "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "vmhwm": hwm}))


@dataclass(frozen=True)
class Publish:
    seconds: float  # push_image in the child (connect + stage + upload + manifests)
    wall: float  # the child process, interpreter start included
    bytes: int
    digest: str
    exported: bool
    staged: float  # seconds into ``seconds`` when staging (export into the blob cache) was done
    media_type: str
    rss: float  # MiB

    @classmethod
    def run(cls, env: dict[str, str], image: str, targets: list[str], cache_dir: Path) -> Publish:
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, __file__, "--child", image, str(cache_dir), *targets],
                              capture_output=True, text=True, check=False, env=env, stdin=subprocess.DEVNULL)
        wall = time.monotonic() - t0
        if done.returncode != 0:
            raise SystemExit(f"publish of {image} to {', '.join(targets)} failed:\n{done.stderr}")
        d = json.loads(done.stdout.strip().splitlines()[-1])
        return cls(float(d["seconds"]), wall, int(d["bytes"]), str(d["digest"]), bool(d["exported"]),
                   float(d["staged"]), str(d["media_type"]), max(int(d["vmhwm"]), int(d["maxrss"])) / MIB)


def docker(env: dict[str, str], *args: str) -> float:
    t0 = time.monotonic()
    done = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, check=False,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return time.monotonic() - t0


def docker_save_seconds(env: dict[str, str], image: str) -> float:
    """``docker save IMAGE`` read to the end and dropped: the engine's export alone."""
    t0 = time.monotonic()
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                          stdin=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        while proc.stdout.read(MIB):
            pass
    if proc.returncode != 0:
        raise SystemExit(f"docker save {image} failed ({proc.returncode})")
    return time.monotonic() - t0


def registry_digest(host: str, repo: str, tag: str) -> str:
    """The manifest digest a registry holds for ``repo:tag`` (what ``docker push`` published)."""
    import urllib.request

    accept = ", ".join(["application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.oci.image.index.v1+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json"])
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/{tag}", method="HEAD",
                                 headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=30) as res:
        return str(res.headers.get("Docker-Content-Digest", ""))


# ---- the leg ------------------------------------------------------------------------------------
def write_payload(path: Path, size: int, seed: str) -> None:
    """``size`` deterministic incompressible bytes (seeded PRNG), written in chunks."""
    rng = random.Random(seed)
    with open(path, "wb") as fh:
        left = size
        while left:
            n = min(left, 4 * MIB)
            fh.write(rng.randbytes(n))
            left -= n
    os.utime(path, (FIXED_MTIME, FIXED_MTIME))


def make_leg(info: EngineInfo, how: str, mib: int, work: Path) -> tuple[str, str]:
    """Make the leg in the engine (untimed); return (engine tag, image id)."""
    from localai_ci.docker.engine import connect
    from localai_ci.oci.platforms import parse_platform

    env = engine_env(info.host)
    platform = parse_platform(f"linux/{info.arch}")
    eng = connect(env)
    try:
        if how == "load":
            from localai_ci.docker.offline_bases import ensure_base_image

            name = f"ci-offline/bench-publish:{mib}m"
            return name, ensure_base_image(eng.client, name, platform, payload_bytes=mib * MIB)
        from localai_ci.docker.builder import BuildSpec, BuildxBuilder

        ctx = work / "leg-context"
        ctx.mkdir(parents=True, exist_ok=True)
        payload = ctx / "payload.bin"
        if not payload.exists() or payload.stat().st_size != mib * MIB:
            write_payload(payload, mib * MIB, f"bench-publish|{mib}")
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY payload.bin /payload.bin\n")
        tag = f"{LEG_REPO}:{mib}m"
        # load=True: this benchmark publishes the engine's image (the --load path); bench_handoff.py
        # measures the OCI layout hand-off
        spec = BuildSpec(context=str(ctx), dockerfile=str(ctx / "Dockerfile"), platform=platform, tag=tag,
                         build_args=(("SOURCE_DATE_EPOCH", str(FIXED_MTIME)),), load=True)  # the same id every run
        built = BuildxBuilder(eng, env).build(spec, lambda e: None)
        return tag, built.info.id
    finally:
        eng.client.close()


# ---- one engine ---------------------------------------------------------------------------------
@dataclass
class Rounds:
    first: list[Publish] = field(default_factory=list)
    again: list[Publish] = field(default_factory=list)
    one: list[float] = field(default_factory=list)
    both: list[float] = field(default_factory=list)
    save: list[float] = field(default_factory=list)
    pushed_digest: list[str] = field(default_factory=list)


def run_round(info: EngineInfo, image: str, tmp: Path, uid: str, r: int, out: Rounds) -> None:
    from localai_ci.oci.localregistry import start_registry

    env = engine_env(info.host)
    base = tmp / f"round{r}"
    regs = [start_registry(base / f"reg{i}") for i in range(5)]
    repo = f"bench/{uid}"
    pushed: list[str] = []
    try:
        ours = [f"{regs[0].host}/{repo}", f"{regs[1].host}/{repo}"]
        refs = [f"{reg.host}/{repo}:bench" for reg in regs[2:]]
        for ref in refs:
            docker(env, "tag", image, ref)
            pushed.append(ref)

        def ours_side() -> None:
            out.first.append(Publish.run(env, image, ours, base / "cache"))
            out.again.append(Publish.run(env, image, ours, base / "cache"))

        def docker_side() -> None:
            out.one.append(docker(env, "push", "--quiet", refs[0]))
            out.both.append(docker(env, "push", "--quiet", refs[1]) + docker(env, "push", "--quiet", refs[2]))
            out.pushed_digest.append(registry_digest(regs[2].host, repo, "bench"))

        for side in ((ours_side, docker_side) if r % 2 == 0 else (docker_side, ours_side)):
            side()
        out.save.append(docker_save_seconds(env, image))
    finally:
        for ref in pushed:
            subprocess.run(["docker", "rmi", ref], capture_output=True, env=env, check=False)
        for reg in regs:
            reg.stop()
        shutil.rmtree(base, ignore_errors=True)


@dataclass(frozen=True)
class Result:
    info: EngineInfo
    how: str
    size: int
    image_id: str
    rounds: Rounds

    @property
    def ratio(self) -> float:
        return median(p.seconds for p in self.rounds.first) / median(self.rounds.one)

    @property
    def rss(self) -> float:
        return max(p.rss for p in self.rounds.first + self.rounds.again)

    @property
    def rebytes(self) -> int:
        return max(p.bytes for p in self.rounds.again)

    @property
    def same_digest(self) -> bool:
        return len({p.digest for p in self.rounds.first + self.rounds.again}) == 1

    @property
    def ok(self) -> bool:
        return self.ratio <= TARGET_RATIO and self.rebytes == 0 and self.rss < RSS_LIMIT_MIB and self.same_digest


def bench_engine(info: EngineInfo, args: argparse.Namespace, tmp: Path) -> Result:
    from localai_ci.docker.engine import connect

    print(f"== {info.label}: making the leg ({args.leg}, {args.mib} MiB) ...", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    tag, image_id = make_leg(info, args.leg, args.mib, tmp)
    eng = connect(engine_env(info.host))
    try:
        size = eng.inspect(image_id).size
    finally:
        eng.client.close()
    print(f"   {tag} = {image_id[:19]} in {time.monotonic() - t0:.1f}s; {args.rounds} round(s) ...",
          file=sys.stderr, flush=True)
    out = Rounds()
    uid = uuid.uuid4().hex[:8]
    try:
        for r in range(args.rounds):
            run_round(info, image_id, tmp, uid, r, out)
            print(f"   round {r + 1}: ours {out.first[-1].seconds:.2f}s, docker push {out.one[-1]:.2f}s",
                  file=sys.stderr, flush=True)
    finally:  # the engines are shared: take the 256 MiB leg away (BuildKit's cache keeps the steps)
        subprocess.run(["docker", "rmi", tag], capture_output=True, env=engine_env(info.host), check=False)
    return Result(info, args.leg, size, image_id, out)


def report(res: Result) -> None:
    r = res.rounds
    first_s = [p.seconds for p in r.first]
    wall_s = [p.wall for p in r.first]
    again_s = [p.seconds for p in r.again]
    one, both, save = median(r.one), median(r.both), median(r.save)
    ours = median(first_s)
    digest = r.first[0].digest
    same_as_push = all(d == digest for d in r.pushed_digest)
    leg = ("BuildKit build (FROM scratch + COPY)" if res.how == "build" else "docker load of the payload base")
    kind = "the engine's own (= image id)" if digest == res.image_id else "composed here (gzip layers)"
    rows = [
        ("leg", f"{res.size / MIB:.0f} MiB", f"{leg}, uncompressed size"),
        ("docker push, one registry", f"{one:.2f} s", spread(r.one)),
        ("docker push, both registries", f"{both:.2f} s", note(spread(r.both), "one after the other")),
        ("docker save alone (export, dropped)", f"{save:.2f} s", note(spread(r.save), "part of ours, not of docker push")),
        ("publish, both registries (cold)", f"{ours:.2f} s",
         note(spread(first_s), f"{ours / one:.2f}x one docker push (target <= {TARGET_RATIO:.2f}x), "
                                f"{ours / both:.2f}x docker push to both")),
        ("  of which: staged (export into the cache)", f"{median(p.staged for p in r.first):.2f} s",
         "connect + docker save streamed into the blob cache; uploads overlap it blob by blob"),
        ("  of which: after staging", f"{median(p.seconds - p.staged for p in r.first):.2f} s",
         "the rest of the uploads, manifests PUT and HEADed back"),
        ("  same, process wall time", f"{median(wall_s):.2f} s", "interpreter start and imports included"),
        ("bytes uploaded, first publish", f"{r.first[0].bytes / MIB:.1f} MiB", "both registries"),
        ("re-publish", f"{median(again_s):.2f} s",
         note(spread(again_s), f"exported again: {any(p.exported for p in r.again)}")),
        ("bytes uploaded, re-publish", f"{res.rebytes}", "target 0"),
        ("peak RSS of the publish", f"{res.rss:.0f} MiB", f"{res.rss / RSS_LIMIT_MIB:.2f}x of the "
                                                          f"{RSS_LIMIT_MIB} MiB limit"),
        ("same digest every publish", str(res.same_digest), f"{digest[:19]}, manifest {kind}"),
        ("same digest as docker push", str(same_as_push), r.pushed_digest[0][:19] if r.pushed_digest else ""),
    ]
    print(f"\n{res.info.label}, {len(r.first)} round(s), medians")
    print_table(("measure", "value", "note"), rows, right=(1,))
    print("targets met" if res.ok else "targets NOT met")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=default_engines(os.environ), help=ENGINES_HELP)
    ap.add_argument("--mib", type=int, default=256, help="incompressible payload size in MiB (default 256)")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per engine (default 3), medians reported")
    ap.add_argument("--leg", choices=("build", "load"), default="build",
                    help="how the leg is made: BuildKit build (default) or docker load of the payload base")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[2:], args.child[1])
        return
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    if args.mib < 256:
        print(f"note: --mib {args.mib} is below the 256 MiB the targets are stated for", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    results: list[Result] = []
    try:
        for host in parse_engines(args.engines):
            results.append(bench_engine(engine_info(host), args, tmp))
            report(results[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if len(results) > 1:
        print("\nsummary (medians)")
        rows = [(r.info.store, f"{median(p.seconds for p in r.rounds.first):.2f} s", f"{median(r.rounds.one):.2f} s",
                 f"{r.ratio:.2f}x", f"{r.rebytes}", f"{r.rss:.0f} MiB", str(r.same_digest),
                 "met" if r.ok else "NOT met") for r in results]
        print_table(("image store", "publish x2", "docker push x1", "ratio (<= 1.00x)", "re-upload", "peak RSS",
                     "same digest", "targets"), rows, right=(1, 2, 3, 4, 5))


if __name__ == "__main__":
    main()
