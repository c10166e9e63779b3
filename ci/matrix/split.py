"""The per-arch migration of a matrix, as a text splice (pure), plus its atomic write.

Every multi-platform entry becomes one entry per platform, placed where the original was:
same fields, ``platforms`` narrowed, ``platform-tag`` set (inserted right after ``platforms``),
``runs-on`` the native runner of that arch. A single-platform entry on a retired runner moves
to the native runner of its arch, unless the entry records why it stays there
(``# localai-ci: allow-runner bigger-runner (5-6 hour builds)``, :func:`ci.matrix.lint.runner_exception`):
it is then left as is, and the report says so. Only the changed entries' values are rewritten (in the
quoting style they had); every other byte of the file -- comments, blank lines, key order,
quoting, CRLF line ends -- is kept. The result is re-loaded and validated, and a second run
changes nothing.

:func:`split_text` is pure; :func:`split_file` reads, splits and writes atomically
(temporary file in the same directory + ``os.replace``).
"""
from __future__ import annotations

import difflib
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import CiError, MatrixError, OperationError, UserError
from ..oci.platforms import Arch, Platform, RunnerPolicy, platform_tag
from .lint import RunnerAllowance, runner_allowances, runner_exception
from .model import Entry, Matrix, parse_matrix, read_matrix_text
from .naming import Family

_DASH_RE = re.compile(r"^[ \t]*-[ \t]+$")
_ODD_BREAKS = ("\x85", "\u2028", "\u2029")


@dataclass(frozen=True)
class SplitReport:
    """What a split did, in the shape of the seed's migration commit message."""

    source: str
    entries_before: int
    entries_after: int
    multi_before: int
    multi_left: int
    split_entries: int  # multi-platform entries that were split
    legs_created: int  # per-arch entries written in their place
    moved: tuple[tuple[str, str, str], ...]  # (tag-suffix, from runner, to runner) of retired-runner moves
    pairs_new: int
    pairs_present: int
    retired_left: int  # entries still on a retired runner
    retired_mentions: int  # retired runner names still written anywhere (comments included)
    left_reasons: tuple[str, ...] = field(default=())  # why an entry could not be migrated

    @property
    def changed(self) -> bool:
        return bool(self.split_entries or self.moved)

    def render(self) -> str:
        moves: dict[tuple[str, str], int] = {}
        for _, src, dst in self.moved:
            moves[(src, dst)] = moves.get((src, dst), 0) + 1
        move_text = ", ".join(f"{n} {src} -> {dst}" for (src, dst), n in moves.items()) or "none"
        head = f"split {self.source}: " + ("changed" if self.changed else "no changes (already per-arch)")
        lines = [
            head,
            f"  entries: {self.entries_after} (before: {self.entries_before})",
            f"  multi-platform entries left: {self.multi_left} (before: {self.multi_before}; "
            f"{self.split_entries} split into {self.legs_created} per-arch entries)",
            f"  per-arch pairs (amd64+arm64): {self.pairs_new + self.pairs_present} "
            f"({self.pairs_new} new, {self.pairs_present} already present)",
            f"  moved off retired runners: {len(self.moved)} ({move_text})",
            f"  retired-runner references left: {self.retired_left} entries"
            f" ({self.retired_mentions} mentions in the text, e.g. comments)",
        ]
        lines += [f"  left as is: {r}" for r in self.left_reasons]
        return "\n".join(lines)


@dataclass(frozen=True)
class SplitResult:
    text: str
    before: Matrix
    after: Matrix
    report: SplitReport


def split_text(text: str, source: str = "<matrix>", policy: RunnerPolicy | None = None,
               family: Family = Family.BACKENDS,
               recorded: Callable[[Matrix], Mapping[tuple[str, str], RunnerAllowance]] | None = None) -> SplitResult:
    """Split multi-platform entries and move retired runners; untouched bytes are kept as they are."""
    policy = policy or RunnerPolicy()
    before = parse_matrix(text, source, family)
    if any(ch in text for ch in _ODD_BREAKS) or "\r" in text.replace("\r\n", ""):
        raise MatrixError(f"{source}: contains line breaks other than \\n or \\r\\n; "
                          "convert the file to \\n (or \\r\\n) line ends before splitting")
    nodes = _include_nodes(text)
    allowances = {**(recorded(before) if recorded else {}), **runner_allowances(text, before)}
    legs = {(e.tag_suffix, e.ptag): e for e in before if not e.multi_platform}
    edits: list[tuple[int, int, str]] = []
    moved: list[tuple[str, str, str]] = []
    reasons: list[str] = []
    split_n = created = 0
    for e, node in zip(before.entries, nodes, strict=True):
        if e.multi_platform:
            missing = [p for p in e.platforms if policy.runner_for(p.arch) is None]
            if missing:
                reasons.append(f"{e.where}: {e.tag_suffix!r} has no native runner for "
                               f"{', '.join(map(str, missing))}; it stays multi-platform")
                continue
            for p in e.platforms:
                other = legs.get((e.tag_suffix, platform_tag(p)))
                if other is not None:
                    raise MatrixError(
                        f"{e.where}: entry tag-suffix {e.tag_suffix!r}: splitting it would create the "
                        f"{platform_tag(p)} leg that line {other.line} already defines; remove "
                        f"{p} from 'platforms' or delete the entry at line {other.line}, then retry")
            edits.append(_split_edit(text, e, node, policy))
            if policy.is_retired(e.runs_on):
                runners = "/".join(dict.fromkeys(str(policy.runner_for(p.arch)) for p in e.platforms))
                moved.append((e.tag_suffix, e.runs_on, runners))
            split_n += 1
            created += len(e.platforms)
        elif policy.is_retired(e.runs_on):
            allowed = runner_exception(e, allowances)
            if allowed is not None:
                reasons.append(f"{e.where}: {e.tag_suffix!r} stays on {e.runs_on!r}: allowed at {allowed.source} "
                               f"({allowed.reason})")
                continue
            target = policy.runner_for(e.platform.arch)
            if target is None:
                reasons.append(f"{e.where}: {e.tag_suffix!r} is on retired {e.runs_on!r} and there is "
                               f"no native {e.platform.arch} runner to move it to")
                continue
            value = _value_node(node, "runs-on")
            edits.append((value.start_mark.index, value.end_mark.index, _render(target, value.style)))
            moved.append((e.tag_suffix, e.runs_on, target))
    new_text = text
    for start, end, repl in sorted(edits, reverse=True):
        new_text = new_text[:start] + repl + new_text[end:]
    try:
        after = parse_matrix(new_text, source, family)
    except MatrixError as exc:  # pragma: no cover - would be a bug in the splice
        raise CiError(f"split of {source} produced a matrix that does not load ({exc}); "
                      "the file was not written; please report this") from exc
    pairs_before, pairs_after = _pairs(before), _pairs(after)
    mentions = sum(new_text.count(r) for r in policy.retired)
    report = SplitReport(
        source=source, entries_before=len(before), entries_after=len(after),
        multi_before=sum(e.multi_platform for e in before), multi_left=sum(e.multi_platform for e in after),
        split_entries=split_n, legs_created=created, moved=tuple(moved),
        pairs_new=len(pairs_after - pairs_before), pairs_present=len(pairs_after & pairs_before),
        retired_left=sum(policy.is_retired(e.runs_on) for e in after), retired_mentions=mentions,
        left_reasons=tuple(reasons))
    return SplitResult(text=new_text, before=before, after=after, report=report)


def unified_diff(old: str, new: str, name: str, new_name: str | None = None) -> str:
    """A unified diff of two texts; lines keep their own line ends."""
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=name, tofile=new_name or name))


# ---- the splice --------------------------------------------------------------------------------
def _include_nodes(text: str) -> list[yaml.MappingNode]:
    """The ``include:`` item nodes of already validated text, with character-index marks.

    Composed with the pure-Python loader on purpose: its marks are character offsets into
    ``text`` (libyaml's are not, e.g. after a BOM). parse_matrix has already refused aliases,
    anchors and oversized input, so this compose is bounded.
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    assert isinstance(root, yaml.MappingNode)  # parse_matrix has validated the shape
    for k, v in root.value:
        if k.value == "include":
            assert isinstance(v, yaml.SequenceNode)
            items = list(v.value)
            assert all(isinstance(n, yaml.MappingNode) for n in items)  # validated: every entry is a mapping
            return items
    raise AssertionError("validated matrix without include")  # pragma: no cover


def _value_node(node: yaml.MappingNode, key: str) -> yaml.ScalarNode:
    for k, v in node.value:
        if k.value == key:
            return v
    raise KeyError(key)


def _key_node(node: yaml.MappingNode, key: str) -> yaml.ScalarNode | None:
    for k, _ in node.value:
        if k.value == key:
            return k
    return None


def _line_start(text: str, idx: int) -> int:
    return text.rfind("\n", 0, idx) + 1


def _line_end(text: str, idx: int) -> int:
    """Index just past the line break of the line holding ``idx`` (or the end of the text)."""
    j = text.find("\n", idx)
    return len(text) if j < 0 else j + 1


def _last_char(node: yaml.Node) -> int:
    """Index of a node's last character (its start when empty)."""
    start: int = node.start_mark.index
    end: int = node.end_mark.index
    return max(start, end - 1)


def _render(value: str, style: str | None) -> str:
    """``value`` as a YAML scalar in ``style`` (None or '' = plain), falling back to single quotes."""
    if style == '"':
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if not style and value and _plain_ok(value):
        return value
    return "'" + value.replace("'", "''") + "'"


def _plain_ok(value: str) -> bool:
    try:
        return bool(yaml.safe_load(f"k: {value}\n") == {"k": value})
    except yaml.YAMLError:
        return False


def _split_edit(text: str, e: Entry, node: yaml.MappingNode, policy: RunnerPolicy) -> tuple[int, int, str]:
    """One edit replacing entry ``e``'s lines with one copy per platform."""
    if node.flow_style:
        raise MatrixError(f"{e.where}: entry tag-suffix {e.tag_suffix!r} is a flow mapping ({{...}}); "
                          "write it as '- key: value' lines to split it")
    start = _line_start(text, node.start_mark.index)
    if not _DASH_RE.match(text[start:node.start_mark.index]):
        raise MatrixError(f"{e.where}: entry tag-suffix {e.tag_suffix!r}: its first field must be on the "
                          "'- ' line to split it (write '- build-type: ...')")
    end = _line_end(text, _last_char(node.value[-1][1]))
    block = text[start:end]
    first_line = block[:_line_end(block, 0)]
    nl = "\r\n" if first_line.endswith("\r\n") else "\n"
    copies = [_copy(text, start, block, node, p, policy, nl) for p in e.platforms]
    joined = "".join(copies) if block.endswith("\n") else nl.join(copies)
    return start, end, joined


def _copy(text: str, start: int, block: str, node: yaml.MappingNode, p: Platform,
          policy: RunnerPolicy, nl: str) -> str:
    """``block`` (the entry's lines at ``start`` in ``text``) narrowed to platform ``p``."""
    runner = policy.runner_for(p.arch)
    assert runner is not None
    ptag = platform_tag(p)
    plat = _value_node(node, "platforms")
    local: list[tuple[int, int, str]] = []

    def put(v: yaml.ScalarNode, value: str) -> None:
        local.append((v.start_mark.index - start, v.end_mark.index - start, _render(value, v.style)))

    put(plat, str(p))
    put(_value_node(node, "runs-on"), runner)
    if _key_node(node, "platform-tag") is not None:
        put(_value_node(node, "platform-tag"), ptag)
    else:
        key = _key_node(node, "platforms")
        assert key is not None
        at = _line_end(text, _last_char(plat)) - start
        line = " " * key.start_mark.column + "platform-tag: " + _render(ptag, plat.style)
        local.append((at, at, line + nl if at < len(block) or block.endswith("\n") else nl + line))
    out = block
    for s, t, repl in sorted(local, reverse=True):
        out = out[:s] + repl + out[t:]
    return out


def _pairs(m: Matrix) -> set[str]:
    """Suffixes with both an amd64 and an arm64 single-platform leg."""
    archs: dict[str, set[Arch]] = {}
    for e in m:
        if not e.multi_platform:
            archs.setdefault(e.tag_suffix, set()).add(e.platform.arch)
    return {s for s, a in archs.items() if {Arch.AMD64, Arch.ARM64} <= a}


# ---- the file edge -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitOutcome:
    result: SplitResult
    diff: str
    written: str | None  # path written, None for a dry run or nothing to write


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8, bytes as given) via a temp file in the same directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def split_file(matrix: str | Path, *, output: str | Path | None = None, in_place: bool = False,
               dry_run: bool = False, policy: RunnerPolicy | None = None,
               family: Family = Family.BACKENDS,
               recorded: Callable[[Matrix], Mapping[tuple[str, str], RunnerAllowance]] | None = None) -> SplitOutcome:
    """Split ``matrix`` and write it to ``output`` or back in place (nothing is written on dry runs)."""
    if in_place and output is not None:
        raise UserError("pass either --in-place or --output PATH, not both")
    if not (in_place or output is not None or dry_run):
        raise UserError("say where to write: --in-place, --output PATH, or --dry-run to only see the diff")
    src = Path(matrix)
    target = src if in_place else Path(output) if output is not None else None
    if target is not None and not target.parent.is_dir():
        raise UserError(f"--output {target}: directory {target.parent} does not exist; create it first")
    if target is not None and target.is_dir():
        raise UserError(f"--output {target} is a directory; give a file path")
    text = read_matrix_text(src)
    result = split_text(text, str(matrix), policy, family, recorded)
    diff = unified_diff(text, result.text, str(matrix), str(target) if target is not None else None)
    if dry_run or target is None or (in_place and not result.report.changed):
        return SplitOutcome(result, diff, None)
    try:
        write_atomic(target, result.text)
    except OSError as exc:
        raise OperationError(f"writing {target}: {exc.strerror or exc}; check the path and permissions") from exc
    return SplitOutcome(result, diff, str(target))
