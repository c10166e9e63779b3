"""Makefiles as build inputs: which rules and variables a ``make TARGET`` run uses (pure).

A Dockerfile that runs ``make protogen-go`` at the repository root depends on that target,
not on the whole top-level Makefile: editing the ``docs`` target rebuilds nothing. This
module reads a Makefile well enough to say what a target run uses, conservatively:

* rules (``targets: prerequisites`` and their TAB-indented recipe; pattern rules with ``%``;
  several rules for one target are merged), variables (``=``, ``:=``, ``::=``, ``?=``, ``+=``,
  ``!=``, ``define``/``endef``, target-specific ones), ``include`` lines;
* conditionals (``ifeq``/``ifdef``/``else``/``endif``) are not evaluated: every branch's
  definitions count;
* :func:`Makefile.uses` of some targets is the closure: their rules, the rules of their
  prerequisites, of the targets their recipes run with ``$(MAKE) target`` (same Makefile),
  every variable those texts name (through variable values, transitively), and every
  ``include``; a target no rule makes (nor pattern) makes the whole file count.

:func:`Makefile.fingerprint` gives those pieces as ``{"rule protogen-go": text, "var GOCMD":
text}``; two revisions' fingerprints differ exactly where the run could build differently.
:func:`parse_make_args` reads a ``make`` command line (``-C DIR``, ``-f FILE``, targets).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_ASSIGN = re.compile(r"^(?:(?:export|override|private|unexport)\s+)*([A-Za-z0-9_.\-]+)\s*(::=|:=|\?=|\+=|!=|=)\s*(.*)$")
_TARGET_VAR = re.compile(r"^([^:=#]+?)\s*:\s*(?:(?:export|override|private)\s+)*([A-Za-z0-9_.\-]+)\s*(::=|:=|\?=|\+=|=)\s*(.*)$")
_RULE = re.compile(r"^([^:=#][^:=#]*?)\s*(::?)(?!=)\s*(.*)$")
_CONDITIONAL = re.compile(r"^(ifeq|ifneq|ifdef|ifndef|else|endif)\b")
_INCLUDE = re.compile(r"^(-?include|sinclude)\s+(.*)$")
_DEFINE = re.compile(r"^(?:(?:export|override)\s+)*define\s+([A-Za-z0-9_.\-]+)")
_VAR_REF = re.compile(r"\$[({]([A-Za-z0-9_.\-]+)[)}:]|\$\(call\s+([A-Za-z0-9_.\-]+)|\$([A-Za-z_])(?![A-Za-z0-9_({])")
_SUBMAKE = re.compile(r"\$[({]MAKE[)}]|(?<![\w/.-])make(?![\w.-])")
_AUTOMATIC = frozenset({"@", "<", "^", "+", "*", "?", "|", "%", "MAKE", "CURDIR", "MAKEFILE_LIST", "MAKEFLAGS",
                        "SHELL", "RM", "MAKECMDGOALS"})


@dataclass
class Rule:
    targets: tuple[str, ...]
    prereqs: tuple[str, ...]
    recipe: list[str]
    line: int

    def text(self) -> str:
        head = " ".join(self.targets) + ": " + " ".join(self.prereqs)
        return "\n".join([head] + ["\t" + r for r in self.recipe])


@dataclass(frozen=True)
class Makefile:
    """A parsed Makefile (see the module docstring for what is modelled)."""

    source: str
    rules: tuple[Rule, ...]
    variables: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> each definition's text
    includes: tuple[str, ...] = ()
    text: str = ""

    @property
    def default_goal(self) -> str:
        for r in self.rules:
            for t in r.targets:
                if not t.startswith(".") and "%" not in t:
                    return t
        return ""

    def rules_for(self, target: str) -> list[Rule]:
        explicit = [r for r in self.rules if target in r.targets]
        if explicit:
            return explicit
        return [r for r in self.rules if any(_pattern_match(t, target) for t in r.targets if "%" in t)]

    def uses(self, targets: Iterable[str]) -> tuple[list[Rule], set[str], bool]:
        """(rules, variable names, whole_file) a run of ``targets`` (empty: the default goal) uses.

        ``whole_file`` is True when a named target has no rule (nor pattern rule): the
        run's behaviour then depends on something this model does not see.
        """
        targets = tuple(targets)
        todo = list(targets) or ([self.default_goal] if self.default_goal else [])
        seen: set[str] = set()
        rules: list[Rule] = []
        whole = not todo
        while todo:
            t = todo.pop()
            if not t or t in seen:
                continue
            seen.add(t)
            found = self.rules_for(t)
            if not found and t in targets:
                whole = True
            for r in found:
                if r in rules:
                    continue
                rules.append(r)
                todo.extend(p for p in r.prereqs if "$" not in p)
                for line in r.recipe:
                    todo.extend(_submake_targets(line))
        names: set[str] = set()
        pending = [text for r in rules for text in [r.text()]]
        while pending:
            text = pending.pop()
            for m in _VAR_REF.finditer(text):
                name = m.group(1) or m.group(2) or m.group(3)
                if name in names or name in _AUTOMATIC:
                    continue
                names.add(name)
                pending.extend(self.variables.get(name, ()))
        return rules, names, whole

    def fingerprint(self, targets: Iterable[str]) -> dict[str, str]:
        """The pieces a run of ``targets`` uses, keyed for comparison between two revisions."""
        targets = tuple(targets)
        rules, names, whole = self.uses(targets)
        out: dict[str, str] = {}
        if whole:
            out["file"] = self.text
        for r in rules:
            out[f"rule {' '.join(r.targets)}"] = _squash(r.text())
        for n in sorted(names):
            out[f"var {n}"] = "\n".join(_squash(v) for v in self.variables.get(n, ()))
        for inc in self.includes:
            out[f"include {inc}"] = inc
        return out


def _squash(text: str) -> str:
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def _pattern_match(pattern: str, target: str) -> bool:
    head, _, tail = pattern.partition("%")
    return len(target) >= len(head) + len(tail) and target.startswith(head) and target.endswith(tail)


def _submake_targets(line: str) -> list[str]:
    """Targets of the same Makefile a recipe line runs with ``$(MAKE) target`` (no ``-C``/``-f``)."""
    out: list[str] = []
    for m in _SUBMAKE.finditer(line):
        rest = re.split(r"&&|\|\||;|\|", line[m.end():], maxsplit=1)[0]
        args = parse_make_args(rest.split())
        if args.directory is None and args.makefile is None:
            out.extend(args.targets)
    return out


def _strip_comment(line: str) -> str:
    out = []
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line):
            out.append(line[i:i + 2])
            i += 2
            continue
        if ch == "#":
            break
        out.append(ch)
        i += 1
    return "".join(out).rstrip()


def parse_makefile(text: str, source: str = "Makefile") -> Makefile:
    """Parse ``text``; never fails (what it cannot read it leaves to :meth:`Makefile.uses`'s
    whole-file fallback)."""
    lines = text.splitlines()
    rules: list[Rule] = []
    variables: dict[str, list[str]] = {}
    includes: list[str] = []
    current: Rule | None = None
    i = 0
    while i < len(lines):
        number = i + 1
        raw = lines[i]
        i += 1
        if raw.startswith("\t") and current is not None:
            body = raw[1:]
            while body.endswith("\\") and i < len(lines):
                body = body[:-1] + " " + lines[i].strip()
                i += 1
            if not body.lstrip().startswith("#"):
                current.recipe.append(body.strip())
            continue
        logical = raw
        while logical.endswith("\\") and i < len(lines):
            logical = logical[:-1] + " " + lines[i].strip()
            i += 1
        line = _strip_comment(logical).strip()
        if not line:
            continue
        d = _DEFINE.match(line)
        if d:
            body_lines = []
            while i < len(lines) and not lines[i].strip().startswith("endef"):
                body_lines.append(lines[i])
                i += 1
            i += 1
            variables.setdefault(d.group(1), []).append("\n".join(body_lines))
            current = None
            continue
        if _CONDITIONAL.match(line):
            continue
        inc = _INCLUDE.match(line)
        if inc:
            includes.extend(inc.group(2).split())
            current = None
            continue
        tv = _TARGET_VAR.match(line)
        if tv and not _ASSIGN.match(line):
            variables.setdefault(tv.group(2), []).append(tv.group(4))
            continue
        a = _ASSIGN.match(line)
        if a:
            variables.setdefault(a.group(1), []).append(a.group(3))
            current = None
            continue
        r = _RULE.match(line)
        if r:
            targets = tuple(r.group(1).split())
            rest = r.group(3)
            inline = ""
            if ";" in rest:
                rest, inline = rest.split(";", 1)
            prereqs = tuple(p for p in rest.split() if p != "|")
            current = Rule(targets, prereqs, [inline.strip()] if inline.strip() else [], number)
            rules.append(current)
            continue
        current = None  # a line this model does not know ($(eval ...), vpath, ...)
    return Makefile(source=source, rules=tuple(rules), variables={k: tuple(v) for k, v in variables.items()},
                    includes=tuple(includes), text=text)


@dataclass(frozen=True)
class MakeArgs:
    directory: str | None  # -C DIR (joined when repeated), None when absent
    makefile: str | None  # -f FILE
    targets: tuple[str, ...]


_TAKES_ARG = set("CfIoWj")  # short options whose value may be the next word (j: only a number)


def parse_make_args(words: Sequence[str]) -> MakeArgs:
    """``-C DIR``, ``-CDIR``, ``-BC DIR``, ``--directory=DIR``, ``-f FILE``, targets (words after
    ``make``); ``NAME=value`` words are variable assignments, other options are skipped."""
    directory: str | None = None
    makefile: str | None = None
    targets: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        i += 1
        if w == "--":
            continue
        if w.startswith("--"):
            name, eq, value = w[2:].partition("=")
            if name == "directory":
                if not eq and i < len(words):
                    value, i = words[i], i + 1
                directory = value if directory is None else directory.rstrip("/") + "/" + value
            elif name in ("file", "makefile"):
                if not eq and i < len(words):
                    value, i = words[i], i + 1
                makefile = value
            continue
        if w.startswith("-") and len(w) > 1:
            flags = w[1:]
            for k, ch in enumerate(flags):
                if ch in _TAKES_ARG:
                    value = flags[k + 1:]
                    if not value and ch != "j" and i < len(words):
                        value, i = words[i], i + 1
                    elif not value and ch == "j" and i < len(words) and words[i].isdigit():
                        i += 1
                    if ch == "C":
                        directory = value if directory is None else directory.rstrip("/") + "/" + value
                    elif ch == "f":
                        makefile = value
                    break
            continue
        if "=" in w:
            continue
        targets.append(w)
    return MakeArgs(directory, makefile, tuple(targets))
