"""One stage's instructions turned into steps: ARG/ENV state, word expansion, WORKDIR, EXPOSE,
mounts. Follows BuildKit's ``dispatch*`` functions in ``dockerfile2llb/convert.go``.

The ARG/ENV state is one ordered environment, as in BuildKit's LLB state: ``ENV`` and ``ARG``
both set a name and the *later* one wins for expansion and for RUN (an ``ARG X`` after an
inherited ``ENV X`` overrides it during the build, an ``ENV X`` after ``ARG X`` overrides the
ARG). The image config's Env only ever receives ENV values; the executor applies ENV steps.
"""

from __future__ import annotations

import posixpath
import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from ocibuild.dockerfile import model as df
from ocibuild.dockerfile.expand import Expansion, expand_word, expand_words
from ocibuild.dockerfile.expand import expand as expand_full
from ocibuild.errors import DockerfileError, PlanError
from ocibuild.image.platform import Platform
from ocibuild.plan.model import ConfigStep, CopyStep, RunStep, Source, Step
from ocibuild.plan.mounts import parse_mount

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PROXY_ARGS = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
)
# Build args BuildKit reads itself: never put into a RUN's environment.
NON_ENV_ARGS = frozenset({"BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"})
_RT_SIGNAL = re.compile(r"^(SIG)?RT(MIN|MAX)([+-]\d+)?$")


@dataclass
class StageState:
    """The mutable state while one stage is planned (copied for a stage built FROM it).

    ``env`` is the expansion and RUN environment (base Env, ENV and ARG values, last set wins);
    ``args`` the ARG names declared in scope, in order, with their value (None: no value);
    ``workdir`` absolute or "" (unset); ``shell`` the SHELL in effect (empty: the default).
    """

    env: dict[str, str]
    platform: Platform
    workdir: str = ""
    shell: tuple[str, ...] = ()
    args: list[tuple[str, str | None]] = field(default_factory=list)
    workdir_set: bool = False  # a WORKDIR of this Dockerfile ran (WorkdirRelativePath)
    # Still BuildKit's llb.Scratch(): FROM scratch and nothing written yet. A file op on it
    # has no input to read /etc/passwd from, so a user *name* there is an error.
    empty_fs: bool = False
    user: str = ""  # the USER set in this Dockerfile (expanded), for WORKDIR's mkdir owner

    def copy(self) -> StageState:
        return StageState(
            dict(self.env), self.platform, self.workdir, self.shell, list(self.args),
            self.workdir_set, self.empty_fs, self.user,
        )


@dataclass(frozen=True)
class StepContext:
    """What every stage shares: the Dockerfile's escape character, the ``--build-arg`` values,
    the global ARG scope, the proxy build args, how to resolve ``--from``/``from=`` values, and
    a sink that records every ARG name a stage consumed (for the unused build-arg warning)."""

    escape: str
    build_args: Mapping[str, str]
    global_env: Mapping[str, str]
    resolve_copy_from: Callable[[str, df.Instruction], Source]
    resolve_mount_from: Callable[[str, df.Instruction], Source]
    consumed: set[str]

    @property
    def proxies(self) -> dict[str, str]:
        """Proxy values for RUN, both spellings as BuildKit's executor sets them."""
        out: dict[str, str] = {}
        for key in sorted(self.build_args):
            if key.lower() in {p.lower() for p in PROXY_ARGS}:
                out[key.upper()] = out[key.lower()] = self.build_args[key]
        return out


def _fail(exc: Exception, instruction: df.Instruction) -> PlanError:
    message = exc.message if isinstance(exc, DockerfileError) else str(exc)
    return PlanError(message, location=instruction.location)


def _check_named_owner(state: StageState, spec: str, what: str) -> None:
    """BuildKit's ``llb.WithUser`` makes a non-numeric part other than ``root`` a by-name
    lookup in the file op's base; on an empty (scratch) base that fails ("invalid user index:
    -1"). Raise the same refusal, saying why."""
    if not state.empty_fs:
        return
    for part in spec.split(":", 1):
        if part and part != "root" and not re.fullmatch(r"[+-]?\d+", part):
            raise ValueError(
                f"{what}: user name {part!r} cannot be looked up on an empty scratch stage "
                "(no /etc/passwd yet; BuildKit: invalid user index: -1): use numeric ids"
            )


def normalize_workdir(current: str, requested: str) -> str:
    """BuildKit's ``NormalizeWorkdir`` on Linux: an absolute ``requested`` is kept exactly as
    written (``/var//lib/app/`` stays so in WorkingDir and history); a relative one is joined to
    ``current`` and cleaned like Go's ``path.Join`` (``//`` collapsed too); empty keeps
    ``current`` ("/" when unset)."""
    if requested.startswith("/"):
        return requested
    base = current if current.startswith("/") else _go_clean("/" + current)
    return base if requested == "" else _go_clean(f"{base}/{requested}")


def _go_clean(path: str) -> str:
    """Go's ``path.Clean`` of an absolute path (POSIX's normpath keeps a leading ``//``)."""
    return "/" + posixpath.normpath(path).lstrip("/")


def _quotes_as_text(body: str) -> str:
    """Escape every quote the lexer would otherwise process, so that expanding the result
    equals BuildKit's ``SkipProcessQuotes`` expansion of ``body``. XXX: a ``skip_quotes``
    option of ``ocibuild.dockerfile.expand`` would say this directly."""
    out: list[str] = []
    escaped = False
    for ch in body:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "'\"":
            out.append("\\")
        out.append(ch)
    return "".join(out)


def _check_signal(value: str) -> None:
    """moby's ``signal.ParseSignal``: a number ``strconv.Atoi`` reads (a sign allowed, so
    ``-1`` and ``+5`` pass; only 0 is refused), or a Linux signal name with or without
    ``SIG`` (``TERM``, ``SIGRTMIN+3``)."""
    if re.fullmatch(r"[+-]?[0-9]+", value) and -(1 << 63) <= int(value) < 1 << 63:
        if int(value) == 0:
            raise ValueError(f"Invalid signal: {value}")
        return
    name = value.upper()
    name = name if name.startswith("SIG") else "SIG" + name
    if name in signal.Signals.__members__ or _RT_SIGNAL.match(name):
        return
    raise ValueError(f"Invalid signal: {value}")


def _parse_port(raw: str) -> list[str]:
    """One EXPOSE word as ``port/proto`` entries (ranges expanded, proto lower-cased,
    ``ip:host:`` prefixes ignored as BuildKit does)."""
    parts = raw.split(":")
    container = parts[-1]
    port, _, proto = container.partition("/")
    if not port:
        raise ValueError(f'invalid port: "{raw}": no port specified')
    if proto.lower() not in ("", "tcp", "udp", "sctp"):
        raise ValueError(f'invalid port: "{raw}": invalid proto: {proto}')
    start_s, dash, end_s = port.partition("-")

    def number(text: str) -> int:
        if not text.isdigit() or int(text) > 65535:
            raise ValueError(f"invalid containerPort: {port}")
        return int(text)

    start = number(start_s)
    end = number(end_s) if dash and end_s != start_s else start
    if end < start:
        raise ValueError(f"invalid containerPort: {port}")
    return [f"{n}/{(proto or 'tcp').lower()}" for n in range(start, end + 1)]


class StagePlanner:
    """Turns the instructions of one stage into steps, updating ``state`` as it goes."""

    def __init__(self, state: StageState, ctx: StepContext) -> None:
        self.state = state
        self.ctx = ctx

    def on_expansion(self, result: Expansion, instruction: df.Instruction) -> None:
        """Called with every full expansion this planner makes (the build checks report
        undefined variables from it); :meth:`word` takes a fast path that skips it."""

    def word(self, text: str, instruction: df.Instruction) -> str:
        try:
            return expand_word(text, self.state.env, self.ctx.escape)
        except DockerfileError as exc:
            raise _fail(exc, instruction) from exc

    def opt_word(self, text: str | None, instruction: df.Instruction) -> str | None:
        return None if text is None else self.word(text, instruction)

    def plan(self, instruction: df.Instruction) -> Step:
        try:
            return self._plan(instruction)
        except ValueError as exc:
            raise _fail(exc, instruction) from exc

    def _plan(self, ins: df.Instruction) -> Step:
        st = self.state
        match ins:
            case df.Run():
                st.empty_fs = False
                return self._run(ins)
            case df.Add() | df.Copy():
                step = self._copy(ins)
                if step.chown and not ins.link:  # --link copies onto its own scratch
                    _check_named_owner(st, step.chown, f"--chown={step.chown}")
                st.empty_fs = False
                return step
            case df.Env():
                pairs = tuple(
                    df.KeyValue(self.word(p.key, ins), self.word(p.value, ins)) for p in ins.pairs
                )
                for pair in pairs:  # expanded with the state before the instruction, as BuildKit
                    st.env.pop(pair.key, None)
                    st.env[pair.key] = pair.value
                return ConfigStep(replace(ins, pairs=pairs))
            case df.Label():
                pairs = tuple(
                    df.KeyValue(self.word(p.key, ins), self.word(p.value, ins)) for p in ins.pairs
                )
                return ConfigStep(replace(ins, pairs=pairs))
            case df.Expose():
                # BuildKit's parser sorts the raw words (byte order, before expansion); the
                # history lists the ports in that order.
                words = [w for p in sorted(ins.ports) for w in self._words(p, ins)]
                ports = tuple(p for w in words for p in _parse_port(w))
                return ConfigStep(replace(ins, ports=ports))
            case df.User():
                st.user = self.word(ins.user, ins)
                return ConfigStep(replace(ins, user=st.user))
            case df.Workdir():
                st.workdir = normalize_workdir(st.workdir, self.word(ins.path, ins))
                st.workdir_set = True
                if st.workdir != "/":  # BuildKit mkdirs it, owned by USER
                    _check_named_owner(st, st.user, f"WORKDIR {st.workdir} under USER {st.user}")
                    st.empty_fs = False
                return ConfigStep(replace(ins, path=st.workdir))
            case df.Volume():
                paths = tuple(self.word(p, ins) for p in ins.paths)
                if any(p == "" for p in paths):
                    raise ValueError("VOLUME specified can not be an empty string")
                return ConfigStep(replace(ins, paths=paths))
            case df.Stopsignal():
                sig = self.word(ins.signal, ins)
                _check_signal(sig)
                return ConfigStep(replace(ins, signal=sig))
            case df.Arg():
                return ConfigStep(replace(ins, args=tuple(self._arg(a, ins) for a in ins.args)))
            case df.Shell():
                st.shell = ins.args
                return ConfigStep(ins)
            case _:  # CMD ENTRYPOINT HEALTHCHECK ONBUILD MAINTAINER: nothing is expanded
                return ConfigStep(ins)

    def _words(self, text: str, ins: df.Instruction) -> list[str]:
        try:
            return expand_words(text, self.state.env, self.ctx.escape)
        except DockerfileError as exc:
            raise _fail(exc, ins) from exc

    def _arg(self, decl: df.ArgDecl, ins: df.Instruction) -> df.ArgDecl:
        """BuildKit's ``dispatchArg``: a --build-arg wins, then the default (expanded), then a
        global ARG of the same name (for ``ARG NAME`` without default)."""
        name = decl.name
        value: str | None = None
        if name in self.ctx.build_args:
            value = self.ctx.build_args[name]
        elif decl.default is not None:
            value = self.word(decl.default, ins)
        elif name in self.ctx.global_env:
            value = self.ctx.global_env[name]
        if value is not None and name not in NON_ENV_ARGS:
            self.state.env.pop(name, None)
            self.state.env[name] = value
        self.state.args.append((name, value))
        self.ctx.consumed.add(name)
        return df.ArgDecl(name, value)

    def _arg_env(self) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
        """(env for RUN: declared ARGs with a value plus proxies, sorted; history args: every
        declared ARG in first-declaration order with its current value, as ``|N K=V``)."""
        env = self.state.env
        history: dict[str, str] = {}
        for name, value in self.state.args:
            history[name] = env.get(name, value or "")
        run = {name: env[name] for name, _ in self.state.args if name in env}
        for key, value in self.ctx.proxies.items():
            run.setdefault(key, value)
        return tuple(sorted(run.items())), tuple(history.items())

    def _run(self, ins: df.Run) -> RunStep:
        mounts = []
        ssh_count = 0
        for spec in ins.mounts:
            parsed = parse_mount(spec, lambda v: self.word(v, ins), self.state.workdir, ssh_count)
            mount = parsed.mount
            if mount.type == "ssh":
                ssh_count += 1
            if parsed.from_:
                mount = replace(mount, source=self.ctx.resolve_mount_from(parsed.from_, ins))
            mounts.append(mount)
        network = ins.network or "default"
        if network not in ("default", "none", "host"):
            raise ValueError(f"unsupported network mode {network!r} (one of: default, none, host)")
        security = ins.security or "sandbox"
        if security not in ("sandbox", "insecure"):
            raise ValueError(f"unsupported security mode {security!r} (one of: sandbox, insecure)")
        build_args, history_args = self._arg_env()
        return RunStep(
            instruction=ins,
            command=ins.command,
            heredocs=ins.heredocs,
            mounts=tuple(mounts),
            network=network,
            security=security,
            build_args=build_args,
            history_args=history_args,
        )

    def _heredoc(self, doc: df.Heredoc, ins: df.Instruction) -> df.Heredoc:
        if not doc.expand:
            return doc
        # BuildKit expands bodies with "\" as escape and quote processing off
        # (SkipProcessQuotes): quotes are plain text and '$X' still expands.
        try:
            result = expand_full(_quotes_as_text(doc.content), self.state.env, "\\")
        except DockerfileError as exc:
            raise _fail(exc, ins) from exc
        self.on_expansion(result, ins)
        return replace(doc, content=result.value)

    def _copy(self, ins: df.CopyBase) -> CopyStep:
        source: Source | None = None
        if ins.from_ is not None:
            source = self.ctx.resolve_copy_from(ins.from_, ins)
        add = isinstance(ins, df.Add)
        step = CopyStep(
            instruction=ins,
            add=add,
            sources=tuple(self.word(s, ins) for s in ins.sources),
            dest=self.word(ins.dest, ins),
            heredocs=tuple(self._heredoc(h, ins) for h in ins.heredocs),
            chown=self.opt_word(ins.chown, ins),
            chmod=self.opt_word(ins.chmod, ins),
            link=ins.link,
            parents=ins.parents,
            excludes=ins.excludes,
        )
        if source is not None:
            step = replace(step, source=source)
        if isinstance(ins, df.Add):
            step = replace(
                step,
                checksum=self.opt_word(ins.checksum, ins),
                keep_git_dir=ins.keep_git_dir,
                unpack=ins.unpack,
            )
        return step
