"""Benchmark (not a test): which gzip level gets uncompressed layers to two far registries soonest.

    python bench/bench_gzip.py [--mib 256] [--layers 4] [--levels 1,6] [--latency-ms 20] [--rates 0,100,25]

Where the engine holds uncompressed layers (the classic image store's docker driver), the publisher
gzips each layer once into the blob cache (:class:`localai_ci.oci.blobcache.BlobCache`: chunks deflated
on a thread pool) and uploads each as soon as it is compressed, to both registries at once
(``localai_ci.publish.leg``'s own pipeline). A lower level costs less CPU and sends more bytes; which
wins depends on the link, so each level is timed compressing and uploading the same layers to two
registries behind a proxy that adds ``--latency-ms`` each way to every request and paces bodies at
each of ``--rates`` MB/s per connection (0: no limit besides the machine), as registries tens of
milliseconds away are. The layers are this machine's own libraries (``/usr/lib``), as compressible as
real binaries (a backend image's bulk); fresh registries, proxies and blob cache for every run, the
levels taking turns. Prints, per rate, each level's median wall time and bytes sent, and the ratios
pair by pair to the first level.
"""
from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from _common import print_table, scratch_dir  # noqa: E402
from bench_handoff import library_pool  # noqa: E402

from localai_ci.oci.blobcache import Blob, BlobCache  # noqa: E402
from localai_ci.oci.client import RegistryClients  # noqa: E402
from localai_ci.oci.localregistry import start_registry  # noqa: E402
from localai_ci.oci.manifest import (  # noqa: E402
    DOCKER_CONFIG,
    DOCKER_LAYER_GZIP,  # noqa: E402
    Composed,
    Descriptor,
    compose_image_manifest,
)
from localai_ci.oci.reference import parse_image_name  # noqa: E402
from localai_ci.publish.stage import StagedImage  # noqa: E402
from localai_ci.publish.upload import PushTarget, _push  # noqa: E402
from tests.support.faultproxy import FaultProxy  # noqa: E402

MIB = 1 << 20


def one_run(layers: list[bytes], level: int, latency: float, rate: float, tmp: Path) -> tuple[float, int]:
    """Compress ``layers`` at ``level`` and publish them to two fresh registries behind proxies: (seconds, bytes)."""
    regs = [start_registry(tmp / f"reg{i}") for i in range(2)]
    proxies = [FaultProxy(r.host, latency=latency, rate=rate, lifetime=3600, max_connections=64).start()
               for r in regs]
    try:
        targets = [PushTarget(parse_image_name(f"{p.host}/bench/gzip"), plain_http=True) for p in proxies]
        with BlobCache(tmp / "cache", level=level) as cache:
            def stage(on_blob):  # type: ignore[no-untyped-def]
                blobs: list[Blob] = []
                diff_ids = []
                for data in layers:  # as the engine's export streams them: each uploaded once compressed
                    diff_id, blob = cache.compress_layer(io.BytesIO(data))
                    diff_ids.append(diff_id)
                    blobs.append(blob)
                    on_blob(blob)
                config = cache.put_bytes(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
                    "type": "layers", "diff_ids": diff_ids}}).encode())
                on_blob(config)
                manifest = compose_image_manifest(Descriptor(DOCKER_CONFIG, config.digest, config.size),
                                                  [Descriptor(DOCKER_LAYER_GZIP, b.digest, b.size) for b in blobs])
                return StagedImage(config.digest, config, tuple(blobs), Composed(manifest.body, manifest.media_type),
                                   exported=True)

            t0 = time.monotonic()
            report = _push(stage, "bench", targets, cache=cache, client_factory=RegistryClients())
            return time.monotonic() - t0, report.bytes_uploaded
    finally:
        for p in proxies:
            p.stop()
        for r in regs:
            r.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="MiB per layer (default 256)")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--levels", default="1,6", help="gzip levels, comma-separated; the first is the reference")
    ap.add_argument("--latency-ms", type=float, default=20.0, help="one way, every request (default 20)")
    ap.add_argument("--rates", default="0,100,25", help="MB/s per connection, comma-separated; 0: no limit")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    rates = [float(x) for x in args.rates.split(",")]
    pool = library_pool(64 * MIB)
    layers = []
    for n in range(args.layers):  # each layer its own stretch of libraries, rotated so no two are the same
        k = (n * 7919 * 4096) % len(pool)
        rotated = pool[k:] + pool[:k]
        layers.append((rotated * (args.mib * MIB // len(rotated) + 1))[: args.mib * MIB])
    print(f"{args.layers} layers of {args.mib} MiB (this machine's libraries), two registries behind proxies adding "
          f"{args.latency_ms:g} ms each way; levels {levels}; {args.rounds} round(s); the machine may be shared")
    for rate in rates:
        results: dict[int, list[tuple[float, int]]] = {lv: [] for lv in levels}
        for r in range(args.rounds):
            order = levels[r % len(levels):] + levels[:r % len(levels)]
            for lv in order:
                with scratch_dir("bench-gzip-") as tmp:
                    results[lv].append(one_run(layers, lv, args.latency_ms / 1000, rate * 1e6, tmp))
                secs, sent = results[lv][-1]
                print(f"  rate {rate:g} MB/s round {r + 1} level {lv}: {secs:6.1f} s, {sent / MIB:7.1f} MiB sent",
                      flush=True)
        ref = levels[0]
        rows = []
        for lv in levels:
            walls = [w for w, _ in results[lv]]
            ratios = [w / results[ref][i][0] for i, w in enumerate(walls)]
            rows.append((str(lv), f"{statistics.median(walls):.1f} s", f"{results[lv][0][1] / MIB:.1f} MiB",
                         f"{statistics.median(ratios):.2f}x", f"{min(ratios):.2f}-{max(ratios):.2f}"))
        print(f"\nrate {'unlimited' if not rate else f'{rate:g} MB/s'} per connection, {args.latency_ms:g} ms each way")
        print_table(("level", "wall (median)", "sent", f"wall / level {ref}", "range"), rows, right=(1, 2, 3))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
