"""The invoke task collection ``ns``: thin wrappers that parse arguments, call one verb, print, exit.

A repository's ``tasks.py`` exposes it with one line (``from localai_ci.tasks import ns``); the
``localai-ci`` console script runs the same tasks (``localai-ci build-backend ...``).
`invoke --list` shows every task; `invoke --help <task>` explains every option.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from invoke import Collection, Exit, Task, task

from .errors import CiError, failure
from .output.console import redacted, say, say_command, say_rich
from .output.escape import terminal_text

if TYPE_CHECKING:
    from .oci.platforms import RunnerPolicy
    from .settings import Settings

T = TypeVar("T")


def _bad(message: str, code: int = 2) -> Exit:
    """invoke's Exit for bad input, its message made inert like every error's (``terminal_text``)."""
    return Exit(terminal_text(message), code=code)


def run_verb(fn: Callable[..., T], *args: object, debug: bool = False, **kwargs: object) -> T:
    """Call a verb; turn the project's errors into invoke's Exit (``localai_ci.errors.failure``: the same
    message, redaction and exit status as ``localai-ci`` / ``python -m localai_ci`` and the nox sessions)."""
    try:
        return fn(*args, **kwargs)
    except (CiError, KeyboardInterrupt) as exc:
        message, code = failure(exc, debug=debug or bool(os.environ.get("CI_DEBUG")))
        raise Exit(message, code=code) from exc


def exit_with(code: int) -> None:
    if code:
        raise Exit(code=code)


def ci_task(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
    """invoke's ``@task`` without automatic short flags: one letter used to mean different options
    in different tasks (``-d`` was --digests-dir, --dry-run or --debug); every option is long."""
    kwargs.setdefault("auto_shortflags", False)
    return task(*args, **kwargs)


def no_extra_args(c: object) -> None:
    """invoke silently drops what follows a bare ``--``; refuse it instead (exit 2)."""
    rest = getattr(c, "remainder", "")
    if rest:
        raise _bad(f"error: unexpected arguments after '--': {rest!r}; invoke tasks take their options "
                   "directly (only nox sessions need '--')", code=2)


def int_option(flag: str, value: object, minimum: int = 1) -> int:
    """An integer option, parsed here so a typo is exit 2 with a message, not an invoke traceback."""
    try:
        number = int(str(value))
    except ValueError as exc:
        raise _bad(f"error: {flag} {value!r} is not a whole number", code=2) from exc
    if number < minimum:
        raise _bad(f"error: {flag} {number} must be at least {minimum}", code=2)
    return number


# ---- matrix tooling (issue 2) -------------------------------------------------------------
# `invoke --list` imports this module: what the tasks need is imported in their bodies (and in
# the helpers they call), so listing them loads neither the settings file's code, the matrix model
# nor the registry client (bench/bench_startup.py)
_MATRIX_DEFAULT = None  # the repository's (settings.Settings.matrix_path)
_MATRIX_HELP = ("matrix file (default: the current repository's: as .github/localai-ci.yml names it, else "
                ".github/backend-matrix.yml, else backends/matrix.yml)")
_POLICY_HELP = {
    "retired": "comma-separated retired runners (default: bigger-runner,arc-runner-set)",
    "runner_amd64": "native amd64 runner label (default: ubuntu-latest)",
    "runner_arm64": "native arm64 runner label (default: ubuntu-24.04-arm)",
}


def _settings() -> Settings:
    """The current repository's settings (.github/localai-ci.yml; exit 2 when it is malformed)."""
    from .settings import load_settings
    return run_verb(load_settings, ".")


def _matrix(path: str | None) -> str:
    """The matrix a matrix task reads: the option, else the repository's."""
    from .matrix.naming import Family
    return path or str(_settings().matrix_path(Family.BACKENDS))


def _policy(retired: str | None, runner_amd64: str | None, runner_arm64: str | None) -> RunnerPolicy:
    """The runner policy from the --retired / --runner-* options, else the settings file's (exit 2 on a bad label)."""
    from .matrix.lint import runner_policy
    from .oci.platforms import Arch
    base = _settings().runner_policy()
    return run_verb(runner_policy, retired=retired if retired is not None else base.retired,
                    runner_amd64=runner_amd64 or base.native[Arch.AMD64],
                    runner_arm64=runner_arm64 or base.native[Arch.ARM64])


@ci_task(help={"matrix": _MATRIX_HELP, "format": "text (a table on a terminal) or json", **_POLICY_HELP})
def matrix_report(c, matrix=_MATRIX_DEFAULT, format="text", retired=None, runner_amd64=None,  # noqa: A002
                  runner_arm64=None):
    """Summarize a matrix: entries, legs per arch, suffixes, pairs, runners, darwin entries."""
    no_extra_args(c)
    from .matrix.model import load_matrix
    from .matrix.summary import rich_table, summarize
    if format not in ("text", "json"):
        raise _bad(f"error: --format {format!r} is not 'text' or 'json'", code=2)
    summary = summarize(run_verb(load_matrix, _matrix(matrix)), _policy(retired, runner_amd64, runner_arm64))
    if format == "json":
        say(summary.render_json())
    else:
        if sys.stdout.isatty():
            say_rich(rich_table(summary))
        else:
            say(summary.render_text())


@ci_task(help={"matrix": _MATRIX_HELP,
            "format": "text (one line per finding), json, or github (a ::warning annotation on the matrix line per "
                      "finding, and the findings as a table in $GITHUB_STEP_SUMMARY)",
            "ignore": "comma-separated rule ids to skip", **_POLICY_HELP,
            "workflows": "the workflows directory whose artifact names and download patterns the "
                         "artifact-glob-overmatch rule checks (default: the .github/workflows of the repository "
                         "holding the matrix)",
            "strict": "exit 1 when there are findings (default: findings are warnings, exit 0)",
            "family": "image family of the matrix: backends (default) or server",
            "references": "comma-separated files that name the published images (galleries: YAML; JSON, Markdown, "
                          "text): report every reference whose tag the matrix cannot produce",
            "branches": "with --references: branches whose pushes publish <branch>-<suffix> tags (default master)",
            "images": "with --references: the family's repositories (default: CI_BACKEND_IMAGES, else LocalAI's)",
            "server_matrix": "with --references: also check server-image references against this matrix",
            "server_images": "with --references: the server image's repositories (default: CI_SERVER_IMAGES, else "
                             "LocalAI's)"})
def matrix_lint(c, matrix=_MATRIX_DEFAULT, format="text", retired=None, runner_amd64=None,  # noqa: A002
                runner_arm64=None, ignore="", workflows=None, strict=False, family="backends", references=None,
                branches=None, images=None, server_matrix=None, server_images=None):
    """Check matrix policy rules (and, with --references, consumer references): findings are warnings (exit 0;
    1 with --strict), 2 is bad input."""
    no_extra_args(c)
    from .github.actions import write_summary
    from .matrix.lint import lint_file
    from .matrix.naming import Family
    from .matrix.references import REFERENCE_RULES, lint_references_of
    if format not in ("text", "json", "github"):
        raise _bad(f"error: --format {format!r} is not 'text', 'json' or 'github'", code=2)
    if family not in ("backends", "server"):
        raise _bad(f"error: --family {family!r}: use backends or server", code=2)
    fam = Family(family)
    policy = _policy(retired, runner_amd64, runner_arm64)
    ignored = [r.strip() for r in ignore.split(",") if r.strip()]
    matrix = matrix or str(_settings().matrix_path(fam))
    result = run_verb(lint_file, matrix, policy, ignore=ignored, known=REFERENCE_RULES, workflows=workflows,
                      family=fam, recorded=_settings().runner_allowances)
    refs = None
    if references:
        refs = run_verb(lint_references_of, references, matrix=matrix, images=images, server_matrix=server_matrix,
                        server_images=server_images, branches=branches, ignore=ignored, env=os.environ)
    if format == "json":
        say(result.render_json() if refs is None else
              '{"matrix": ' + result.render_json() + ', "references": ' + refs.render_json() + "}")
    elif format == "github":
        for r in (result, refs):
            if r is not None:
                for command in r.annotations():
                    say_command(command)
                say(r.render_text().split("\n", len(r.findings))[-1])
        write_summary(result.render_markdown() + (refs.render_markdown() if refs is not None else ""), os.environ)
    else:
        say(result.render_text())
        if refs is not None:
            say(refs.render_text())
    worst = max(result.exit_code, refs.exit_code if refs is not None else 0)
    exit_with(worst if strict else 0)


@ci_task(help={"matrix": _MATRIX_HELP, "in_place": "rewrite the matrix file itself (atomically)",
            "output": "write the split matrix to this path instead", "dry_run": "print the report and diff only",
            **_POLICY_HELP})
def matrix_split(c, matrix=_MATRIX_DEFAULT, in_place=False, output=None, dry_run=False, retired=None,
                 runner_amd64=None, runner_arm64=None):
    """Split multi-platform entries into per-arch legs on native runners (byte-preserving)."""
    no_extra_args(c)
    from .matrix.split import split_file
    policy = _policy(retired, runner_amd64, runner_arm64)
    outcome = run_verb(split_file, _matrix(matrix), output=output, in_place=in_place, dry_run=dry_run, policy=policy,
                       recorded=_settings().runner_allowances)
    say(outcome.result.report.render())
    if dry_run and outcome.diff:
        say(outcome.diff, end="")
    if outcome.written:
        say(f"wrote {outcome.written}")


# ---- build and publish one leg (issue 3) ----------------------------------------------------
_BUILD_HELP = {
    "tag-suffix": "the leg's tag-suffix, e.g. -cpu-llama-cpp (build-image: '' or -core for the core image); "
                  "write --tag-suffix=-x when the value starts with '-'",
    "platform-tag": "the leg's platform tag, e.g. amd64 or arm64",
    "backend": "pick the leg by backend name (convenience; must name exactly one leg with the other flags)",
    "matrix": "matrix file (default: backends/matrix.yml; build-image: backends/images.yml), relative to cwd",
    "images": "comma-separated repositories to publish to (default: CI_BACKEND_IMAGES/CI_SERVER_IMAGES or LocalAI's)",
    "digests-dir": "where to write the digest artifact directory (default: digests)",
    "event": "push (publish by digest) or pull_request (build; push to the PR image only with credentials); "
             "default GITHUB_EVENT_NAME, else push",
    "anchor": "also tag the digest keepalive-<run-id><suffix>-<ptag> in the target repositories of registries that "
              "garbage-collect untagged manifests: all but docker.io, or those in CI_ANCHOR_REGISTRIES (comma list)",
    "run-id": "run id for --anchor and PR tags (default GITHUB_RUN_ID)",
    "username": "registry user (with --password-stdin) for --login-registry only; default: Docker config / "
                "credential helpers",
    "password-stdin": "read the registry password from standard input (sent to --login-registry only)",
    "login-registry": "the registry --username/--password-stdin log in to, e.g. quay.io; required when the leg "
                      "publishes to several registries (the others use the Docker config / credential helpers)",
    "root": "repository root: matrix context/dockerfile paths are relative to it (default: .)",
    "dry-run": "print the plan (build args, platform, images, artifact name, cache ref) and touch nothing",
    "debug": "show a traceback on errors",
    "builder": "buildx builder instance to build with (default: CI_BUILDER, else buildx's current one; "
               "see docker buildx ls)",
    "apt-mirror": "APT_MIRROR build arg: replaces archive/security.ubuntu.com in the image's apt sources "
                  "(default: $APT_MIRROR, else none)",
    "apt-ports-mirror": "APT_PORTS_MIRROR build arg: replaces ports.ubuntu.com (default: $APT_PORTS_MIRROR, else none)",
    "deps-refresh": "DEPS_REFRESH build arg, the dependency-layer cache buster (default: $DEPS_REFRESH, else the "
                    "ISO week, e.g. 2026-W49)",
    "push": "send the leg: its digest to every registry, tags, keepalive anchors and the registry cache export "
            "(as buildx's --push); without it nothing leaves this machine: the leg is built, and --dry-run says "
            "what --push would send where",
    "format": "with --dry-run: text (default) or json (one object per leg: tag-suffix, platform tag, build args, "
              "Dockerfile, context, platform, runner, images, tags, cache ref)",
    "min-free-disk": "GiB that must be free on the filesystem of the engine's data root before building (default: "
                     "$CI_MIN_FREE_DISK_GIB, else no check); the peak use during the leg is reported either way",
    "from-oci": "do not build: publish this OCI image layout directory or image archive (.tar: OCI layout or "
                "docker-archive) as the leg, by digest (with --push), and write its digest artifact -- a leg another "
                "tool built, e.g. a Darwin backend's backend-images/<name>.tar (its includeDarwin entry names the leg)",
}
# The build workflows pass every field of the leg's build-matrix element; each is checked
# against the leg resolved from the matrix, so a stale or hand-edited job matrix fails early.
_LEG_FIELDS = ("build-type", "platforms", "tag-latest", "runs-on", "base-image", "dockerfile", "context",
               "cuda-major-version", "cuda-minor-version", "skip-drivers", "ubuntu-version",
               "builder-base-image", "amdgpu-targets", "artifact-name", "makeflags", "ubuntu-codename")
for _f in _LEG_FIELDS:
    _BUILD_HELP[_f] = f"the leg's {_f} as in its build-matrix element (checked against the matrix; optional)"


def _leg_fields(values: dict[str, str | None]) -> tuple[tuple[str, str], ...]:
    """The leg fields the workflow passed (kebab-case), for the cross-check against the matrix."""
    return tuple((k, v) for k, v in values.items() if v is not None)


def _build(family: str, tag_suffix: str | None, platform_tag: str | None, backend: str | None, matrix: str | None,
           images: str | None, digests_dir: str, event: str | None, anchor: bool, run_id: str | None,
           username: str | None, password_stdin: bool, root: str, dry_run: bool, debug: bool,
           leg_fields: tuple[tuple[str, str], ...] = (), login_registry: str | None = None,
           builder: str | None = None, apt_mirror: str | None = None, apt_ports_mirror: str | None = None,
           deps_refresh: str | None = None, min_free_disk: str | None = None, push: bool = False,
           format: str = "text", from_oci: str | None = None) -> None:  # noqa: A002
    from .build.leg import BuildRequest, run_leg
    from .matrix.naming import Family

    _check_format(format, dry_run)
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    req = BuildRequest(family=Family(family), tag_suffix=tag_suffix, platform_tag=platform_tag, backend=backend,
                       matrix=matrix, images=images, digests_dir=digests_dir, event=event, anchor=anchor,
                       run_id=run_id, username=username, password=password, login_registry=login_registry,
                       root=root, dry_run=dry_run, leg_fields=leg_fields, builder=builder, apt_mirror=apt_mirror,
                       apt_ports_mirror=apt_ports_mirror, deps_refresh=deps_refresh, min_free_disk=min_free_disk,
                       push=push, plan_format=format, from_oci=from_oci)
    run_verb(run_leg, req, debug=debug)


def _check_format(format: str, dry_run: bool) -> None:  # noqa: A002
    if format not in ("text", "json"):
        raise _bad(f"error: --format {format!r} is not 'text' or 'json'", code=2)
    if format == "json" and not dry_run:
        raise _bad("error: --format json prints the plan: use it with --dry-run", code=2)


def _build_task(family: str, name: str, doc: str) -> Task:
    """One build task per image family; both take the same options."""

    def build(c, tag_suffix=None, platform_tag=None, backend=None, matrix=None, images=None,  # type: ignore[no-untyped-def]
              digests_dir="digests", event=None, anchor=False, run_id=None, username=None, password_stdin=False,
              root=".", dry_run=False, debug=False, build_type=None, platforms=None, tag_latest=None, runs_on=None,
              base_image=None, dockerfile=None, context=None, cuda_major_version=None, cuda_minor_version=None,
              skip_drivers=None, ubuntu_version=None, builder_base_image=None, amdgpu_targets=None,
              artifact_name=None, makeflags=None, ubuntu_codename=None, login_registry=None, builder=None,
              apt_mirror=None, apt_ports_mirror=None, deps_refresh=None, min_free_disk=None, push=False,
              format="text", from_oci=None):  # noqa: A002
        no_extra_args(c)
        given = locals()
        _build(family, tag_suffix, platform_tag, backend, matrix, images, digests_dir, event, anchor, run_id,
               username, password_stdin, root, dry_run, debug,
               _leg_fields({f: given[f.replace("-", "_")] for f in _LEG_FIELDS}), login_registry,
               builder, apt_mirror, apt_ports_mirror, deps_refresh, min_free_disk, push, format, from_oci)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return ci_task(help=_BUILD_HELP)(build)


build_backend = _build_task(
    "backends", "build_backend", "Build one backend leg with BuildKit (docker buildx) and publish it by digest to every registry.")
build_image = _build_task(
    "server", "build_image", "Build one LocalAI server-image leg (core: --tag-suffix '') and publish it by digest.")


# ---- GitHub Actions matrices (issue 5) -------------------------------------------------------
@ci_task(help={
    "matrix": "matrix file (default: backends/matrix.yml; backends/images.yml with --family server)",
    "family": "image family of the matrix: backends (default) or server",
    "changed-files": "file with one changed repository-relative path per line: build only legs whose inputs changed",
    "base": "git revision to diff against (git diff --name-only BASE...HEAD); empty or all zeros = everything",
    "force-all": "build every leg (tag pushes, schedules)",
    "shards": "number of single-arch matrices (each at most 256 jobs; default 4, as in the workflows)",
    "github-output": "file to append outputs to (default: $GITHUB_OUTPUT, else print name=value lines)",
    "explain": "comma-separated tag-suffixes (--explain=-cpu-whisper): print, for each of their legs, whether it is "
               "selected, which changed file reached it through which rule or import chain, and its inputs "
               "(outputs then go only to a file)",
    "root": "repository the matrix's dockerfile/context paths and --changed-files are relative to "
            "(default: the git checkout holding the matrix)",
    "strict-proto": "rebuild for every .proto edit, additive-only ones (new fields, messages, RPCs) included",
    "debug": "show a traceback on errors",
})
def matrix_github(c, matrix=None, family="backends", changed_files=None, base=None, force_all=False,
                  shards="4", github_output=None, explain=None, root=None, strict_proto=False, debug=False):
    """Write the GitHub Actions job matrices: multi-arch, single-arch shards, merges, Darwin, has-* flags."""
    no_extra_args(c)
    from .github.changed_jobs import write_github_matrices

    suffixes = tuple(dict.fromkeys(s.strip() for s in explain.split(","))) if explain is not None else ()
    run_verb(write_github_matrices, matrix=matrix, family=family, changed_files=changed_files, base=base,
             force_all=force_all, shards=int_option("--shards", shards), github_output=github_output,
             env=os.environ, out=redacted(sys.stdout), err=redacted(sys.stderr), explain_suffixes=suffixes, root=root,
             strict_proto=strict_proto, debug=debug)



# ---- whole pipeline (issue 6) ----------------------------------------------------------------
@ci_task(help={
    "matrix": "backend matrix (default: backends/matrix.yml under --root)",
    "images-matrix": "server-image matrix (default: backends/images.yml under --root)",
    "only": "comma-separated tag-suffixes to run (both families; -core is the server core image), "
            "e.g. --only=-cpu-hello,-core",
    "images": "backend repositories, comma-separated (default: CI_BACKEND_IMAGES, else two embedded "
              "loopback registries started for the run)",
    "server-images": "server-image repositories (default: CI_SERVER_IMAGES, else the embedded registries)",
    "jobs": "legs built/published and suffixes merged at the same time (default 2)",
    "keep": "leave the embedded registries running and print how to reach and stop them",
    "force": "rebuild and republish every leg even when its inputs are unchanged",
    "dry-run": "print the whole plan (legs, build args, images, artifacts, merges, tags); touch nothing",
    "root": "repository root: matrices, contexts and the .localai-ci state directory (default: .)",
    "builder": "buildx builder instance to build with (default: CI_BUILDER, else buildx's current one)",
    "apt-mirror": "APT_MIRROR build arg for every leg (default: $APT_MIRROR, else none)",
    "apt-ports-mirror": "APT_PORTS_MIRROR build arg for every leg (default: $APT_PORTS_MIRROR, else none)",
    "allow-skip": "exit 0 even when legs were skipped because this machine cannot build them (no busybox for the "
                  "offline bases, no QEMU, an engine too old); without it such a run fails",
    "push": "send to the registries --images / CI_*_IMAGES name (the embedded loopback registries need no --push; "
            "others do: nothing leaves this machine without it)",
    "format": "with --dry-run: text (default) or json (every leg as build-backend --dry-run --format json prints "
              "it, then every merge)",
    "debug": "show a traceback on errors",
})
def pipeline(c, matrix=None, images_matrix=None, only=None, images=None, server_images=None, jobs="2",
             keep=False, force=False, dry_run=False, root=".", builder=None, apt_mirror=None,  # type: ignore[no-untyped-def]
             apt_ports_mirror=None, allow_skip=False, push=False, format="text", debug=False):  # noqa: A002
    """Run every leg, merge and inspect locally (embedded loopback registries by default), make-style."""
    no_extra_args(c)
    from .pipeline.run import PipelineOptions, parse_only, run_pipeline

    opts = PipelineOptions(matrix=matrix, images_matrix=images_matrix, only=parse_only(only), images=images,
                           server_images=server_images, jobs=int_option("--jobs", jobs), keep=keep, force=force, dry_run=dry_run,
                           root=root, builder=builder, apt_mirror=apt_mirror, apt_ports_mirror=apt_ports_mirror,
                           allow_skip=allow_skip, push=push, plan_format=format)
    _check_format(format, dry_run)
    report = run_verb(run_pipeline, opts, debug=debug)
    exit_with(report.exit_code)


ns = Collection(build_backend, build_image, pipeline)
ns.add_collection(Collection("matrix", report=matrix_report, lint=matrix_lint, split=matrix_split,
                             github=matrix_github))
