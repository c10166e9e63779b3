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

from ..changes.tree import clean_path

# a glob compiled to tokens: what one step of the path may be. A middle ``**`` (``(.*/)?``) is three
# states for the state-set matcher: enter (skip all of it, or go on), any characters, then a '/'.
_LIT, _ONE, _STAR, _DSTAR, _TAIL, _CLASS, _DANY, _DSLASH = range(8)


@dataclass(frozen=True)
class Glob:
    """One pattern as moby/patternmatcher reads it (its regular expression: ``*`` -> ``[^/]*``, ``?`` ->
    ``[^/]``, ``**`` -> ``(.*/)?``, a trailing ``**`` -> ``.*``, ``[...]`` a class, ``\\`` escapes),
    matched in time linear in the path (Go's regexp, which BuildKit uses, is linear too; Python's
    ``re`` backtracks: fourteen ``**/`` against a 21-deep path took minutes).

    Patterns with at most one ``**`` and at most one ``*`` per segment keep Python's ``re`` (C speed,
    and its backtracking is bounded: at most the path's depth times its length); every other pattern
    is run as a set of states over the path's characters (bit-parallel: one integer, one bit a token)."""

    tokens: tuple[tuple[int, str], ...]
    regex: re.Pattern[str] | None  # the fast path, or None for the state-set matcher
    states: tuple[tuple[int, str], ...] = ()  # the tokens with each middle ``**`` as its three states
    loops: int = 0  # states one may leave for the next without a character (``*``, ``.*``, entering ``**``)
    skips: int = 0  # entering a middle ``**``: skip its three states (it matched nothing)
    _classes: dict[str, re.Pattern[str]] = field(default_factory=dict, compare=False, repr=False)
    _steps: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    def matches_or_parent(self, path: str) -> bool:
        """True when the pattern matches ``path`` or one of its parent directories (BuildKit's
        ``MatchesOrParentMatches``); ``path`` is clean (no ``//``, no trailing ``/``)."""
        if self.regex is not None:
            return self.regex.match(path) is not None
        accept = 1 << len(self.states)
        state = self._close(1)
        for ch in path:
            if ch == "/" and state & accept:
                return True  # the parent directory ending here matches
            advance, stay = self._step(ch)
            state = self._close(((state & advance) << 1) | (state & stay))
            if not state:
                return False
        return bool(state & accept)

    def _close(self, state: int) -> int:
        while True:
            more = state | ((state & self.loops) << 1) | ((state & self.skips) << 3)
            if more == state:
                return state
            state = more

    def _step(self, ch: str) -> tuple[int, int]:
        """(tokens that consume ``ch`` and advance, tokens that consume it and stay), cached per character."""
        got = self._steps.get(ch)
        if got is None:
            advance = stay = 0
            for i, (kind, arg) in enumerate(self.states):
                bit = 1 << i
                if kind == _LIT and arg == ch or kind == _ONE and ch != "/" or \
                        kind == _CLASS and self._class(arg).fullmatch(ch) or kind == _DSLASH and ch == "/":
                    advance |= bit
                if kind == _STAR and ch != "/" or kind in (_DANY, _TAIL) and ch != "\n":  # Go's '.' is no newline
                    stay |= bit
            got = self._steps[ch] = (advance, stay)
        return got

    def _class(self, body: str) -> re.Pattern[str]:
        rx = self._classes.get(body)
        if rx is None:
            rx = self._classes[body] = re.compile(body)
        return rx


def _tokens(pattern: str) -> tuple[tuple[int, str], ...] | None:
    """The pattern's tokens (patternmatcher's reading); None when its class brackets do not pair up."""
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < len(pattern) and pattern[i] == "*":
                i += 1
                if i < len(pattern) and pattern[i] == "/":
                    i += 1
                out.append((_TAIL, "") if i >= len(pattern) else (_DSTAR, ""))
            else:
                out.append((_STAR, ""))
        elif ch == "?":
            out.append((_ONE, ""))
        elif ch == "\\":
            if i < len(pattern):
                out.append((_LIT, pattern[i]))
                i += 1
        elif ch == "[":
            body, j = ["["], i
            while j < len(pattern) and pattern[j] != "]":
                if pattern[j] == "\\" and j + 1 < len(pattern):
                    body.append(re.escape(pattern[j + 1]))
                    j += 2
                else:
                    body.append(pattern[j])
                    j += 1
            if j >= len(pattern):
                return None
            text = "".join(body) + "]"
            try:
                re.compile(text)
            except re.error:
                return None
            out.append((_CLASS, text))
            i = j + 1
        else:
            out.append((_LIT, ch))
    return tuple(out)


_REGEX_OF = {_ONE: "[^/]", _STAR: "[^/]*", _DSTAR: "(?:.*/)?", _TAIL: ".*"}


def compile_glob(pattern: str) -> Glob:
    """A cleaned ``.dockerignore`` pattern as a :class:`Glob`; one whose brackets do not pair up matches
    itself literally (patternmatcher's regexp would not compile)."""
    tokens = _tokens(pattern)
    if tokens is None:
        tokens = tuple((_LIT, ch) for ch in pattern)
    stars = [seg.count(_STAR) for seg in _segments(tokens)]
    if sum(kind in (_DSTAR, _TAIL) for kind, _ in tokens) <= 1 and max(stars, default=0) <= 1:
        body = "".join(re.escape(arg) if kind == _LIT else arg if kind == _CLASS else _REGEX_OF[kind]
                       for kind, arg in tokens)
        return Glob(tokens, re.compile(f"^{body}(?:/|\\Z)"))
    return state_set(tokens)


def state_set(tokens: tuple[tuple[int, str], ...]) -> Glob:
    """The pattern as a state-set matcher (any pattern; :func:`compile_glob` uses it where ``re`` could not
    be bounded)."""
    states: list[tuple[int, str]] = []
    loops = skips = 0
    for kind, arg in tokens:
        if kind == _DSTAR:
            skips |= 1 << len(states)
            loops |= (1 << len(states)) | (1 << (len(states) + 1))
            states += [(_DSTAR, ""), (_DANY, ""), (_DSLASH, "")]
            continue
        if kind in (_STAR, _TAIL):
            loops |= 1 << len(states)
        states.append((kind, arg))
    return Glob(tokens, None, tuple(states), loops, skips)


def _segments(tokens: tuple[tuple[int, str], ...]) -> list[list[int]]:
    segs: list[list[int]] = [[]]
    for kind, arg in tokens:
        if kind == _LIT and arg == "/" or kind in (_DSTAR, _TAIL):
            segs.append([])
        else:
            segs[-1].append(kind)
    return segs


@dataclass(frozen=True)
class Pattern:
    text: str  # as cleaned
    exclusion: bool  # a '!' exception
    glob: Glob = field(compare=False)


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
        out.append(Pattern(cleaned, exclusion, compile_glob(cleaned)))
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
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:  # an exclusion cannot re-exclude, an exception cannot re-include
                continue
            if p.glob.matches_or_parent(path):
                matched = not p.exclusion
        return matched

    def pattern_for(self, path: str) -> str:
        """The last pattern that decides ``path`` (for explanations); '' when none does."""
        last = ""
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:
                continue
            if p.glob.matches_or_parent(path):
                matched = not p.exclusion
                last = ("!" if p.exclusion else "") + p.text
        return last
