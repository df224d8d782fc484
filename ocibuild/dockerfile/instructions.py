"""Raw nodes -> typed instructions (model.py), with BuildKit's per-instruction validation.

Each builder takes a :class:`~ocibuild.dockerfile.nodes.Node` and returns one model value or
raises DockerfileError (without location; :func:`to_instruction` adds it). Words stay
unexpanded: expansion needs ARG/ENV state the planner owns.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ocibuild.dockerfile import model as m
from ocibuild.dockerfile.flags import Kind, ParsedFlags, parse_flags, parse_go_duration
from ocibuild.dockerfile.flags import with_suggestion as _suggest
from ocibuild.dockerfile.nodes import Node, parse_heredoc_word
from ocibuild.errors import DockerfileError, Location

__all__ = ["KEYWORDS", "to_instruction"]

KEYWORDS = (
    "ADD ARG CMD COPY ENTRYPOINT ENV EXPOSE FROM HEALTHCHECK LABEL MAINTAINER ONBUILD RUN SHELL "
    "STOPSIGNAL USER VOLUME WORKDIR"
).split()
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*\Z")
_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)
_COPY_FLAGS = {
    "chown": Kind.STRING,
    "chmod": Kind.STRING,
    "link": Kind.BOOL,
    "exclude": Kind.STRINGS,
}
_RUN_FLAGS = {
    "mount": Kind.STRINGS,
    "network": Kind.STRING,
    "security": Kind.STRING,
    "device": Kind.STRINGS,
}
_HEALTH_FLAGS = {
    name: Kind.STRING
    for name in ("interval", "timeout", "start-period", "start-interval", "retries")
}
_NETWORKS = ("default", "none", "host")
_SECURITY = ("sandbox", "insecure")
_MIN_INTERVAL = 1_000_000  # 1ms in ns


def _base(node: Node, name: str, flags: ParsedFlags | None = None) -> dict[str, object]:
    return {
        "keyword": node.keyword.upper(),
        "location": Location(name, node.start, node.end),
        "original": node.original,
        "flags": flags.written if flags is not None else _raw_flags(node),
    }


def _raw_flags(node: Node) -> tuple[m.Flag, ...]:
    out = []
    for word in node.flags:
        flag_name, has_value, value = word.partition("=")
        out.append(m.Flag(flag_name.removeprefix("--"), value if has_value else None))
    return tuple(out)


def _one_arg(node: Node, keyword: str) -> str:
    if len(node.args) != 1:
        raise DockerfileError(f"{keyword} requires exactly one argument")
    return node.args[0]


def _at_least_one(node: Node, keyword: str) -> None:
    if not node.args:
        raise DockerfileError(f"{keyword} requires at least one argument")


def _command(node: Node) -> m.Command:
    if node.json:
        return m.ExecForm(tuple(node.args))
    return m.ShellForm(" ".join(node.args))


def _from(node: Node, name: str) -> m.From:
    args = node.args
    stage = None
    if len(args) == 3 and args[1].lower() == "as":
        stage = args[2]
        if not _STAGE_NAME.match(stage.lower()):
            raise DockerfileError(
                f'invalid name for build stage: "{stage}", name can\'t start with a number '
                "or contain symbols"
            )
    elif len(args) != 1:
        raise DockerfileError("FROM requires either one or three arguments")
    flags = parse_flags(node.flags, {"platform": Kind.STRING})
    return m.From(
        **_base(node, name, flags),  # type: ignore[arg-type]
        image=args[0],
        name=stage,
        platform=flags.strings.get("platform"),
    )


def _run(node: Node, name: str) -> m.Run:
    flags = parse_flags(node.flags, _RUN_FLAGS)
    network = flags.strings.get("network")
    if network is not None and network not in _NETWORKS:
        raise DockerfileError(f'invalid network mode "{network}"')
    security = flags.strings.get("security")
    if security is not None and security not in _SECURITY:
        raise DockerfileError(f'security "{security}" is not valid')
    for mount in flags.lists.get("mount", ()):
        _check_mount_from(mount)
    return m.Run(
        **_base(node, name, flags),  # type: ignore[arg-type]
        command=_command(node),
        heredocs=node.heredocs,
        mounts=flags.lists.get("mount", ()),
        network=network,
        security=security,
        devices=flags.lists.get("device", ()),
    )


def _check_mount_from(mount: str) -> None:
    # The only --mount check BuildKit makes before expansion: ``from=`` cannot use variables.
    for field in mount.split(","):
        key, has_value, value = field.partition("=")
        if has_value and key.strip().lower() == "from":
            index = value.find("$")
            if index != -1 and index != len(value) - 1:
                raise DockerfileError(
                    "'from' doesn't support variable expansion, define alias stage instead"
                )


def _cmd(node: Node, name: str) -> m.Cmd:
    flags = parse_flags(node.flags, {})
    return m.Cmd(**_base(node, name, flags), command=_command(node))  # type: ignore[arg-type]


def _entrypoint(node: Node, name: str) -> m.Entrypoint:
    flags = parse_flags(node.flags, {})
    return m.Entrypoint(**_base(node, name, flags), command=_command(node))  # type: ignore[arg-type]


def _shell(node: Node, name: str) -> m.Shell:
    flags = parse_flags(node.flags, {})
    if not node.args:
        raise DockerfileError("SHELL requires at least one argument")
    if not node.json:
        raise DockerfileError("SHELL requires the arguments to be in JSON form")
    return m.Shell(**_base(node, name, flags), args=tuple(node.args))  # type: ignore[arg-type]


def _pairs(node: Node, keyword: str) -> tuple[tuple[m.KeyValue, ...], bool]:
    args = node.args
    if not args:
        raise DockerfileError(f"{keyword} requires at least one argument")
    pairs = []
    for i in range(0, len(args), 3):
        if not args[i]:
            raise DockerfileError(f"{keyword} names can not be blank")
        pairs.append(m.KeyValue(args[i], args[i + 1]))
    return tuple(pairs), args[2] == ""


def _env(node: Node, name: str) -> m.Env:
    flags = parse_flags(node.flags, {})
    pairs, legacy = _pairs(node, "ENV")
    return m.Env(**_base(node, name, flags), pairs=pairs, legacy=legacy)  # type: ignore[arg-type]


def _label(node: Node, name: str) -> m.Label:
    flags = parse_flags(node.flags, {})
    pairs, _ = _pairs(node, "LABEL")
    return m.Label(**_base(node, name, flags), pairs=pairs)  # type: ignore[arg-type]


def _expose(node: Node, name: str) -> m.Expose:
    _at_least_one(node, "EXPOSE")
    flags = parse_flags(node.flags, {})
    return m.Expose(**_base(node, name, flags), ports=tuple(node.args))  # type: ignore[arg-type]


def _copy_fields(
    node: Node, name: str, keyword: str, extra_flags: dict[str, Kind]
) -> tuple[ParsedFlags, dict[str, object]]:
    """The flags and the :class:`~ocibuild.dockerfile.model.CopyBase` fields COPY and ADD share.
    The argument count is checked before the flags, as BuildKit does."""
    if len(node.args) < 2:
        raise DockerfileError(
            f"{keyword} requires at least two arguments, but only one was provided. "
            "Destination could not be determined"
        )
    flags = parse_flags(node.flags, {**_COPY_FLAGS, **extra_flags})
    dest = node.args[-1]
    if parse_heredoc_word(dest) is not None:
        raise DockerfileError(f"{keyword} cannot accept a heredoc as a destination")
    bodies = {heredoc.name: heredoc for heredoc in node.heredocs}
    sources: list[str] = []
    heredocs: list[m.Heredoc] = []
    for src in node.args[:-1]:
        word = parse_heredoc_word(src)
        if word is None:
            sources.append(src)
            continue
        body = bodies.get(word.name)
        content = body.content if body is not None else ""
        heredocs.append(m.Heredoc(word.name, content, word.expand, word.chomp, word.fd))
    return flags, {
        **_base(node, name, flags),
        "sources": tuple(sources),
        "dest": dest,
        "heredocs": tuple(heredocs),
        "chown": flags.strings.get("chown"),
        "chmod": flags.strings.get("chmod"),
        "link": flags.bools.get("link", False),
        "excludes": flags.lists.get("exclude", ()),
        "exec_form": node.json,
    }


def _copy(node: Node, name: str) -> m.Copy:
    flags, fields = _copy_fields(node, name, "COPY", {"from": Kind.STRING, "parents": Kind.BOOL})
    return m.Copy(
        **fields,  # type: ignore[arg-type]
        from_=flags.strings.get("from"),
        parents=flags.bools.get("parents", False),
    )


def _add(node: Node, name: str) -> m.Add:
    spec = {"keep-git-dir": Kind.BOOL, "checksum": Kind.STRING, "unpack": Kind.BOOL}
    flags, fields = _copy_fields(node, name, "ADD", spec)
    return m.Add(
        **fields,  # type: ignore[arg-type]
        checksum=flags.strings.get("checksum"),
        keep_git_dir=flags.bools.get("keep-git-dir", False),
        unpack=flags.bools.get("unpack"),
    )


def _volume(node: Node, name: str) -> m.Volume:
    _at_least_one(node, "VOLUME")
    flags = parse_flags(node.flags, {})
    paths = []
    for path in node.args:
        path = path.strip()
        if not path:
            raise DockerfileError("VOLUME specified can not be an empty string")
        paths.append(path)
    return m.Volume(
        **_base(node, name, flags), paths=tuple(paths), exec_form=node.json  # type: ignore[arg-type]
    )


def _user(node: Node, name: str) -> m.User:
    user = _one_arg(node, "USER")
    flags = parse_flags(node.flags, {})
    return m.User(**_base(node, name, flags), user=user)  # type: ignore[arg-type]


def _workdir(node: Node, name: str) -> m.Workdir:
    path = _one_arg(node, "WORKDIR")
    flags = parse_flags(node.flags, {})
    return m.Workdir(**_base(node, name, flags), path=path)  # type: ignore[arg-type]


def _maintainer(node: Node, name: str) -> m.Maintainer:
    who = _one_arg(node, "MAINTAINER")
    flags = parse_flags(node.flags, {})
    return m.Maintainer(**_base(node, name, flags), name=who)  # type: ignore[arg-type]


def _stopsignal(node: Node, name: str) -> m.Stopsignal:
    # BuildKit never checks STOPSIGNAL's flags; they are kept as written.
    signal = _one_arg(node, "STOPSIGNAL")
    return m.Stopsignal(**_base(node, name), signal=signal)  # type: ignore[arg-type]


def _arg(node: Node, name: str) -> m.Arg:
    # BuildKit never checks ARG's flags either.
    _at_least_one(node, "ARG")
    decls = []
    for word in node.args:
        key, has_value, value = word.partition("=")
        if has_value and not key:
            raise DockerfileError("ARG names can not be blank")
        decls.append(m.ArgDecl(key, value if has_value else None))
    return m.Arg(**_base(node, name), args=tuple(decls))  # type: ignore[arg-type]


def _interval(flags: ParsedFlags, flag: str) -> int:
    text = flags.strings.get(flag, "")
    if not text:
        return 0
    value = parse_go_duration(text)
    if value == 0:
        return 0
    if value < _MIN_INTERVAL:
        raise DockerfileError(f'Interval "{flag}" cannot be less than 1ms')
    return value


def _healthcheck(node: Node, name: str) -> m.Healthcheck:
    if not node.args:
        raise DockerfileError("HEALTHCHECK requires at least one argument")
    kind = node.args[0].upper()
    rest = node.args[1:]
    if kind == "NONE":
        if rest:
            raise DockerfileError("HEALTHCHECK NONE takes no arguments")
        # BuildKit does not look at the flags of HEALTHCHECK NONE.
        return m.Healthcheck(**_base(node, name), test=("NONE",))  # type: ignore[arg-type]
    flags = parse_flags(node.flags, _HEALTH_FLAGS)
    if kind != "CMD":
        raise DockerfileError(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    if not rest:
        raise DockerfileError("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *rest) if node.json else ("CMD-SHELL", " ".join(rest))
    retries_text = flags.strings.get("retries", "")
    retries = 0
    interval = _interval(flags, "interval")
    timeout = _interval(flags, "timeout")
    start_period = _interval(flags, "start-period")
    start_interval = _interval(flags, "start-interval")
    if retries_text:
        retries = _parse_int32(retries_text)
        if retries < 0:
            raise DockerfileError(f"--retries cannot be negative ({retries})")
    return m.Healthcheck(
        **_base(node, name, flags),  # type: ignore[arg-type]
        test=test,
        interval=interval,
        timeout=timeout,
        start_period=start_period,
        start_interval=start_interval,
        retries=retries,
    )


def _parse_int32(text: str) -> int:
    """Go's ``strconv.ParseInt(text, 10, 32)``."""
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not digits or not digits.isascii() or not digits.isdigit():
        raise DockerfileError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(text)
    if not -(1 << 31) <= value < (1 << 31):
        raise DockerfileError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value


def _onbuild(node: Node, name: str) -> m.Onbuild:
    if not node.args:
        raise DockerfileError("ONBUILD requires at least one argument")
    flags = parse_flags(node.flags, {})
    trigger_keyword = node.args[0].strip().upper()
    if trigger_keyword == "ONBUILD":
        raise DockerfileError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger_keyword in ("MAINTAINER", "FROM"):
        raise DockerfileError(f"{trigger_keyword} isn't allowed as an ONBUILD trigger")
    expression = _ONBUILD_PREFIX.sub("", node.original, count=1)
    for heredoc in node.heredocs:  # BuildKit keeps the bodies as written (<<- tabs kept)
        expression += "\n" + (heredoc.content if heredoc.raw is None else heredoc.raw)
        expression += heredoc.name
    trigger = None
    if node.child is not None:
        node.child.heredocs = node.heredocs
        try:
            trigger = to_instruction(node.child, name)
        except DockerfileError:
            # BuildKit only checks a trigger when a child image runs it; keep the text.
            trigger = None
    return m.Onbuild(
        **_base(node, name, flags),  # type: ignore[arg-type]
        trigger=trigger,
        expression=expression,
    )


_BUILDERS: dict[str, Callable[[Node, str], m.Instruction]] = {
    "ADD": _add,
    "ARG": _arg,
    "CMD": _cmd,
    "COPY": _copy,
    "ENTRYPOINT": _entrypoint,
    "ENV": _env,
    "EXPOSE": _expose,
    "FROM": _from,
    "HEALTHCHECK": _healthcheck,
    "LABEL": _label,
    "MAINTAINER": _maintainer,
    "ONBUILD": _onbuild,
    "RUN": _run,
    "SHELL": _shell,
    "STOPSIGNAL": _stopsignal,
    "USER": _user,
    "VOLUME": _volume,
    "WORKDIR": _workdir,
}


def to_instruction(node: Node, name: str) -> m.Instruction:
    """The typed instruction for ``node``; DockerfileError located at the node's lines."""
    builder = _BUILDERS.get(node.keyword.upper())
    location = Location(name, node.start, node.end)
    if builder is None:
        message = _suggest(f"unknown instruction: {node.keyword}", node.keyword, KEYWORDS, False)
        raise DockerfileError(message, location=location)
    try:
        return builder(node, name)
    except DockerfileError as exc:
        raise DockerfileError(exc.message, location=location, hint=exc.hint) from None
