"""Benchmark (not a test): merge N suffixes x 2 legs into 2 loopback registries, two ways, in one run.

- native: ``localai_ci.merge.run.merge_all`` (preflight of every child in every registry, compose once, PUT
  the same bytes by tag in both registries, every write read back, the list digest read back),
  ``--jobs`` suffixes at a time, one pool of keep-alive clients per registry for the whole run;
- imagetools: LocalAI's way, sequential ``docker buildx imagetools create -t ... REPO@leg1 REPO@leg2``,
  one call per registry per suffix, nothing checked before or after.

Each engine gets its own repositories holding the same children, so both do the full work.

Besides both wall times and their ratio (target: native >= 10x faster) it prints what bounds
the native side: the HTTP requests per suffix it sent and the TCP connections it opened, and
the **floor**: the registries' own request rate, measured in the same run with the cheapest
client there is (``http.client``, warm keep-alive connections, both registries at once): HEADs
of a child manifest and PUTs of a list under a new tag. ``floor`` is the time those two
registries need for one suffix's requests at that rate; ``ceiling`` is the ratio a client
costing nothing would reach. On a 2-core machine the registries' CPU is most of it.

    python bench/bench_merge.py [--suffixes 40] [--jobs 8] [--floor-connections 4]
"""
from __future__ import annotations

import argparse
import http.client
import io
import os
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from _common import registry_pair, scratch_dir  # noqa: E402
from localai_ci.docker import imagetools  # noqa: E402
from localai_ci.github.artifacts import read_digests_dir, write_digest_file  # noqa: E402
from localai_ci.oci.client import RegistryClient, RegistryClients  # noqa: E402
from localai_ci.settings import family_config  # noqa: E402
from localai_ci.oci.localregistry import LocalRegistry  # noqa: E402
from localai_ci.oci.manifest import DOCKER_LIST, Descriptor, compose_index  # noqa: E402
from localai_ci.matrix.model import load_matrix  # noqa: E402
from localai_ci.merge.run import (FamilySetup, MergeOptions, Method, Outcome,  # noqa: E402
                      merge_all)
from localai_ci.matrix.naming import Family, LegKey  # noqa: E402
from localai_ci.oci.platforms import parse_platform  # noqa: E402
from localai_ci.oci.reference import ImageName, parse_image_name, sha256_digest  # noqa: E402
from localai_ci.matrix.tags import Latest, TagInput, TagSource, compute_tags  # noqa: E402
from oci_images import tiny_image, write_matrix  # noqa: E402

SHA = "0123456789abcdef0123456789abcdef01234567"
REF = "refs/tags/v9.9.9"
PTAGS = ("amd64", "arm64")
TARGET = 10.0


def push_children(regs: list[LocalRegistry], repos: list[str], suffixes: list[str], digests: Path) -> list[Descriptor]:
    """Every leg of every suffix, by digest, into every repository (4 threads, one client per repository
    and thread); returns the first suffix's children (the floor reads them)."""
    local = threading.local()
    images = [parse_image_name(r) for r in repos]
    opened: list[RegistryClient] = []
    lock = threading.Lock()

    def clients() -> list[RegistryClient]:
        if not hasattr(local, "clients"):
            local.clients = [RegistryClient(i, plain_http=True) for i in images]
            with lock:
                opened.extend(local.clients)
        return local.clients  # type: ignore[no-any-return]

    def push(suffix: str) -> list[Descriptor]:
        out = []
        for p in PTAGS:
            config, layer, manifest = tiny_image(f"linux/{p}", f"{suffix}-{p}")
            for c in clients():
                for blob in (config, layer):
                    c.push_blob(sha256_digest(blob), len(blob), partial(io.BytesIO, blob))
                c.put_manifest(manifest.digest, manifest.body, manifest.media_type)
            write_digest_file(digests, LegKey(Family.BACKENDS, suffix, p), manifest.digest)
            out.append(Descriptor(manifest.media_type, manifest.digest, manifest.size, parse_platform(f"linux/{p}")))
        return out

    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(push, suffixes))[0]
    finally:
        for c in opened:
            c.close()


@dataclass(frozen=True)
class Floor:
    head_ms: float  # one HEAD, one warm connection, one registry, nothing else running
    head_rate: float  # HEADs per second, both registries, `connections` each, at once
    put_rate: float  # PUTs of a list under a new tag per second, likewise
    connections: int


def measure_floor(regs: list[LocalRegistry], repo: str, children: list[Descriptor], connections: int,
                  seconds: float = 1.5) -> Floor:
    """The registries' own request rate with the cheapest client (``http.client``, keep-alive)."""
    child = children[0]
    body = compose_index(children).body
    head_path = f"/v2/{repo}/manifests/{child.digest}"
    headers = {"Accept": child.media_type}

    def conn(reg: LocalRegistry) -> http.client.HTTPConnection:
        host, _, port = reg.host.rpartition(":")
        return http.client.HTTPConnection(host, int(port), timeout=30)

    def one(c: http.client.HTTPConnection, method: str, path: str, data: bytes | None, hdrs: dict[str, str]) -> None:
        c.request(method, path, body=data, headers=hdrs)
        r = c.getresponse()
        r.read()
        if r.status >= 300:
            raise RuntimeError(f"floor: {method} {path}: HTTP {r.status}")

    c = conn(regs[0])
    one(c, "HEAD", head_path, None, headers)
    n = 300
    t0 = time.perf_counter()
    for _ in range(n):
        one(c, "HEAD", head_path, None, headers)
    head_ms = (time.perf_counter() - t0) / n * 1000
    c.close()

    def rate(put: bool) -> float:
        counts: list[int] = []
        stop = time.perf_counter() + seconds

        def loop(reg: LocalRegistry, k: int) -> None:
            c, done = conn(reg), 0
            while time.perf_counter() < stop:
                if put:
                    one(c, "PUT", f"/v2/{repo}/manifests/floor-{k}-{done}", body, {"Content-Type": DOCKER_LIST})
                else:
                    one(c, "HEAD", head_path, None, headers)
                done += 1
            c.close()
            counts.append(done)

        threads = [threading.Thread(target=loop, args=(reg, i * 1000 + j))
                   for i, reg in enumerate(regs) for j in range(connections)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(counts) / (time.perf_counter() - t0)

    # PUTs go to the children's own repository (a list is accepted only where its children are),
    # under new tags, as the merge's are
    return Floor(head_ms, rate(put=False), rate(put=True), connections)


class CpuShare:
    """How much of the machine's CPU went to something else during a phase (Linux ``/proc``; the
    machine may be shared: both sides of the ratio run on the same CPUs as anything else)."""

    def __init__(self, regs: list[LocalRegistry]) -> None:
        self._pids = [r.pid for r in regs if r.pid is not None]
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
            ours = 0
            for pid in self._pids:
                f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ours += int(f[11]) + int(f[12])
        except (OSError, ValueError, IndexError):
            return None
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system + ours / self._tick
        idle = (fields[3] + fields[4]) / self._tick
        return sum(fields) / self._tick, idle, own

    def other(self) -> str:
        """``12% of the CPUs went to other processes`` since the start, or '' when unknown."""
        end = self._sample()
        if self._start is None or end is None:
            return ""
        total, idle, own = (b - a for a, b in zip(self._start, end))
        share = max(0.0, total - idle - own) / total * 100 if total > 0 else 0.0
        return f"other processes used {share:.0f}% of the CPUs"


class Recording:
    """The default client factory, remembering the clients it made (requests and connections)."""

    def __init__(self) -> None:
        self._make = RegistryClients()
        self.made: list[RegistryClient] = []
        self._lock = threading.Lock()

    def __call__(self, img: ImageName, plain_http: Callable[[str], bool]) -> RegistryClient:
        c = self._make(img, plain_http)
        with self._lock:
            self.made.append(c)
        return c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suffixes", type=int, default=40, help="suffixes to merge (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=8, help="native: suffixes merged at once (default %(default)s)")
    ap.add_argument("--floor-connections", type=int, default=4,
                    help="floor: keep-alive connections per registry, all at once (default %(default)s)")
    args = ap.parse_args()
    if shutil.which("docker") is None:
        print("docker CLI with buildx is needed for the imagetools side", file=sys.stderr)
        return 2
    with scratch_dir("bench-merge-") as tmp, registry_pair(tmp) as regs:
        suffixes = [f"-cpu-bench{i:02d}" for i in range(args.suffixes)]
        matrix = write_matrix(tmp / "matrix.yml", [(s, p) for s in suffixes for p in PTAGS])
        repos = {eng: [f"{r.host}/bench/{eng}" for r in regs] for eng in ("native", "imagetools")}
        digests = tmp / "digests"
        t0 = time.monotonic()
        children = push_children(regs, repos["native"] + repos["imagetools"], suffixes, digests)
        print(f"setup: {len(suffixes)} suffixes x {len(PTAGS)} legs pushed to 2 registries x 2 repositories "
              f"in {time.monotonic() - t0:.1f}s")

        # native
        setup = FamilySetup(family_config(Family.BACKENDS, images=",".join(repos["native"])), load_matrix(matrix))
        opts = MergeOptions(method=Method.NATIVE, tag_source=TagSource("push", REF, SHA), jobs=args.jobs)
        factory = Recording()
        cpu = CpuShare(regs)
        t0 = time.monotonic()
        report = merge_all(digests, {Family.BACKENDS: setup}, opts, factory=factory)
        native = time.monotonic() - t0
        native_other = cpu.other()
        bad = [r for r in report.results if r.outcome is not Outcome.MERGED]
        if bad:
            print(f"native: {len(bad)} suffix(es) not merged: {bad[0].reason}", file=sys.stderr)
            return 1
        n = len(suffixes)
        requests = sum(r.requests for r in report.results)
        conns = sum(c.connections_opened for c in factory.made)
        puts = sum(len(r.tags) * len(r.images) for r in report.results)

        # imagetools, sequential, as LocalAI's merge jobs (one call per registry per suffix)
        arts = read_digests_dir(digests)
        images = [parse_image_name(r) for r in repos["imagetools"]]
        cpu = CpuShare(regs)
        t0 = time.monotonic()
        calls = 0
        for s in suffixes:
            tags = compute_tags(TagInput("push", REF, SHA, s, Latest.AUTO))
            kids = sorted(a.digest for a in arts if a.key.suffix == s)
            for img in images:
                imagetools.create(img, tags, kids)
                calls += 1
        peer = time.monotonic() - t0
        peer_other = cpu.other()

        cpu = CpuShare(regs)
        floor = measure_floor(regs, "bench/native", children, args.floor_connections)
        reads = (requests - puts) / n
        floor_s = (requests - puts) / floor.head_rate + puts / floor.put_rate
        floor_other = cpu.other()

        print(f"native     (--jobs {args.jobs}, preflight+push+verify): {native:7.2f}s  ({native / n * 1000:.1f} ms/suffix); "
              f"{requests / n:.1f} requests/suffix ({reads:.1f} reads, {puts / n:.1f} PUTs), "
              f"{conns} connections for {n} suffixes x {len(regs)} registries"
              + (f"; {native_other}" if native_other else ""))
        print(f"imagetools (sequential, {calls} calls):           {peer:7.2f}s  ({peer / n * 1000:.1f} ms/suffix)"
              + (f"; {peer_other}" if peer_other else ""))
        print(f"registry floor: HEAD {floor.head_ms:.2f} ms (one warm connection); both registries with "
              f"{floor.connections} connections each: {floor.head_rate:.0f} HEAD/s, {floor.put_rate:.0f} PUT/s "
              f"-> {floor_s / n * 1000:.1f} ms/suffix for native's requests ({floor_s:.2f}s in all): "
              f"native is at {floor_s / native * 100:.0f}% of the floor, ceiling ratio {peer / floor_s:.1f}x"
              + (f"; {floor_other}" if floor_other else ""))
        ratio = peer / native if native else float("inf")
        print(f"ratio: native is {ratio:.1f}x faster (target >= {TARGET:g}x): {'OK' if ratio >= TARGET else 'BELOW TARGET'}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
