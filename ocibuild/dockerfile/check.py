"""Build checks like ``docker build --check``: BuildKit's lint rules that need no build.

Rule names, messages and URLs are BuildKit's (``frontend/dockerfile/linter/ruleset.go``).
Like BuildKit, the checks that depend on ARG/ENV state run while planning: every stage (or
only those a ``target`` needs) is planned with a :class:`StagePlanner` subclass that reports
as it expands, with empty configs standing in for base images (no registry is contacted, so
a base image's ``Env`` or ``Shell`` is unknown here). ``# check=skip=A,B;error=true`` and
``skip=all`` are honoured.

The one module of ``dockerfile`` that imports ``plan`` (the lint needs the planner); both are
pure, ``plan`` never imports this module and ``ocibuild.dockerfile`` does not load it, so there
is no cycle. Nothing else in ``dockerfile`` may import ``plan``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ocibuild.dockerfile import model as df
from ocibuild.dockerfile.expand import Expansion, expand
from ocibuild.dockerfile.flags import suggest
from ocibuild.errors import DockerfileError, Location, OcibuildError
from ocibuild.fs.ignore import IgnoreMatcher, go_clean, read_ignore_file
from ocibuild.image.platform import parse_platform
from ocibuild.plan.model import BaseConfig, Step
from ocibuild.plan.planner import Planner
from ocibuild.plan.steps import NON_ENV_ARGS, StagePlanner

_URL = "https://docs.docker.com/go/dockerfile/rule/"
RULES = (
    "StageNameCasing", "FromAsCasing", "NoEmptyContinuation", "ConsistentInstructionCasing",
    "DuplicateStageName", "ReservedStageName", "JSONArgsRecommended", "MaintainerDeprecated",
    "UndefinedArgInFrom", "WorkdirRelativePath", "UndefinedVar", "MultipleInstructionsDisallowed",
    "LegacyKeyValueFormat", "RedundantTargetPlatform", "SecretsUsedInArgOrEnv",
    "InvalidDefaultArgInFrom", "FromPlatformFlagConstDisallowed", "CopyIgnoredFile",
    "ExposeProtoCasing", "ExposeInvalidFormat",
)
_SECRET = re.compile(
    r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)"
)
_SECRET_ALLOW = re.compile(r"(?i)(?:_|^)(?:public|file|version)(?:_|$)")
_RESERVED = ("context", "scratch")
# distribution/reference's grammar, enough to tell whether a FROM value can be an image name.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


def _url(rule: str) -> str:
    return _URL + re.sub(r"(?<!^)(?=[A-Z])", "-", rule).lower().replace("j-s-o-n", "json") + "/"


@dataclass(frozen=True)
class CheckConfig:
    """The ``# check=`` directive: rules to skip, ``skip=all``, and ``error=true``."""

    skip: frozenset[str] = frozenset()
    skip_all: bool = False
    error: bool = False

    @classmethod
    def parse(cls, text: str) -> CheckConfig:
        """BuildKit's ``ParseLintOptions``; raises DockerfileError on a bad option."""
        skip: set[str] = set()
        skip_all = error = False
        text = text.strip()
        for part in text.split(";", 2) if text else ():
            key, sep, value = part.partition("=")
            if not sep:
                raise DockerfileError(
                    f'failed to parse check options: invalid check option "{part}"'
                )
            key, value = key.strip(), value.strip()
            if key == "skip":
                if value == "all":
                    skip_all = True
                else:
                    skip.update(rule.strip() for rule in value.split(","))
            elif key == "error":
                if value.lower() not in ("1", "t", "true", "0", "f", "false"):
                    raise DockerfileError(f'failed to parse check option "{part}"')
                error = value.lower() in ("1", "t", "true")
            elif key != "experimental":
                raise DockerfileError(
                    f'failed to parse check options: invalid check option "{key}"'
                )
        return cls(frozenset(skip), skip_all, error)


class _Sink:
    """Collects findings, dropping skipped rules and duplicates."""

    def __init__(self, config: CheckConfig) -> None:
        self.config = config
        self.found: dict[tuple[str, str, str, int], df.Warning] = {}

    def add(self, rule: str, message: str, location: Location) -> None:
        if self.config.skip_all or rule in self.config.skip:
            return
        key = (rule, message, location.file, location.line)
        self.found.setdefault(key, df.Warning(rule, message, location, _url(rule)))

    def sorted(self) -> list[df.Warning]:
        return sorted(self.found.values(), key=lambda w: (w.location.line, w.rule))


def _words(original: str) -> list[str]:
    return original.split()


def _written_keyword(ins: df.Instruction) -> str:
    words = _words(ins.original)
    return words[0] if words else ins.keyword


def _static_checks(dockerfile: df.Dockerfile, sink: _Sink) -> None:
    """Rules BuildKit runs while parsing: casing, stage names, MAINTAINER, continuations."""
    for warning in dockerfile.warnings:
        if warning.rule == "NoEmptyContinuation":
            sink.add(warning.rule, "Empty continuation line", warning.location)
    for ins in dockerfile.instructions:
        if isinstance(ins, df.Maintainer):
            sink.add("MaintainerDeprecated",
                     "Maintainer instruction is deprecated in favor of using label", ins.location)
        if isinstance(ins, df.From):
            words = [w for w in _words(ins.original) if not w.startswith("--")]
            if len(words) == 4:
                keyword, as_word, name = words[0], words[2], words[3]
                if name != name.lower():
                    sink.add("StageNameCasing", f"Stage name '{name}' should be lowercase",
                             ins.location)
                if keyword in (keyword.lower(), keyword.upper()):
                    want = as_word.lower() if keyword == keyword.lower() else as_word.upper()
                    if as_word != want:
                        sink.add("FromAsCasing",
                                 f"'{as_word}' and '{keyword}' keywords' casing do not match",
                                 ins.location)
    seen: set[str] = set()
    for stage in dockerfile.stages:
        if stage.name:
            if stage.name in _RESERVED:
                sink.add("ReservedStageName", "Stage name should not use the same name as "
                         f'reserved stage "{stage.name}"', stage.base.location)
            if stage.name in seen:
                sink.add("DuplicateStageName", f'Duplicate stage name "{stage.name}", stage '
                         "names should be unique", stage.base.location)
            seen.add(stage.name)
    staged = [i for s in dockerfile.stages for i in (s.base, *s.instructions)]
    cased = [_written_keyword(i) for i in staged]
    lower = sum(1 for k in cased if k == k.lower())
    upper = sum(1 for k in cased if k == k.upper() and k != k.lower())
    majority_lower = lower > upper
    for ins, keyword in zip(staged, cased, strict=True):
        want = keyword.lower() if majority_lower else keyword.upper()
        if keyword != want:
            sink.add("ConsistentInstructionCasing", f"Command '{keyword}' should match the case "
                     f"of the command majority ({'lowercase' if majority_lower else 'uppercase'})",
                     ins.location)


def _from_checks(dockerfile: df.Dockerfile, planner: Planner, defaults: Mapping[str, str],
                 sink: _Sink) -> None:
    """UndefinedArgInFrom, InvalidDefaultArgInFrom, RedundantTargetPlatform and
    FromPlatformFlagConstDisallowed: FROM lines expanded with the global ARG scope."""
    env = planner.global_env
    declared = {d.name for a in dockerfile.global_args for d in a.args}
    keys = sorted(declared | set(env))
    for stage in dockerfile.stages:
        ins = stage.base
        try:
            default_name = expand(ins.image, defaults, dockerfile.escape).value
        except DockerfileError:
            continue  # the build fails on this line anyway
        if not _REFERENCE.match(default_name) or len(default_name.split("@")[0]) > 255:
            sink.add("InvalidDefaultArgInFrom", f"Default value for ARG {ins.image} results in "
                     "empty or invalid base image name", ins.location)
        words = [ins.image] + ([ins.platform] if ins.platform is not None else [])
        for word in words:
            try:
                result = expand(word, env, dockerfile.escape)
            except DockerfileError:
                continue
            for name in sorted(result.unmatched - set(keys)):
                hint = suggest(name, keys, True)
                sink.add("UndefinedArgInFrom", f"FROM argument '{name}' is not declared"
                         + (f" (did you mean {hint}?)" if hint else ""), ins.location)
            if word is not ins.platform:
                continue
            if (result.matched == {"TARGETPLATFORM"} and not result.unmatched
                    and result.value == env.get("TARGETPLATFORM")):
                sink.add("RedundantTargetPlatform", f"Setting platform to predefined {word} in "
                         "FROM is redundant as this is the default behavior", ins.location)
            if not result.matched and not result.unmatched:
                try:
                    plat = parse_platform(result.value)
                except ValueError:
                    continue
                name = stage.name or ""
                if plat.os not in name and plat.architecture not in name:
                    sink.add("FromPlatformFlagConstDisallowed", "FROM --platform flag should "
                             f'not use constant value "{result.value}"', ins.location)


def _port_parts(raw: str) -> tuple[str, str, str]:
    """(ip, host port, proto) of an EXPOSE word, split as BuildKit's ``splitParts``."""
    parts = raw.split(":")
    if len(parts) == 1:
        ip, host = "", ""
    elif len(parts) == 2:
        ip, host = "", parts[0]
    else:
        ip, host = ":".join(parts[:-2]), parts[-2]
    return ip, host, parts[-1].partition("/")[2]


def _is_secret(key: str) -> bool:
    return bool(_SECRET.search(key)) and not _SECRET_ALLOW.search(key)


def _lint_planner(sink: _Sink, ignore: IgnoreMatcher | None) -> type[StagePlanner]:
    """A StagePlanner that reports the rules BuildKit checks while dispatching instructions."""

    class LintStagePlanner(StagePlanner):
        used_once: dict[str, df.Instruction]

        def word(self, text: str, instruction: df.Instruction) -> str:
            value = super().word(text, instruction)
            if "$" in text:
                self.on_expansion(expand(text, self.state.env, self.ctx.escape), instruction)
            return value

        def on_expansion(self, result: Expansion, instruction: df.Instruction) -> None:
            declared = {name for name, _ in self.state.args}
            for name in sorted(result.unmatched - declared - NON_ENV_ARGS):
                hint = suggest(name, list(self.state.env), True)
                sink.add("UndefinedVar", f"Usage of undefined variable '${name}'"
                         + (f" (did you mean ${hint}?)" if hint else ""), instruction.location)

        def plan(self, instruction: df.Instruction) -> Step:
            self._before(instruction)
            return super().plan(instruction)

        def _before(self, ins: df.Instruction) -> None:
            name = _written_keyword(ins)
            loc = ins.location
            if isinstance(ins, df.Env | df.Label) and _legacy(ins):
                sink.add("LegacyKeyValueFormat", f'"{name} key=value" should be used instead '
                         f'of legacy "{name} key value" format', loc)
            keys = [p.key for p in ins.pairs] if isinstance(ins, df.Env) else (
                [a.name for a in ins.args] if isinstance(ins, df.Arg) else [])
            for key in keys:
                if _is_secret(key):
                    sink.add("SecretsUsedInArgOrEnv", "Do not use ARG or ENV instructions for "
                             f'sensitive data ({ins.keyword} "{key}")', loc)
            if isinstance(ins, df.Cmd | df.Entrypoint | df.Healthcheck):
                tracked = self.__dict__.setdefault("used_once", {})
                if ins.keyword in tracked:
                    sink.add("MultipleInstructionsDisallowed", f"Multiple {name} instructions "
                             "should not be used in the same stage because only the last one "
                             "will be used", tracked[ins.keyword].location)
                tracked[ins.keyword] = ins
            if isinstance(ins, df.Cmd | df.Entrypoint):
                if isinstance(ins.command, df.ShellForm) and not self.state.shell:
                    sink.add("JSONArgsRecommended", f"JSON arguments recommended for {name} to "
                             "prevent unintended behavior related to OS signals", loc)
            if isinstance(ins, df.Workdir) and not self.state.workdir_set:
                path = self.word(ins.path, ins)
                if not path.startswith("/"):
                    sink.add("WorkdirRelativePath", f'Relative workdir "{path}" can have '
                             "unexpected results if the base image changes", loc)
            if isinstance(ins, df.Expose):
                for raw in (w for p in ins.ports for w in self._words(p, ins)):
                    ip, host, proto = _port_parts(raw)
                    if proto != proto.lower():
                        sink.add("ExposeProtoCasing", f"Defined protocol '{raw}' in EXPOSE "
                                 "instruction should be lowercase", loc)
                    if ip or host:
                        sink.add("ExposeInvalidFormat", "EXPOSE instruction should not define "
                                 f"an IP address or host-port mapping, found '{raw}'", loc)
            if isinstance(ins, df.CopyBase) and ins.from_ is None and ignore is not None:
                if not ignore.has_exclusions:
                    self._ignored(ins, ignore)

        def _ignored(self, ins: df.CopyBase, ignore: IgnoreMatcher) -> None:
            verb = "Add" if isinstance(ins, df.Add) else "Copy"
            for source in ins.sources:
                src = go_clean(self.word(source, ins)).lstrip("/") or "."
                if isinstance(ins, df.Add) and re.match(r"^(https?://|git@)", source):
                    continue
                if src == "." and not any(p in ("*", "**", "**/*") for p in ignore.patterns):
                    continue
                if ignore.matches(src):
                    sink.add("CopyIgnoredFile", f'Attempting to {verb} file "{src}" that is '
                             "excluded by .dockerignore", ins.location)

    return LintStagePlanner


def _legacy(ins: df.Env | df.Label) -> bool:
    if isinstance(ins, df.Env):
        return ins.legacy
    words = ins.original.split(None, 2)
    return len(words) > 1 and "=" not in words[1]


class _AnyBase(Mapping[str, BaseConfig]):
    """Every image has an empty config: the checks never contact a registry."""

    def __getitem__(self, key: str) -> BaseConfig:
        return BaseConfig()

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, key: object) -> bool:
        return True


@dataclass(frozen=True)
class CheckResult:
    """Findings (sorted by line), the ``# check=`` config, and the error that stopped
    planning (None when the Dockerfile plans)."""

    warnings: tuple[df.Warning, ...]
    config: CheckConfig
    error: OcibuildError | None = None


def run_checks(
    dockerfile: df.Dockerfile,
    build_args: Mapping[str, str] | None = None,
    ignore_patterns: Sequence[str] | None = None,
    target: str | None = None,
) -> CheckResult:
    """Run every rule; planning errors are returned, not raised (BuildKit's lint does that)."""
    config = CheckConfig.parse(dockerfile.directives.get("check", ""))
    sink = _Sink(config)
    _static_checks(dockerfile, sink)
    ignore = (
        IgnoreMatcher(read_ignore_file("\n".join(ignore_patterns))) if ignore_patterns else None
    )
    args = dict(build_args or {})
    planner = Planner(dockerfile, args, None, None, _AnyBase())
    error: OcibuildError | None = None
    try:
        planner.plan(target, all_stages=not target, stage_planner=_lint_planner(sink, ignore))
    except OcibuildError as exc:
        error = exc
    defaults = Planner(dockerfile, {}, None, None, _AnyBase())
    try:
        defaults.init_globals(len(dockerfile.stages) - 1)
        _from_checks(dockerfile, planner, defaults.global_env, sink)
    except OcibuildError as exc:
        error = error or exc
    return CheckResult(tuple(sink.sorted()), config, error)


def check(
    dockerfile: df.Dockerfile,
    build_args: Mapping[str, str] | None = None,
    ignore_patterns: Sequence[str] | None = None,
    target: str | None = None,
) -> list[df.Warning]:
    """The findings of ``docker build --check`` for ``dockerfile``, sorted by line. Raises the
    OcibuildError that stops planning, if any (use :func:`run_checks` to get both)."""
    result = run_checks(dockerfile, build_args, ignore_patterns, target)
    if result.error is not None:
        raise result.error
    return list(result.warnings)


def _ignore_file(args: argparse.Namespace) -> list[str] | None:
    given = getattr(args, "file", None)
    candidates = [Path(given + ".dockerignore")] if given and given != "-" else []
    candidates.append(Path(args.context) / ".dockerignore")
    for path in candidates:
        try:
            return path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
    return None


def run_check_cli(args: argparse.Namespace) -> int:
    """``ocibuild --check``: print each finding as ``Dockerfile:7 Rule: message``; exit 1 when
    the Dockerfile does not parse or plan, or when ``# check=error=true`` and there are
    findings; else 0."""
    from ocibuild.plan.dump import parse_build_args, read_dockerfile

    def fail(exc: OcibuildError) -> int:
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1

    try:
        dockerfile = read_dockerfile(args)
        result = run_checks(dockerfile, parse_build_args(args.build_arg), _ignore_file(args),
                            args.target)
    except OcibuildError as exc:
        return fail(exc)
    for warning in result.warnings:
        print(warning)
    if result.error is not None:
        return fail(result.error)
    if result.config.error and result.warnings:
        rules = ", ".join(sorted({w.rule for w in result.warnings}))
        print(f"error: lint violation found for rules: {rules}", file=sys.stderr)
        return 1
    return 0
