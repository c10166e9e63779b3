"""Concurrent publishes of different legs to the same repositories, then two concurrent
``--all`` merges of every suffix: nothing corrupts anything else.

Six legs (three suffixes x two arches), built through the builder seam (BuildKit) on one offline
base image, share one base layer per arch and go to the same two repositories at the same time
(like six runners), each with its own blob cache; then two
``merge --all`` runs (eight suffixes at a time each) race on the same suffixes. Every list must
hold exactly its suffix's children, with the right platforms, under one digest in both registries.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from localai_ci.oci.blobcache import BlobCache
from localai_ci.oci.client import RegistryClients
from localai_ci.docker.engine import Engine
from localai_ci.settings import family_config
from localai_ci.matrix.model import load_matrix
from localai_ci.merge.model import MergeOptions, Outcome
from localai_ci.merge.run import FamilySetup, merge_all
from localai_ci.matrix.naming import Family, LegKey
from localai_ci.publish.leg import publish_leg
from localai_ci.publish.upload import PushTarget
from localai_ci.oci.reference import ImageName
from localai_ci.matrix.tags import TagSource
from oci_images import client, write_matrix

pytestmark = [pytest.mark.engine, pytest.mark.registry, pytest.mark.slow]

SUFFIXES = ("-cpu-c1", "-cpu-c2", "-cpu-c3")
ARCHES = ("amd64", "arm64")
SHA = "0123456789abcdef0123456789abcdef01234567"


def test_parallel_publishes_and_concurrent_merge_all(engine: Any, registries: Any, build_image: Any, unique: str,
                                                     tmp_path: Path) -> None:
    eng = Engine(engine)
    repo = f"{unique}/backends"
    images = [ImageName(r.host, repo) for r in registries]
    built: dict[tuple[str, str], str] = {}
    local_tags = []
    base = f"ci-offline/{unique}-base:24.04"
    base_layers: dict[str, set[str]] = {arch: set() for arch in ARCHES}
    try:
        for arch in ARCHES:
            for suffix in SUFFIXES:
                tag = f"localai-ci-test/{unique}{suffix}:{arch}"
                local_tags.append(tag)
                image = build_image(f"FROM {base}\nCOPY leg.txt /leg.txt\n", platform=f"linux/{arch}",
                                    files={"leg.txt": f"{unique}{suffix}-{arch}\n"}, tag=tag, contexts_for=(base,))
                assert image.info.architecture == arch and len(image.info.diff_ids) == 2
                base_layers[arch].add(image.info.diff_ids[0])
                built[(suffix, arch)] = image.info.id
        assert all(len(layers) == 1 for layers in base_layers.values()), base_layers  # one base layer per arch
        digests = tmp_path / "digests"

        def publish(key: tuple[str, str]) -> str:
            suffix, arch = key
            with BlobCache(tmp_path / f"cache{suffix}-{arch}") as cache:
                res = publish_leg(eng, built[key], leg=LegKey(Family.BACKENDS, suffix, arch),
                                  targets=[PushTarget(i, plain_http=True) for i in images], cache=cache,
                                  client_factory=RegistryClients(), digests_dir=digests)
            return res.digest

        with ThreadPoolExecutor(max_workers=len(built)) as pool:
            published = dict(zip(built, pool.map(publish, built)))
    finally:
        for t in local_tags:
            try:
                engine.images.remove(t, force=True)
            except Exception:
                pass
    assert len(set(published.values())) == len(published)
    assert sorted(p.name for p in digests.iterdir()) == sorted(f"digests{s}--{a}" for s, a in built)

    matrix = write_matrix(tmp_path / "matrix.yml", list(built))
    setups = {Family.BACKENDS: FamilySetup(family_config(Family.BACKENDS, images=",".join(map(str, images))),
                                           load_matrix(matrix, Family.BACKENDS))}
    options = MergeOptions(tag_source=TagSource(event="push", ref="refs/heads/main", sha=SHA), jobs=8)
    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(lambda _: merge_all(digests, setups, options), range(2)))
    for report in reports:
        assert report.exit_code == 0, [r.reason for r in report.results]
        assert {r.suffix for r in report.results} == set(SUFFIXES)
        assert all(r.outcome is Outcome.MERGED for r in report.results)
    for suffix in SUFFIXES:
        seen = set()
        for img in images:
            with client(img) as c:
                for tag in (f"main{suffix}", f"sha-0123456{suffix}"):
                    got = c.get_manifest(tag)
                    assert got is not None, f"{img}:{tag}"
                    seen.add(got[2])
                    lst = json.loads(got[0])
                    assert {(m["digest"], m["platform"]["architecture"]) for m in lst["manifests"]} == {
                        (published[(suffix, a)], a) for a in ARCHES}
        assert len(seen) == 1, f"{suffix}: list digests differ: {seen}"
