"""Is a ``.proto`` edit additive only? (pure)

A gRPC contract edit that only adds (a field with a new number, a message, an enum value,
an RPC, a service) changes no existing backend's behaviour: a backend that does not use the
addition answers exactly as before (proto3 ignores unknown fields; an RPC it does not
implement is UNIMPLEMENTED in the old and the new image alike), and a backend that starts
using it changes its own sources, which selects it anyway. Any other edit (a removed,
renumbered, retyped or renamed field, a dropped RPC, a changed option or reserved range) can
break the wire contract between the server and an image built from the old text.

The comparison is structural, like LocalAI's own (``scripts/lib/backend-filter.mjs``
``protoChangeIsAdditive``): each declaration (``message``, ``enum``, ``service``, ``oneof``,
``extend``, ``rpc``) and each statement (fields, enum values, ``option``, ``reserved``) is a
symbol keyed by its container path and name, fingerprinted by its whitespace-normalised
text; comments, blank lines and reordering are not changes. A statement is identified by
the name left of its ``=`` (``bool cache_prompt = 8`` by ``cache_prompt``), so renumbering or
retyping it changes its fingerprint under the same key, and renaming it removes a key.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_RPC = re.compile(r"^rpc\s+([A-Za-z_]\w*)")
_DECL = re.compile(r"^(message|enum|service|oneof|extend)\s+([A-Za-z_][\w.]*)")


def _norm(s: str) -> str:
    return " ".join(s.split())


def _decl_key(header: str) -> str:
    m = _RPC.match(header)
    if m:
        return f"rpc {m.group(1)}"
    m = _DECL.match(header)
    if m:
        return f"{m.group(1)} {m.group(2)}"
    return header


def _stmt_key(stmt: str) -> str:
    eq = stmt.find("=")
    if eq == -1:
        return stmt
    lhs = _norm(stmt[:eq]).split(" ")
    return lhs[-1] or stmt


def proto_symbols(text: str) -> dict[str, str]:
    """``{"container/path|key": fingerprint}`` for every declaration and statement of ``text``."""
    symbols: dict[str, str] = {}
    stack: list[str] = []
    buf: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            buf.append(text[i:j + 1])
            i = j + 1
            continue
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j == -1 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j == -1 else j + 2
            continue
        if c == "{":
            header = _norm("".join(buf))
            buf = []
            key = _decl_key(header) if header else ""
            if header:
                symbols["/".join(stack) + "|" + key] = header
            stack.append(key)
        elif c == "}":
            if stack:
                stack.pop()
            buf = []
        elif c == ";":
            stmt = _norm("".join(buf))
            buf = []
            if stmt:
                symbols["/".join(stack) + "|" + _stmt_key(stmt)] = stmt
        else:
            buf.append(c)
        i += 1
    return symbols


@dataclass(frozen=True)
class ProtoChange:
    additive: bool
    added: tuple[str, ...] = ()  # symbols new in the current text
    broken: tuple[str, ...] = ()  # symbols removed or changed (empty when additive)

    def describe(self) -> str:
        def names(keys: tuple[str, ...]) -> str:
            shown = [k.split("|", 1)[1] if "|" in k else k for k in keys[:4]]
            return ", ".join(shown) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")
        if self.additive:
            return f"additive only (adds {names(self.added)})" if self.added else "no structural change"
        return f"not additive ({names(self.broken)} removed or changed)"


def compare_proto(previous: str | None, current: str | None) -> ProtoChange:
    """Compare two revisions of a .proto; an unreadable side is never additive."""
    if previous is None or current is None:
        return ProtoChange(additive=False, broken=("(a revision could not be read)",))
    before = proto_symbols(previous)
    after = proto_symbols(current)
    broken = tuple(k for k, v in before.items() if after.get(k) != v)
    added = tuple(k for k in after if k not in before)
    return ProtoChange(additive=not broken, added=added if not broken else (), broken=broken)
