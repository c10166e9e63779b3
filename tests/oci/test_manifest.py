"""Manifest composition and parsing (pure): bytes and digests, list media types, untrusted JSON."""
from __future__ import annotations

import json

import pytest

from localai_ci.oci.manifest import (DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_LIST, DOCKER_MANIFEST, INTOTO_LAYER, OCI_INDEX,
                         OCI_MANIFEST, Descriptor, compose_image_manifest, compose_index, config_platform,
                         is_attestation, is_attestation_manifest, parse_manifest)
from localai_ci.oci.platforms import normalize, parse_platform, same_platform
from localai_ci.oci.reference import sha256_digest

D = [f"sha256:{c * 64}" for c in "abcdef"]


def child(digest: str, platform: str, media: str = DOCKER_MANIFEST) -> Descriptor:
    return Descriptor(media, digest, 500, parse_platform(platform))


def test_image_manifest_digest_is_computed_from_exactly_its_bytes() -> None:
    m = compose_image_manifest(Descriptor(DOCKER_CONFIG, D[0], 10), [Descriptor(DOCKER_LAYER_GZIP, D[1], 20)])
    assert m.digest == sha256_digest(m.body) and m.media_type == DOCKER_MANIFEST
    obj = json.loads(m.body)
    assert obj["config"]["digest"] == D[0] and obj["layers"] == [{"mediaType": DOCKER_LAYER_GZIP, "digest": D[1],
                                                                  "size": 20}]


def test_index_is_deterministic_sorted_and_deduplicated() -> None:
    arm, amd = child(D[0], "linux/arm64"), child(D[1], "linux/amd64")
    one, two = compose_index([arm, amd]), compose_index([amd, arm, amd])
    assert one.body == two.body and one.digest == two.digest and one.media_type == DOCKER_LIST
    plats = [m["platform"]["architecture"] for m in json.loads(one.body)["manifests"]]
    assert plats == ["amd64", "arm64"]


def test_index_is_oci_when_any_child_is_oci() -> None:
    assert compose_index([child(D[0], "linux/amd64"), child(D[1], "linux/arm64", OCI_MANIFEST)]).media_type == OCI_INDEX


@pytest.mark.parametrize("children, message", [
    ([], "at least one child"),
    ([child(D[0], "linux/amd64"), child(D[1], "linux/amd64")], "share a platform"),
    ([Descriptor(DOCKER_LIST, D[0], 5, parse_platform("linux/amd64"))], "not a single-platform image"),
    ([Descriptor(DOCKER_MANIFEST, D[0], 5)], "has no platform"),
])
def test_index_refuses_what_cannot_be_one_list(children: list[Descriptor], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compose_index(children)


@pytest.mark.parametrize("body", [
    b"not json",
    b'{"schemaVersion": 1}',
    b'{"schemaVersion": 2, "manifests": {"a": 1}}',
    b'{"schemaVersion": 2, "manifests": ["x"]}',
    b'{"schemaVersion": 2, "manifests": [{"size": 1}]}',
    b'{"schemaVersion": 2, "manifests": [{"digest": "sha256:../../other/manifests/x", "size": 1}]}',
    b'{"schemaVersion": 2, "manifests": [{"digest": "' + D[0].encode() + b'", "size": "12"}]}',
    b'{"schemaVersion": 2, "manifests": [{"digest": "' + D[0].encode() + b'", "size": -1}]}',
    b'{"schemaVersion": 2, "config": {"digest": "' + D[0].encode() + b'"}, "layers": []}',
])
def test_untrusted_manifest_json_is_a_value_error_never_a_crash(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_manifest(body)


def test_attestations_are_recognised_by_annotation_platform_and_layers() -> None:
    listed = Descriptor(DOCKER_MANIFEST, D[0], 5, parse_platform("linux/amd64"),
                        (("vnd.docker.reference.type", "attestation-manifest"),))
    assert is_attestation(listed) and is_attestation(Descriptor(OCI_MANIFEST, D[1], 5))
    assert not is_attestation(child(D[2], "linux/amd64"))
    intoto = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                         "config": {"mediaType": OCI_MANIFEST, "digest": D[0], "size": 2},
                         "layers": [{"mediaType": INTOTO_LAYER, "digest": D[1], "size": 3}]}).encode()
    assert is_attestation_manifest(parse_manifest(intoto))


def test_config_platform_and_the_arm64_v8_variant() -> None:
    v8 = config_platform(b'{"os": "linux", "architecture": "arm64", "variant": "v8"}')
    assert str(v8) == "linux/arm64/v8" and v8 != parse_platform("linux/arm64")
    assert same_platform(v8, parse_platform("linux/arm64")) and normalize(v8) == parse_platform("linux/arm64")  # type: ignore[arg-type]
    assert not same_platform(parse_platform("linux/arm/v7"), parse_platform("linux/arm/v6"))
    assert config_platform(b'{"os": "unknown", "architecture": "unknown"}') is None
    assert config_platform(b"[]") is None
