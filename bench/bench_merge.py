"""Benchmark (not a test): merge N suffixes x 2 legs into 2 registries tens of milliseconds away, side by side.

    python bench/bench_merge.py [--suffixes 386] [--latency-ms 20] [--parallel 1,8,20] [--rounds 3] [--jobs N]

Two loopback registries ("quay" and "hub", the Docker Hub stand-in), each behind a proxy
(``tests/support/faultproxy.py``, in a process of its own so that its threads share no interpreter with
either side) that holds every request ``--latency-ms`` on its way there and every answer as long
on its way back -- registries that far away -- and counts the requests by kind.
Every side merges the same children (pushed untimed, by digest, into a repository of its own in
both registries) under the same tags:

- **ours**: ``localai_ci.merge.run.merge_all`` (``nox -s merge -- --all``): preflight of every child in every
  registry (manifests and configs read from "quay", HEAD in "hub", named the pull-counted one with
  ``CI_PULL_COUNTED_REGISTRIES``), the list composed once, PUT under every tag in both, each PUT
  HEADed back and the list read back by digest; ``--jobs`` suffixes at a time (default: the tool's);
- **imagetools**: LocalAI's merge step, ``docker buildx imagetools create -t ... REPO@leg1 REPO@leg2``
  once per registry and suffix, nothing checked before or after; one at a time, and with each of
  ``--parallel`` processes at once.

Prints each side's wall time (medians over ``--rounds``, the sides taking turns, the sequential
imagetools once: it is minutes), its manifest GETs per registry and per suffix on the Docker Hub
stand-in (Docker Hub counts every manifest GET against the pull limit; HEADs are free), and the
ratios of ours to each imagetools side pair by pair within a round. The machine may be shared:
each line says the load average when the side started.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import shutil
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import print_table, registry_pair, scratch_dir  # noqa: E402

from localai_ci.docker import imagetools  # noqa: E402
from localai_ci.github.artifacts import read_digests_dir, write_digest_file  # noqa: E402
from localai_ci.matrix.model import load_matrix  # noqa: E402
from localai_ci.matrix.naming import Family, LegKey  # noqa: E402
from localai_ci.matrix.tags import Latest, TagInput, TagSource, compute_tags  # noqa: E402
from localai_ci.merge.model import DEFAULT_JOBS, MergeOptions, Method, Outcome  # noqa: E402
from localai_ci.merge.run import FamilySetup, merge_all  # noqa: E402
from localai_ci.oci.client import RegistryClient  # noqa: E402
from localai_ci.oci.localregistry import LocalRegistry  # noqa: E402
from localai_ci.oci.reference import parse_image_name, sha256_digest  # noqa: E402
from localai_ci.settings import family_config  # noqa: E402
from tests.support.oci_images import tiny_image, write_matrix  # noqa: E402

SHA = "0123456789abcdef0123456789abcdef01234567"
REF = "refs/tags/v9.9.9"
PTAGS = ("amd64", "arm64")
TARGET = 0.5  # ours <= 0.5x the time of imagetools with 20 processes at once
GET_TARGET = 1.0  # manifest GETs per suffix on the Docker Hub stand-in


def push_children(regs: list[LocalRegistry], repos: list[str], suffixes: list[str], digests: Path) -> None:
    """Every leg of every suffix, by digest, straight into every repository (no proxy); its digest files."""
    local = threading.local()
    images = [parse_image_name(f"{r.host}/{repo}") for r in regs for repo in repos]
    opened: list[RegistryClient] = []
    lock = threading.Lock()

    def clients() -> list[RegistryClient]:
        if not hasattr(local, "clients"):
            local.clients = [RegistryClient(i, plain_http=True) for i in images]
            with lock:
                opened.extend(local.clients)
        return local.clients  # type: ignore[no-any-return]

    def push(suffix: str) -> None:
        for p in PTAGS:
            config, layer, manifest = tiny_image(f"linux/{p}", f"{suffix}-{p}")
            for c in clients():
                for blob in (config, layer):
                    c.push_blob(sha256_digest(blob), len(blob), partial(io.BytesIO, blob))
                c.put_manifest(manifest.digest, manifest.body, manifest.media_type)
            write_digest_file(digests, LegKey(Family.BACKENDS, suffix, p), manifest.digest)

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(push, suffixes))
    finally:
        for c in opened:
            c.close()


@dataclass(frozen=True)
class Side:
    name: str
    wall: float
    gets: tuple[int, int]  # manifest GETs in quay, hub
    load: float


class Proxies:
    """The two proxies, served by a child process; ``gets()``: manifest GETs each has forwarded so far."""

    def __init__(self, upstreams: list[str], latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_proxies, args=(upstreams, latency, child), daemon=True)
        self._proc.start()
        self.hosts: list[str] = self._conn.recv()

    def gets(self) -> list[int]:
        self._conn.send("gets")
        return list(self._conn.recv())

    def stop(self) -> None:
        self._conn.send("stop")
        self._proc.join(30)


def _serve_proxies(upstreams: list[str], latency: float, conn: object) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.faultproxy import FaultProxy as Proxy

    proxies = [Proxy(u, latency=latency, lifetime=24 * 3600, max_connections=512, io_timeout=120).start()
               for u in upstreams]
    conn.send([p.host for p in proxies])  # type: ignore[attr-defined]
    while True:
        what = conn.recv()  # type: ignore[attr-defined]
        if what == "gets":
            conn.send([p.routes[("GET", "manifests")] for p in proxies])  # type: ignore[attr-defined]
        else:
            for p in proxies:
                p.stop()
            return


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def ours(hosts: list[str], repo: str, digests: Path, matrix: Path, jobs: int) -> float:
    images = ",".join(f"{h}/{repo}" for h in hosts)
    setup = FamilySetup(family_config(Family.BACKENDS, images=images), load_matrix(matrix))
    opts = MergeOptions(method=Method.NATIVE, tag_source=TagSource("push", REF, SHA), jobs=jobs,
                        pull_counted=frozenset({hosts[1]}))
    t0 = time.monotonic()
    report = merge_all(digests, {Family.BACKENDS: setup}, opts)
    wall = time.monotonic() - t0
    bad = [r for r in report.results if r.outcome is not Outcome.MERGED]
    if bad:
        raise SystemExit(f"ours: {len(bad)} suffix(es) not merged: {bad[0].reason}")
    print(f"    {report.requests_line(frozenset({hosts[1]}))}", flush=True)
    return wall


def with_imagetools(hosts: list[str], repo: str, digests: Path, suffixes: list[str], at_once: int) -> float:
    arts = read_digests_dir(digests)
    images = [parse_image_name(f"{h}/{repo}") for h in hosts]
    calls = []
    for s in suffixes:
        tags = compute_tags(TagInput("push", REF, SHA, s, Latest.AUTO))
        kids = sorted(a.digest for a in arts if a.key.suffix == s)
        calls += [(img, tags, kids) for img in images]
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        list(pool.map(lambda c: imagetools.create(*c), calls))
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suffixes", type=int, default=386, help="suffixes to merge (default 386: LocalAI's 2026-08 matrix)")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="one way, every request (default 20)")
    ap.add_argument("--jobs", type=int, default=DEFAULT_JOBS, help="ours: suffixes at once (default: the tool's, %(default)s)")
    ap.add_argument("--parallel", default="1,8,20", help="imagetools processes at once, comma-separated (1: LocalAI's "
                                                          "sequential merge step, run in the first round only)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("docker") is None:
        print("the docker CLI with buildx is needed for the imagetools side", file=sys.stderr)
        return 2
    parallel = [int(x) for x in args.parallel.split(",") if x]
    with scratch_dir("bench-merge-") as tmp, registry_pair(tmp) as regs:
        suffixes = [f"-cpu-bench{i:03d}" for i in range(args.suffixes)]
        matrix = write_matrix(tmp / "matrix.yml", [(s, p) for s in suffixes for p in PTAGS])
        sides = ["ours", *(f"imagetools x{n}" for n in parallel)]
        repos = {f"{side} r{r}": f"bench/{side.replace(' ', '-')}-r{r}" for side in sides for r in range(args.rounds)}
        digests = tmp / "digests"
        t0 = time.monotonic()
        push_children(regs, list(repos.values()), suffixes, digests)
        print(f"setup: {args.suffixes} suffixes x {len(PTAGS)} legs in {len(repos)} repositories of 2 registries in "
              f"{time.monotonic() - t0:.0f}s; {args.latency_ms:g} ms each way to each; ours --jobs {args.jobs}",
              flush=True)
        proxies = Proxies([r.host for r in regs], args.latency_ms / 1000)
        runs: list[list[Side]] = []
        try:
            for r in range(args.rounds):
                this = [s for s in sides if not (s == "imagetools x1" and r > 0)]
                order = this[r % len(this):] + this[:r % len(this)]
                done: list[Side] = []
                for side in order:
                    before = proxies.gets()
                    load = load_average()
                    repo = repos[f"{side} r{r}"]
                    if side == "ours":
                        wall = ours(proxies.hosts, repo, digests, matrix, args.jobs)
                    else:
                        wall = with_imagetools(proxies.hosts, repo, digests, suffixes, int(side.split("x")[1]))
                    gets = tuple(a - b for a, b in zip(proxies.gets(), before))
                    done.append(Side(side, wall, (gets[0], gets[1]), load))
                    print(f"round {r + 1} {side:14s} {wall:7.1f} s  manifest GETs quay {gets[0]:5d}, hub {gets[1]:5d} "
                          f"({gets[1] / args.suffixes:.2f}/suffix)  load average {load:.1f}", flush=True)
                runs.append(done)
        finally:
            proxies.stop()

    n = args.suffixes
    rows = []
    for side in sides:
        got = [x for rr in runs for x in rr if x.name == side]
        rows.append((side, f"{statistics.median(x.wall for x in got):.1f} s", str(len(got)),
                     str(got[0].gets[0]), str(got[0].gets[1]), f"{got[0].gets[1] / n:.2f}"))
    print(f"\n{n} suffixes x 2 legs, 2 registries {args.latency_ms:g} ms away each way; medians")
    print_table(("side", "wall", "runs", "GETs quay", "GETs hub", "hub GETs/suffix"), rows, right=(1, 2, 3, 4, 5))
    print()
    out = []
    for side in sides[1:]:
        pairs = [by["ours"].wall / by[side].wall for by in ({x.name: x for x in rr} for rr in runs) if side in by]
        out.append((f"ours / {side}", f"{statistics.median(pairs):.2f}x", f"{min(pairs):.2f}-{max(pairs):.2f}",
                    str(len(pairs))))
    print_table(("ratio (wall)", "median", "range", "pairs"), out, right=(1, 3))
    ours_gets = next(x for rr in runs for x in rr if x.name == "ours").gets[1] / n
    it20 = [ratio for side, ratio, *_ in out if side.endswith("x20")]
    if it20:
        r20 = float(it20[0].rstrip("x"))
        print(f"target: ours <= {TARGET}x imagetools x20 ({'met' if r20 <= TARGET else 'NOT met'}: {r20:.2f}x); "
              f"<= {GET_TARGET:g} manifest GET per suffix on the Docker Hub stand-in "
              f"({'met' if ours_gets <= GET_TARGET else 'NOT met'}: {ours_gets:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
