"""The layers of docs/ARCHITECTURE.md hold: every module is in one layer, imports only point down,
and each package holds only the layers the doc's package table gives it.

Pure and fast (no engine, no import of the package): the doc's numbered layer list and the
``ci/<package>/<module>.py`` mentions under each are parsed, and every import of the package's
modules (relative inside ``ci/``; ``localai_ci.`` in ``tasks.py`` and ``noxfile.py``) is read with
:mod:`ast`.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "ARCHITECTURE.md"
PACKAGE = REPO / "ci"
IMPORT_NAME = "localai_ci"  # what ci/ installs as (pyproject.toml's package-dir)
LAYER_NAMES = {1: "Pure core", 2: "Adapters", 3: "Verbs", 4: "Wrappers"}
#: Entry points outside the layer list's module mentions: always wrappers.
WRAPPERS = {"tasks.py": "tasks", "noxfile.py": "noxfile", "ci/__main__.py": "__main__"}
NOT_MODULES = {"__main__"}  # `python -m localai_ci`: a wrapper (WRAPPERS), named in the doc as one

_ITEM = re.compile(r"^(\d+)\. \*\*([^*]+)\*\*")
_MENTION = re.compile(r"\bci/((?:[a-z_]+/)*[A-Za-z_][A-Za-z0-9_]*)\.py\b")
_PACKAGE_ROW = re.compile(r"^\| `ci/([a-z_]+)/` \| ([^|]+) \|")


def doc_layers() -> dict[int, set[str]]:
    """Layer number -> the modules (``pkg.mod``) its item of the doc's numbered list names."""
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
            layers[current].update(m.replace("/", ".") for m in _MENTION.findall(line))
    return layers


def doc_packages() -> dict[str, set[int]]:
    """Package -> the layers the doc's package table allows in it (``| `ci/oci/` | 1, 2 | ...``)."""
    out: dict[str, set[int]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = _PACKAGE_ROW.match(line)
        if m:
            out[m.group(1)] = {int(n) for n in re.findall(r"\d", m.group(2))}
    return out


def module_files() -> dict[str, Path]:
    """``pkg.mod`` (``mod`` at the top level) -> its file; packages' ``__init__`` files are not modules."""
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE).with_suffix("")
        if rel.name == "__init__" or rel.name in NOT_MODULES:
            continue
        out[".".join(rel.parts)] = p
    return out


def packages() -> list[str]:
    return sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists())


def layer_of() -> dict[str, int]:
    """Module (``pkg.mod``; ``tasks``, ``noxfile``, ``__main__`` too) -> layer."""
    out = {name: n for n, names in doc_layers().items() for name in names if name not in NOT_MODULES}
    out.update({name: 4 for name in WRAPPERS.values()})
    return out


def test_the_doc_lists_the_four_layers() -> None:
    assert sorted(doc_layers()) == sorted(LAYER_NAMES), f"{DOC.name}: expected the numbered layers {LAYER_NAMES}"


def test_every_module_is_named_in_exactly_one_layer() -> None:
    layers = doc_layers()
    problems = []
    files = module_files()
    for name in files:
        where = [n for n, names in layers.items() if name in names]
        path = f"ci/{name.replace('.', '/')}.py"
        if not where:
            problems.append(f"{path} is in no layer of {DOC.relative_to(REPO)}: add it, with what it owns, "
                            "to the layer its imports put it in")
        elif len(where) > 1:
            problems.append(f"{path} is named in layers {', '.join(f'{n} ({LAYER_NAMES[n]})' for n in where)}"
                            f" of {DOC.relative_to(REPO)}: name it under one only")
    for name in sorted(set().union(*layers.values()) - set(files) - NOT_MODULES):
        problems.append(f"{DOC.relative_to(REPO)} names ci/{name.replace('.', '/')}.py, which does not exist: "
                        "remove or rename it")
    assert not problems, "\n".join(problems)


def test_every_package_holds_only_its_layers() -> None:
    """The folders show the layers: each package's row in the doc's package table gives the layers
    its modules may be in, and every package has a row."""
    table = doc_packages()
    layers = layer_of()
    problems = [f"ci/{p}/ has no row in {DOC.name}'s package table" for p in packages() if p not in table]
    problems += [f"{DOC.name}'s package table names ci/{p}/, which does not exist" for p in table if p not in packages()]
    for name in module_files():
        pkg = name.split(".")[0] if "." in name else None
        if pkg in table and name in layers and layers[name] not in table[pkg]:
            problems.append(f"ci/{name.replace('.', '/')}.py is in layer {layers[name]} ({LAYER_NAMES[layers[name]]}),"
                            f" which ci/{pkg}/ does not hold (its row says {sorted(table[pkg])})")
    assert not problems, "\n".join(problems)


def _imported_modules(node: ast.Import | ast.ImportFrom, importer: str, known: set[str]) -> list[str]:
    """The package's modules (``pkg.mod``) one import statement imports: relative ones resolved
    against ``importer`` (``pkg.mod`` inside ``ci/``; '' for files outside it), ``localai_ci.`` ones
    as they are; ``from .pkg import mod`` names the module ``pkg.mod``."""
    if isinstance(node, ast.Import):
        bases = [a.name for a in node.names]
        names: list[str] = [b[len(IMPORT_NAME) + 1:] for b in bases if b.startswith(IMPORT_NAME + ".")]
    else:
        if node.level:
            here = importer.split(".")[:-1]  # the importer's package path
            up = here[:len(here) - (node.level - 1)] if node.level > 1 else here
            if node.level - 1 > len(here):
                return [f"<beyond the package: {'.' * node.level}{node.module or ''}>"]
            base = ".".join([*up, *(node.module.split(".") if node.module else [])])
        elif node.module and (node.module == IMPORT_NAME or node.module.startswith(IMPORT_NAME + ".")):
            base = node.module[len(IMPORT_NAME) + 1:]
        else:
            return []
        names = []
        for a in node.names:
            sub = f"{base}.{a.name}" if base else a.name
            names.append(sub if sub in known else base)
    return [n for n in names if n]


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


def sources() -> list[tuple[Path, str, str]]:
    """(file, module name, the name relative imports resolve against) of every file whose imports are checked."""
    files = [(p, name, name) for name, p in module_files().items()]
    files.append((PACKAGE / "__main__.py", "__main__", "__main__"))
    return files + [(REPO / rel, name, "") for rel, name in WRAPPERS.items() if not rel.startswith("ci/")]


def test_imports_only_point_down() -> None:
    """Every import of the package's modules -- top-level and function-level (lazy) alike -- goes to
    the importing module's layer or a lower one. ``if TYPE_CHECKING:`` imports are excluded."""
    layers = layer_of()
    known = set(module_files()) | set(packages())
    problems = []
    for path, name, importer in sources():
        if name not in layers:
            continue  # test_every_module_is_named_in_exactly_one_layer reports it
        mine = layers[name]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        skip = _type_checking_imports(tree)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in skip:
                continue
            for target in _imported_modules(node, importer, known):
                if target in packages():
                    continue  # a package's __init__ (a docstring)
                theirs = layers.get(target)
                if theirs is None:
                    if target not in known:
                        problems.append(f"{path.relative_to(REPO)}:{node.lineno}: imports {target}, which does not exist")
                    continue  # a module missing from the doc: reported by the test above
                if theirs > mine:
                    problems.append(
                        f"{path.relative_to(REPO)}:{node.lineno}: {name} (layer {mine}, {LAYER_NAMES[mine]}) "
                        f"imports {target} (layer {theirs}, {LAYER_NAMES[theirs]}): imports only point down; "
                        "move the code that needs it to a higher layer (or what it uses to a lower one)")
    assert not problems, "\n".join(problems)


def test_inside_the_package_every_import_is_relative() -> None:
    """ci/ works under whatever name it is installed as: no module imports it by an absolute name."""
    problems = []
    for name, path in module_files().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            problems += [f"{path.relative_to(REPO)}:{node.lineno}: import {m}" for m in mods
                         if m.split(".")[0] in (IMPORT_NAME, "ci")]
    assert not problems, "\n".join(problems)


def test_the_package_docstring_points_to_the_doc() -> None:
    """ci/__init__.py points to docs/ARCHITECTURE.md, the one home of the module list."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))) or ""
    assert "docs/ARCHITECTURE.md" in doc, "ci/__init__.py's docstring should point to docs/ARCHITECTURE.md"


def test_every_package_is_installed() -> None:
    """pyproject.toml's package list names every package under ci/ (a new one would be left out of the wheel)."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    listed = set(re.findall(r'"localai_ci(?:\.([a-z_]+))?"', text.split("packages = [", 1)[1].split("]", 1)[0]))
    assert listed == {""} | set(packages()), f"pyproject.toml lists {sorted(listed)}; ci/ has {packages()}"
