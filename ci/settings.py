"""A repository's settings: where its matrices are, where each image family is published, the
build-arg defaults its workflows give every leg, its runner policy (pure core).

One documented place per repository, every key optional: ``.github/localai-ci.yml`` under the
repository root (:data:`SETTINGS_FILE`; the README's "Settings" section lists the keys). What it
does not say is discovered from the repository (LocalAI's matrix at ``.github/backend-matrix.yml``,
else this project's layout, ``backends/matrix.yml``) or is LocalAI's own default. For each value, a
command-line option wins over the environment (``CI_BACKEND_IMAGES``, ...), which wins over the
settings file, which wins over the defaults. The functions take ``env`` as a mapping instead of
reading ``os.environ``; the settings file is the one file read here, by the path the caller gives.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UserError
from .matrix.lint import RunnerAllowance
from .matrix.model import Matrix, compose_yaml
from .matrix.naming import Family, check_suffix
from .oci.platforms import Arch, RunnerPolicy
from .oci.reference import ImageName, is_loopback, parse_image_name, registry_set, uses_plain_http
from .textfile import read_user_text

SETTINGS_FILE = ".github/localai-ci.yml"
MAX_SETTINGS_BYTES = 256 * 1024
#: where a family's matrix is looked for when the settings name none, first found wins
MATRIX_CANDIDATES: dict[Family, tuple[str, ...]] = {
    Family.BACKENDS: (".github/backend-matrix.yml", "backends/matrix.yml"),
    Family.SERVER: ("backends/images.yml",),
}
#: the build args LocalAI's backend workflow gives every leg whose matrix entry leaves them empty
#: (backend.yml: ``amdgpu-targets: ${{ matrix.amdgpu-targets || '...' }}``)
DEFAULT_BUILD_ARGS: dict[Family, tuple[tuple[str, str], ...]] = {
    Family.BACKENDS: (("AMDGPU_TARGETS",
                       "gfx908,gfx90a,gfx942,gfx950,gfx1030,gfx1100,gfx1101,gfx1102,gfx1151,gfx1200,gfx1201"),),
    Family.SERVER: (),
}
_BUILD_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_RUNNER = re.compile(r"^[A-Za-z0-9._-]{1,100}$")

DEFAULT_IMAGES: dict[Family, tuple[str, ...]] = {
    Family.BACKENDS: ("quay.io/go-skynet/local-ai-backends", "localai/localai-backends"),
    Family.SERVER: ("quay.io/go-skynet/local-ai", "localai/localai"),
}
DEFAULT_CACHE = "quay.io/go-skynet/ci-cache"
DEFAULT_PR_IMAGE = "quay.io/go-skynet/ci-tests"

ENV_IMAGES = {Family.BACKENDS: "CI_BACKEND_IMAGES", Family.SERVER: "CI_SERVER_IMAGES"}
ENV_CACHE = "CI_CACHE_IMAGE"
ENV_PR_IMAGE = "CI_PR_IMAGE"
ENV_INSECURE = "CI_INSECURE_REGISTRIES"
ENV_TLS = "CI_TLS_REGISTRIES"


@dataclass(frozen=True)
class FamilyConfig:
    """Where one image family is published."""

    family: Family
    images: tuple[ImageName, ...]
    cache: ImageName
    pr_image: ImageName
    insecure: frozenset[str] = frozenset()
    tls: frozenset[str] = frozenset()  # loopback registries that serve TLS
    #: build args every leg gets where its matrix entry gives none (the settings' ``build-args``,
    #: else LocalAI's workflow defaults: ``AMDGPU_TARGETS``)
    build_arg_defaults: tuple[tuple[str, str], ...] = ()

    @property
    def registries(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.registry for i in self.images))

    def plain_http(self, registry: str) -> bool:
        return uses_plain_http(registry, self.insecure, self.tls)


def _parse_list(text: str, what: str) -> tuple[ImageName, ...]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UserError(f"{what}: no image given; pass one or more repositories separated by commas")
    out: list[ImageName] = []
    for n in names:
        try:
            img = parse_image_name(n)
        except ValueError as exc:
            raise UserError(f"{what}: {exc}") from exc
        if img in out:
            raise UserError(f"{what}: {n!r} is listed twice")
        out.append(img)
    return tuple(out)


def _parse_one(text: str, what: str) -> ImageName:
    try:
        return parse_image_name(text)
    except ValueError as exc:
        raise UserError(f"{what}: {exc}") from exc


def family_config(family: Family, *, images: str | None = None, cache: str | None = None,
                  pr_image: str | None = None, insecure: str | None = None,
                  env: Mapping[str, str] | None = None, settings: Settings | None = None) -> FamilyConfig:
    """Resolve a family's registries: flag, else environment, else the settings file, else LocalAI's defaults."""
    env = env or {}
    settings = settings or Settings()
    configured = settings.family(family)
    if images:
        imgs = _parse_list(images, "--images")
    elif env.get(ENV_IMAGES[family]):
        imgs = _parse_list(env[ENV_IMAGES[family]], ENV_IMAGES[family])
    elif configured.images:
        imgs = _parse_list(",".join(configured.images), f"{settings.source}: {family}.images")
    else:
        imgs = _parse_list(",".join(DEFAULT_IMAGES[family]), "default images")
    cache_text = cache or env.get(ENV_CACHE) or settings.cache_image
    cache_img = _parse_one(cache_text, "--cache-image" if cache else ENV_CACHE if env.get(ENV_CACHE) else
                           f"{settings.source}: cache-image") if cache_text else None
    if cache_img is None:
        # local runs point images at loopback registries: keep the cache beside the first image
        first = imgs[0]
        cache_img = ImageName(first.registry, "ci-cache") if is_loopback(first.registry) else parse_image_name(DEFAULT_CACHE)
    pr_text = pr_image or env.get(ENV_PR_IMAGE) or settings.pr_image
    pr_img = _parse_one(pr_text, "--pr-image" if pr_image else ENV_PR_IMAGE if env.get(ENV_PR_IMAGE) else
                        f"{settings.source}: pr-image") if pr_text else None
    if pr_img is None:
        first = imgs[0]
        pr_img = ImageName(first.registry, "ci-tests") if is_loopback(first.registry) else parse_image_name(DEFAULT_PR_IMAGE)
    insec = registry_set(insecure if insecure is not None else env.get(ENV_INSECURE, ""))
    return FamilyConfig(family=family, images=imgs, cache=cache_img, pr_image=pr_img, insecure=insec,
                        tls=registry_set(env.get(ENV_TLS, "")), build_arg_defaults=settings.build_arg_defaults(family))


# ---- the settings file ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FamilySettings:
    """One image family's part of the settings file (``backends:`` / ``server:``)."""

    matrix: str = ""  # relative to the repository root
    images: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] | None = None  # None: LocalAI's defaults (DEFAULT_BUILD_ARGS)


@dataclass(frozen=True)
class RunnerException:
    """A leg allowed on a runner the policy would move it off (``runners: allow:``)."""

    tag_suffix: str
    runs_on: str
    reason: str
    line: int = 0


@dataclass(frozen=True)
class Settings:
    """A repository's settings (:data:`SETTINGS_FILE`), with what it leaves out discovered or defaulted."""

    root: Path = Path(".")
    source: str = ""  # the settings file read ('' when the repository has none)
    families: Mapping[Family, FamilySettings] = field(default_factory=dict)
    cache_image: str = ""
    pr_image: str = ""
    runner_amd64: str = ""
    runner_arm64: str = ""
    retired: tuple[str, ...] | None = None
    exceptions: tuple[RunnerException, ...] = ()

    def family(self, family: Family) -> FamilySettings:
        return self.families.get(family, FamilySettings())

    def matrix_path(self, family: Family) -> Path:
        """The family's matrix: the settings' path, else the first candidate that exists (LocalAI's
        ``.github/backend-matrix.yml``, this project's ``backends/matrix.yml``), else the last
        candidate (absent: the caller reports it)."""
        given = self.family(family).matrix
        if given:
            return self.root / given
        for rel in MATRIX_CANDIDATES[family]:
            if (self.root / rel).is_file():
                return self.root / rel
        return self.root / MATRIX_CANDIDATES[family][-1]

    def build_arg_defaults(self, family: Family) -> tuple[tuple[str, str], ...]:
        given = self.family(family).build_args
        return DEFAULT_BUILD_ARGS[family] if given is None else given

    def runner_policy(self) -> RunnerPolicy:
        base = RunnerPolicy()
        native = dict(base.native)
        if self.runner_amd64:
            native[Arch.AMD64] = self.runner_amd64
        if self.runner_arm64:
            native[Arch.ARM64] = self.runner_arm64
        return RunnerPolicy(native=native, retired=base.retired if self.retired is None else self.retired,
                            extra=dict(base.extra))

    def runner_allowances(self, matrix: Matrix) -> dict[tuple[str, str], RunnerAllowance]:
        """The runner exceptions of ``runners: allow:`` for the legs of ``matrix`` they name, as lint and
        split read the matrix's own ``# localai-ci: allow-runner`` markers (a marker wins)."""
        out: dict[tuple[str, str], RunnerAllowance] = {}
        for exc in self.exceptions:
            for e in matrix.legs_of(exc.tag_suffix):
                out[(e.tag_suffix, e.ptag)] = RunnerAllowance(runner=exc.runs_on, reason=exc.reason,
                                                              source=f"{self.source} line {exc.line}")
        return out


_TOP_KEYS = ("backends", "server", "cache-image", "pr-image", "runners")
_FAMILY_KEYS = ("matrix", "images", "build-args")
_RUNNER_KEYS = ("amd64", "arm64", "retired", "allow")
_ALLOW_KEYS = ("tag-suffix", "runs-on", "reason")


def settings_path(root: str | Path) -> Path:
    return Path(root) / SETTINGS_FILE


def load_settings(root: str | Path = ".") -> Settings:
    """The settings of the repository at ``root``: its :data:`SETTINGS_FILE` when it has one (every
    mistake a :class:`UserError` naming the file, line and key), else the defaults."""
    root = Path(root)
    path = settings_path(root)
    if not path.exists():
        return Settings(root=root)
    text = read_user_text(path, what="settings file", limit=MAX_SETTINGS_BYTES, error=UserError,
                          missing_hint="create it or remove it (see the README's Settings)")
    return parse_settings(text, str(path), root)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _where(source: str, node: yaml.Node, key: str) -> str:
    return f"{source} line {_line(node)}: {key}"


def _mapping(node: yaml.Node, source: str, key: str, known: tuple[str, ...]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise UserError(f"{_where(source, node, key)} must be a mapping of {', '.join(known)}")
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for k, v in node.value:
        name = k.value if isinstance(k, yaml.ScalarNode) else ""
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            raise UserError(f"{_where(source, k, key)}: unknown key {name!r}; {hint}")
        if name in out:
            raise UserError(f"{_where(source, k, key)}: {name!r} is given twice; keep one")
        out[name] = (k, v)
    return out


def _string(node: yaml.Node, source: str, key: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag not in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int"):
        raise UserError(f"{_where(source, node, key)} must be a string")
    return str(node.value)


def _strings(node: yaml.Node, source: str, key: str) -> tuple[str, ...]:
    if isinstance(node, yaml.ScalarNode):  # one value, or a comma list as the CI_* variables take
        return tuple(v.strip() for v in _string(node, source, key).split(",") if v.strip())
    if not isinstance(node, yaml.SequenceNode):
        raise UserError(f"{_where(source, node, key)} must be a list of strings")
    return tuple(_string(n, source, key) for n in node.value)


def _image(text: str, node: yaml.Node, source: str, key: str) -> str:
    try:
        parse_image_name(text)
    except ValueError as exc:
        raise UserError(f"{_where(source, node, key)}: {exc}") from exc
    return text


def _runner(text: str, node: yaml.Node, source: str, key: str) -> str:
    if not _RUNNER.match(text):
        raise UserError(f"{_where(source, node, key)}: {text!r} is not a runner label; use [A-Za-z0-9._-]")
    return text


def parse_settings(text: str, source: str, root: str | Path = ".") -> Settings:
    """Settings from the text of a settings file (``source`` names it in errors)."""
    doc = compose_yaml(text, source)
    if doc is None:
        return Settings(root=Path(root), source=source)
    top = _mapping(doc, source, "the settings", _TOP_KEYS)
    families: dict[Family, FamilySettings] = {}
    for fam in (Family.BACKENDS, Family.SERVER):
        if str(fam) not in top:
            continue
        _, node = top[str(fam)]
        keys = _mapping(node, source, str(fam), _FAMILY_KEYS)
        matrix = ""
        if "matrix" in keys:
            matrix = _string(keys["matrix"][1], source, f"{fam}.matrix")
            if Path(matrix).is_absolute() or ".." in Path(matrix).parts:
                raise UserError(f"{_where(source, keys['matrix'][1], f'{fam}.matrix')}: {matrix!r} must be a path "
                                "inside the repository, relative to its root")
        images = tuple(_image(i, keys["images"][1], source, f"{fam}.images")
                       for i in _strings(keys["images"][1], source, f"{fam}.images")) if "images" in keys else ()
        build_args = None
        if "build-args" in keys:
            bnode = keys["build-args"][1]
            if not isinstance(bnode, yaml.MappingNode):
                raise UserError(f"{_where(source, bnode, f'{fam}.build-args')} must be a mapping NAME: value")
            pairs = []
            for k, v in bnode.value:
                name = _string(k, source, f"{fam}.build-args")
                if not _BUILD_ARG_NAME.match(name):
                    raise UserError(f"{_where(source, k, f'{fam}.build-args')}: {name!r} is not a build arg name")
                pairs.append((name, "" if v.tag == "tag:yaml.org,2002:null" else _string(v, source, f"{fam}.build-args.{name}")))
            build_args = tuple(pairs)
        families[fam] = FamilySettings(matrix=matrix, images=images, build_args=build_args)
    cache = _image(_string(top["cache-image"][1], source, "cache-image"), top["cache-image"][1], source,
                   "cache-image") if "cache-image" in top else ""
    pr = _image(_string(top["pr-image"][1], source, "pr-image"), top["pr-image"][1], source,
                "pr-image") if "pr-image" in top else ""
    amd64 = arm64 = ""
    retired: tuple[str, ...] | None = None
    exceptions: list[RunnerException] = []
    if "runners" in top:
        keys = _mapping(top["runners"][1], source, "runners", _RUNNER_KEYS)
        if "amd64" in keys:
            amd64 = _runner(_string(keys["amd64"][1], source, "runners.amd64"), keys["amd64"][1], source, "runners.amd64")
        if "arm64" in keys:
            arm64 = _runner(_string(keys["arm64"][1], source, "runners.arm64"), keys["arm64"][1], source, "runners.arm64")
        if "retired" in keys:
            retired = tuple(_runner(r, keys["retired"][1], source, "runners.retired")
                            for r in _strings(keys["retired"][1], source, "runners.retired"))
        if "allow" in keys:
            anode = keys["allow"][1]
            if not isinstance(anode, yaml.SequenceNode):
                raise UserError(f"{_where(source, anode, 'runners.allow')} must be a list of "
                                "{tag-suffix, runs-on, reason} entries")
            for item in anode.value:
                fields = _mapping(item, source, "runners.allow", _ALLOW_KEYS)
                missing = [k for k in _ALLOW_KEYS if k not in fields]
                if missing:
                    raise UserError(f"{_where(source, item, 'runners.allow')}: missing {', '.join(missing)}; an "
                                    "exception names the tag-suffix, the runner it stays on and why")
                try:
                    suffix = check_suffix(_string(fields["tag-suffix"][1], source, "tag-suffix"))
                except ValueError as exc:
                    raise UserError(f"{_where(source, fields['tag-suffix'][1], 'runners.allow.tag-suffix')}: {exc}") from exc
                exceptions.append(RunnerException(
                    tag_suffix=suffix,
                    runs_on=_runner(_string(fields["runs-on"][1], source, "runs-on"), fields["runs-on"][1], source,
                                    "runners.allow.runs-on"),
                    reason=_string(fields["reason"][1], source, "reason"), line=_line(item)))
    return Settings(root=Path(root), source=source, families=families, cache_image=cache, pr_image=pr,
                    runner_amd64=amd64, runner_arm64=arm64, retired=retired, exceptions=tuple(exceptions))
