"""Benchmark (not a test): build and publish a >= 2 GiB leg to two registries three ways, side by side.

    python bench/bench_handoff.py [--engine HOST] [--work DIR] [--rounds 3] [--layers 6] [--mib 342]

One engine that can export an OCI layout (the containerd image store's docker driver; a
docker-container builder exports the same layout), two fresh loopback registries per side and
round ("quay" and "hub", storage outside ``--work``), each side from a clean BuildKit cache
(``docker buildx prune -af``), all three exporting the same registry cache (``mode=max``, to "quay"):

- **ours** -- the OCI layout hand-off: ``localai_ci.build.leg.run_leg`` (``invoke build-backend``):
  BuildKit exports the layout (``--output type=oci,tar=false``), the tool pushes its blobs and
  manifest by digest to both registries;
- **buildkit** -- BuildKit pushes both names itself: ``docker buildx build --output
  type=image,"name=R1/...,R2/...",push=true`` with the same cache export (what
  ``docker/build-push-action`` with two tags does);
- **load** -- the tool's ``--load`` path (what every builder used before): ``--load`` into the
  engine, then the tool publishes the engine's image (from the containerd content store).

The leg: ``FROM scratch`` and one ``COPY`` per layer, ``--layers`` files of ``--mib`` MiB each, every
MiB half random bytes and half a slice of this machine's own libraries (``/usr/lib``: compressible
as real binaries are). Made once in ``--work``, untimed.

Measured per side: wall time (the whole leg: build, export, publish) and the peak disk use: the
most the free space of the engine's data root and ``--work`` (layouts, blob cache), each
filesystem once, fell below its value at the side's start, sampled every 0.2 s. Registries are
the remote side and not counted. The sides take turns (the order rotates every round); medians,
and the ratios pair by pair within a round, are printed. The machine may be shared: each side's line
says the load average when it started.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import engine_env, engine_info, print_table

MIB = 1 << 20
SIDES = ("ours", "buildkit", "load")
SUFFIX = "-cpu-bench"
TARGET_WALL, TARGET_DISK = 1.0, 1.1
MATRIX = """include:
  - build-type: ''
    cuda-major-version: ""
    cuda-minor-version: ""
    platforms: 'linux/amd64'
    tag-latest: 'auto'
    tag-suffix: '{suffix}'
    runs-on: 'ubuntu-latest'
    base-image: "scratch"
    skip-drivers: 'false'
    backend: "bench"
    dockerfile: "./ctx/Dockerfile"
    context: "./ctx"
    ubuntu-version: '2404'
"""


# ---- the leg ----------------------------------------------------------------------------------------
def library_pool(size: int) -> bytes:
    """``size`` bytes of this machine's own shared libraries and programs (sorted, so the same every run)."""
    out = bytearray()
    for root in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/bin"):
        for dirpath, dirnames, files in os.walk(root):
            dirnames.sort()
            for name in sorted(files):
                p = Path(dirpath) / name
                if p.is_symlink() or not p.is_file():
                    continue
                try:
                    out += p.read_bytes()[: size - len(out)]
                except OSError:
                    continue
                if len(out) >= size:
                    return bytes(out)
    if not out:
        raise SystemExit("no libraries under /usr to make the compressible half of the leg from")
    return bytes((out * (size // len(out) + 1))[:size])


def make_context(ctx: Path, layers: int, mib: int) -> int:
    """The leg's build context (untimed, kept between runs); its size in bytes."""
    ctx.mkdir(parents=True, exist_ok=True)
    stamp = ctx / ".made"
    want = f"{layers}x{mib}"
    if stamp.exists() and stamp.read_text() == want:
        return layers * mib * MIB
    half = MIB // 2
    pool = library_pool(256 * MIB)
    lines = ["FROM scratch"]
    for n in range(layers):
        rng = random.Random(f"bench-handoff-{n}")
        with open(ctx / f"layer{n}.bin", "wb") as fh:
            for _ in range(mib):
                fh.write(rng.randbytes(half))
                start = rng.randrange(0, len(pool) - half)
                fh.write(pool[start:start + half])
        os.utime(ctx / f"layer{n}.bin", (1_000_000_000, 1_000_000_000))
        lines.append(f"COPY layer{n}.bin /layer{n}.bin")
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    stamp.write_text(want)
    return layers * mib * MIB


# ---- measuring ---------------------------------------------------------------------------------------
class DiskPeak:
    """The most the summed free space of ``paths``' filesystems (each once) fell below its start."""

    def __init__(self, paths: list[Path]) -> None:
        seen: set[int] = set()
        self.paths = []
        for p in paths:
            dev = os.stat(p).st_dev
            if dev not in seen:
                seen.add(dev)
                self.paths.append(p)
        self.start = self.low = self._free()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _free(self) -> int:
        total = 0
        for p in self.paths:
            st = os.statvfs(p)
            total += st.f_bavail * st.f_frsize
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.low = min(self.low, self._free())

    def __enter__(self) -> DiskPeak:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.low = min(self.low, self._free())

    @property
    def peak(self) -> int:
        return max(0, self.start - self.low)


def load_average() -> float:
    """The machine's 1-minute load average (2 cores here: above 2 means others wait, or we do)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


# ---- the sides --------------------------------------------------------------------------------------------
@dataclass
class Run:
    side: str
    wall: float
    disk: int
    digest: str
    load: float  # the machine's load average when the side started
    phases: dict[str, float] = field(default_factory=dict)


def child(side: str, root: str, images: str, cache_image: str, work: str) -> None:
    """``ours`` / ``load`` in this process (engine from DOCKER_HOST); prints a JSON line."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from localai_ci.build.leg import BuildRequest, build_leg, prepare, publish_built, run_leg
    from localai_ci.docker.builder import builder_for
    from localai_ci.docker.engine import connect
    from localai_ci.docker.offline_bases import OfflineBases
    from localai_ci.matrix.naming import Family
    from localai_ci.oci.blobcache import BlobCache
    from localai_ci.oci.client import RegistryClients

    env = {**os.environ, "CI_CACHE_IMAGE": cache_image}
    req = BuildRequest(family=Family.BACKENDS, tag_suffix=SUFFIX, platform_tag="amd64", matrix=f"{root}/matrix.yml",
                       root=root, images=images, digests_dir=f"{work}/digests", event="push",
                       cache_dir=f"{work}/blobs", local_tag="localai-ci-bench/handoff:amd64", push=True)
    err = io.StringIO()
    if side == "ours":
        res = run_leg(req, env=env, out=io.StringIO(), err=err, engine=connect(env))
        digest = res.digest
    else:  # the --load path: the image goes into the engine, then it is published from there
        plan, keychain = prepare(req, env)
        eng = connect(env)
        from localai_ci.output.progress import Progress

        with OfflineBases(env) as bases, Progress(1, err, tty=False) as progress:
            built = build_leg(plan, builder_for(eng, env), bases, on_event=progress.build_event("leg"), load=True)
        with BlobCache(req.cache_dir or "") as cache:
            res2 = publish_built(plan, built, eng, cache, RegistryClients(keychain), log=lambda s: None,
                                 content_dirs=eng.content_store(env))
        digest = res2.digest
    phases = {m[1]: float(m[2]) for m in re.finditer(r"done     (exporting [^(]+?) \((\d+\.\d)s\)", err.getvalue())}
    print(json.dumps({"digest": digest, "phases": phases}))


def docker(env: dict[str, str], *args: str, timeout: int = 3600) -> str:
    """``docker ARGS``: its stdout, then its stderr (buildx writes its progress there)."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise SystemExit(f"docker {' '.join(args[:3])} ... failed: {done.stderr.strip()[-2000:]}")
    return done.stdout + done.stderr


def reset(env: dict[str, str]) -> None:
    """A clean BuildKit cache and no image of the leg: every side compresses from scratch."""
    for ref in docker(env, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}").split():  # (stderr: empty)
        if "bench" in ref:
            subprocess.run(["docker", "image", "rm", "--force", ref], capture_output=True, env=env, check=False)
    docker(env, "buildx", "prune", "-af")
    subprocess.run(["sync"], check=False)


def run_side(side: str, env: dict[str, str], work: Path, regdir: Path, tag: str) -> Run:
    from localai_ci.oci.client import RegistryClient
    from localai_ci.oci.localregistry import start_registry
    from localai_ci.oci.reference import parse_image_name

    reset(env)
    regs = [start_registry(regdir / f"{tag}-{name}") for name in ("quay", "hub")]
    side_work = work / f"run-{tag}"
    side_work.mkdir(parents=True, exist_ok=True)
    images = [f"{r.host}/bench/backends" for r in regs]
    cache = f"{regs[0].host}/bench/ci-cache"
    cenv = {**env, "CI_LAYOUT_DIR": str(side_work / "layouts"), "CI_BLOB_CACHE": str(side_work / "blobs"),
            "SOURCE_DATE_EPOCH": "1700000000"}
    try:
        load = load_average()
        with DiskPeak([Path(engine_root(env)), work]) as disk:
            t0 = time.monotonic()
            if side == "buildkit":
                out = docker(cenv, "buildx", "build", "--progress=plain", "--provenance=false", "--sbom=false",
                             "--platform", "linux/amd64", "--metadata-file", str(side_work / "meta.json"),
                             "--output", f'type=image,"name={images[0]}:{tag},{images[1]}:{tag}",push=true',
                             "--cache-from", f"type=registry,ref={cache}:cache",
                             "--cache-to", f"type=registry,ref={cache}:cache,mode=max,ignore-error=true",
                             str(work / "repo" / "ctx"))
                digest = json.loads((side_work / "meta.json").read_text())["containerimage.digest"]
                phases = {m[1]: float(m[2]) for m in re.finditer(r"#\d+ (exporting [^\n]+?)\n(?:#\d+ [^\n]*\n)*?#\d+ "
                                                                 r"DONE (\d+\.\d)s", out)}
            else:
                done = subprocess.run([sys.executable, __file__, "--child", side, str(work / "repo"), ",".join(images),
                                       cache, str(side_work)], capture_output=True, text=True, env=cenv,
                                      stdin=subprocess.DEVNULL, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"{side}: {done.stdout[-2000:]}\n{done.stderr[-4000:]}")
                d = json.loads(done.stdout.strip().splitlines()[-1])
                digest, phases = d["digest"], d["phases"]
            wall = time.monotonic() - t0
        for img in images:  # published everywhere, by the same digest
            with RegistryClient(parse_image_name(img), plain_http=True) as c:
                head = c.head_manifest(digest)
                assert head is not None and head[0] == digest, f"{side}: {digest} missing from {img}"
        return Run(side, wall, disk.peak, digest, load, phases)
    finally:
        for r in regs:
            r.stop()
        for name in ("quay", "hub"):
            shutil.rmtree(regdir / f"{tag}-{name}", ignore_errors=True)
        shutil.rmtree(side_work, ignore_errors=True)
        reset(env)


def engine_root(env: dict[str, str]) -> str:
    return docker(env, "info", "--format", "{{.DockerRootDir}}").strip().splitlines()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="", help="DOCKER_HOST of the engine (default: the containerd-store engine of "
                                                 "$CI_TEST_ENGINES, else $DOCKER_HOST)")
    ap.add_argument("--work", default="", help="where the context, layouts and blob cache go (its filesystem is "
                                               "measured; default: a temporary directory)")
    ap.add_argument("--registries", default="", help="where the registries store (not measured; default: the "
                                                     "temporary directory)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--mib", type=int, default=342, help="MiB per layer (default 342: 6 x 342 MiB >= 2 GiB)")
    ap.add_argument("--sides", default=",".join(SIDES))
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    host = args.engine
    if not host:
        hosts = [h for h in os.environ.get("CI_TEST_ENGINES", "").split(",") if h]
        host = next((h for h in hosts if engine_info(h).store == "containerd"), os.environ.get("DOCKER_HOST", ""))
    info = engine_info(host)
    env = engine_env(host)
    sides = [s for s in args.sides.split(",") if s]
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-handoff-"))
    work.mkdir(parents=True, exist_ok=True)
    regdir = Path(args.registries or tempfile.mkdtemp(prefix="bench-handoff-regs-"))
    regdir.mkdir(parents=True, exist_ok=True)
    repo = work / "repo"
    size = make_context(repo / "ctx", args.layers, args.mib)
    (repo / "matrix.yml").write_text(MATRIX.format(suffix=SUFFIX))
    root = Path(engine_root(env))
    shared = os.stat(regdir).st_dev in (os.stat(work).st_dev, os.stat(root).st_dev)
    print(f"engine: {info.label}; leg: {args.layers} layers, {size / 2**30:.2f} GiB; measured filesystems: "
          f"{root} and {work}{'; WARNING: the registries store on a measured filesystem' if shared else ''}",
          flush=True)
    runs: list[list[Run]] = []
    for r in range(args.rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        this: list[Run] = []
        for side in order:
            run = run_side(side, env, work, regdir, f"r{r}{side}")
            this.append(run)
            print(f"round {r + 1} {side:8s} {run.wall:7.1f} s  peak disk {run.disk / 2**30:5.2f} GiB  "
                  f"{run.digest[:19]}  load average {run.load:4.1f}  {run.phases}", flush=True)
        runs.append(this)

    def med(side: str, key: str) -> float:
        return statistics.median(getattr(x, key) for rr in runs for x in rr if x.side == side)

    def ratio(a: str, b: str, key: str) -> tuple[float, str]:
        pairs = []
        for rr in runs:
            by = {x.side: x for x in rr}
            if a in by and b in by and getattr(by[b], key):
                pairs.append(getattr(by[a], key) / getattr(by[b], key))
        return statistics.median(pairs), f"{min(pairs):.2f}-{max(pairs):.2f}"

    print(f"\n{args.rounds} round(s), medians; ratios pair by pair within a round (median, min-max)")
    rows = [(s, f"{med(s, 'wall'):.1f} s", f"{med(s, 'disk') / 2**30:.2f} GiB") for s in sides]
    print_table(("side", "wall", "peak disk"), rows, right=(1, 2))
    out = []
    for a, b in (("ours", "buildkit"), ("load", "ours")):
        if a in sides and b in sides:
            w, wr = ratio(a, b, "wall")
            d, dr = ratio(a, b, "disk")
            out.append((f"{a} / {b}", f"{w:.2f}x", wr, f"{d:.2f}x", dr))
    print()
    print_table(("ratio", "wall", "wall range", "peak disk", "disk range"), out, right=(1, 3))
    if "ours" in sides and "buildkit" in sides:
        w, _ = ratio("ours", "buildkit", "wall")
        d, _ = ratio("ours", "buildkit", "disk")
        print(f"target ours/buildkit: wall <= {TARGET_WALL:.1f}x ({'met' if w <= TARGET_WALL else 'NOT met'}), "
              f"peak disk <= {TARGET_DISK:.1f}x ({'met' if d <= TARGET_DISK else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
