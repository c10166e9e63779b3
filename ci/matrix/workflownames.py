"""How a repository's workflows name digest artifacts and download them (pure; reads the files a caller names).

The ``artifact-glob-overmatch`` lint rule asks whether one tag-suffix's merge downloads another
suffix's digest artifacts. That depends on the repository's workflows, not on the matrix: LocalAI
PR #9730 uploaded ``digests<suffix>-<platform-tag>`` and downloaded ``digests<suffix>-*`` (so
``-cpu-vllm``'s merge picked up ``-cpu-vllm-omni``'s digests); LocalAI later named them
``digests<suffix>--<platform-tag || 'single'>`` and downloads ``digests<suffix>--*``, which no other
suffix's artifact matches; this project's workflows use the names ``invoke matrix.github``
computes (:mod:`ci.matrix.naming`).

:func:`read_workflows` reads a workflows directory; :func:`artifact_templates` finds every
``actions/upload-artifact`` ``name:`` and ``actions/download-artifact`` ``pattern:`` whose value
is an expression (``digests${{ inputs.tag-suffix }}--*``), with its file and line;
:func:`instantiate` evaluates one for a leg: GitHub's expression syntax (string literals,
``matrix.x``, ``inputs.x``, ``fromJSON(...)['x']``, ``needs.j.outputs.x``, ``==``, ``!=``, ``!``,
``&&``, ``||`` with GitHub's semantics: comparisons ignore case, ``a || b`` is ``a`` when it is
truthy). A reusable workflow's ``inputs.x`` is what its callers pass (``with: x:`` of every job that
``uses:`` it, evaluated the same way); with no caller it is the leg's field ``x``. A property named
like a matrix field is the leg's value as written (``''`` when the entry leaves it out);
``artifact-name`` and ``*artifact-pattern`` / ``*merge-pattern`` are the names and the download
pattern ``invoke matrix.github`` outputs. Anything else cannot be evaluated, and the template is
reported as not checked rather than guessed.
"""
from __future__ import annotations

import fnmatch
import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import MatrixError
from .model import Entry, compose_yaml, known_keys
from .naming import Family, artifact_name, artifact_pattern

MAX_WORKFLOW_BYTES = 1024 * 1024
MAX_WORKFLOWS = 500
MAX_EXPRESSION_DEPTH = 50  # the Actions runner's own limit on an expression's nesting (ExpressionConstants.MaxDepth)
_EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)
_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||[!()\[\].,])|(?P<num>\d+(?:\.\d+)?)|"
                    r"(?P<id>[A-Za-z_][A-Za-z0-9_-]*))")
#: a template is the digest artifacts' when it says so (others -- coverage reports, tarballs -- are not checked)
_DIGEST_HINT = re.compile(r"digest|tag-suffix|artifact-name|artifact-pattern|merge-pattern|pattern", re.I)


@dataclass(frozen=True)
class Template:
    """An artifact name (``upload``) or download pattern (``download``) as a workflow writes it."""

    kind: str  # upload | download
    file: str  # the workflow, as named to read_workflows ("<dir>/backend_build.yml")
    line: int
    text: str


@dataclass(frozen=True)
class ArtifactNaming:
    """Every digest artifact name and download pattern of a repository's workflows."""

    source: str  # the directory read
    uploads: tuple[Template, ...] = ()
    downloads: tuple[Template, ...] = ()
    notes: tuple[str, ...] = ()
    workflows: Mapping[str, object] = field(default_factory=dict, compare=False)  # file -> its document

    @property
    def names_artifacts(self) -> bool:
        return bool(self.uploads and self.downloads)


class Unevaluable(ValueError):
    """An expression this module cannot evaluate for a leg (the template is then not checked)."""


# --- reading --------------------------------------------------------------------------------------

def read_workflows(directory: str | Path) -> dict[str, str]:
    """The text of every ``*.yml``/``*.yaml`` file directly in ``directory`` (the caller names it),
    each at most :data:`MAX_WORKFLOW_BYTES`; a file that cannot be read is left out. MatrixError
    (exit 2) when ``directory`` is not a directory."""
    d = Path(directory)
    if not d.is_dir():
        raise MatrixError(f"--workflows {directory}: not a directory; name the repository's .github/workflows "
                          "(the directory whose workflows upload and download the digest artifacts)")
    out: dict[str, str] = {}
    for p in sorted(d.iterdir())[:MAX_WORKFLOWS * 4]:
        if p.suffix not in (".yml", ".yaml") or not p.is_file() or p.is_symlink():
            continue
        try:
            if p.stat().st_size > MAX_WORKFLOW_BYTES:
                continue
            out[str(p)] = p.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if len(out) >= MAX_WORKFLOWS:
            break
    return out


def yaml_plain(node: yaml.Node | None) -> object:
    """A composed YAML node as plain data (mappings, lists, scalar strings), never constructing objects."""
    if isinstance(node, yaml.MappingNode):
        return {str(getattr(k, "value", "")): yaml_plain(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [yaml_plain(v) for v in node.value]
    if isinstance(node, yaml.ScalarNode):
        return node.value
    return None


def _get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if getattr(k, "value", None) == key:
                return v
    return None


def _action(uses: str) -> str:
    return uses.split("@", 1)[0].strip().lower()


def artifact_templates(workflows: Mapping[str, str], source: str = "") -> ArtifactNaming:
    """The digest artifact names and download patterns of ``workflows`` (file -> text)."""
    uploads: list[Template] = []
    downloads: list[Template] = []
    notes: list[str] = []
    docs: dict[str, object] = {}
    for path, text in workflows.items():
        try:
            root = compose_yaml(text, path)
        except MatrixError as exc:
            notes.append(f"{path} is not readable YAML ({exc}); its artifacts are not checked")
            continue
        docs[path] = yaml_plain(root)
        jobs = _get(root, "jobs")
        if not isinstance(jobs, yaml.MappingNode):
            continue
        for _, job in jobs.value:
            steps = _get(job, "steps")
            if not isinstance(steps, yaml.SequenceNode):
                continue
            for step in steps.value:
                uses = _get(step, "uses")
                if not isinstance(uses, yaml.ScalarNode):
                    continue
                with_ = _get(step, "with")
                action = _action(uses.value)
                key, bucket, kind = (("name", uploads, "upload") if action == "actions/upload-artifact" else
                                     ("pattern", downloads, "download") if action == "actions/download-artifact" else
                                     ("", uploads, ""))
                value = _get(with_, key) if key else None
                if not isinstance(value, yaml.ScalarNode) or "${{" not in value.value:
                    continue  # no pattern (a download by exact name cannot over-match), or a fixed name
                if not _DIGEST_HINT.search(value.value):
                    continue
                bucket.append(Template(kind, path, value.start_mark.line + 1, value.value.strip()))
    return ArtifactNaming(source=source, uploads=tuple(uploads), downloads=tuple(downloads), notes=tuple(notes),
                          workflows=docs)


# --- evaluating -------------------------------------------------------------------------------------

def _tokens(expr: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    expr = expr.strip()
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if not m or m.end() == pos:
            raise Unevaluable(f"cannot read {expr[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    return out


Value = str | bool


def _truthy(v: Value) -> bool:
    return bool(v) if isinstance(v, bool) else v != ""


def _text(v: Value) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else v


class _Eval:
    """A recursive-descent evaluator of one ``${{ }}`` expression for one leg."""

    def __init__(self, tokens: list[tuple[str, str]], resolve: object) -> None:
        self.t = tokens
        self.i = 0
        self.resolve = resolve  # (root, properties) -> Value
        self.depth = 0  # parentheses open: bounded, as GitHub bounds it (the recursion goes no deeper)

    def peek(self) -> str:
        return self.t[self.i][1] if self.i < len(self.t) else ""

    def take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.t) or (want is not None and self.t[self.i][1] != want):
            raise Unevaluable(f"expected {want or 'more'} at {self.peek()!r}")
        self.i += 1
        return self.t[self.i - 1]

    def run(self) -> Value:
        v = self.or_()
        if self.i != len(self.t):
            raise Unevaluable(f"unexpected {self.peek()!r}")
        return v

    def or_(self) -> Value:
        v = self.and_()
        while self.peek() == "||":
            self.take()
            w = self.and_()
            v = v if _truthy(v) else w
        return v

    def and_(self) -> Value:
        v = self.cmp()
        while self.peek() == "&&":
            self.take()
            w = self.cmp()
            v = w if _truthy(v) else v
        return v

    def cmp(self) -> Value:
        v = self.unary()
        if self.peek() in ("==", "!="):
            op = self.take()[1]
            w = self.unary()
            same = _text(v).lower() == _text(w).lower()
            return same if op == "==" else not same
        return v

    def unary(self) -> Value:
        negations = 0
        while self.peek() == "!":  # counted, not recursed into: '!' * 5000 is one step
            self.take()
            negations += 1
        v = self.primary()
        return v if not negations else (not _truthy(v)) if negations % 2 else _truthy(v)

    def primary(self) -> Value:
        kind, tok = self.take()
        if tok == "(":
            self.depth += 1
            if self.depth > MAX_EXPRESSION_DEPTH:
                raise Unevaluable(f"parentheses nested more than {MAX_EXPRESSION_DEPTH} deep (GitHub refuses such an "
                                  "expression too)")
            v = self.or_()
            self.take(")")
            self.depth -= 1
            return v
        if kind == "str":
            return tok[1:-1].replace("''", "'")
        if kind == "num":
            return tok
        if kind != "id":
            raise Unevaluable(f"unexpected {tok!r}")
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "null":
            return ""
        root = tok
        if self.peek() == "(":  # fromJSON(x)['k'] is the field k of whatever x holds
            if tok.lower() != "fromjson":
                raise Unevaluable(f"function {tok}() is not evaluated here")
            self.take("(")
            depth = 1
            while depth:
                k, t = self.take()
                depth += (t == "(") - (t == ")")
            root = "fromJSON"
        props: list[str] = []
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                props.append(self.take()[1])
            else:
                k, t = self.take()
                if k != "str":
                    raise Unevaluable("an index other than a string literal")
                props.append(t[1:-1])
                self.take("]")
        return self.resolve(root, props)  # type: ignore[operator, no-any-return]


@dataclass(frozen=True)
class Leg:
    """What a template is evaluated for: a leg's fields as written, its family and platform tag."""

    family: Family
    suffix: str
    ptag: str
    fields: Mapping[str, str]

    @classmethod
    def of(cls, entry: Entry) -> Leg:
        fields = {k: entry.get(k) for k in known_keys(entry.family)}
        fields["platform-tag"] = entry.platform_tag_field
        return cls(entry.family, entry.tag_suffix, entry.ptag, fields)


class Evaluator:
    """Evaluates templates of one repository's workflows (callers of reusable workflows followed)."""

    def __init__(self, naming: ArtifactNaming) -> None:
        self.naming = naming
        self._callers: dict[str, list[tuple[str, Mapping[str, object]]]] = {}  # workflow -> (caller, with:)
        for path, doc in naming.workflows.items():
            jobs = doc.get("jobs") if isinstance(doc, dict) else None
            if not isinstance(jobs, dict):
                continue
            for job in jobs.values():
                if isinstance(job, dict) and isinstance(job.get("uses"), str) and job["uses"].startswith("./"):
                    target = posixpath.basename(job["uses"].split("@", 1)[0])
                    with_ = job.get("with") if isinstance(job.get("with"), dict) else {}
                    self._callers.setdefault(target, []).append((posixpath.basename(path), with_ or {}))

    def instantiate(self, template: Template, leg: Leg) -> tuple[str, ...]:
        """Every value ``template`` takes for ``leg`` (one per distinct caller value); Unevaluable."""
        return tuple(dict.fromkeys(self._template(template.text, posixpath.basename(template.file), leg, 0)))

    def _template(self, text: str, workflow: str, leg: Leg, depth: int) -> list[str]:
        if depth > 4:
            raise Unevaluable("inputs passed through more than 4 reusable workflows")
        outs = [""]
        pos = 0
        for m in _EXPR.finditer(text):
            lit = text[pos:m.start()]
            values = self._expr(m.group(1), workflow, leg, depth)
            outs = [o + lit + v for o in outs for v in values]
            pos = m.end()
        return [o + text[pos:] for o in outs]

    def _passed(self, workflow: str, name: str, leg: Leg, depth: int) -> list[str] | None:
        """What the callers of ``workflow`` pass as input ``name`` (None: no caller passes it)."""
        passed = [(caller, w[name]) for caller, w in self._callers.get(workflow, []) if name in w]
        if not passed:
            return None
        out: list[str] = []
        for caller, value in passed:
            text = "" if value is None else str(value)
            out.extend(self._template(text, caller, leg, depth + 1) if "${{" in text else [text])
        return list(dict.fromkeys(out))

    def _expr(self, expr: str, workflow: str, leg: Leg, depth: int) -> list[str]:
        tokens = _tokens(expr)
        choices: dict[str, list[str]] = {}
        for name in sorted(set(re.findall(r"\binputs\.([A-Za-z_][A-Za-z0-9_-]*)", expr))):
            try:
                passed = self._passed(workflow, name, leg, depth)
            except Unevaluable:
                continue  # left to the field of that name, if the expression needs it at all
            if passed is not None:
                choices[name] = passed
        variants: list[dict[str, str]] = [{}]
        for name, values in choices.items():
            variants = [{**v, name: x} for v in variants for x in values]
        results: list[str] = []
        for bound in variants:
            def resolve(root: str, props: list[str], bound: Mapping[str, str] = bound) -> Value:
                if root == "inputs" and len(props) == 1 and props[0] in bound:
                    return bound[props[0]]
                return self._field(root, props, leg)
            results.append(_text(_Eval(tokens, resolve).run()))
        return list(dict.fromkeys(results))

    @staticmethod
    def _field(root: str, props: Sequence[str], leg: Leg) -> Value:
        if not props:
            raise Unevaluable(f"{root} alone")
        name = props[-1]
        if name == "artifact-name":
            return artifact_name(leg.family, leg.suffix, leg.ptag)
        if name.endswith(("artifact-pattern", "merge-pattern")):
            return artifact_pattern(leg.family, leg.suffix)
        if root in ("matrix", "inputs", "fromJSON") and name in leg.fields:
            return leg.fields[name]
        raise Unevaluable(f"{root}.{'.'.join(props)} is not a field of the leg")


def is_over_match(pattern: str, name: str) -> bool:
    """Whether an ``actions/download-artifact`` pattern matches an artifact name (its glob rules for
    names without ``/``: ``*``, ``?``, ``[...]``)."""
    return fnmatch.fnmatchcase(name, pattern)
