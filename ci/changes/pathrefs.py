"""Repository paths named by build scripts, Makefile recipes and Dockerfile RUN steps (pure).

A leg whose Dockerfile copies the whole repository reads only what its build commands use.
This module finds, in the text of a shell script, a Makefile or a RUN step, the words that
name files or directories of the repository, and the ``make`` and ``cd`` commands it runs.
It follows the text, not the execution, and errs towards finding too much:

* words are shell words (quotes removed, ``$(...)``/``${...}`` kept whole), split further at
  ``=``, ``,`` and ``:`` (``source=.docker/x.sh``, ``--go_out=dir``); ``#`` comments are skipped;
* variables are expanded from the file's own assignments (every assignment of a name counts,
  ``if``/``else`` branches included), then from the caller's environment (the leg's build args
  and the stage's ENV); ``$(dirname $0)``, ``$(CURDIR)``, ``$(abspath ./)``, ``$PWD``, the
  ``MAKEFILE_LIST`` idiom and CMake's ``CMAKE_CURRENT_SOURCE_DIR`` name the file's own directory; anything else is unknown;
* a word that starts with an unknown variable (``$REPO_ROOT/scripts/x.sh`` with no assignment)
  is tried below the build context root and below the file's directory; a word with an
  unknown variable after its first segment (``../$(VARIANT)``) names nothing: guessing it
  would name every sibling;
* absolute words are mapped back through the image's copies (``COPY . /LocalAI`` maps
  ``/LocalAI/.docker/x.sh`` to ``.docker/x.sh``; a bind mount maps its target to its source);
  relative ones are tried below the file's directory and below the context root; ``..`` stops
  at the repository root (CMake's ``../../../../backend/backend.proto`` resolves);
* globs (``src/*.c``) match the tree; a ``.proto`` named on a command with ``-I DIR`` /
  ``--proto_path=DIR`` options is also looked for below those directories (how protoc finds it);
* only paths that exist in the tree count. A directory counts unless it is the context root
  or the file's own directory or one of its parents (``cd /LocalAI`` or ``$(dirname $0)/..``
  are places, not inputs).
"""
from __future__ import annotations

import itertools
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from .makefile import MakeArgs, parse_make_args
from .tree import Tree, clean_path, join, parent_dirs

HERE = "\x00H"
UNKNOWN = "\x00U"
MAX_ALTERNATIVES = 8

_ASSIGN = re.compile(
    r"^\s*(?:export\s+|local\s+|readonly\s+|declare\s+(?:-\w+\s+)*|override\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*(?:[:?+!]?:?=)(.*)$")
_HERE_IDIOMS = re.compile(r"\$0|BASH_SOURCE|MAKEFILE_LIST|^\s*(?:shell\s+)?pwd\s*$|^\s*abspath\s+\.?/?\s*$|^\s*CURDIR\s*$")
_HERE_NAMES = frozenset({"CURDIR", "PWD", "CMAKE_CURRENT_SOURCE_DIR", "CMAKE_CURRENT_LIST_DIR"})
_GLOB = re.compile(r"[*?\[]")
_MAKE_NAMES = frozenset({"make", "gmake", "$(MAKE)", "${MAKE}"})
_CD_NAMES = frozenset({"cd", "pushd", "popd"})
_WRAPPERS = frozenset({"exec", "env", "sudo", "time", "nice", "command", "nohup"})


@dataclass(frozen=True)
class Where:
    """How to resolve the words of one text."""

    here: str  # repository directory of the file ('' for the root)
    root: str  # the build context root in the repository ('' for the repository root)
    image: tuple[tuple[str, str], ...] = ()  # (absolute path in the image, repository path)
    env: tuple[tuple[str, str], ...] = ()  # variables the caller knows (build args, ENV)


@dataclass(frozen=True)
class Ref:
    path: str  # repository path
    is_dir: bool
    word: str  # the word as written
    line: int


@dataclass(frozen=True)
class MakeRun:
    directory: str | None  # repository directory make runs in (None: not in the repository)
    args: MakeArgs
    line: int
    word: str  # the command as written


# --------------------------------------------------------------------------- lexing


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, text) with backslash-newline continuations joined."""
    out: list[tuple[int, str]] = []
    buf = ""
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        out.append((start, buf + line))
        buf = ""
    if buf:
        out.append((start, buf))
    return out


_TOKEN = re.compile(r"""(?P<space>\s+)|(?P<op>&&|\|\||[;|&()<>])|'(?P<single>[^']*)'?|(?P<dq>")|(?P<group>\$[({])"""
                    r"""|(?P<tick>`[^`]*`?)|\\(?P<esc>.)|(?P<hash>\#)|(?P<text>[^\s;|&()<>'"`$\\#]+|\$)""", re.S)
_DQ_TOKEN = re.compile(r"""(?P<end>")|\\(?P<esc>.)|(?P<group>\$[({])|(?P<text>[^"\\$]+|\$|\\)""", re.S)


def _scan(line: str) -> Iterator[tuple[str, str]]:
    """Yield ('word', text) and ('op', text) tokens of one line: shell words with quotes removed,
    ``$(..)``/``${..}``/backtick groups kept whole, operators ``&& || ; | & ( ) < >``; stops at a
    ``#`` comment."""
    word: list[str] = []
    i = 0
    n = len(line)
    while i < n:
        m = _TOKEN.match(line, i)
        if m is None:  # pragma: no cover - the pattern matches every character
            word.append(line[i])
            i += 1
            continue
        kind = m.lastgroup
        if kind == "space" or kind == "op":
            if word:
                yield "word", "".join(word)
                word = []
            if kind == "op":
                yield "op", m.group()
            i = m.end()
        elif kind == "group":
            j = _group_end(line, i + 1)
            word.append(line[i:j])
            i = j
        elif kind == "dq":
            i = m.end()
            while i < n:
                d = _DQ_TOKEN.match(line, i)
                if d is None or d.lastgroup == "end":
                    i = n if d is None else d.end()
                    break
                if d.lastgroup == "group":
                    j = _group_end(line, i + 1)
                    word.append(line[i:j])
                    i = j
                    continue
                word.append(d.group("esc") if d.lastgroup == "esc" else d.group())
                i = d.end()
        elif kind == "single":
            word.append(m.group("single"))
            i = m.end()
        elif kind == "esc":
            word.append(m.group("esc"))
            i = m.end()
        elif kind == "hash":
            if not word:
                return
            word.append("#")
            i = m.end()
        else:
            word.append(m.group())
            i = m.end()
    if word:
        yield "word", "".join(word)


def _group_end(s: str, i: int) -> int:
    """Index after the ``)``/``}`` that closes the group opening at ``s[i]``."""
    open_ch = s[i]
    close_ch = ")" if open_ch == "(" else "}"
    depth = 0
    while i < len(s):
        if s[i] == open_ch:
            depth += 1
        elif s[i] == close_ch:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(s)


def _substitutions(word: str) -> list[str]:
    """The command texts of ``$(...)`` and backtick substitutions in a word (not ``$(VAR)``)."""
    out: list[str] = []
    i = 0
    while i < len(word):
        if word.startswith("$(", i) and not word.startswith("$((", i):
            j = _group_end(word, i + 1)
            inner = word[i + 2:j - 1]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", inner.strip()):
                out.append(inner)
            i = j
        elif word[i] == "`":
            j = word.find("`", i + 1)
            if j == -1:
                break
            out.append(word[i + 1:j])
            i = j + 1
        else:
            i += 1
    return out


def commands(text: str) -> list[tuple[int, list[str]]]:
    """Simple commands (lists of shell words) with their line numbers; the commands of
    ``$(...)`` and backtick substitutions follow the command they appear in."""
    out: list[tuple[int, list[str]]] = []

    def line_commands(number: int, line: str, depth: int) -> None:
        current: list[str] = []
        nested: list[str] = []
        for kind, tok in _scan(line):
            if kind == "op":
                if current:
                    out.append((number, current))
                current = []
            else:
                current.append(tok)
                if "$(" in tok or "`" in tok:
                    nested.extend(_substitutions(tok))
        if current:
            out.append((number, current))
        if depth < 4:
            for inner in nested:
                line_commands(number, inner, depth + 1)

    for number, line in _logical_lines(text):
        line_commands(number, line, 0)
    return out


# --------------------------------------------------------------------------- variables


def assignments(text: str) -> dict[str, list[str]]:
    """``NAME=value`` (shell) and ``NAME := value`` (make) assignments of a text, every one kept."""
    out: dict[str, list[str]] = {}
    for _, line in _logical_lines(text):
        m = _ASSIGN.match(line)
        if not m:
            continue
        value = m.group(2).strip()
        words = [w for k, w in _scan(value) if k == "word"]
        if len(words) == 1 or (words and not value.startswith(("'", '"'))):
            value = words[0] if words else ""
        elif words:
            value = " ".join(words)
        out.setdefault(m.group(1), []).append(value)
    return out


class _Expander:
    def __init__(self, local: Mapping[str, list[str]], env: Mapping[str, str]) -> None:
        self.local = local
        self.env = env
        self._values: dict[str, list[str]] = {}
        self._active: set[str] = set()
        self.from_env: set[str] = set()  # variables whose values came from the caller's environment

    def lookup(self, name: str, depth: int) -> list[str]:
        if name in self._values:
            return self._values[name]
        if name in _HERE_NAMES and name not in self.local:
            return [HERE]
        if name in self._active:  # NAME := $(NAME) more
            return [UNKNOWN]
        self._active.add(name)
        values: list[str] = []
        for v in self.local.get(name, ())[:MAX_ALTERNATIVES]:
            values.extend(self.expand(v, depth + 1))
        self._active.discard(name)
        if not values and name in self.env:
            values.append(self.env[name])
            self.from_env.add(name)
        result = list(dict.fromkeys(values))[:MAX_ALTERNATIVES] or [UNKNOWN]
        self._values[name] = result
        return result

    def expand(self, word: str, depth: int = 0) -> list[str]:
        if depth > 8:
            return [UNKNOWN]
        parts: list[list[str]] = []
        i = 0
        lit: list[str] = []
        while i < len(word):
            ch = word[i]
            if ch != "$" or i + 1 >= len(word):
                lit.append(ch)
                i += 1
                continue
            nxt = word[i + 1]
            if nxt == "$":  # make's $$ is the shell's $
                i += 1
                continue
            if nxt in "({":
                j = _group_end(word, i + 1)
                inner = word[i + 2:j - 1]
                alts = self._group(inner, nxt, depth)
                i = j
            else:
                m = re.match(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?!-]", word[i + 1:])
                if not m:
                    lit.append(ch)
                    i += 1
                    continue
                name = m.group(0)
                alts = self.lookup(name, depth) if name[0].isalpha() or name[0] == "_" else [UNKNOWN]
                i += 1 + len(name)
            parts.append(["".join(lit)])
            lit = []
            parts.append(alts)
        parts.append(["".join(lit)])
        results = [""]
        for alts in parts:
            results = [r + a for r in results for a in alts][:MAX_ALTERNATIVES]
        return results

    def _group(self, inner: str, kind: str, depth: int) -> list[str]:
        if kind == "(" and _HERE_IDIOMS.search(inner) and ("dirname" in inner or "dir " in inner
                                                             or "abspath" in inner or "pwd" in inner
                                                             or inner.strip() == "CURDIR"):
            return [HERE]
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_.\-]*)(?:(:?[-=+?])(.*))?", inner.strip(), re.S)
        if m and (kind == "{" or m.group(2) is None):
            values = self.lookup(m.group(1), depth)
            if values == [UNKNOWN] and m.group(2) in (":-", "-", ":=", "=") and m.group(3) is not None:
                return self.expand(m.group(3), depth + 1)
            return values
        return [UNKNOWN]


# --------------------------------------------------------------------------- resolution


def _candidates(value: str, where: Where) -> list[str]:
    """Repository paths a fully expanded word may name (not checked against the tree)."""
    if value.startswith(HERE):
        rest = value[len(HERE):]
        return [] if "\x00" in rest else [join(where.here, rest.lstrip("/"))]
    if value.startswith(UNKNOWN):
        rest = value[len(UNKNOWN):].lstrip("/")
        if not rest or "\x00" in rest:
            return []
        return list(dict.fromkeys([join(where.root, rest), join(where.here, rest)]))
    if not value or "\x00" in value:
        return []
    if value.startswith("/"):
        norm = posixpath.normpath(value)
        best: tuple[int, str] | None = None
        for dest, repo in where.image:
            d = posixpath.normpath(dest)
            if norm == d or norm.startswith(d.rstrip("/") + "/"):
                if best is None or len(d) > best[0]:
                    best = (len(d), join(repo, norm[len(d):].lstrip("/")) if norm != d else repo)
        return [best[1]] if best else []
    return list(dict.fromkeys([join(where.here, value), join(where.root, value)]))


def _split_pieces(word: str) -> list[str]:
    """Split a shell word at ``=``, ``,`` and ``:`` outside ``$(..)``/``${..}`` groups."""
    out: list[str] = []
    buf: list[str] = []
    i = 0
    while i < len(word):
        ch = word[i]
        if ch == "$" and i + 1 < len(word) and word[i + 1] in "({":
            j = _group_end(word, i + 1)
            buf.append(word[i:j])
            i = j
            continue
        if ch in "=,:":
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
        i += 1
    out.append("".join(buf))
    return [p for p in out if p]


def _too_broad(path: str, where: Where) -> bool:
    """Directories that are places rather than inputs: the context root, the file's directory, its parents."""
    return path == clean_path(where.root) or path == where.here or path in parent_dirs(where.here) or path == ""


def _is_place(path: str, where: Where) -> bool:
    """Too broad to be an input: a top-level directory, the context root, the file's directory or a parent."""
    return _too_broad(path, where) or "/" not in path


def resolve_word(word: str, where: Where, tree: Tree, local: Mapping[str, list[str]] | None = None,
                 line: int = 0, split: bool = True) -> list[Ref]:
    """The repository files and directories one shell word names.

    A path that does not exist (an output the build creates, ``backend/cpp/grpc/installed``)
    counts as its nearest existing directory unless that is a place (:func:`_is_place`).
    """
    exp = _Expander(local or {}, dict(where.env))
    out: list[Ref] = []
    for piece in (_split_pieces(word) if split else [word]):
        if not piece or piece.startswith("-") and "/" not in piece:
            continue
        values = exp.expand(piece)
        guessed = bool(exp.from_env & set(_NAMES.findall(piece)) or any(
            exp.from_env & set(_NAMES.findall(v)) for n in _NAMES.findall(piece) for v in (local or {}).get(n, ())))
        for value in values:
            for cand in _candidates(value, where):
                if _GLOB.search(cand):
                    fixed = cand[:_GLOB.search(cand).start()].rsplit("/", 1)[0]  # type: ignore[union-attr]
                    if value.startswith(UNKNOWN) or _too_broad(fixed, where) or "/" not in cand:
                        continue
                    out.extend(Ref(hit, tree.is_dir(hit), word, line) for hit in tree.glob(cand))
                elif tree.is_file(cand):
                    out.append(Ref(cand, False, word, line))
                elif tree.is_dir(cand):
                    out.append(Ref(cand, True, word, line))
                elif "/" in cand and not guessed:  # not when a build arg made the path (backend/go/<none>)
                    head = posixpath.dirname(cand)
                    while head and not tree.is_dir(head):
                        head = posixpath.dirname(head)
                    if head and not _is_place(head, where):
                        out.append(Ref(head, True, word, line))
    return [r for r in out if not (r.is_dir and _too_broad(r.path, where))]


_PATHY = re.compile(r"[/.]")
_NAMES = re.compile(r"\$[({]?([A-Za-z_][A-Za-z0-9_]*)")


_SERIAL = itertools.count()


@dataclass(frozen=True)
class Lexed:
    """A text split once into what path resolution needs (independent of the environment)."""

    commands: tuple[tuple[int, tuple[str, ...]], ...]
    local: dict[str, list[str]] = field(compare=False)
    path_words: tuple[tuple[int, str, frozenset[str]], ...]  # words that may name a path ('/' or '.'), their variables
    names: frozenset[str]  # variables those words, cd and make commands use
    has_make_or_cd: bool = False
    run_names: frozenset[str] = frozenset()  # variables the cd and make commands use
    serial: int = field(default_factory=lambda: next(_SERIAL))


def _closure(names: set[str], local: Mapping[str, list[str]]) -> frozenset[str]:
    todo = list(names)
    while todo:  # the variables the local values name
        for v in local.get(todo.pop(), ()):
            for nm in _NAMES.findall(v):
                if nm not in names:
                    names.add(nm)
                    todo.append(nm)
    return frozenset(names)


def lex(text: str) -> Lexed:
    cmds = tuple((n, tuple(ws)) for n, ws in commands(text))
    local = assignments(text)
    words: dict[tuple[int, str], frozenset[str]] = {}
    names: set[str] = set()
    runs = False
    run_names: set[str] = set()
    for n, ws in cmds:
        first = next((w for w in ws if not (w in _WRAPPERS or "=" in w and _ASSIGN.match(w))), "")
        is_run = first in _MAKE_NAMES or first in _CD_NAMES or first.endswith("/make")
        runs = runs or is_run
        for i, w in enumerate(ws):
            if "://" in w:  # a URL never names a repository path
                continue
            if is_run:
                run_names.update(_closure(set(_NAMES.findall(w)), local))
            if _PATHY.search(w) or (i and ws[i - 1] in ("cd", "pushd", "-C")):
                for piece in ([w] if i and ws[i - 1] in ("cd", "pushd", "-C") else _split_pieces(w)):
                    if (n, piece) not in words and (_PATHY.search(piece) or piece.startswith("$")):
                        words[(n, piece)] = _closure(set(_NAMES.findall(piece)), local)
                        names.update(words[(n, piece)])
        includes = [w[2:] if w.startswith("-I") else w.split("=", 1)[1] for w in ws
                    if (w.startswith("-I") and len(w) > 2) or w.startswith("--proto_path=")]
        for proto in (w for w in ws if w.endswith(".proto") and not w.startswith("-")):
            for inc in includes:  # protoc finds a .proto below its -I directories
                synthetic = inc.rstrip("/") + "/" + proto
                if (n, synthetic) not in words:
                    words[(n, synthetic)] = _closure(set(_NAMES.findall(synthetic)), local)
                    names.update(words[(n, synthetic)])
    names.update(run_names)
    return Lexed(cmds, local, tuple((n, w, v) for (n, w), v in words.items()), frozenset(names), runs,
                 frozenset(run_names))


def could_name_a_path(word: str, where: Where, tree: Tree) -> bool:
    """False when no value of the word's variables can make it name a path of the tree: its
    literal head (up to the first ``$``) is an absolute path no image copy covers, or a relative
    one no tree path starts with. Words that start with a variable may name anything."""
    cut = word.find("$")
    if cut == 0:  # a leading variable may be anything
        return True
    head = word if cut == -1 else word[:cut]
    if any(c in head for c in "*?["):
        return True
    if head.startswith("/"):
        for dest, _ in where.image:
            d = posixpath.normpath(dest).rstrip("/") + "/"
            if head.startswith(d) or d.startswith(head) or head == d[:-1]:
                return True
        return False
    for base in {where.here, where.root}:
        prefix = posixpath.join(base, head) if base else head
        if ".." in prefix.split("/") or "/./" in "/" + prefix:
            return True
        if tree.has_prefix(prefix.rstrip("/")):
            return True
    return False


def _image_key(word: str, image: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The image copies that can matter to a word (all of them when it starts with a variable)."""
    if word.startswith("$"):
        return image
    if not word.startswith("/"):
        return ()
    cut = word.find("$")
    head = word if cut == -1 else word[:cut]
    return tuple((d, r) for d, r in image
                 if head.startswith(d.rstrip("/") + "/") or head == d or d.startswith(head))


def references(text: str | Lexed, where: Where, tree: Tree,
               memo: dict[tuple[object, ...], list[Ref]] | None = None) -> list[Ref]:
    """Every repository path ``text`` names (one Ref per path, the first mention); ``memo`` keeps
    each word's resolution for later calls with the same variables."""
    lexed = text if isinstance(text, Lexed) else lex(text)
    seen: dict[str, Ref] = {}
    env = dict(where.env)
    if memo is None:
        for number, w, _ in lexed.path_words:
            for ref in resolve_word(w, where, tree, lexed.local, number, split=False):
                seen.setdefault(ref.path, ref)
        return list(seen.values())
    # words whose variables the environment does not set resolve the same for every caller: once
    skey = ("static", lexed.serial, where.here, where.root, where.image, frozenset(env))
    static = memo.get(skey)
    if static is None:
        static = []
        for number, w, names in lexed.path_words:
            if not names & env.keys() and could_name_a_path(w, where, tree):
                static.extend(resolve_word(w, Where(where.here, where.root, _image_key(w, where.image), where.env),
                                           tree, lexed.local, number, split=False))
        memo[skey] = static
    found = list(static)
    for number, w, names in lexed.path_words:
        if not names & env.keys():
            continue
        image = _image_key(w, where.image)
        key = (lexed.serial, number, w, where.here, where.root, image,
               tuple((k, env[k]) for k in sorted(names) if k in env))
        refs = memo.get(key)
        if refs is None:
            refs = memo[key] = (resolve_word(w, Where(where.here, where.root, image, where.env), tree,
                                             lexed.local, number, split=False)
                                if could_name_a_path(w, where, tree) else [])
        found.extend(refs)
    for ref in sorted(found, key=lambda r: r.line):  # the first mention of each path, in text order
        seen.setdefault(ref.path, ref)
    return list(seen.values())


def make_runs(text: str | Lexed, where: Where, tree: Tree, cwd: str | None = None,
              cwd_known: bool = True) -> list[MakeRun]:
    """The ``make`` commands of ``text``: the repository directory each runs in (``cd``, ``pushd``,
    ``popd`` and ``-C`` followed). ``cwd`` is where the text starts (in the image or the
    repository), else ``where.here``; ``cwd_known=False`` (a shell script, run from wherever its
    caller is) leaves a ``make`` before any ``cd`` with no directory."""
    lexed = text if isinstance(text, Lexed) else lex(text)
    out: list[MakeRun] = []
    if not lexed.has_make_or_cd:
        return out
    exp = _Expander(lexed.local, dict(where.env))
    here: str | None = (where.here if cwd is None else _directory(cwd, where, exp, tree)) if cwd_known else None
    stack: list[str | None] = []
    for number, words in lexed.commands:
        ws = list(words)
        while ws and (_ASSIGN.match(ws[0]) and "=" in ws[0] or ws[0] in _WRAPPERS):
            ws.pop(0)
        if not ws:
            continue
        if ws[0] in ("cd", "pushd") and len(ws) > 1:
            if ws[0] == "pushd":
                stack.append(here)
            if here is not None or ws[1].startswith("/") or not cwd_known:
                here = _directory(ws[1], Where(here if here is not None else where.root, where.root, where.image,
                                               where.env), exp, tree)
            continue
        if ws[0] == "popd":
            here = stack.pop() if stack else None
            continue
        if ws[0] in _MAKE_NAMES or ws[0].endswith("/make"):
            args = parse_make_args(ws[1:])
            directory = here
            if args.directory is not None and (here is not None or args.directory.startswith("/")):
                directory = _directory(args.directory, Where(here or "", where.root, where.image, where.env), exp, tree)
            out.append(MakeRun(directory, args, number, " ".join(words)))
    return out


def _directory(word: str, where: Where, exp: _Expander, tree: Tree) -> str | None:
    """The repository directory a ``cd``/``-C`` word names: an existing one when it can, else the
    first candidate (make and cd may name a directory the build creates); None outside it."""
    cands = [c for value in exp.expand(word) for c in _candidates(value, where)]
    existing = [c for c in cands if tree.is_dir(c)]
    found = existing or cands
    return found[0] if found else None
