"""The layers of docs/ARCHITECTURE.md hold: every module is in one layer, imports only point down.

Pure and fast (no engine, no import of the package): the doc's numbered layer list and the
``ci/<name>.py`` mentions under each are parsed, and every ``ci.`` import of ``ci/*.py``,
``tasks.py`` and ``noxfile.py`` is read with :mod:`ast`.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "ARCHITECTURE.md"
PACKAGE = REPO / "ci"
LAYER_NAMES = {1: "Pure core", 2: "Adapters", 3: "Verbs", 4: "Wrappers"}
#: Entry points outside the layer list's module mentions: always wrappers.
WRAPPERS = {"tasks.py": "tasks", "noxfile.py": "noxfile", "ci/__main__.py": "__main__"}
NOT_MODULES = {"__init__", "__main__"}  # the package itself and `python -m ci`

_ITEM = re.compile(r"^(\d+)\. \*\*([^*]+)\*\*")
_MENTION = re.compile(r"\bci/([A-Za-z_][A-Za-z0-9_]*)\.py\b")


def doc_layers() -> dict[int, set[str]]:
    """Layer number -> the modules ``ci/<name>.py`` its item of the doc's numbered list names."""
    layers: dict[int, set[str]] = {}
    current: int | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):  # the list ends at the next heading
            if layers:
                current = None
            continue
        item = _ITEM.match(line)
        if item:
            current = int(item.group(1))
            assert LAYER_NAMES.get(current) == item.group(2).strip(), (
                f"{DOC.name}: layer {current} is called {item.group(2)!r}; expected {LAYER_NAMES.get(current)!r}")
            layers[current] = set()
        if current is not None:
            layers[current].update(_MENTION.findall(line))
    return layers


def module_files() -> set[str]:
    return {p.stem for p in PACKAGE.glob("*.py")} - NOT_MODULES


def layer_of() -> dict[str, int]:
    """Module name (``ci.<name>``'s name; ``tasks``, ``noxfile``, ``__main__`` too) -> layer."""
    out = {name: n for n, names in doc_layers().items() for name in names if name not in NOT_MODULES}
    out.update({name: 4 for name in WRAPPERS.values()})
    return out


def test_the_doc_lists_the_four_layers() -> None:
    assert sorted(doc_layers()) == sorted(LAYER_NAMES), f"{DOC.name}: expected the numbered layers {LAYER_NAMES}"


def test_every_module_is_named_in_exactly_one_layer() -> None:
    layers = doc_layers()
    problems = []
    for name in sorted(module_files()):
        where = [n for n, names in layers.items() if name in names]
        if not where:
            problems.append(f"ci/{name}.py is in no layer of {DOC.relative_to(REPO)}: add it, with what it owns, "
                            "to the layer its imports put it in")
        elif len(where) > 1:
            problems.append(f"ci/{name}.py is named in layers {', '.join(f'{n} ({LAYER_NAMES[n]})' for n in where)}"
                            f" of {DOC.relative_to(REPO)}: name it under one only")
    named = set().union(*layers.values()) - NOT_MODULES
    for name in sorted(named - module_files()):
        problems.append(f"{DOC.relative_to(REPO)} names ci/{name}.py, which does not exist: remove or rename it")
    assert not problems, "\n".join(problems)


def _imported_modules(node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """The ``ci.<name>`` modules one import statement imports (``from ci import x`` included)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif node.level == 0 and node.module == "ci":
        names = [f"ci.{a.name}" for a in node.names if a.name in known]
    elif node.level == 0 and node.module:
        names = [node.module]
    else:  # a relative import: resolved against the package (ci/ modules only)
        base = "ci" if node.level == 1 else ""
        mod = f"{base}.{node.module}" if node.module else base
        names = [mod] if node.module else [f"ci.{a.name}" for a in node.names if a.name in known]
    out = []
    for n in names:
        parts = n.split(".")
        if parts[0] == "ci" and len(parts) > 1:
            out.append(parts[1])
    return out


def _type_checking_imports(tree: ast.AST) -> set[int]:
    """ids of the imports under ``if TYPE_CHECKING:`` (annotations only: never run, so they may
    point anywhere; excluded from the layering check)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                for inner in node.body:
                    skip.update(id(n) for n in ast.walk(inner) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return skip


def sources() -> list[tuple[Path, str]]:
    """(file, module name) of every file whose imports are checked."""
    files = [(p, p.stem) for p in sorted(PACKAGE.glob("*.py")) if p.stem != "__init__"]
    return files + [(REPO / rel, name) for rel, name in WRAPPERS.items() if not rel.startswith("ci/")]


def test_imports_only_point_down() -> None:
    """Every ``ci.`` import -- top-level and function-level (lazy) alike -- goes to the importing
    module's layer or a lower one. ``if TYPE_CHECKING:`` imports are excluded: they never run."""
    layers = layer_of()
    known = module_files()
    problems = []
    for path, name in sources():
        if name not in layers:
            continue  # test_every_module_is_named_in_exactly_one_layer reports it
        mine = layers[name]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _type_checking_imports(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in skip:
                continue
            for target in _imported_modules(node, known):
                theirs = layers.get(target)
                if theirs is None:
                    if target not in known:
                        problems.append(f"{path.relative_to(REPO)}:{node.lineno}: imports ci.{target}, "
                                        "which does not exist")
                    continue  # a module missing from the doc: reported by the test above
                if theirs > mine:
                    problems.append(
                        f"{path.relative_to(REPO)}:{node.lineno}: {name} (layer {mine}, {LAYER_NAMES[mine]}) "
                        f"imports ci.{target} (layer {theirs}, {LAYER_NAMES[theirs]}): imports only point down; "
                        "move the code that needs it to a higher layer (or what it uses to a lower one)")
    assert not problems, "\n".join(problems)


def _init_layers(doc: str) -> dict[int, set[str]] | None:
    """The modules per numbered layer of ci/__init__.py's docstring; None when it lists none."""
    items: dict[int, str] = {}
    current = None
    for line in doc.splitlines():
        m = re.match(r"^\s*(\d+)\.\s", line)
        if m:
            current = int(m.group(1))
            items[current] = line[m.end():]
        elif current is not None:
            items[current] += " " + line
    if not items:
        return None
    names = module_files()
    # the module names of each item; parenthesized remarks ("builder (docker buildx: the build seam)") skipped
    return {n: {w for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", re.sub(r"\([^)]*\)", "", text)) if w in names}
            for n, text in items.items()}


def test_the_package_docstring_agrees_with_the_doc() -> None:
    """ci/__init__.py points to docs/ARCHITECTURE.md (the one home of the module list), or lists
    exactly the same modules per layer."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))) or ""
    listed = _init_layers(doc)
    if listed is None:
        assert "docs/ARCHITECTURE.md" in doc, "ci/__init__.py's docstring should point to docs/ARCHITECTURE.md"
        return
    expected = {n: names - NOT_MODULES for n, names in doc_layers().items()}
    assert listed == expected, f"ci/__init__.py lists the layers as {listed}; {DOC.name} says {expected}"

