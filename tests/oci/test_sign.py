"""cosign adapter (localai_ci.oci.sign): argv building, and a sign/verify round-trip through merge and inspect."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from localai_ci.cli import main
from localai_ci.errors import UserError
from localai_ci.matrix.naming import Family, LegKey
from localai_ci.oci.sign import SignOptions, VerifyOptions, sign_command, sign_image, verify_command
from tests.support.oci_images import push_image, resolve, write_matrix
from localai_ci.github.artifacts import write_digest_file

DIG = "sha256:" + "a" * 64
SHA = "89abcdef0123456789abcdef0123456789abcdef"


def test_sign_command_is_by_digest_recursive_and_offline_when_asked() -> None:
    argv = sign_command(f"127.0.0.1:5000/x@{DIG}", SignOptions(key="k.key", tlog=False), plain_http=True)
    assert argv == ["cosign", "sign", "--yes", "--recursive", "--key", "k.key", "--tlog-upload=false",
                    "--allow-http-registry", f"127.0.0.1:5000/x@{DIG}"]
    assert "--allow-http-registry" not in sign_command(f"quay.io/x@{DIG}", SignOptions(), plain_http=False)
    assert "--key" not in sign_command(f"quay.io/x@{DIG}", SignOptions(), plain_http=False)  # keyless
    v = verify_command(f"127.0.0.1:5000/x@{DIG}", VerifyOptions(key="k.pub", tlog=False), plain_http=True)
    assert v[:4] == ["cosign", "verify", "--key", "k.pub"] and "--insecure-ignore-tlog=true" in v


def test_keyless_signing_as_localai_signs_its_lists() -> None:
    """What the merge workflow runs (LocalAI's backend_merge.yml): keyless, recursive, OCI 1.1 referrers."""
    argv = sign_command(f"quay.io/x@{DIG}", SignOptions(referrers_mode="oci-1-1"), plain_http=False)
    assert argv == ["cosign", "sign", "--yes", "--recursive", "--registry-referrers-mode=oci-1-1", f"quay.io/x@{DIG}"]
    with pytest.raises(UserError, match="--registry-referrers-mode 'oci11'"):
        sign_command(f"quay.io/x@{DIG}", SignOptions(referrers_mode="oci11"), plain_http=False)
    code = main(["merge", "--tag-suffix=-cpu-x", "--registry-referrers-mode", "oci-1-1"], env={})
    assert code == 2  # only with --sign


@pytest.mark.parametrize("ref", ["quay.io/x:latest", "quay.io/x@sha256:abc"])
def test_never_by_tag(ref: str) -> None:
    with pytest.raises(UserError):
        sign_command(ref, SignOptions(), plain_http=False)


def test_key_signing_needs_cosign_password(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    key.write_text("x")
    with pytest.raises(UserError, match="COSIGN_PASSWORD"):
        sign_image(f"quay.io/x@{DIG}", SignOptions(key=str(key)), plain_http=False, env={})


@pytest.fixture
def keys(tmp_path: Path, cosign: str) -> tuple[Path, Path, dict[str, str]]:
    env = {"COSIGN_PASSWORD": "", "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(tmp_path)}
    done = subprocess.run(["cosign", "generate-key-pair"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 0, done.stderr
    return tmp_path / "cosign.key", tmp_path / "cosign.pub", env


@pytest.mark.registry
def test_sign_round_trip_through_merge_and_inspect(tmp_path: Path, registries, unique: str, keys,  # type: ignore[no-untyped-def]
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    key, pub, env = keys
    images = [f"{r.host}/{unique}/signed" for r in registries]
    matrix = write_matrix(tmp_path / "m.yml", [("-cpu-hello", "amd64"), ("-cpu-hello", "arm64")])
    for p in ("amd64", "arm64"):
        d = push_image(images, f"linux/{p}", f"sign{p}")
        write_digest_file(tmp_path / "digests", LegKey(Family.BACKENDS, "-cpu-hello", p), d.digest)
    code = main(["merge", "--tag-suffix", "-cpu-hello", "--digests-dir", str(tmp_path / "digests"), "--matrix",
                 str(matrix), "--images", ",".join(images), "--ref", "refs/heads/main", "--sha", SHA,
                 "--sign", "--key", str(key), "--no-tlog"], env=env)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "signed" in out
    # cosign stored the signatures as sha256-<hex>.sig tags next to the list and each child
    lst = resolve(images[1], "main-cpu-hello")
    assert lst is not None
    args = ["inspect", "--images", ",".join(images), "--tag", "main-cpu-hello", "--verify-signatures", "--no-tlog"]
    code = main([*args, "--key", str(pub)], env=env)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    # another key must not verify
    other = tmp_path / "other"
    other.mkdir()
    subprocess.run(["cosign", "generate-key-pair"], cwd=other, env=env, capture_output=True, stdin=subprocess.DEVNULL,
                   timeout=60, check=True)
    code = main([*args, "--key", str(other / "cosign.pub")], env=env)
    out, err = capsys.readouterr()
    assert code == 1 and out.count("[signature]") == 2 * 3  # list + 2 children, in 2 registries
