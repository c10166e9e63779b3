"""The Dockerfile-syntax corpus and the one way to compare parser results (not a test module).

Shared by ``tests/dockerfile/test_dockerfile_syntax.py`` and ``tests/resources/make_dockerfile_syntax_golden.py``:
:data:`CORPUS` (case name -> Dockerfile text, one construct or one error each), :func:`outcome`
(a parse result as plain JSON data, the same for ``localai_ci.dockerfile.syntax`` and the PyPI
``dockerfile`` package) and :func:`stored` (what the golden file keeps of an outcome).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.paths import REPO, RESOURCES

GOLDEN = RESOURCES / "dockerfile_syntax_golden.json"
#: the repository's own Dockerfiles, compared with the oracle like the corpus
REPO_DOCKERFILES = tuple(sorted(p.relative_to(REPO).as_posix() for p in (REPO / "backends").glob("Dockerfile.*")))
#: outcomes larger than this are kept in the golden file as a digest
INLINE_LIMIT = 4096

Outcome = dict[str, Any]


def _cstring(value: Any) -> Any:
    """What the package's C-string round trip leaves of a value: each string up to its first NUL."""
    if isinstance(value, str):
        return value.split("\x00", 1)[0]
    if isinstance(value, (list, tuple)):
        return [_cstring(v) for v in value]
    return value


def _has_stray_bytes(value: Any) -> bool:
    """True when a value holds surrogate escapes: bytes Go's byte-wise scanning split off a
    multi-byte character (the package cannot decode them and raises UnicodeDecodeError)."""
    if isinstance(value, str):
        return any("\udc80" <= ch <= "\udcff" for ch in value)
    if isinstance(value, (list, tuple)):
        return any(_has_stray_bytes(v) for v in value)
    return False


def outcome(parse: Callable[[str], Any], text: str) -> Outcome:
    """``{"commands": [...]}`` (each command a list of its nine fields, heredocs as lists),
    ``{"error": message}`` for a refusal, or ``{"undecodable": true}`` for a result the package
    cannot hand to Python (see :func:`_has_stray_bytes`)."""
    try:
        commands = parse(text)
    except UnicodeDecodeError:
        return {"undecodable": True}
    except ValueError as exc:  # dockerfile.GoParseError and localai_ci.dockerfile.syntax.ParseError
        return {"error": str(exc)}
    data = [list(_cstring(tuple(c))) for c in commands]
    if _has_stray_bytes(data):
        return {"undecodable": True}
    return {"commands": data}


def stored(result: Outcome) -> Outcome:
    """What the golden file keeps: the outcome, or its digest when it is large."""
    canonical = json.dumps(result, sort_keys=True, ensure_ascii=False)
    if len(canonical) <= INLINE_LIMIT:
        return result
    return {"sha256": hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()}


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- the corpus

_CASES: list[tuple[str, str]] = [
    # --- parser directives
    ("directive-syntax", "# syntax=docker/dockerfile:1.7\nFROM alpine\n"),
    ("directive-escape-backslash", "# escape=\\\nFROM alpine\nRUN echo a \\\n  b\n"),
    ("directive-escape-backtick", "# escape=`\nFROM mcr.microsoft.com/windows\nRUN dir c:\\ `\n  && echo done\n"),
    ("directive-escape-backtick-words", "# escape=`\nFROM a\nENV A=`\"q`\" B='c\\d'\nLABEL x=a`\n"),
    ("directive-both-any-order", "#escape=`\n#  SYNTAX = a/b:c  \nFROM a `\n b\n"),
    ("directive-case-and-spaces", "#ESCAPE   =   `\nFROM a `\n b\n"),
    ("directive-check-ends-block", "# check=skip=all\n# escape=`\nFROM a `\nRUN b\n"),
    ("directive-after-blank-is-comment", "\n# escape=`\nFROM a `\nRUN b\n"),
    ("directive-after-comment-is-comment", "# hello\n# escape=`\nFROM a `\nRUN b\n"),
    ("directive-after-shebang-is-comment", "#!/usr/bin/env buildctl\n# escape=`\nFROM a `\n"),
    ("directive-indented", "   # escape=`\nFROM a `\n b\n"),
    ("directive-unknown-name-ends-block", "# foo=bar\n# escape=`\nFROM a `\n"),
    ("directive-no-value-is-comment", "# escape=\n# escape=`\nFROM a `\n b\n"),
    ("directive-duplicate-syntax", "# syntax=a\n# syntax=b\nFROM alpine\n"),
    ("directive-duplicate-escape", "# escape=\\\n# ESCAPE=`\nFROM alpine\n"),
    ("directive-invalid-escape", "# escape=x\nFROM alpine\n"),
    ("directive-invalid-escape-space", "# escape= \t\nFROM alpine\n"),
    ("directive-after-instruction-is-comment", "FROM a\n# escape=x\n# escape=y\n"),
    # --- comments, blank lines, whitespace, line endings
    ("comments-and-blank-lines", "# one\n\n   # two\n\t\nFROM alpine # not a comment\n\n#three\nRUN true\n"),
    ("whitespace-only-lines", "  \n\t\n \t \nFROM a\n   \n\t\t\nRUN b\n \n"),
    ("crlf", "# syntax=x\r\nFROM alpine\r\nRUN a \\\r\n  b\r\nENV A=1\r\n"),
    ("crlf-heredoc", "FROM a\r\nRUN <<EOF\r\necho hi\r\nEOF\r\nRUN next\r\n"),
    ("bare-cr-is-not-a-line-end", "FROM a\rRUN b\nCMD c\r\r\n"),
    ("bom", "\ufeffFROM alpine\nRUN true\n"),
    ("bom-then-directive", "\ufeff# escape=`\nFROM a `\n b\n"),
    ("bom-twice", "\ufeff\ufeffFROM alpine\n"),
    ("no-final-newline", "FROM alpine\nRUN true"),
    ("case-insensitive-keywords", "from alpine AS Build\nRuN echo\ncopy a b\nOnBuild run x\nhealthCHECK none\n"),
    ("leading-whitespace-instruction", "   FROM alpine\n\t RUN  echo   spaced  \n"),
    ("unicode-spaces", "FROM\u00a0alpine\nRUN\u3000a\nENV a=b\u00a0c=d\nRUN x \u2003y\n"),
    ("tabs-between-words", "FROM\talpine\tAS\tb\nEXPOSE\t80\t\t443\n"),
    # --- line continuations
    ("continuation-basic", "FROM a\nRUN apt-get update && \\\n    apt-get install -y x \\\n    y\n"),
    ("continuation-comments-inside", "FROM a\nRUN one \\\n# comment\n    # indented comment\n  two\n"),
    ("continuation-blank-lines-inside", "FROM a\nRUN one \\\n\n   \n\t\n  two\n"),
    ("continuation-trailing-space-after-escape", "FROM a\nRUN one \\   \n  two\\\t\n  three\n"),
    ("continuation-escaped-escape-ends-line", "FROM a\nRUN echo \\\\\nRUN next\n"),
    ("continuation-at-eof", "FROM a\nRUN one \\\n"),
    ("continuation-at-eof-no-newline", "FROM a\nRUN one \\"),
    ("continuation-into-comments-at-eof", "FROM a\nRUN one \\\n# c\n\n"),
    ("continuation-lone-escape", "FROM a\n\\\nRUN b\n"),
    ("continuation-lone-escape-at-eof", "FROM a\n\\\n"),
    ("continuation-keyword-split", "FRO\\\nM alpine\nRU\\\nN true\n"),
    ("continuation-comment-line-with-escape", "FROM a\n# comment \\\nRUN b\n"),
    ("continuation-hash-inside-arguments", "FROM a\nRUN echo \\\n#not-a-comment-when-indented? \\\n  x\n"),
    # --- JSON (exec) form and its fallbacks
    ("json-forms", 'FROM a\nCMD ["a", "b"]\nENTRYPOINT ["/bin/x"]\nRUN ["sh", "-c", "echo"]\nSHELL ["/bin/bash", "-c"]\n'),
    ("json-empty-and-spacing", 'FROM a\nCMD []\nCMD [ ]\nCMD   [ "a" ,"b"  ]\nCMD [""]\n'),
    ("json-escapes", 'FROM a\nCMD ["\\" \\\\ \\/ \\b \\f \\n \\r \\t", "\\u00e9\\u2603", "\\ud83d\\ude00"]\n'),
    ("json-lone-surrogate-escapes", 'FROM a\nCMD ["\\ud800", "\\udc00x", "\\ud800\\u0041"]\n'),
    ("json-nul-escape", 'FROM a\nCMD ["a\\u0000b", "c"]\n'),
    ("json-unicode-text", 'FROM a\nCMD ["♥", "☃", "é"]\n'),
    ("json-malformed-falls-back", "FROM a\nCMD [\"a\", \nRUN ['single']\nENTRYPOINT [a]\nCMD [\"a\" \"b\"]\nCMD [\"\\x\"]\n"),
    ("json-trailing-text-ignored", 'FROM a\nCMD ["a"] b c\nRUN ["x"]]\n'),
    ("json-non-string", 'FROM a\nCMD ["a", 1]\n'),
    ("json-nested-non-string", 'FROM a\nRUN ["a", ["b"]]\n'),
    ("json-object-non-string", 'FROM a\nRUN [{"a": [1, true, null]}]\n'),
    ("json-null", "FROM a\nRUN [null]\n"),
    ("json-number-overflow-falls-back", 'FROM a\nRUN ["a", 1e400]\nRUN [-1e999]\n'),
    ("json-bad-number-falls-back", 'FROM a\nRUN [01]\nRUN [1.]\nRUN [-]\nRUN [1e]\n'),
    ("json-depth-limit", "FROM a\nRUN " + "[" * 10001 + "]" * 10001 + "\n"),
    ("json-depth-at-limit", "FROM a\nRUN " + "[" * 10000 + "]" * 10000 + "\n"),
    ("json-control-char-falls-back", 'FROM a\nRUN ["a\tb"]\n'),
    ("json-copy-add-volume", 'FROM a\nCOPY ["a b", "/c"]\nADD ["x", "/y"]\nVOLUME ["/v", "/w"]\nVOLUME /p /q\n'),
    ("json-leading-unicode-space", "FROM a\nCMD \u00a0[\"a\"]\n"),
    # --- flags
    ("flags-run-mount", "FROM a\nRUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=x make\n"),
    ("flags-copy", "FROM a\nCOPY --from=build --chmod=755 --chown=1:1 --link /src /dst\nADD --checksum=sha256:0 https://x /y\n"),
    ("flags-from-platform", "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n"),
    ("flags-quoted-and-escaped", "FROM a\nCOPY --x=\"a b\" --y='c d' --z=e\\ f --w=\"q\\\"r\" src dst\n"),
    ("flags-double-dash-ends-flags", "FROM a\nRUN --network=none -- --not-a-flag\nRUN -- x\nRUN --\n"),
    ("flags-only", "FROM a\nRUN --mount=type=tmpfs,target=/t\nCOPY --link\n"),
    ("flags-single-dash-is-argument", "FROM a\nRUN -x --y\n"),
    ("flags-empty-quoted-value", "FROM a\nRUN --x=\"\" --\"\" ''\n"),
    ("flags-non-ascii", "FROM a\nCOPY --from=é src dst\n"),
    ("flags-unknown-instruction", "FROM a\nFOO --bar=1 baz\n"),
    ("flags-escape-at-end", "FROM a\nRUN --x=a\\\\\n"),
    # --- here-documents
    ("heredoc-run", "FROM a\nRUN <<EOT\necho hi\n  indented\nEOT\nRUN after\n"),
    ("heredoc-run-with-command", "FROM a\nRUN <<EOF bash -ex\nset -e\nmake\nEOF\n"),
    ("heredoc-chomp", "FROM a\nRUN <<-EOT\n\techo hi\n\t\tEOT\nRUN after\n"),
    ("heredoc-chomp-only-tabs", "FROM a\nRUN <<-EOT\n  EOT\n\t  EOT\nEOT\n"),
    ("heredoc-quoted-double", 'FROM a\nRUN <<"EOT"\necho $HOME\nEOT\n'),
    ("heredoc-quoted-single", "FROM a\nRUN <<'EOT'\necho $HOME\nEOT\n"),
    ("heredoc-quoted-part", "FROM a\nRUN <<E\"O\"T\nx\nEOT\n"),
    ("heredoc-name-with-space", 'FROM a\nRUN <<"a b"\nx\na b\n'),
    ("heredoc-several", "FROM a\nRUN <<A cat /dev/stdin <<B\na\nA\nb\nB\n"),
    ("heredoc-copy-add", "FROM a\nCOPY <<-'A' /a <<B /b\n\tcontent\n\tA\nb\nB\nADD <<C /c\nc\nC\n"),
    ("heredoc-fd", "FROM a\nRUN 3<<EOF cat <&3\nx\nEOF\nRUN 99999999999999999999<<E\nE\nRUN 9223372036854775808<<E\nE\n"),
    ("heredoc-after-continuation", "FROM a\nRUN <<EOF \\\n  bash\nbody\nEOF\n"),
    ("heredoc-terminator-crlf", "FROM a\nRUN <<EOF\nbody\nEOF\r\n"),
    ("heredoc-terminator-trailing-space-is-content", "FROM a\nRUN <<EOF\nEOF \nEOF\n"),
    ("heredoc-empty", "FROM a\nRUN <<EOF\nEOF\n"),
    ("heredoc-content-looks-like-instructions", "FROM a\nRUN <<EOF\nFROM b\n# c\n\\\nEOF\n"),
    ("heredoc-at-eof-no-newline", "FROM a\nRUN <<EOF\nx\nEOF"),
    ("heredoc-unterminated-at-eof-no-newline", "FROM a\nRUN <<A <<B\nx\nA\ny"),
    ("heredoc-json-form-is-not", 'FROM a\nRUN ["<<EOF"]\nCMD <<EOF\n'),
    ("heredoc-other-instructions-are-not", "FROM a\nCMD <<EOF\nENTRYPOINT <<EOF\nENV A=<<EOF\n"),
    ("heredoc-bare-operators", "FROM a\nRUN << EOF\nRUN <<- EOF\nRUN cat <<<word\n"),
    ("heredoc-dollar-name", "FROM a\nRUN <<$X\nx\n$X\nRUN <<${Y}\ny\n${Y}\n"),
    ("heredoc-modifier-name", "FROM a\nRUN <<${X:-a}\nx\n${X:-a}\n"),
    ("heredoc-escaped-name", "FROM a\nRUN <<E\\OF\nx\nEOF\n"),
    ("heredoc-unterminated-quote-hides-heredocs", "FROM a\nRUN <<EOF echo \"oops\nRUN next\n"),
    ("heredoc-onbuild-consumed-not-exposed", "FROM a\nONBUILD RUN <<EOF\nbody\nEOF\nRUN after\n"),
    ("heredoc-bom-in-name", "FROM a\nRUN <<\ufeffEOF\nx\nEOF\n"),
    ("heredoc-unterminated", "FROM alpine\nRUN <<EOF\necho hi\n"),
    ("heredoc-second-unterminated", "FROM a\nRUN <<A <<B\na\nA\nb\n"),
    ("heredoc-word-lexing-error", "FROM alpine\nCOPY <<${X:-a b} /x\n"),
    ("heredoc-word-lexing-error-escape", "FROM a\nRUN <<${x:-\\ }\n"),
    # a line that does not lex (here, in ${...}) has no here-documents at all
    ("heredoc-line-bad-substitution-means-none", "FROM a\nRUN <<${}\nRUN <<${:x}\n"),
    ("heredoc-line-unsupported-modifier-means-none", "FROM a\nRUN <<${x!y}\n"),
    ("heredoc-line-missing-brace-means-none", "FROM a\nRUN <<${x\n"),
    ("heredoc-word-nested", "FROM a\nRUN <<${a:-${b:-c}}\nx\n${a:-${b:-c}}\n"),
    # 300 levels: the Go lexer takes 20 s for 1000 (the linear-time test takes this port to 20000)
    ("heredoc-word-nested-deep", "FROM a\nRUN <<" + "${a:-" * 300 + "x" + "}" * 300 + "\nz\n" + "${a:-" * 300 + "x" + "}" * 300 + "\n"),
    ("heredoc-word-escaped-space-and-empty-quotes", "FROM a\nRUN <<a\\ \"\"\nx\na \n"),
    # --- ONBUILD
    ("onbuild", "FROM a\nONBUILD RUN echo hi\nONBUILD COPY --from=x a b\nonbuild env A=1\n"),
    ("onbuild-flags", "FROM a\nONBUILD --x RUN --y z\n"),
    ("onbuild-alone", "FROM a\nONBUILD\nONBUILD   \n"),
    ("onbuild-json", 'FROM a\nONBUILD CMD ["a", "b"]\n'),
    ("onbuild-onbuild", "FROM a\nONBUILD ONBUILD RUN x\nONBUILD ONBUILD\n"),
    ("onbuild-chain-error", "FROM a\nONBUILD ONBUILD ONBUILD ENV a\n"),
    ("onbuild-inner-error", 'FROM a\nONBUILD RUN ["a", 1]\n'),
    # --- ENV, LABEL, ARG
    ("env-pairs", "FROM a\nENV A=1 B=\"two words\" C='x y' D=a\\ b E=\nENV F=\"\"\n"),
    ("env-old-form", "FROM a\nENV NAME some value  with   spaces\nENV\tX\tY\n"),
    ("env-escape-in-words", "FROM a\nENV A=\"x\\\"y\" B='x\\y' C=\\\"q\\\" D=x\\\n"),
    ("env-unicode-space-splits-words", "FROM a\nENV a=1\u00a0b=2\n"),
    ("env-empty", "FROM a\nENV\nLABEL\n"),
    ("env-missing-value", "FROM alpine\nRUN ok\n\n# note\nENV A\nRUN later\n"),
    ("env-missing-value-unicode-space", "FROM a\nENV a\u00a0b\n"),
    ("env-no-equals", "FROM a\nENV a=b c\n"),
    ("env-no-equals-quoted", "FROM a\nENV a=b \"c\\td\"\n"),
    ("label-pairs-multiline", "FROM a\nLABEL org.opencontainers.image.title=\"x y\" \\\n      version=1.0 \\\n      a=b\n"),
    ("label-old-form", "FROM a\nLABEL maintainer someone <x@y>\n"),
    ("label-missing-value", "FROM a\nLABEL a\n"),
    ("arg-forms", "ARG A\nARG B=1 C\nARG D=\"q u\" E='v'\nFROM a\nARG\nARG F=\n"),
    # --- the rest of the instructions
    ("healthcheck", 'FROM a\nHEALTHCHECK NONE\nHEALTHCHECK --interval=5s CMD curl -f http://x/\nHEALTHCHECK CMD ["a", "b"]\nHEALTHCHECK\n'),
    ("healthcheck-type-only", "FROM a\nHEALTHCHECK CMD\nHEALTHCHECK CMD   \n"),
    ("healthcheck-non-ascii-type", "FROM a\nHEALTHCHECK Xé CMD y\n"),
    ("healthcheck-byte-space-split", "FROM a\nHEALTHCHECK Xà foo\n"),
    ("shell", 'FROM a\nSHELL ["powershell", "-command"]\nSHELL not json\n'),
    ("maintainer-user-workdir-stopsignal", "FROM a\nMAINTAINER Jane <j@x>\nUSER 1000:1000\nWORKDIR /a b\nSTOPSIGNAL SIGTERM\n"),
    ("expose", "FROM a\nEXPOSE 80 443/tcp  53/udp\nEXPOSE\n"),
    ("from-forms", "FROM alpine\nFROM alpine:3.20 AS build\nFROM\nFROM a b c d\n"),
    ("copy-add-whitespace-lists", "FROM a\nCOPY a  b\tc /d/\nADD\nCOPY\n"),
    ("unknown-instructions", "FROM a\nRUNN echo\nFOO\nfoo bar baz\n"),
    ("non-ascii-keyword", "\u0130\u0130 x\nONBU\u0130LD RUN <<E\nE\nHEALTHCHEC\u212a NONE\n"),
    ("non-ascii-values", "FROM a\nRUN echo é ♥ \u2603\nLABEL ключ=значение\n"),
    # --- empty input and errors at file level
    ("empty", ""),
    ("only-newlines", "\n\n\n"),
    ("only-comments", "# only a comment\n# another\n"),
    ("only-whitespace", "  \t \n \t\n"),
    ("only-directives", "# syntax=x\n# escape=`\n"),
    ("only-bom", "\ufeff"),
    # --- Go's bufio.Scanner line limit (65535 bytes before the newline)
    ("line-limit-ok", "FROM a\nRUN " + "a" * 65531 + "\n"),
    ("line-limit-ok-at-eof", "FROM a\nRUN " + "a" * 65531),
    ("line-limit-ok-multibyte", "FROM a\nRUN " + "é" * 32765 + "a\n"),
    ("line-limit-exceeded", "FROM a\nRUN " + "a" * 65532 + "\nRUN b\n"),
    ("line-limit-exceeded-cr", "FROM a\nRUN " + "a" * 65531 + "\r\n"),
    ("line-limit-exceeded-multibyte", "FROM a\nRUN " + "é" * 32766 + "\n"),
    ("line-limit-exceeded-first", "RUN " + "a" * 70000 + "\nFROM a\n"),
    ("line-limit-exceeded-in-heredoc", "FROM a\nRUN <<E\n" + "a" * 70000 + "\nE\n"),
    ("line-limit-exceeded-in-continuation", "FROM a\nENV b \\\n" + "a" * 65536 + "\n"),
]

CORPUS: dict[str, str] = dict(_CASES)
assert len(CORPUS) == len(_CASES), "duplicate corpus case names"
