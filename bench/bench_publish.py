"""Benchmark: publish a >= 256 MiB leg by digest to two registries vs ``docker push``.

Not a test. Run: ``python bench/bench_publish.py [--mib 256]``. Starts throwaway loopback
registries (one pair for this project, one for a single ``docker push``, one pair for
``docker push`` to both), builds an offline base image with an incompressible payload,
and prints one table: wall times, bytes uploaded on a re-publish, peak RSS, and the
ratios against the targets (publish <= 1.1x one docker push; 0 bytes re-uploaded;
peak RSS < 200 MiB). The publish runs in a subprocess so its peak RSS is its own.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(image: str, targets: list[str], cache_dir: str) -> None:
    """Publish ``image`` to ``targets`` (in this process) and print a JSON report."""
    from ci.blobcache import BlobCache
    from ci.engine import connect
    from ci.publish import Target, push_image, registry_client_factory
    from ci.reference import parse_image_name

    t0 = time.monotonic()
    with BlobCache(cache_dir) as cache:
        rep = push_image(connect(), image, [Target(parse_image_name(t), plain_http=True) for t in targets],
                         cache=cache, client_factory=registry_client_factory())
    seconds = time.monotonic() - t0
    hwm = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    print(json.dumps({"seconds": seconds, "bytes": rep.bytes_uploaded, "digest": rep.digest,
                      "exported": rep.exported, "maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "vmhwm": hwm}))


def run_child(image: str, targets: list[str], cache_dir: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, __file__, "--child", image, cache_dir, *targets], capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"publish failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def docker_push(ref: str) -> float:
    t0 = time.monotonic()
    subprocess.run(["docker", "push", "--quiet", ref], check=True, capture_output=True)
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256, help="incompressible payload size in MiB (default 256)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[2:], args.child[1])
        return
    import docker

    from ci.baseimage import ensure_base_image
    from ci.localregistry import start_registry
    from ci.platforms import parse_platform

    uid = uuid.uuid4().hex[:8]
    client = docker.from_env(timeout=600)
    tmp = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    regs = [start_registry(tmp / f"reg{i}") for i in range(5)]
    name = f"ci-offline/bench-{uid}:24.04"
    pushed_tags: list[str] = []
    try:
        image_id = ensure_base_image(client, name, parse_platform("linux/amd64"), payload_bytes=args.mib << 20)
        layers = client.api.inspect_image(image_id)["Size"]
        ours = [f"{regs[0].host}/bench/{uid}", f"{regs[1].host}/bench/{uid}"]
        cache = str(tmp / "cache")
        first = run_child(image_id, ours, cache)
        again = run_child(image_id, ours, cache)
        for r in regs[2:]:
            ref = f"{r.host}/bench/{uid}:bench"
            client.api.tag(image_id, f"{r.host}/bench/{uid}", "bench")
            pushed_tags.append(ref)
        one = docker_push(pushed_tags[0])
        both = docker_push(pushed_tags[1]) + docker_push(pushed_tags[2])
    finally:
        for t in pushed_tags + [name]:
            try:
                client.images.remove(t)
            except Exception:
                pass
        for r in regs:
            r.stop()
    mib = 2 ** 20
    rss = max(int(first["vmhwm"]), int(first["maxrss"])) / mib  # type: ignore[call-overload]
    rows = [
        ("image size (uncompressed)", f"{layers / mib:.0f} MiB", ""),
        ("docker push, one registry", f"{one:.1f} s", ""),
        ("docker push, both registries", f"{both:.1f} s", ""),
        ("publish, both registries (cold cache)", f"{first['seconds']:.1f} s",
         f"{float(first['seconds']) / one:.2f}x one docker push (target <= 1.10x)"),  # type: ignore[arg-type]
        ("bytes uploaded, first publish", f"{int(first['bytes']) / mib:.1f} MiB", "both registries"),  # type: ignore[call-overload]
        ("re-publish", f"{again['seconds']:.2f} s", f"exported again: {again['exported']}"),
        ("bytes uploaded, re-publish", f"{again['bytes']}", "target 0"),
        ("peak RSS of the publish", f"{rss:.0f} MiB", f"{rss / 200:.2f}x of the 200 MiB limit"),
        ("same digest twice", str(first["digest"] == again["digest"]), str(first["digest"])[:19]),
    ]
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"{'measure':<{w0}}  {'value':>{w1}}  note")
    for a, b, c in rows:
        print(f"{a:<{w0}}  {b:>{w1}}  {c}")
    ok = float(first["seconds"]) <= 1.1 * one and int(again["bytes"]) == 0 and rss < 200  # type: ignore[arg-type, call-overload]
    print("targets met" if ok else "targets NOT met")


if __name__ == "__main__":
    main()
