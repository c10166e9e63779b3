"""The ``localai-ci`` console script (and ``python -m localai_ci``), and the argparse front end of the
nox sessions: parse, call one verb, print.

``localai-ci VERB ...`` runs any verb: ``merge`` and ``inspect`` (argparse, :data:`COMMANDS`, what
``nox -s merge``/``inspect`` run) and every invoke task of :mod:`localai_ci.tasks` (``build-backend``,
``pipeline``, ``matrix.lint``, ...: the same tasks ``invoke`` runs, through invoke's own parser);
``localai-ci --help`` lists them all. ``main(argv) -> int`` catches :class:`~ci.errors.CiError` once, prints ``error: ...`` to
stderr and returns its exit status (0 ok, 1 a failure, 2 bad input); ``--debug`` (or
``CI_DEBUG=1``) adds the traceback. New subcommands register in :data:`COMMANDS`.

Everything written here -- stdout, stderr, ``--format json``, the job summary, tracebacks --
is redacted (:func:`ci.redaction.redact`: a registry may echo a credential in the strings it
sent) and made inert (:mod:`ci.output.escape`, one function per sink: stdout and stderr through
:func:`ci.output.console.say`, the job summary's fragments through ``markdown_text``/``md_table``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from .errors import CiError, UserError, failure
from .matrix.naming import Family
from .output.console import say


def _say(text: str, *, err: bool = False, flush: bool = False) -> None:
    """Print for the user: redacted and made inert (:func:`localai_ci.output.console.say`)."""
    say(text, file=sys.stderr if err else sys.stdout, flush=flush)


@dataclass(frozen=True)
class Command:
    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Mapping[str, str]], int]


# ---- merge -------------------------------------------------------------------------------------

def _merge_arguments(p: argparse.ArgumentParser) -> None:
    from .merge.model import DEFAULT_JOBS
    from .settings import SETTINGS_FILE

    sel = p.add_argument_group("what to merge")
    what = sel.add_mutually_exclusive_group(required=True)
    what.add_argument("--tag-suffix", metavar="S",
                      help="merge this tag-suffix (e.g. -cpu-llama-cpp); with --family server, '' or -core is "
                           "the server image itself. Exact match: -cpu-vllm never picks up -cpu-vllm-omni")
    what.add_argument("--all", action="store_true",
                      help="merge every suffix found in --digests-dir (both families unless --family is given), "
                           "concurrently; each is reported merged, skipped (a leg missing) or failed")
    sel.add_argument("--family", choices=[f.value for f in Family], default=None,
                     help="image family: backends (default) or server (the LocalAI image); --images and "
                          "--matrix apply to it")
    sel.add_argument("--suffixes", metavar="LIST",
                     help="with --all: exactly these tag-suffixes of --family (a JSON list, as matrix.github's "
                          "<class>-merge-suffixes, or comma-separated); one without digest artifacts is reported "
                          "skipped, and any skipped or failed suffix is exit 1 after the others are merged")
    sel.add_argument("--digests-dir", metavar="DIR", default="digests",
                     help="directory holding the legs' digest artifacts (digests<suffix>--<platform-tag>/<hex>); "
                          "default: ./digests")
    sel.add_argument("--report", metavar="FILE",
                     help="write every suffix's result (merged with its list digest, tags and platforms, skipped or "
                          "failed with its reason) as JSON, for `nox -s inspect -- --merged FILE`")
    sel.add_argument("--matrix", metavar="PATH",
                     help="the family's matrix, to know each suffix's legs and tag-latest (default: the "
                          f"repository's, as {SETTINGS_FILE} names it or found: .github/backend-matrix.yml, "
                          "backends/matrix.yml; server backends/images.yml)")
    sel.add_argument("--server-matrix", metavar="PATH",
                     help="with --all: the server family's matrix (default: the repository's, as for --matrix)")
    dst = p.add_argument_group("where and how")
    dst.add_argument("--images", metavar="LIST",
                     help="comma-separated repositories of the family, one per registry (default: "
                          "CI_BACKEND_IMAGES / CI_SERVER_IMAGES, else LocalAI's quay.io and Docker Hub repositories)")
    dst.add_argument("--server-images", metavar="LIST",
                     help="with --all: the server family's repositories (default: CI_SERVER_IMAGES, else LocalAI's)")
    dst.add_argument("--engine", choices=["auto", "native", "imagetools"], default="auto",
                     help="native: talk to the registries directly (parallel, verified); imagetools: one "
                          "`docker buildx imagetools create` per registry, as LocalAI's workflows; auto: native")
    dst.add_argument("--jobs", type=int, default=DEFAULT_JOBS, metavar="N",
                     help="with --all: suffixes merged at the same time (default %(default)s)")
    dst.add_argument("--dry-run", action="store_true",
                     help="read the registries, then print the list JSON, tags and targets; write nothing")
    tags = p.add_argument_group("tags (docker/metadata-action rules)")
    tags.add_argument("--tag-latest", choices=["auto", "true", "false"], default=None,
                      help="latest flavor; default: the matrix legs' tag-latest (they must agree)")
    tags.add_argument("--event", help="GitHub event name (default: GITHUB_EVENT_NAME, else push); "
                                      "pull_request events get only the sha tag")
    tags.add_argument("--ref", help="git ref, e.g. refs/heads/master or refs/tags/v3.4.0 (default: GITHUB_REF; "
                                    "with neither it nor GITHUB_SHA set, this checkout's branch)")
    tags.add_argument("--sha", help="full commit SHA, 40 hex (default: GITHUB_SHA; else this checkout's HEAD)")
    aft = p.add_argument_group("after the merge")
    aft.add_argument("--anchor", action="store_true",
                     help="the legs were anchored by keepalive tags at build time: delete this suffix's "
                          "keepalive tags where the registry allows (a failure is reported, never fatal)")
    aft.add_argument("--run-id", metavar="ID",
                     help="run id of the keepalive tags (default: GITHUB_RUN_ID); needed with --anchor")
    aft.add_argument("--sign", action="store_true",
                     help="cosign-sign the list and, recursively, every child, by digest")
    aft.add_argument("--key", metavar="PATH",
                     help="cosign private key for --sign (needs COSIGN_PASSWORD); without it cosign signs keyless")
    aft.add_argument("--no-tlog", action="store_true",
                     help="do not upload signatures to the transparency log (offline / loopback registries)")
    aft.add_argument("--registry-referrers-mode", metavar="MODE", default="",
                     help="with --sign: cosign's --registry-referrers-mode (oci-1-1: signatures as OCI 1.1 referrers, "
                          "as LocalAI signs; cosign 2.4 needs COSIGN_EXPERIMENTAL=1 for it)")


def note_plain_http(registry: str) -> None:
    """Say when a registry is reached without TLS (loopback, or named in CI_INSECURE_REGISTRIES)."""
    _say(f"note: using plain HTTP for {registry} (loopback or listed in CI_INSECURE_REGISTRIES)", err=True)


def _run_merge(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from .github.actions import write_summary
    from .merge.render import format_result, summary_markdown
    from .merge.run import MergeRequest, pull_counted, run_merge

    req = MergeRequest(
        digests_dir=args.digests_dir, family=Family(args.family) if args.family else None,
        tag_suffix=args.tag_suffix or "", all=args.all,
        suffixes=parse_suffixes(args.suffixes, args) if args.suffixes is not None else None,
        images=args.images, server_images=args.server_images, matrix=args.matrix, server_matrix=args.server_matrix,
        event=args.event, ref=args.ref, sha=args.sha, tag_latest=args.tag_latest, anchor=args.anchor,
        run_id=args.run_id, sign=args.sign, key=args.key, tlog=not args.no_tlog, method=args.engine,
        referrers_mode=args.registry_referrers_mode,
        dry_run=args.dry_run, jobs=args.jobs)
    report = run_merge(req, env, note=lambda text: _say(f"note: {text}", err=True),
                       on_result=lambda r: _say(format_result(r), flush=True))
    if args.all:
        counts = {o: sum(1 for r in report.results if r.outcome == o) for o in ("merged", "skipped", "failed")}
        unchanged = sum(1 for r in report.results if r.outcome == "merged" and not r.changed)
        _say(f"{len(report.results)} suffix(es): {counts['merged']} merged ({unchanged} already published), "
             f"{counts['skipped']} skipped, {counts['failed']} failed")
    else:
        result = report.results[0]
        if result.digest and not args.dry_run and env.get("GITHUB_OUTPUT"):
            # the merge workflows hand the list digest and tags to the inspect step
            from .github.actions import write_outputs  # (composed here, never a registry's string: not redacted)
            write_outputs({"digest": result.digest, "tags": ",".join(result.tags)}, env)
    counted = pull_counted(env)
    if report.requests_line(counted) and not args.dry_run:
        _say(report.requests_line(counted))
    if not args.dry_run:
        write_summary(summary_markdown(report, counted), env)
    if args.report:
        write_report(args.report, report)
    for r in report.failed:
        _say(f"error: {r.label}: {r.reason}", err=True)
    return report.exit_code


def parse_suffixes(text: str, args: argparse.Namespace) -> tuple[str, ...]:
    """``--suffixes``: a JSON list (matrix.github's ``<class>-merge-suffixes``) or a comma list, validated."""
    import json

    from .matrix.naming import check_suffix, normalize_suffix

    if not args.all or not args.family:
        raise UserError("--suffixes names a class's suffixes for `--all --family F`; add --all and --family")
    raw = text.strip()
    try:
        items = json.loads(raw) if raw.startswith("[") else [s.strip() for s in raw.split(",") if s.strip()]
    except ValueError as exc:
        raise UserError(f"--suffixes {raw[:80]!r}: not a JSON list ({exc}); pass [\"-a\",\"-b\"] or -a,-b") from exc
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise UserError("--suffixes: expected a list of tag-suffixes")
    family = Family(args.family)
    out = []
    for s in items:
        s = normalize_suffix(family, s)
        try:
            check_suffix(s, family)
        except ValueError as exc:
            raise UserError(f"--suffixes: {exc}") from exc
        out.append(s)
    return tuple(dict.fromkeys(out))


def write_report(path: str, report: object) -> None:
    """``--report FILE``: the merge's results as JSON (values computed here or parsed and validated)."""
    import json

    from .errors import OperationError

    doc = {"results": [{"family": str(r.family), "suffix": r.suffix, "outcome": r.outcome.value, "reason": r.reason,
                        "digest": r.digest, "tags": list(r.tags), "platforms": list(r.platforms),
                        "dry_run": r.dry_run} for r in report.results]}  # type: ignore[attr-defined]
    try:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
    except OSError as exc:
        raise OperationError(f"writing the merge report {path}: {exc.strerror or exc}") from exc


# ---- inspect -----------------------------------------------------------------------------------

def _inspect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("refs", nargs="*", metavar="REF",
                   help="references to verify: REGISTRY/REPO:TAG or REGISTRY/REPO@sha256:...; the same tag in "
                        "several repositories must be the same list")
    p.add_argument("--images", metavar="LIST",
                   help="comma-separated repositories; each --tag is checked in each of them")
    p.add_argument("--family", choices=[f.value for f in Family], default="backends",
                   help="with --tag and no --images: use this family's configured images (default %(default)s)")
    p.add_argument("--tag", action="append", default=[], metavar="T",
                   help="a tag (or sha256 digest) to check in every --images repository; repeatable, or comma-separated "
                        "(the merge's `tags` step output)")
    p.add_argument("--expect-platforms", metavar="LIST",
                   help="exact platforms each list must have, e.g. linux/amd64,linux/arm64")
    p.add_argument("--verify-signatures", action="store_true",
                   help="verify cosign signatures of each list and every child (by digest)")
    p.add_argument("--key", metavar="PUB", help="cosign public key for --verify-signatures")
    p.add_argument("--no-tlog", action="store_true",
                   help="do not require transparency-log entries (offline signatures)")
    p.add_argument("--format", choices=["text", "json"], default="text",
                   help="text: a table and the failed checks; json: for machines (default %(default)s)")
    a = p.add_argument_group("catalog audit (--audit)")
    a.add_argument("--audit", action="store_true",
                   help="check every tag-suffix of --family's matrix instead of REF...: its tags for --ref (and "
                        "latest where the legs' tag-latest gives it) exist in every registry, with the same list "
                        "digest everywhere and exactly the matrix's platforms; one line per suffix")
    a.add_argument("--matrix", metavar="PATH", help="the family's matrix (default backends/matrix.yml, server "
                                                    "backends/images.yml)")
    a.add_argument("--ref", default="refs/heads/master", metavar="REF",
                   help="the git ref whose tags are audited (default %(default)s: the branch tag; refs/tags/v3.4.0 "
                        "for a release)")
    a.add_argument("--only", metavar="LIST", help="comma-separated tag-suffixes to audit (default: all)")
    a.add_argument("--jobs", type=int, default=8, metavar="N", help="suffixes audited at the same time (default 8)")
    p.add_argument("--merged", metavar="FILE",
                   help="inspect every list a `merge --all --report FILE` merged, by its digest and each of its tags, "
                        "in every repository of --family, with its suffix's platforms")
    a.add_argument("--references", metavar="FILES",
                   help="comma-separated files naming the images (galleries, docs): every reference to the family's "
                        "repositories must resolve too")


def _run_audit(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from .github.actions import write_summary
    from .matrix.model import load_matrix
    from .matrix.references import read_references
    from .matrix.tags import check_ref
    from .oci.client import RegistryClients
    from .settings import family_config, load_settings
    from .verify.audit import audit, format_text, summary_markdown, to_json

    if args.refs or args.tag or args.expect_platforms or args.verify_signatures:
        raise UserError("--audit checks the matrix's own tags: drop REF..., --tag, --expect-platforms and "
                        "--verify-signatures (or drop --audit)")
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    family = Family(args.family)
    settings = load_settings(".")
    matrix = load_matrix(args.matrix or settings.matrix_path(family), family)
    config = family_config(family, images=args.images, env=env, settings=settings)
    only = tuple(s.strip() for s in (args.only or "").split(",") if s.strip())
    unknown = [s for s in only if s not in matrix.suffixes()]
    if unknown:
        raise UserError(f"--only: {', '.join(repr(s) for s in unknown)} is no tag-suffix of {matrix.path}")
    for reg in config.registries:
        if config.plain_http(reg):
            note_plain_http(reg)
    refs = [r for f in (args.references or "").split(",") if f.strip() for r in read_references(f.strip())
            if r.image in config.images]

    client_for = partial(RegistryClients(), plain_http=config.plain_http)

    report = audit({family: matrix}, {family: config}, client_for, ref=check_ref(args.ref), only=only,
                   jobs=args.jobs, references=refs)
    _say(to_json(report) if args.format == "json" else format_text(report))
    write_summary(summary_markdown(report), env)
    return report.exit_code


def _run_inspect_merged(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from .github.actions import write_summary
    from .oci.client import RegistryClients
    from .settings import family_config, load_settings
    from .verify.inspect import format_text, inspect_merged, merged_suffixes, summary_markdown, to_json

    if args.refs or args.tag or args.expect_platforms:
        raise UserError("--merged inspects what the merge report names: drop REF..., --tag and --expect-platforms")
    merged = merged_suffixes(args.merged)
    config = family_config(Family(args.family), images=args.images, env=env, settings=load_settings("."))
    if not merged:
        _say(f"nothing to inspect: {args.merged} reports no merged suffix")
        return 0

    client_for = partial(RegistryClients(), plain_http=config.plain_http)

    report = inspect_merged(merged, config.images, client_for)
    _say(to_json(report) if args.format == "json" else format_text(report))
    write_summary(summary_markdown(report), env)
    return report.exit_code


def _run_inspect(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from .github.actions import write_summary
    from .oci.client import RegistryClients
    from .oci.reference import registry_set, uses_plain_http
    from .oci.sign import VerifyOptions
    from .settings import ENV_INSECURE, ENV_TLS, family_config, load_settings
    from .verify.inspect import expand_targets, format_text, inspect_refs, parse_platforms, summary_markdown, to_json

    if args.audit:
        return _run_audit(args, env)
    if args.merged:
        return _run_inspect_merged(args, env)
    if args.matrix or args.only or args.references:
        raise UserError("--matrix, --only and --references belong to --audit")
    if args.verify_signatures and not args.key:
        raise UserError("--verify-signatures needs --key PUB (the cosign public key)")
    if args.key and not args.verify_signatures:
        raise UserError("--key is only used with --verify-signatures")
    images: tuple = ()
    if args.images or args.tag:
        images = family_config(Family(args.family), images=args.images, env=env, settings=load_settings(".")).images
    targets = expand_targets(args.refs, images if args.tag else (), args.tag)
    insecure = registry_set(env.get(ENV_INSECURE, ""))
    tls = registry_set(env.get(ENV_TLS, ""))

    def plain(reg: str) -> bool:
        return uses_plain_http(reg, insecure, tls)

    for reg in sorted({t.image.registry for t in targets if plain(t.image.registry)}):
        note_plain_http(reg)

    client_for = partial(RegistryClients(), plain_http=plain)

    report = inspect_refs(
        targets, client_for,
        expected=parse_platforms(args.expect_platforms) if args.expect_platforms else None,
        verify_signatures=VerifyOptions(key=args.key, tlog=not args.no_tlog) if args.verify_signatures else None,
        plain_http=plain, env=env)
    _say(to_json(report) if args.format == "json" else format_text(report))
    write_summary(summary_markdown(report), env)
    return report.exit_code


COMMANDS: dict[str, Command] = {
    "merge": Command(
        help="merge a suffix's per-arch digests into one manifest list, tagged in every registry",
        description=("Select the digest artifacts of one tag-suffix (or --all), check every child in every "
                     "registry before writing anything, compose one manifest list, tag it as "
                     "docker/metadata-action would, publish the same bytes to every registry and verify "
                     "the list digest is identical everywhere. Exit 0 ok, 1 a merge failed, 2 bad input."),
        add_arguments=_merge_arguments, run=_run_merge),
    "inspect": Command(
        help="verify published manifest lists (platforms, children, same digest everywhere)",
        description=("For each reference in each registry assert: the list resolves, its platforms are exactly "
                     "the expected ones, no attestation/unknown child, the list digest is identical across "
                     "registries, every child resolves and its config's os/architecture matches. "
                     "Exit 0 all good, 1 any check failed (each named), 2 bad input."),
        add_arguments=_inspect_arguments, run=_run_inspect),
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser = argparse.ArgumentParser(prog="localai-ci", parents=[common],
                                     description="localai-ci verbs (also run by `nox -s <command> -- ...`).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        sp = sub.add_parser(name, parents=[common], help=cmd.help, description=cmd.description)
        cmd.add_arguments(sp)
    return parser


# options whose values start with '-' (tag-suffixes): argparse would take them for options
DASH_VALUE_OPTIONS = ("--tag-suffix", "--only", "--suffixes")


def join_dash_values(argv: Sequence[str]) -> list[str]:
    """``--tag-suffix -cpu-x`` -> ``--tag-suffix=-cpu-x`` (``--tag-suffix=-cpu-x`` also works as is)."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg in DASH_VALUE_OPTIONS:
            nxt = next(it, None)
            out.append(arg if nxt is None else f"{arg}={nxt}")
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """``localai-ci VERB ...``: run one verb; return its exit status (usage errors exit 2 as well)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        say(overview())
        return 0 if args else 2
    if args[0] == "--version":
        say(f"localai-ci {version()}")
        return 0
    if args[0] in COMMANDS:
        return run_command(args, env)
    tasks = task_names()
    if args[0] in tasks:
        return run_task(args)
    import difflib

    close = difflib.get_close_matches(args[0], [*COMMANDS, *tasks], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    say(f"error: {args[0]!r} is not a localai-ci verb; {hint}`localai-ci --help` lists them", file=sys.stderr)
    return 2


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("localai-ci")
    except PackageNotFoundError:
        return "(not installed)"


def task_names() -> dict[str, str]:
    """Every invoke task of :mod:`localai_ci.tasks` by the name users type (``matrix.lint``), with its summary."""
    from .tasks import ns

    out = {}
    for name in sorted(ns.task_names):
        task = ns[name]
        out[name] = (task.__doc__ or "").strip().splitlines()[0] if task.__doc__ else ""
    return out


def overview() -> str:
    """``localai-ci --help``: every verb, one line each."""
    verbs = {**task_names(), **{n: c.help for n, c in COMMANDS.items()}}
    width = max(len(n) for n in verbs)
    lines = ["usage: localai-ci VERB [OPTIONS]   (localai-ci VERB --help: the verb's options)", "",
             "Per-arch fan-out / fan-in pipelines for multi-arch container images (LocalAI-style).", "", "verbs:"]
    lines += [f"  {n.ljust(width)}  {doc}" for n, doc in sorted(verbs.items())]
    lines += ["", "The same verbs run as `invoke VERB` (a repository's tasks.py: `from localai_ci.tasks import ns`) "
              "and, for merge and inspect, `nox -s VERB -- ...`.",
              "Exit status: 0 ok, 1 a failure, 2 bad input."]
    return "\n".join(lines)


def run_task(args: Sequence[str]) -> int:
    """One invoke task, parsed and run by invoke's own machinery (the tasks' options, help and errors),
    under the name ``localai-ci``; an option invoke cannot parse is bad input (exit 2)."""
    from invoke import Exit, ParseError, Program

    from .tasks import ns

    class _Program(Program):
        def parse_tasks(self) -> None:
            try:
                super().parse_tasks()
            except ParseError as exc:
                raise Exit(f"error: {exc}; localai-ci {args[0]} --help lists its options", code=2) from exc

    program = _Program(namespace=ns, name="localai-ci", binary="localai-ci", version=version())
    try:
        program.run(["localai-ci", *args])
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def run_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """One argparse command (:data:`COMMANDS`: ``merge``, ``inspect``); the nox sessions run these."""
    environ = os.environ if env is None else env
    parser = build_parser()
    try:
        args = parser.parse_args(join_dash_values(argv))
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    debug = bool(args.debug or environ.get("CI_DEBUG"))
    if not debug:  # nox logs at debug level; the libraries' request logs are noise to a user
        for name in ("docker", "urllib3", "requests"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command].run(args, environ)
    except (CiError, KeyboardInterrupt) as exc:
        message, code = failure(exc, debug=debug)
        say(message, file=sys.stderr)
        return code
