"""Stage resolution (pure; BuildKit's ``dockerfile2llb``): with build args and platforms,
:func:`resolve` -> :class:`~localai_ci.dockerfile.model.Resolved`: which stages the target reaches, their
expanded base images and platforms, the build-context paths they read, the external images they pull,
and which stages run under emulation on a given host.
"""
from __future__ import annotations

import difflib
import heapq
import posixpath
import re
from collections.abc import Mapping

from ..errors import UserError
from ..oci.platforms import Platform, parse_platform
from .expand import expand
from .model import (
    AUTOMATIC_ARGS,
    Dockerfile,
    Instruction,
    Resolved,
    ResolvedStage,
    RunStep,
    Source,
    Stage,
    _arg_pairs,
    _mount_fields,
)

# Build args BuildKit consumes without an ARG line (proxies, frontend switches, reproducibility).
_IMPLICIT_BUILD_ARGS = frozenset(
    {"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY", "SOURCE_DATE_EPOCH"}
    | {n.lower() for n in ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")}
)


SCRATCH = "scratch"


_HEREDOC_WORD_RE = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")


_REMOTE_PREFIXES = ("http://", "https://", "git://", "git@", "ssh://")


def resolve(df: Dockerfile, build_args: Mapping[str, str], *, target_platform: Platform,
            build_platform: Platform, target: str | None = None) -> Resolved:
    """Apply build args and platforms as BuildKit does, for the stages ``target`` reaches.

    * Global scope (FROM lines, --platform): the automatic platform args, then each global ARG
      in order: the build arg when given, else its default expanded in the scope so far.
    * In a stage an ARG is visible after its ARG line: the build arg, else its default, else
      (``ARG NAME``) the global value, which is how ``ARG TARGETARCH`` imports the automatic
      one. ENV and ARG share one environment, later lines win; a stage built FROM another
      stage starts from that stage's environment and runs on that stage's platform.
    * The target (by name, else the last stage) reaches: its FROM when it names an earlier
      stage, ``COPY --from=`` (name or index; anything else is an image), ``RUN --mount=from=``.
    * Every stage's FROM and --platform are expanded and checked, reached or not (BuildKit does
      so too: an empty base name fails the build even in a pruned stage).
    """
    src = df.source
    escape = df.escape
    args = dict(build_args)
    if target:
        target_stage = df.stage(target)
        if target_stage is None:
            names = [s.name for s in df.stages if s.name]
            close = difflib.get_close_matches(target.lower(), names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"stages: {', '.join(names) or 'none are named'}"
            raise UserError(f"{src}: no stage named {target!r} to build as the target; {hint}")
    else:
        target_stage = df.stages[-1]

    scope = _global_scope(df, args, target_platform, build_platform, target_stage, escape)

    # FROM and --platform of every stage, in file order (a FROM can only name an earlier stage)
    by_name: dict[str, int] = {}
    bases: list[str] = []
    base_index: list[int | None] = []
    own_platform: list[Platform | None] = []
    for st in df.stages:
        base = _expand_at(src, st.line, st.base, scope, escape, "the FROM image")
        if not base:
            raise UserError(
                f"{src} line {st.line}: FROM {st.base} expands to an empty image name; give the ARG a "
                f"default before the first FROM or pass it as a build arg")
        bases.append(base)
        base_index.append(None if base.lower() == SCRATCH else by_name.get(base.lower()))
        own_platform.append(_stage_platform(src, st, scope, escape))
        if st.name:
            by_name[st.name] = st.index

    # dependencies of every stage
    deps: list[list[tuple[int, int]]] = []  # (stage index, line) per stage
    refs: list[list[str]] = []  # external images per stage, in order
    for st in df.stages:
        d: list[tuple[int, int]] = []
        r: list[str] = []
        bi = base_index[st.index]
        if bi is not None:
            d.append((bi, st.line))
        elif bases[st.index].lower() != SCRATCH:
            r.append(bases[st.index])
        for ins in st.instructions:
            for ref in _stage_refs(ins, src):
                idx = int(ref) if ref.isdecimal() and ins.keyword == "COPY" else by_name.get(ref.lower())
                if idx is None:
                    r.append(ref)
                else:
                    d.append((idx, ins.line))
        deps.append(d)
        refs.append(r)

    reached = _reachable(df, target_stage.index, deps)
    order = _dependency_order(reached, deps)

    envs: dict[int, dict[str, str]] = {}
    workdirs: dict[int, str] = {}
    platforms: dict[int, Platform] = {}
    resolved: list[ResolvedStage] = []
    declared: set[str] = {name for name, _ in df.global_args}
    for idx in order:
        st = df.stages[idx]
        bi = base_index[idx]
        if bi is not None:
            env = dict(envs[bi])
            platform = platforms[bi]
            workdir = workdirs[bi]
        else:
            env = {}
            platform = own_platform[idx] or target_platform
            workdir = "/"
        copies, runs, steps, workdir = _walk_stage(src, st, env, scope, args, declared, escape, workdir)
        envs[idx] = env
        workdirs[idx] = workdir
        platforms[idx] = platform
        resolved.append(ResolvedStage(
            stage=st, base=bases[idx], base_is_stage=bi is not None, platform=platform, runs=runs,
            copies=tuple(copies), run_steps=tuple(steps),
            depends_on=tuple(dict.fromkeys(df.stages[i].label for i, _ in deps[idx]))))

    external = tuple(dict.fromkeys(ref for idx in order for ref in refs[idx]))
    unused = tuple(sorted(k for k in args if k not in declared and k not in _IMPLICIT_BUILD_ARGS
                          and k not in AUTOMATIC_ARGS and not k.startswith("BUILDKIT_")))
    return Resolved(source=src, target=target_stage.label, target_platform=target_platform,
                    build_platform=build_platform, stages=tuple(resolved), external_images=external,
                    unused_build_args=unused)


def _global_scope(df: Dockerfile, args: Mapping[str, str], target_platform: Platform,
                  build_platform: Platform, target: Stage, escape: str) -> dict[str, str]:
    """dockerfile2llb defaultArgs + buildMetaArgs: automatic args, then the global ARGs."""
    tp, bp = target_platform, build_platform
    scope: dict[str, str] = {
        "BUILDPLATFORM": str(bp), "BUILDOS": bp.os, "BUILDARCH": str(bp.arch), "BUILDVARIANT": bp.variant,
        "TARGETPLATFORM": str(tp), "TARGETOS": tp.os, "TARGETARCH": str(tp.arch), "TARGETVARIANT": tp.variant,
        "TARGETSTAGE": target.name or "default",
    }
    for name in list(scope):
        if name in args:
            scope[name] = args[name]
    for ins in df.preamble:
        for name, default in _arg_pairs(ins, df.source):
            if name in args:
                scope[name] = args[name]
            elif default is not None:
                scope[name] = _expand_at(df.source, ins.line, default, scope, escape, f"ARG {name}")
    return scope


def _stage_platform(src: str, st: Stage, scope: Mapping[str, str], escape: str) -> Platform | None:
    if not st.platform:
        return None
    value = _expand_at(src, st.line, st.platform, scope, escape, "--platform")
    if not value:
        raise UserError(f"{src} line {st.line}: FROM --platform={st.platform} expands to an empty platform; "
                        f"use a global ARG with a value or $BUILDPLATFORM / $TARGETPLATFORM")
    try:
        return parse_platform(value)
    except ValueError as exc:
        raise UserError(f"{src} line {st.line}: FROM --platform={st.platform}: {exc}") from exc


def _stage_refs(ins: Instruction, src: str) -> list[str]:
    """Names or images an instruction reads from: COPY --from, RUN --mount=...,from=."""
    if ins.keyword == "COPY":
        ref = ins.flag("from")
        return [ref] if ref else []
    if ins.keyword == "RUN":
        out = []
        for spec in ins.flag_values("mount"):
            ref = _mount_fields(spec, src, ins.line).get("from", "")
            if ref:
                out.append(ref)
        return out
    return []


def _reachable(df: Dockerfile, target: int, deps: list[list[tuple[int, int]]]) -> set[int]:
    """Stages the target needs; a dependency cycle is a UserError naming it."""
    state: dict[int, int] = {target: 1}  # 1 = on the current path, 2 = done
    path: list[int] = [target]
    todo = [iter(deps[target])]  # a depth-first walk with its own stack: a chain of 1,200 stages is valid
    while todo:
        step = next(todo[-1], None)
        if step is None:
            todo.pop()
            state[path.pop()] = 2
            continue
        j, line = step
        if state.get(j) == 1:
            cycle = " -> ".join(df.stages[k].label for k in path[path.index(j):] + [j])
            raise UserError(f"{df.source} line {line}: circular dependency between stages ({cycle}); "
                            f"a stage cannot use itself or a stage that uses it")
        if j not in state:
            state[j] = 1
            path.append(j)
            todo.append(iter(deps[j]))
    return set(state)


def _dependency_order(reached: set[int], deps: list[list[tuple[int, int]]]) -> list[int]:
    """Reached stages with every stage after the ones it needs; file order where free."""
    pending = {i: {j for j, _ in deps[i]} for i in reached}
    users: dict[int, list[int]] = {i: [] for i in reached}
    for i in reached:
        for j in pending[i]:
            users[j].append(i)
    ready = [i for i in reached if not pending[i]]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users[i]:
            pending[u].discard(i)
            if not pending[u]:
                heapq.heappush(ready, u)
    return order


def _walk_stage(src: str, st: Stage, env: dict[str, str], scope: Mapping[str, str],
                args: Mapping[str, str], declared: set[str], escape: str,
                workdir: str = "/") -> tuple[list[Source], bool, list[RunStep], str]:
    """Dispatch a stage's ARG/ENV into ``env`` (in place); collect its build-context reads (with
    where they land), its RUN steps, and its final WORKDIR."""
    copies: list[Source] = []
    steps: list[RunStep] = []
    runs = False
    for ins in st.instructions:
        kw = ins.keyword
        if kw == "ARG":
            for name, default in _arg_pairs(ins, src):
                declared.add(name)
                value: str | None
                if name in args:
                    value = args[name]
                elif default is not None:
                    value = _expand_at(src, ins.line, default, env, escape, f"ARG {name}")
                else:
                    value = scope.get(name)
                if value is not None:
                    env[name] = value
        elif kw == "ENV":
            words = ins.args
            pairs = [(_expand_at(src, ins.line, words[i], env, escape, "ENV"),
                      _expand_at(src, ins.line, words[i + 1], env, escape, "ENV"))
                     for i in range(0, len(words) - 1, 2)]
            env.update(pairs)
        elif kw == "WORKDIR" and ins.args:
            workdir = _in_stage(workdir, _expand_at(src, ins.line, ins.args[0], env, escape, "WORKDIR"))
        elif kw in ("COPY", "ADD"):
            if kw == "COPY" and ins.flag("from"):
                continue
            dest = _in_stage(workdir, _expand_at(src, ins.line, ins.args[-1], env, escape, kw)) if ins.args else ""
            for word in ins.args[:-1]:
                if ins.heredocs and _HEREDOC_WORD_RE.match(word):
                    continue
                path = _expand_at(src, ins.line, word, env, escape, kw)
                if path.startswith(_REMOTE_PREFIXES):
                    continue
                copies.append(Source("copy" if kw == "COPY" else "add", _context_path(path), ins.line, st.label, dest))
        elif kw == "RUN":
            runs = True
            for spec in ins.flag_values("mount"):
                fields = {k: _expand_at(src, ins.line, v, env, escape, "--mount")
                          for k, v in _mount_fields(spec, src, ins.line).items()}
                if fields.get("type", "bind").lower() == "bind" and not fields.get("from"):
                    copies.append(Source("bind", _context_path(fields.get("source") or "."), ins.line, st.label,
                                         _in_stage(workdir, fields.get("target", ""))))
            steps.append(RunStep(ins.line, ins.original, tuple(env.items()), workdir))
    return copies, runs, steps, workdir


def _in_stage(workdir: str, path: str) -> str:
    """An absolute path in the stage: ``path`` as given when absolute, else below ``workdir``."""
    return posixpath.normpath(posixpath.join(workdir or "/", path)) if path else ""


def _expand_at(src: str, line: int, word: str, env: Mapping[str, str | None], escape: str, what: str) -> str:
    try:
        return expand(word, env, escape=escape)
    except ValueError as exc:
        raise UserError(f"{src} line {line}: cannot expand {what}: {exc}; fix the ${{...}} expression") from exc


def _context_path(path: str) -> str:
    """A source path relative to the context root, as BuildKit reads it: leading '/' and './'
    dropped, '..' clamped at the root, a trailing '/' kept; the root itself is '.'."""
    norm = posixpath.normpath("/" + path).lstrip("/")
    if not norm:
        return "."
    return norm + "/" if path.endswith("/") else norm
