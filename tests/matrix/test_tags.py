"""docker/metadata-action v6 tag rules for LocalAI's configuration (localai_ci.matrix.tags), one test per rule."""
from __future__ import annotations

import pytest

from localai_ci.errors import UserError
from localai_ci.matrix.naming import Family
from localai_ci.matrix.tags import Latest, TagInput, check_ref, check_sha, compute_tags, is_prerelease, is_semver, sanitize_tag

SHA = "0123456789abcdef0123456789abcdef01234567"
SFX = "-cpu-llama-cpp"


def tags(ref: str, *, event: str = "push", sha: str = SHA, suffix: str = SFX, latest: str = "auto",
         family: Family = Family.BACKENDS) -> tuple[str, ...]:
    return compute_tags(TagInput(event=event, ref=ref, sha=sha, suffix=suffix, latest=Latest(latest), family=family))


def test_branch_push_gives_branch_and_sha_and_no_latest_on_auto() -> None:
    assert tags("refs/heads/master") == ("master-cpu-llama-cpp", "sha-0123456-cpu-llama-cpp")


def test_semver_tag_orders_semver_ref_sha_then_latest_last() -> None:
    assert tags("refs/tags/v3.4.0") == ("v3.4.0-cpu-llama-cpp", "sha-0123456-cpu-llama-cpp", "latest-cpu-llama-cpp")


def test_semver_without_v_gets_latest_too() -> None:
    assert tags("refs/tags/3.4.0") == ("3.4.0-cpu-llama-cpp", "sha-0123456-cpu-llama-cpp", "latest-cpu-llama-cpp")


def test_prerelease_keeps_raw_and_gets_no_latest_on_auto() -> None:
    assert tags("refs/tags/v3.5.0-rc1") == ("v3.5.0-rc1-cpu-llama-cpp", "sha-0123456-cpu-llama-cpp")


def test_non_semver_tag_ref_gives_only_the_sha_tag() -> None:
    assert tags("refs/tags/v3.4") == ("sha-0123456-cpu-llama-cpp",)
    assert tags("refs/tags/v03.4.0") == ("sha-0123456-cpu-llama-cpp",)  # leading zero: not strict semver


def test_latest_true_adds_latest_for_every_event_and_false_never() -> None:
    assert tags("refs/heads/master", latest="true")[-1] == "latest-cpu-llama-cpp"
    assert tags("refs/pull/7/merge", event="pull_request", latest="true") == (
        "sha-0123456-cpu-llama-cpp", "latest-cpu-llama-cpp")
    assert "latest-cpu-llama-cpp" not in tags("refs/tags/v3.4.0", latest="false")


def test_pull_request_gives_sha_only() -> None:
    assert tags("refs/pull/12/merge", event="pull_request") == ("sha-0123456-cpu-llama-cpp",)
    # pull_request_target runs on the base branch ref: still never a branch tag for a PR
    assert tags("refs/heads/master", event="pull_request_target") == ("sha-0123456-cpu-llama-cpp",)


def test_branch_names_are_sanitised_like_the_action() -> None:
    assert tags("refs/heads/feature/Foo_bar")[0] == "feature-Foo_bar-cpu-llama-cpp"
    assert sanitize_tag("a//b@@c") == "a-b-c"  # a run of bad characters becomes one '-'


def test_build_metadata_plus_is_sanitised() -> None:
    assert tags("refs/tags/v1.0.0+build.7")[0] == "v1.0.0-build.7-cpu-llama-cpp"


def test_sha_tag_is_seven_hex_and_suffix_is_on_every_tag() -> None:
    out = tags("refs/tags/v3.4.0", suffix="-x")
    assert out == ("v3.4.0-x", "sha-0123456-x", "latest-x")
    assert all(t.endswith("-x") for t in out)


def test_empty_suffix_server_core() -> None:
    assert tags("refs/tags/v3.4.0", suffix="", family=Family.SERVER) == ("v3.4.0", "sha-0123456", "latest")


def test_no_sha_on_branch_gives_branch_only() -> None:
    assert tags("refs/heads/master", sha="") == ("master-cpu-llama-cpp",)


def test_nothing_to_tag_is_a_user_error() -> None:
    with pytest.raises(UserError, match="no tag can be computed"):
        tags("", sha="")


@pytest.mark.parametrize("ref", ["master", "refs/heads/a b", "refs/heads/x..y", "refs/heads/x;rm -rf /",
                                 "refs/heads/.hidden", "refs/heads/x/", "refs/heads/" + "a" * 300,
                                 "refs/heads/a\nb", "refs/heads/a\x1bb", "refs/heads/a\x7fb", "refs/heads/a~1",
                                 "refs/heads/a^", "refs/heads/a:b", "refs/heads/a?", "refs/heads/a*", "refs/heads/a[b",
                                 "refs/heads/a\\b", "refs/heads/a@{1}", "refs/heads/a.lock", "refs/heads/a//b",
                                 "refs/heads/a.", "refs/heads/a\u00a0b\udcff", "refs/heads/$(id)"])
def test_bad_refs_are_refused_with_exit_2(ref: str) -> None:
    with pytest.raises(UserError) as ei:
        tags(ref)
    assert ei.value.exit_code == 2
    assert "--ref" in str(ei.value)


@pytest.mark.parametrize("sha", ["abc", "0123456789ABCDEF0123456789ABCDEF01234567", "g" * 40, SHA + " "])
def test_bad_shas_are_refused(sha: str) -> None:
    with pytest.raises(UserError, match="--sha"):
        check_sha(sha)


# docker/metadata-action's sanitizeTag (src/meta.ts, v5.9.0 and v6: tag.replace(/[^a-zA-Z0-9._-]+/g, '-')), run
# with node on "<branch>-cpu-x" for each branch: git accepts each of these refs (check-ref-format forbids only ASCII
# controls, space and ~^:?*[\\, '..', '@{', a leading '.' in a component, '.lock', '//' and a trailing '/' or '.')
METADATA_ACTION = {"fix-ü": "fix---cpu-x", "feat/😀x": "feat-x-cpu-x", "ñandú/ß": "-and--cpu-x",
                   "日本語-x": "--x-cpu-x", "x$(id)": "x-id--cpu-x", "release/v1.0.0+b1": "release-v1.0.0-b1-cpu-x"}


@pytest.mark.parametrize("branch", METADATA_ACTION)
def test_a_valid_branch_of_any_script_is_tagged_as_metadata_action_tags_it(branch: str) -> None:
    assert check_ref(f"refs/heads/{branch}") == f"refs/heads/{branch}"
    expect = METADATA_ACTION[branch]
    assert sanitize_tag(f"{branch}-cpu-x") == expect
    if expect.startswith("-"):  # metadata-action makes it too, and the push of such a tag fails: said, exit 2
        with pytest.raises(UserError, match="computed tag is invalid"):
            tags(f"refs/heads/{branch}", suffix="-x")
        return
    assert tags(f"refs/heads/{branch}", suffix="-cpu-x") == (expect, "sha-0123456-cpu-x")


def test_produced_tags_are_validated() -> None:
    with pytest.raises(UserError, match="computed tag is invalid"):
        tags("refs/heads/" + "b" * 120)  # 120 + suffix > 128 characters


def test_bad_suffix_is_refused() -> None:
    with pytest.raises(UserError, match="tag-suffix"):
        tags("refs/heads/master", suffix="; rm -rf /")


def test_semver_helpers() -> None:
    assert is_semver("v1.2.3") and is_semver("1.2.3-rc.1+b") and not is_semver("1.2") and not is_semver("v1.2.3.4")
    assert is_prerelease("v1.2.3-rc1") and not is_prerelease("v1.2.3+build")
    assert check_ref("refs/tags/v1.2.3") == "refs/tags/v1.2.3" and check_ref("") == ""


def test_one_tag_source_for_merge_and_pipeline(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Flags beat the Actions environment, which beats the checkout, which beats the local fallback;
    a source that is not what CI would pass says so in a note."""
    import subprocess

    from localai_ci.github.actions import tag_source
    from localai_ci.matrix.tags import TagSource

    sha = "0123456789abcdef0123456789abcdef01234567"
    env = {"GITHUB_EVENT_NAME": "push", "GITHUB_REF": "refs/tags/v1.2.3", "GITHUB_SHA": sha}
    assert tag_source(env) == (TagSource("push", "refs/tags/v1.2.3", sha), "")
    assert tag_source(env, ref="refs/heads/main")[0] == TagSource("push", "refs/heads/main", sha)
    plain = tmp_path / "plain"
    plain.mkdir()
    assert tag_source({}, root=plain) == (TagSource("push", "", ""), "")
    source, note = tag_source({}, root=plain, local_ref="refs/heads/local")
    assert source.ref == "refs/heads/local" and "not a git checkout" in note
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "init", "-q", "-b", "feature"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    source, note = tag_source({}, root=repo, local_ref="refs/heads/local")
    assert source.ref == "refs/heads/feature" and len(source.sha) == 40 and "tags from this checkout" in note
    # every suffix's tags come from the one source
    assert TagSource("push", "refs/tags/v1.2.3", sha).tags("-cpu", Latest.AUTO) == compute_tags(
        TagInput(event="push", ref="refs/tags/v1.2.3", sha=sha, suffix="-cpu"))
