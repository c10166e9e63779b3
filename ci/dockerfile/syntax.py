"""BuildKit's Dockerfile parser, in pure Python (pure core, no dependencies).

A port of moby/buildkit v0.12.5 ``frontend/dockerfile/parser`` (``parser.go``, ``line_parsers.go``,
``split_command.go``, ``directives.go``) and of the part of ``frontend/dockerfile/shell/lex.go``
that here-document words go through, shaped as the PyPI ``dockerfile`` package 3.4.0
(asottile/dockerfile, which vendors exactly that BuildKit) shapes it: :func:`parse_string` returns
the same :class:`Command` tuples, field for field, and :class:`ParseError` carries the same message.

What it reads, as BuildKit does:

* parser directives at the top (``# syntax=``, ``# escape=`` with ``\\`` or a backtick); they end
  at the first line that is not one: a blank line, another comment (``# check=`` is one for this
  BuildKit version), a shebang, an instruction;
* line continuations with the escape character, comment lines and blank lines inside them skipped,
  the leading whitespace of continued lines kept; CRLF line endings; a UTF-8 BOM;
* instructions, case-insensitive, with their ``--flags`` (``--mount=...``, ``--from=``,
  ``--chmod``, ``--platform``); exec (JSON) form, with malformed JSON falling back to the shell
  form; ENV/LABEL ``key=value`` pairs and the old ``ENV key value``; ARG; HEALTHCHECK; ONBUILD
  (``sub_cmd``); unknown instructions (kept, with the value ``('',)``);
* here-documents in RUN/COPY/ADD: ``<<EOF``, ``<<-EOF``, quoted names, a file descriptor
  (``3<<EOF``), several on one line, read after the instruction's last line.

Two things differ from Go, on purpose:

* :class:`ParseError` also says where: ``.line`` is the 1-based line of the instruction (or the
  directive, or the over-long line) it is about; Go's messages carry no line.
* It is iterative and linear in its input: ``ONBUILD ONBUILD ...`` chains, nested ``${...}`` in
  here-document words and nested JSON arrays use explicit stacks, not recursion, and nothing is
  rescanned (Go v0.12.5 itself appends here-document content quadratically).

Fidelity notes (each checked against the package; see ``tests/dockerfile/test_dockerfile_syntax.py``):

* Go works on bytes. Where BuildKit's byte-wise scanning splits a multi-byte character (a flag
  word or a HEALTHCHECK type next to a character whose UTF-8 form holds byte 0x85 or 0xA0, which
  Go's ``unicode.IsSpace`` reads as a space), the stray bytes are kept as surrogate escapes
  (``str.encode(..., "surrogateescape")`` gives the bytes back); the package raises
  ``UnicodeDecodeError`` there. Flags are read byte by byte and each byte becomes one character,
  as in Go (``--from=é`` gives ``'--from=Ã©'``).
* The package passes text to Go, and strings back, as C strings: it stops at the first NUL, in
  the input and in every value (a JSON ``"\\u0000"`` ends the string there). This parser keeps
  NULs as BuildKit does. Text holding a lone surrogate cannot be UTF-8 and is refused.

Later BuildKit reads some inputs differently, and this module does not follow it (the package,
its test oracle, cannot): from v0.14 ``# check=`` is a directive (an ``# escape=`` after it still
counts) and ENV/LABEL nodes gain a third, separator, entry per pair; from v0.15 a JSON array must
be the whole argument (``RUN ["a"] b`` is then shell form; here it is ``["a"]``, the rest ignored,
as Go's ``json.Decoder`` reads it); from v0.21 flags honour a backtick escape; from v0.27 any
Unicode space may follow a directive's ``#``.
"""
from __future__ import annotations

import json as _json
import math
import re
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

__all__ = ["Command", "Heredoc", "MAX_LINE_BYTES", "ParseError", "parse_string"]

#: Go's ``bufio.MaxScanTokenSize - 1``: the longest line (in UTF-8 bytes, without its ``\n``).
MAX_LINE_BYTES = 65535
#: Go's ``encoding/json`` nesting limit.
_MAX_JSON_DEPTH = 10000


class Heredoc(NamedTuple):
    """A here-document: its name (quotes removed), file descriptor (0 unless ``3<<EOF``) and
    content (the lines between the instruction and the terminator, line endings kept)."""

    name: str
    file_descriptor: int
    content: str


class Command(NamedTuple):
    """One instruction, as the ``dockerfile`` package gives it.

    ``cmd``: the keyword as written (``RUN``, ``run``); ``sub_cmd``: ONBUILD's inner keyword;
    ``json``: exec form; ``original``: the instruction's text (continuations joined; with
    here-documents, followed by each one's content and name); lines 1-based and inclusive;
    ``flags``: ``('--mount=type=cache,target=/x',)``; ``value``: the arguments as BuildKit splits
    them for this keyword; empty strings are ``None`` in ``cmd``, ``sub_cmd`` and ``original``.
    """

    cmd: str | None
    sub_cmd: str | None
    json: bool
    original: str | None
    start_line: int
    end_line: int
    flags: tuple[str, ...]
    value: tuple[str, ...]
    heredocs: tuple[Heredoc, ...] = ()


class ParseError(ValueError):
    """BuildKit refused the text: ``str(exc)`` is Go's message, ``.line`` the 1-based line."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line

    def __reduce__(self) -> tuple[type[ParseError], tuple[str, int]]:
        return (type(self), (self.message, self.line))


class _Refused(Exception):
    """An instruction-level error (Go's message); the caller adds the line."""


# --------------------------------------------------------------------------- character classes

#: Go's ``unicode.IsSpace`` (``strings.TrimSpace``, ``bytes.TrimLeftFunc``, ``parseWords``).
_SPACES = ("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
           "\u2009\u200a\u2028\u2029\u202f\u205f\u3000")
_SPACE_SET = frozenset(_SPACES)
#: the same test on single bytes (``unicode.IsSpace(rune(line[pos]))``): Latin-1 spaces
_BYTE_SPACES = frozenset(b"\t\n\v\f\r \x85\xa0")
#: the UTF-8 forms of ``_SPACES``, for trimming byte strings
_LEAD_SPACES_B = re.compile(
    rb"(?:[\t\n\v\f\r ]|\xc2[\x85\xa0]|\xe1\x9a\x80|\xe2\x80[\x80-\x8a\xa8\xa9\xaf]|\xe2\x81\x9f|\xe3\x80\x80)*+")
#: the first bytes of those forms
_SPACE_LEAD_BYTES = frozenset(b"\t\n\v\f\r \xc2\xe1\xe2\xe3")
#: ``reWhitespace``: ASCII only, no ``\n``
_WS = re.compile(r"[\t\v\f\r ]+")
_WS_B = re.compile(rb"[\t\v\f\r ]+")
_NOT_BYTE_SPACE_B = re.compile(rb"[^\t\n\v\f\r \x85\xa0]*+")
_BYTE_SPACE_B = re.compile(rb"[\t\n\v\f\r \x85\xa0]*+")
_SIMPLE_FLAG_B = re.compile(rb"--[^\t\n\v\f\r \x85\xa0'\"\\]++")
_SIMPLE_FLAGS_B = re.compile(rb"[\t\n\v\f\r \x85\xa0]*+(?:--[^\t\n\v\f\r \x85\xa0'\"\\]++(?:[\t\n\v\f\r \x85\xa0]++|\Z))*+")
#: directives.go, with Go's ``\s`` (``[\t\n\f\r ]``, no ``\v``)
_DIRECTIVE = re.compile(r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
#: parser.go ``reHeredoc`` (Go's ``\d`` is ASCII)
_HEREDOC_WORD = re.compile(r"([0-9]*)<<(-?)([^<]*)\Z")
_SURROGATE = re.compile("[\ud800-\udfff]")

_HEREDOC_KEYWORDS = frozenset({"add", "copy", "run"})
_MAY_CONTINUE = frozenset(" \t\\`")  # a line ending otherwise cannot continue
_UTF8_BOM = "\ufeff"


def _class(chars: str) -> str:
    return "".join(re.escape(ch) for ch in chars)


def _dec(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _rune(ch: str) -> str:
    """What Go's UTF-8 decoder makes of one character: an invalid byte becomes U+FFFD."""
    return "\ufffd" if "\udc80" <= ch <= "\udcff" else ch


def _runes(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def _go_lower(text: str) -> str:
    """Go's ``strings.ToLower``: the simple, per-character mapping (``İ`` -> ``i``)."""
    if text.isascii():
        return text.lower()
    out = []
    for ch in text:
        low = ch.lower()
        out.append("i" if ch == "\u0130" else low if len(low) == 1 else ch)
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _go_quote(text: str) -> str:
    """Go's ``strconv.Quote`` (``%q``)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 0xDC80 <= code <= 0xDCFF:  # an invalid byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


# --------------------------------------------------------------------------- the line loop


def parse_string(text: str) -> tuple[Command, ...]:
    """Parse Dockerfile text as BuildKit's parser does; :class:`ParseError` when it refuses it."""
    bad = _SURROGATE.search(text)
    if bad:
        raise ParseError(f"invalid UTF-8: the text holds a lone surrogate U+{ord(bad.group()):04X}",
                         text.count("\n", 0, bad.start()) + 1)
    lines = text.split("\n")
    last_has_newline = lines[-1] == ""
    if last_has_newline:
        lines.pop()
    too_long = 0  # Go's bufio.Scanner stops at the first over-long line and reports it at the end
    if lines and max(map(len, lines)) > MAX_LINE_BYTES // 4:
        for index, line in enumerate(lines):
            if len(line) > MAX_LINE_BYTES // 4 and len(line.encode("utf-8")) > MAX_LINE_BYTES:
                too_long = index + 1
                del lines[index:]
                last_has_newline = True
                break
    commands = _Parser(lines, last_has_newline).run()
    if too_long:
        raise ParseError(f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES}", too_long)
    return commands


class _Parser:
    """parser.go ``Parse``: the physical lines in, the commands out."""

    def __init__(self, lines: list[str], last_has_newline: bool) -> None:
        self.lines = lines
        self.last_has_newline = last_has_newline
        self.escape = "\\"
        self.directives_done = False
        self.directives_seen: set[str] = set()

    def run(self) -> tuple[Command, ...]:
        lines = self.lines
        count = len(lines)
        commands: list[Command] = []
        i = 0  # lines read (Go's currentLine)
        while i < count:
            raw = lines[i]
            if i == 0 and raw.startswith(_UTF8_BOM):
                raw = raw[1:]
            token = raw.rstrip("\r").lstrip(_SPACES)
            if not self.directives_done:
                self._directive(token, i + 1)
            if token[:1] == "#":
                token = ""
            i += 1
            start = i
            if token[-1:] in _MAY_CONTINUE:
                line, more = _trim_continuation(token, self.escape)
                if not more and not line:
                    continue
            elif token:
                line, more = token, False
            else:
                continue
            if more:
                parts = [line]
                while more and i < count:
                    raw = lines[i].rstrip("\r")
                    i += 1
                    stripped = raw.lstrip(_SPACES)
                    if not stripped or stripped[0] == "#":  # a comment or an empty continuation line
                        continue
                    part, more = _trim_continuation(raw, self.escape)
                    parts.append(part)
                line = "".join(parts)
            try:
                node = _new_node(line, self.escape)
                words = _heredocs_from_line(line) if node.heredocs_allowed and "<<" in line else []
            except _Refused as exc:
                raise ParseError(str(exc), start) from exc
            heredocs: list[Heredoc] = []
            for word in words:
                content: list[str] = []
                while i < count:
                    raw = lines[i]
                    i += 1
                    candidate = raw.rstrip("\r")
                    if word.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == word.name:
                        break
                    content.append(raw)
                    if i < count or self.last_has_newline:
                        content.append("\n")
                else:
                    raise ParseError("unterminated heredoc", start)
                heredocs.append(Heredoc(word.name, word.fd, "".join(content)))
            original = line
            if heredocs and not node.onbuild:  # ONBUILD's here-documents sit on the outer node
                original = line + "\n" + "".join(h.content + h.name + "\n" for h in heredocs)
            commands.append(Command(  # positional: measurably faster than keywords here
                node.cmd or None, node.sub_cmd or None, node.json, original or None, start, i,
                node.flags, node.value, () if node.onbuild else tuple(heredocs)))
        if not commands:
            raise ParseError("file with no instructions", max(i, 1))
        return tuple(commands)

    def _directive(self, token: str, line: int) -> None:
        """directives.go ``ParseLine`` and parser.go ``possibleParserDirective``."""
        match = _DIRECTIVE.match(token)
        name = match.group(1).lower() if match else ""
        if name not in ("syntax", "escape"):
            self.directives_done = True
            return
        assert match is not None
        if name in self.directives_seen:
            raise ParseError(f"only one {name} parser directive can be used", line)
        self.directives_seen.add(name)
        if name == "escape":
            value = match.group(2)
            if value not in ("`", "\\"):
                raise ParseError(f"invalid escape token '{value}' does not match ` or \\", line)
            self.escape = value


def _trim_continuation(line: str, escape: str) -> tuple[str, bool]:
    """parser.go ``trimContinuationCharacter``: ``([^E])E[ \\t]*$|^E[ \\t]*$`` -> ``$1``.
    Returns the line and whether it continues."""
    body = line.rstrip(" \t")
    if body[-1:] == escape:
        last = len(body) - 1
        if last == 0:
            return "", True
        if body[last - 1] != escape:
            return line[:last], True
    return line, False


# --------------------------------------------------------------------------- one instruction


class _Node(NamedTuple):
    cmd: str
    sub_cmd: str
    flags: tuple[str, ...]
    value: tuple[str, ...]
    json: bool
    onbuild: bool
    heredocs_allowed: bool


def _new_node(line: str, escape: str) -> _Node:
    """parser.go ``newNodeFromLine`` with the binding's view of ONBUILD: the outer flags, the
    inner keyword and arguments (the inner flags are dropped). Deeper ONBUILDs are followed in
    a loop, only for the errors of the innermost instruction."""
    data = line.strip(_SPACES).encode("utf-8")
    end = len(data)
    cmd_b, flags, pos = _split_command(data, 0, end)
    cmd = _dec(cmd_b)
    key = _go_lower(cmd)
    if key != "onbuild":
        value, is_json = _dispatch(key, _dec(data[pos:end]), escape)
        return _Node(cmd, "", flags, value, is_json, False, key in _HEREDOC_KEYWORDS and not is_json)
    if pos == end:
        return _Node(cmd, "", flags, (), False, True, False)
    sub_b, _, pos = _split_command(data, pos, end)
    sub = _dec(sub_b)
    sub_key = _go_lower(sub)
    if sub_key != "onbuild":
        value, is_json = _dispatch(sub_key, _dec(data[pos:end]), escape)
        return _Node(cmd, sub, flags, value, is_json, True, sub_key in _HEREDOC_KEYWORDS and not is_json)
    value = ("",) if pos < end else ()  # the inner ONBUILD's own child node
    while pos < end:
        inner_b, _, pos = _split_command(data, pos, end)
        inner_key = _go_lower(_dec(inner_b))
        if inner_key != "onbuild":
            _dispatch(inner_key, _dec(data[pos:end]), escape)
            break
    return _Node(cmd, sub, flags, value, False, True, False)


def _split_command(data: bytes, start: int, end: int) -> tuple[bytes, tuple[str, ...], int]:
    """split_command.go ``splitCommand`` on ``data[start:end]`` (trimmed): the keyword, the flags
    and where the (trimmed) arguments start; they run to ``end``."""
    ws = _WS_B.search(data, start, end)
    if ws is None:
        return data[start:end], (), end
    flags, pos = _extract_builder_flags(data, ws.end(), end)
    if pos < end and data[pos] in _SPACE_LEAD_BYTES:
        match = _LEAD_SPACES_B.match(data, pos, end)
        assert match is not None
        pos = match.end()
    return data[start:ws.start()], flags, pos


_IN_SPACES, _IN_WORD, _IN_QUOTE = 0, 1, 2


def _extract_builder_flags(data: bytes, pos: int, end: int) -> tuple[tuple[str, ...], int]:
    """split_command.go ``extractBuilderFlags``, byte by byte as in Go (each byte of a flag
    becomes one character). Returns the flags and where the rest of the line starts."""
    run = _SIMPLE_FLAGS_B.match(data, pos, end)  # the common case in bulk: --words without quotes or escapes
    assert run is not None
    words = [flag.decode("latin-1") for flag in _SIMPLE_FLAG_B.findall(data, pos, run.end())] if run.end() > pos else []
    pos = run.end()
    if pos == end:
        return tuple(words), end
    if not data.startswith(b"--", pos):
        return tuple(words), pos
    return _extract_builder_flags_slow(data, pos, end, words)


def _extract_builder_flags_slow(data: bytes, pos: int, end: int, words: list[str]) -> tuple[tuple[str, ...], int]:
    phase = _IN_SPACES
    word = bytearray()
    quote = 0
    blank_ok = False
    ch = 0
    while True:
        if pos != end:
            ch = data[pos]
        if phase == _IN_SPACES:
            if pos == end:
                break
            if ch in _BYTE_SPACES:
                pos += 1
                continue
            if ch != 0x2D or pos + 1 == end or data[pos + 1] != 0x2D:  # not "--"
                return tuple(words), pos
            phase = _IN_WORD
        if pos == end:
            if word != b"--" and (blank_ok or word):
                words.append(word.decode("latin-1"))
            break
        if phase == _IN_WORD:
            if ch in _BYTE_SPACES:
                phase = _IN_SPACES
                if word == b"--":
                    return tuple(words), pos
                if blank_ok or word:
                    words.append(word.decode("latin-1"))
                word = bytearray()
                blank_ok = False
                pos += 1
                continue
            if ch in (0x27, 0x22):
                quote = ch
                blank_ok = True
                phase = _IN_QUOTE
                pos += 1
                continue
            if ch == 0x5C:
                if pos + 1 == end:
                    pos += 1
                    continue
                pos += 1
                ch = data[pos]
            word.append(ch)
            pos += 1
            continue
        # _IN_QUOTE
        if ch == quote:
            phase = _IN_WORD
            pos += 1
            continue
        if ch == 0x5C:
            if pos + 1 == end:
                phase = _IN_WORD
                pos += 1
                continue
            pos += 1
            ch = data[pos]
        word.append(ch)
        pos += 1
    return tuple(words), end


# --------------------------------------------------------------------------- line_parsers.go

_Value = tuple[tuple[str, ...], bool]  # the arguments and whether they were JSON


def _dispatch(key: str, rest: str, escape: str) -> _Value:
    parse = _DISPATCH.get(key)
    if parse is None:  # parseIgnore: an unknown instruction keeps one empty argument
        return ("",), False
    return parse(rest, escape)


def _parse_maybe_json(rest: str, escape: str) -> _Value:
    if rest == "":
        return (), False
    value = _parse_json(rest)
    if value is not None:
        return value, True
    return (rest,), False


def _parse_maybe_json_to_list(rest: str, escape: str) -> _Value:
    value = _parse_json(rest)
    if value is not None:
        return value, True
    return _parse_strings_whitespace_delimited(rest, escape)


def _parse_strings_whitespace_delimited(rest: str, escape: str) -> _Value:
    if rest == "":
        return (), False
    return tuple(_WS.split(rest)), False


def _parse_string(rest: str, escape: str) -> _Value:
    return ((rest,) if rest else ()), False


def _parse_name_or_name_val(rest: str, escape: str) -> _Value:
    return tuple(_parse_words(rest, escape)), False


def _parse_env(rest: str, escape: str) -> _Value:
    return _parse_name_val(rest, "ENV", escape), False


def _parse_label(rest: str, escape: str) -> _Value:
    return _parse_name_val(rest, "LABEL", escape), False


def _parse_name_val(rest: str, key: str, escape: str) -> tuple[str, ...]:
    """``KEY name=value ...`` or the old ``KEY name value`` (the first word has no ``=``)."""
    words = _parse_words(rest, escape)
    if not words:
        return ()
    if "=" not in words[0]:
        parts = _WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _Refused(f"{key} must have two arguments")
        return (parts[0], parts[1])
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise _Refused(f"Syntax error - can't find = in {_go_quote(word)}. Must be of the form: name=value")
        name, value = word.split("=", 1)
        out += (name, value)
    return tuple(out)


def _parse_health_config(rest: str, escape: str) -> _Value:
    """HEALTHCHECK TYPE [CMD...]: the type ends at the first byte Go's IsSpace takes for a space."""
    data = rest.encode("utf-8", "surrogateescape")
    word = _NOT_BYTE_SPACE_B.match(data)
    assert word is not None
    sep = word.end()
    if sep == 0:
        return (), False
    gap = _BYTE_SPACE_B.match(data, sep)
    assert gap is not None
    value, is_json = _parse_maybe_json(_dec(data[gap.end():]), escape)
    return (_dec(data[:sep]),) + value, is_json


_DISPATCH: dict[str, Callable[[str, str], _Value]] = {
    "add": _parse_maybe_json_to_list,
    "arg": _parse_name_or_name_val,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_to_list,
    "entrypoint": _parse_maybe_json,
    "env": _parse_env,
    "expose": _parse_strings_whitespace_delimited,
    "from": _parse_strings_whitespace_delimited,
    "healthcheck": _parse_health_config,
    "label": _parse_label,
    "maintainer": _parse_string,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_to_list,
    "workdir": _parse_string,
}


def _word_pattern(escape: str) -> re.Pattern[str]:
    """One word of ``parseWords``: unquoted characters, an escape with the character after it,
    single quotes (nothing escaped), double quotes (escapes work); an escape that ends the text
    is dropped (the groups ``dangling``/``dangling_dq`` say so)."""
    spaces, esc = _class(_SPACES), re.escape(escape)
    return re.compile(
        f"(?:[^{spaces}'\"{esc}]++|{esc}(?s:.)|(?P<dangling>{esc})\\Z|'[^']*+'?+"
        f"|\"(?:[^\"{esc}]++|{esc}(?s:.)|(?P<dangling_dq>{esc})\\Z)*+\"?+)++")


_WORD = {escape: _word_pattern(escape) for escape in ("\\", "`")}


def _parse_words(rest: str, escape: str) -> list[str]:
    """line_parsers.go ``parseWords``: split on unquoted whitespace, quotes and escapes kept."""
    words = []
    for match in _WORD[escape].finditer(rest):
        word = match.group()
        if match.group("dangling") is not None or match.group("dangling_dq") is not None:
            word = word[:-1]
            if not word:
                continue
        words.append(_runes(word))
    return words


# --------------------------------------------------------------------------- JSON (Go's encoding/json)

_JSON_WS = re.compile(r"[ \t\n\r]*+")
_JSON_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+"')
_JSON_NUMBER = re.compile(r"-?+(?:0|[1-9][0-9]*+)(?:\.[0-9]++)?+(?:[eE][+-]?+[0-9]++)?+")
_JSON_LITERAL = re.compile(r"true|false|null")
_JSON_STRING_ARRAY = re.compile(
    r"\[[ \t\n\r]*+(?:(?:%(s)s)[ \t\n\r]*+(?:,[ \t\n\r]*+(?:%(s)s)[ \t\n\r]*+)*+)?+\]" % {"s": _JSON_STRING.pattern})  # noqa: UP031 (the pattern's own braces)
_JSON_ITEM = re.compile(r'"((?:[^"\\\x00-\x1f]++|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*+)"')
_NOT_STRINGS = "when using JSON array syntax, arrays must be comprised of strings only"

def _skip_json_ws(text: str, pos: int) -> int:
    match = _JSON_WS.match(text, pos)
    assert match is not None
    return match.end()


# scanner states: what may come next
_A_FIRST, _A_NEXT, _O_FIRST, _O_NEXT, _O_COLON, _O_VALUE, _AFTER = range(7)


def _parse_json(rest: str) -> tuple[str, ...] | None:
    """line_parsers.go ``parseJSON``: the strings of a JSON array, or None (shell form).

    Like Go's ``json.Decoder.Decode`` it reads the first value only (text after the array is
    ignored); any syntax error, nesting deeper than 10000 or a number out of float64 range is
    None; a valid array with anything but strings in it is BuildKit's error."""
    text = rest.lstrip(_SPACES)
    if not text.startswith("["):
        return None
    flat = _JSON_STRING_ARRAY.match(text)
    if flat is not None:  # the usual exec form: a flat array of strings
        items = _JSON_ITEM.findall(text, 0, flat.end())
        return tuple(_runes(_json.loads(f'"{item}"')) if "\\" in item or _SURROGATE.search(item) else item
                     for item in items)
    end = len(text)
    pos = 1
    stack = ["["]
    state = _A_FIRST
    spans: list[tuple[int, int]] = []  # the top-level strings
    strings_only = True
    overflow = False
    while stack:
        pos = _skip_json_ws(text, pos)
        if pos >= end:
            return None
        ch = text[pos]
        top = stack[-1]
        if state == _AFTER:
            if ch == ",":
                state = _A_NEXT if top == "[" else _O_NEXT
                pos += 1
            elif (ch == "]" and top == "[") or (ch == "}" and top == "{"):
                stack.pop()
                pos += 1
            else:
                return None
            continue
        if (state == _A_FIRST and ch == "]") or (state == _O_FIRST and ch == "}"):
            stack.pop()
            pos += 1
            state = _AFTER
            continue
        if state in (_O_FIRST, _O_NEXT):
            key = _JSON_STRING.match(text, pos)
            if key is None:
                return None
            pos = key.end()
            state = _O_COLON
            continue
        if state == _O_COLON:
            if ch != ":":
                return None
            pos += 1
            state = _O_VALUE
            continue
        # a value: _A_FIRST, _A_NEXT or _O_VALUE
        element = len(stack) == 1
        if ch == '"':
            string = _JSON_STRING.match(text, pos)
            if string is None:
                return None
            if element:
                spans.append(string.span())
            pos = string.end()
            state = _AFTER
            continue
        if element:
            strings_only = False
        if ch in "[{":
            if len(stack) >= _MAX_JSON_DEPTH:
                return None
            stack.append(ch)
            pos += 1
            state = _A_FIRST if ch == "[" else _O_FIRST
            continue
        if ch == "-" or "0" <= ch <= "9":
            number = _JSON_NUMBER.match(text, pos)
            if number is None:
                return None
            if math.isinf(float(number.group())):
                overflow = True  # Go: a syntax-valid value that fails to unmarshal
            pos = number.end()
        else:
            literal = _JSON_LITERAL.match(text, pos)
            if literal is None:
                return None
            pos = literal.end()
        if pos < end and text[pos] not in " \t\n\r,]}":
            return None
        state = _AFTER
    if overflow:
        return None
    if not strings_only:
        raise _Refused(_NOT_STRINGS)
    return tuple(_runes(_json.loads(text[a:b])) for a, b in spans)


# --------------------------------------------------------------------------- here-documents


class _HeredocWord(NamedTuple):
    name: str
    fd: int
    chomp: bool


def _heredocs_from_line(line: str) -> list[_HeredocWord]:
    """parser.go ``heredocsFromLine``: the line's shell words (a lexing error means none), each
    one that reads as ``[n]<<[-]NAME`` in order."""
    try:
        words = _Lexer(line, raw_quotes=True, raw_escapes=True).words()
    except _LexError:
        return []
    found = []
    for word in words:
        if "<<" not in word:
            continue
        heredoc = _parse_heredoc(word)
        if heredoc is not None:
            found.append(heredoc)
    return found


def _parse_heredoc(word: str) -> _HeredocWord | None:
    """parser.go ``heredocFromMatch``."""
    match = _HEREDOC_WORD.match(word)
    if match is None:
        return None
    digits, dash, rest = match.groups()
    if not rest:
        return None
    try:
        names = _Lexer(rest, raw_quotes=False, raw_escapes=False).words()
        if len(names) != 1:
            return None
        raw = _Lexer(rest, raw_quotes=True, raw_escapes=False).words()
    except _LexError as exc:
        raise _Refused(f"failed to process {_go_quote(rest)}: {exc}") from exc
    if len(raw) != len(names):
        raise _Refused(f"internal lexing of heredoc produced inconsistent results: {rest}")
    return _HeredocWord(names[0], _file_descriptor(digits), dash == "-")


def _file_descriptor(digits: str) -> int:
    """``strconv.ParseUint(digits, 10, 0)`` (0 when empty, the maximum on overflow) as the
    binding passes it to Python: through a C ``long``."""
    significant = digits.lstrip("0")
    value = 0 if not significant else 2**64 - 1 if len(significant) > 20 else min(int(significant), 2**64 - 1)
    return value - 2**64 if value >= 2**63 else value


class _LexError(Exception):
    pass


class _Words:
    """lex.go ``wordsStruct``."""

    __slots__ = ("in_word", "word", "words")

    def __init__(self) -> None:
        self.words: list[str] = []
        self.word: list[str] = []  # non-empty pieces
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in _SPACE_SET:
            if self.in_word and self.word:
                self.words.append("".join(self.word))
                self.word = []
                self.in_word = False
        else:
            self.word.append(ch)
            self.in_word = True

    def add_raw(self, text: str) -> None:
        if text:
            self.word.append(text)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def get(self) -> list[str]:
        if self.word:
            self.words.append("".join(self.word))
            self.word = []
            self.in_word = False
        return self.words


_SPECIAL = "$'\"\\"
_PLAIN = re.compile(f"[^{_class(_SPECIAL + _SPACES)}]++")
_PLAIN_IN_BRACES = re.compile(f"[^{_class(_SPECIAL + _SPACES + '}')}]++")
_PLAIN_IN_DQUOTES = re.compile(r'[^"$\\]++')
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_QUOTED_WORD = re.compile(f"(?:[^{_class(_SPACES)}'\"]++|'[^']*+'|\"[^\"]*+\"|(?P<open>['\"]))++")
_QUOTES = re.compile("'[^']*+'|\"[^\"]*+\"")


def _unquote(match: re.Match[str]) -> str:
    return match.group()[1:-1]


_NON_SPACE_RUN = re.compile(f"[^{_class(_SPACES)}]++")

# a lexer step: a generator that may yield a sub-step and receives its result
_Step = Generator["_Step", Any, Any]
# text built of pieces, joined once (_flatten)
_Rope = str | list["_Rope"]


class _Lexer:
    """lex.go ``shellWord.process`` with ``SkipUnsetEnv`` and no variables (every ``$x``
    and ``${x...}`` stays as written), escape ``\\``, driven by an explicit stack so nested
    ``${a:-${b:-...}}`` and quotes cannot exhaust Python's recursion limit."""

    def __init__(self, text: str, *, raw_quotes: bool, raw_escapes: bool) -> None:
        if text.startswith(_UTF8_BOM):  # text/scanner skips a leading BOM
            text = text[1:]
        self.src = _runes(text)
        self.end = len(self.src)
        self.pos = 0
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes

    def words(self) -> list[str]:
        src = self.src
        if "$" not in src and "\\" not in src:  # the usual case, in bulk: words of plain runs and quotes
            if "'" not in src and '"' not in src:
                return _NON_SPACE_RUN.findall(src)
            words = []
            for match in _QUOTED_WORD.finditer(src):
                if match.group("open") is not None:
                    quote = "single-quote" if match.group("open") == "'" else "double-quote"
                    raise _LexError(f"unexpected end of statement while looking for matching {quote}")
                word = match.group()
                if not self.raw_quotes:
                    word = _QUOTES.sub(_unquote, word)
                if word:
                    words.append(word)
            return words
        result: tuple[str, list[str]] = _run(self._stop_on(""))
        return result[1]

    def _peek(self) -> str:
        return self.src[self.pos] if self.pos < self.end else ""

    def _next(self) -> str:
        if self.pos < self.end:
            self.pos += 1
            return self.src[self.pos - 1]
        return ""

    def _stop_on(self, stop: str) -> _Step:
        """``processStopOn``: up to ``stop`` (``""``: the end), returns (text, words). Only the
        outermost call's words are used, so only it splits words; nested text is a rope (see
        :func:`_flatten`): Go copies it again at every level, which is quadratic."""
        result: list[_Rope] = []
        words = _Words()
        track = not stop
        plain = _PLAIN_IN_BRACES if stop == "}" else _PLAIN
        src = self.src
        while self.pos < self.end:
            ch = src[self.pos]
            if stop and ch == stop:
                self.pos += 1
                return result, []
            if ch == "$":
                text = yield self._dollar()
                result.append(text)
                if track:
                    words.add_string(_flatten(text))
            elif ch == "'":
                quoted = self._single_quote()
                result.append(quoted)
                if track:
                    words.add_raw(quoted)
            elif ch == '"':
                text = yield self._double_quote()
                result.append(text)
                if track:
                    words.add_raw(_flatten(text))
            elif ch == "\\":
                self.pos += 1
                if self.raw_escapes:
                    result.append(ch)
                    if track:
                        words.add_raw(ch)
                if self.pos == self.end:
                    break
                ch = src[self.pos]
                self.pos += 1
                result.append(ch)
                if track:
                    words.add_raw(ch)
            elif ch in _SPACE_SET:
                self.pos += 1
                result.append(ch)
                if track:
                    words.add_char(ch)
            else:
                run = plain.match(src, self.pos)
                if run is None:  # the stop character of an outer frame: ordinary here
                    self.pos += 1
                    result.append(ch)
                    if track:
                        words.add_raw(ch)
                else:
                    self.pos = run.end()
                    result.append(run.group())
                    if track:
                        words.add_raw(run.group())
        if stop:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return result, words.get()

    def _single_quote(self) -> str:
        self.pos += 1
        close = self.src.find("'", self.pos)
        if close < 0:
            self.pos = self.end
            raise _LexError("unexpected end of statement while looking for matching single-quote")
        text = self.src[self.pos:close]
        self.pos = close + 1
        return f"'{text}'" if self.raw_quotes else text

    def _double_quote(self) -> _Step:
        """``processDoubleQuote``; returns a rope."""
        self.pos += 1
        out: list[_Rope] = ['"'] if self.raw_quotes else []
        src = self.src
        while True:
            if self.pos >= self.end:
                raise _LexError("unexpected end of statement while looking for matching double-quote")
            ch = src[self.pos]
            if ch == '"':
                self.pos += 1
                if self.raw_quotes:
                    out.append(ch)
                return out
            if ch == "$":
                out.append((yield self._dollar()))
                continue
            if ch == "\\":
                self.pos += 1
                if self.raw_escapes:
                    out.append(ch)
                after = self._peek()
                if after == "":
                    continue
                if after in ('"', "$", "\\"):
                    ch = after
                    self.pos += 1
                out.append(ch)  # an escape before anything else stays (twice with raw escapes)
                continue
            run = _PLAIN_IN_DQUOTES.match(src, self.pos)
            assert run is not None
            out.append(run.group())
            self.pos = run.end()

    def _dollar(self) -> _Step:
        """``processDollar`` with every variable unset: the text comes back as written (a rope),
        except that a modifier's word is itself processed (quotes, escapes, nested ``${}``)."""
        self.pos += 1
        if self._peek() != "{":
            name = self._name()
            return "$" + name
        self.pos += 1
        after = self._peek()
        if after == "":
            raise _LexError("syntax error: missing '}'")
        if after in ("{", "}", ":"):
            raise _LexError("syntax error: bad substitution")
        name = self._name()
        ch = self._next()
        modifier = ch or "\ufffd"
        if ch == "}":
            return "${" + name + "}"
        if ch == ":":
            modifier += self._next() or "\ufffd"
        elif ch not in ("+", "-", "?"):
            raise _LexError(f"unsupported modifier ({modifier}) in substitution")
        try:
            word, _ = yield self._stop_on("}")
        except _LexError as exc:
            if self.pos >= self.end:
                # the same exception, renamed: a new one per level would chain them through
                # __context__, which CPython walks at every raise (quadratic in the nesting)
                exc.args = ("syntax error: missing '}'",)
            raise
        return ["${", name, modifier, word, "}"]

    def _name(self) -> str:
        """``processName``: digits, one special parameter, or letters/digits/underscores."""
        src = self.src
        start = self.pos
        if start >= self.end:
            return ""
        first = src[start]
        if first.isdecimal():
            while self.pos < self.end and src[self.pos].isdecimal():
                self.pos += 1
            return src[start:self.pos]
        if first in _SPECIAL_PARAMS:
            self.pos += 1
            return first
        while self.pos < self.end and (src[self.pos].isalpha() or src[self.pos].isdecimal() or src[self.pos] == "_"):
            self.pos += 1
        return src[start:self.pos]


def _flatten(rope: _Rope) -> str:
    """The text of a rope (a string, or a list of ropes), without recursion."""
    if isinstance(rope, str):
        return rope
    out: list[str] = []
    stack = [iter(rope)]
    while stack:
        for piece in stack[-1]:
            if isinstance(piece, str):
                out.append(piece)
            else:
                stack.append(iter(piece))
                break
        else:
            stack.pop()
    return "".join(out)


def _run(step: _Step) -> Any:
    """Drive a lexer step and the sub-steps it yields, with an explicit stack."""
    stack = [step]
    value: Any = None
    error: _LexError | None = None
    while True:
        top = stack[-1]
        try:
            if error is not None:
                pending, error = error, None
                sub = top.throw(pending)
            else:
                sub = top.send(value)
        except StopIteration as done:
            stack.pop()
            if not stack:
                return done.value
            value = done.value
            continue
        except _LexError as exc:
            stack.pop()
            if not stack:
                raise
            error = exc
            continue
        stack.append(sub)
        value = None
