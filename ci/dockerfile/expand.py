"""BuildKit's shell-word expansion, as ``shell/lex.go`` does it (pure): :func:`expand` for ``$VAR``,
``${VAR}``, ``${VAR:-word}``, ``${VAR#pattern}`` and friends, used by ARG scoping and stage resolution.
"""
from __future__ import annotations

import re
from collections.abc import Mapping


def expand(word: str, env: Mapping[str, str | None], *, escape: str = "\\") -> str:
    """Expand one word as BuildKit's shell lexer does (``shell.Lex.ProcessWord``).

    ``$VAR``, ``${VAR}``, ``${VAR:-word}``, ``${VAR-word}``, ``${VAR:+word}``, ``${VAR+word}``,
    ``${VAR:?msg}``, ``${VAR#pat}``/``##``/``%``/``%%`` and ``${VAR/pat/repl}``; single and double
    quotes are removed (single quotes keep ``$`` literal); ``\\$`` is a literal dollar. An unset
    name, or one mapped to None (declared without a value), expands to ''.
    Raises ValueError on a syntax error (``${``, ``${}``, an unterminated quote).
    """
    if "$" not in word and "'" not in word and '"' not in word and escape not in word:
        return word  # nothing to expand or unquote
    return _Lexer(word, env, escape).word()


class _Lexer:
    """A port of moby/buildkit frontend/dockerfile/shell/lex.go (ProcessWord only)."""

    def __init__(self, text: str, env: Mapping[str, str | None], escape: str) -> None:
        self.s = text
        self.i = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def next(self) -> str:
        ch = self.peek()
        self.i += 1 if ch else 0
        return ch

    def word(self) -> str:
        try:
            return self.until("", raw_escapes=False)
        except ValueError as exc:
            raise ValueError(f"failed to process {self.s!r}: {exc}") from exc

    def until(self, stop: str, *, raw_escapes: bool) -> str:
        out: list[str] = []
        while self.peek():
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
            elif ch == "'":
                out.append(self.single_quote())
            elif ch == '"':
                out.append(self.double_quote())
            else:
                ch = self.next()
                if ch == self.escape:
                    if raw_escapes:
                        out.append(ch)
                    ch = self.next()
                    if not ch:
                        break
                out.append(ch)
        if stop:
            raise ValueError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out)

    def single_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.next()
            if not ch:
                raise ValueError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if not ch:
                raise ValueError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                nxt = self.peek()
                if not nxt:
                    continue
                if nxt in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def lookup(self, name: str) -> tuple[str, bool]:
        value = self.env.get(name)
        return ("", False) if value is None else (value, True)

    def name(self) -> str:
        out: list[str] = []
        while self.peek():
            ch = self.peek()
            if not out and ch.isdecimal():
                while self.peek().isdecimal():
                    out.append(self.next())
                return "".join(out)
            if not out and ch in "@*#?-$!0":
                return self.next()
            if not (ch.isalnum() or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)

    def dollar(self) -> str:
        self.next()  # $
        if self.peek() != "{":
            name = self.name()
            return self.lookup(name)[0] if name else "$"
        self.next()  # {
        if not self.peek():
            raise ValueError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ValueError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if not ch:
            raise ValueError("syntax error: missing '}'")
        if ch == "}":
            return self.lookup(name)[0]
        mod = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            mod += ch
        if ch and ch in "+-?#%":
            raw = ch in "#%"
            if null_is_unset and raw:
                raise ValueError(f"unsupported modifier ({mod}) in substitution")
            word = self.until("}", raw_escapes=raw)
            value, is_set = self.lookup(name)
            empty = not is_set or (null_is_unset and value == "")
            if ch == "-":
                return word if empty else value
            if ch == "+":
                return "" if empty else word
            if ch == "?":
                if empty:
                    what = "is not allowed to be unset" if not is_set else "is not allowed to be empty"
                    raise ValueError(f"{name}: {word or what}")
                return value
            greedy = word[:1] == ch
            pattern = word[1:] if greedy else word
            if ch == "#":
                return _trim_prefix(pattern, value, greedy)
            return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]
        if ch == "/" and not null_is_unset:
            replace_all = self.peek() == "/"
            if replace_all:
                self.next()
            pattern = self.until("/", raw_escapes=True)
            replacement = self.until("}", raw_escapes=True)
            value, _ = self.lookup(name)
            rx = _shell_pattern(pattern, greedy=True, anchored=False)
            return rx.sub(lambda _m: replacement, value, count=0 if replace_all else 1)
        raise ValueError(f"unsupported modifier ({mod}) in substitution")


def _shell_pattern(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """``*`` and ``?`` wildcards (no brackets) as a regex (lex.go convertShellPatternToRegex)."""
    out = ["^"] if anchored else []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i] if i < len(pattern) else ""
            if nxt in ("}", "/"):
                continue
            if nxt not in ("*", "?", "\\"):
                raise ValueError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
            i += 1
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _shell_pattern(pattern, greedy=greedy, anchored=True).match(value)
    return value[m.end():] if m else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping ``\\x`` escapes in front of their character."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            tokens.append(pattern[i:i + 2])
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return "".join(reversed(tokens))
