"""``.dockerignore``: which build-context paths BuildKit leaves out (pure).

Semantics of moby/patternmatcher (``ignorefile.ReadAll`` + ``MatchesOrParentMatches``), which
BuildKit applies to every context read (COPY, ADD, bind mounts):

* one pattern per line; ``#`` lines and blank lines are skipped; surrounding spaces are
  trimmed; a leading ``/`` is dropped and the pattern is cleaned (``a/./b/../c`` -> ``a/c``);
  the pattern ``.`` is ignored;
* ``*`` matches within one path segment, ``?`` one character, ``**`` any number of segments
  (``**/venv``, ``backend/python/**/source``), ``[...]`` a character class, ``\\`` escapes;
* a path is excluded when the last pattern that matches it, or matches one of its parent
  directories, is not a ``!`` exception.

The Docker SDK's own matcher (``docker.utils.build.PatternMatcher.matches``) checks a parent
directory only at the pattern's own depth, so it keeps ``a/venv/lib/x.py`` that BuildKit
leaves out under ``**/venv``; its directory walk gets it right, a single path does not.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..changes.tree import clean_path, parent_dirs


@dataclass(frozen=True)
class Pattern:
    text: str  # as cleaned
    exclusion: bool  # a '!' exception
    regex: re.Pattern[str] = field(compare=False)


def _compile(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < len(pattern) and pattern[i] == "*":
                i += 1
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= len(pattern) else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i < len(pattern):
                out.append(re.escape(pattern[i]))
                i += 1
        elif ch in "[]":
            out.append(ch)
        else:
            out.append(re.escape(ch))
    out.append("$")
    try:
        return re.compile("".join(out))
    except re.error:
        return re.compile(re.escape(pattern) + "$")


def parse_dockerignore(text: str) -> tuple[Pattern, ...]:
    """The patterns of a ``.dockerignore`` text, in order."""
    out: list[Pattern] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        cleaned = clean_path(line)
        if not cleaned:
            continue
        out.append(Pattern(cleaned, exclusion, _compile(cleaned)))
    return tuple(out)


@dataclass(frozen=True)
class Ignore:
    """The ``.dockerignore`` of one build context; paths are relative to the context root."""

    patterns: tuple[Pattern, ...] = ()
    source: str = ""  # repository path of the .dockerignore file ('' when there is none)

    def excludes(self, path: str) -> bool:
        """True when BuildKit leaves ``path`` (a file or directory) out of the context."""
        if not self.patterns:
            return False
        parents = parent_dirs(path)[::-1]  # outermost first
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:  # an exclusion cannot re-exclude, an exception cannot re-include
                continue
            hit = bool(p.regex.match(path)) or any(p.regex.match(d) for d in parents)
            if hit:
                matched = not p.exclusion
        return matched

    def pattern_for(self, path: str) -> str:
        """The last pattern that decides ``path`` (for explanations); '' when none does."""
        parents = parent_dirs(path)[::-1]
        last = ""
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:
                continue
            if p.regex.match(path) or any(p.regex.match(d) for d in parents):
                matched = not p.exclusion
                last = ("!" if p.exclusion else "") + p.text
        return last
