"""A stable, readable text dump of a parsed Dockerfile (for golden tests and debugging).

Format, one item per line::

    directive syntax = "docker/dockerfile:1"
    escape "\\"
    3 ARG
      args: GO="1.22"
    4 FROM --platform="$BUILDPLATFORM"
      image: "golang:${GO}"
      name: "Build"
    stage 0 "build" from line 4: lines 5 7
    warning 9 NoEmptyContinuation: ...

Each instruction line is ``<start>[-<end>] <KEYWORD> <flags as written>``; then its fields,
indented, skipping fields at their default value. Strings are JSON-quoted. An error renders
as ``error: <str(exc)>`` (see :func:`dump_result`).
"""

from __future__ import annotations

import dataclasses
import json

from ocibuild.dockerfile import model as m
from ocibuild.errors import Location, OcibuildError

__all__ = ["dump", "dump_result"]

_COMMON = frozenset({"keyword", "location", "original", "flags"})


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _lines(location: Location) -> str:
    end = location.end_line
    if end is None or end == location.line:
        return str(location.line)
    return f"{location.line}-{end}"


def _flag(flag: m.Flag) -> str:
    return f"--{flag.name}" if flag.value is None else f"--{flag.name}={_q(flag.value)}"


def _value(value: object) -> str:
    if isinstance(value, str):
        return _q(value)
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, m.ShellForm):
        return f"shell {_q(value.text)}"
    if isinstance(value, m.ExecForm):
        return "exec [" + ", ".join(_q(arg) for arg in value.args) + "]"
    if isinstance(value, m.KeyValue):
        return f"{_q(value.key)}={_q(value.value)}"
    if isinstance(value, m.ArgDecl):
        return value.name if value.default is None else f"{value.name}={_q(value.default)}"
    if isinstance(value, m.Heredoc):
        return (
            f"<<{value.name} expand={json.dumps(value.expand)} chomp={json.dumps(value.chomp)}"
            f" fd={value.fd} {_q(value.content)}"
        )
    if isinstance(value, tuple):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    return str(value)


def _instruction(instr: m.Instruction, indent: str) -> list[str]:
    head = f"{indent}{_lines(instr.location)} {instr.keyword}"
    if instr.flags:
        head += " " + " ".join(_flag(flag) for flag in instr.flags)
    out = [head, f"{indent}  original: {_q(instr.original)}"]
    for field in dataclasses.fields(instr):
        if field.name in _COMMON:
            continue
        value = getattr(instr, field.name)
        default = field.default
        if default is dataclasses.MISSING and field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        if value == default and not (field.name == "command"):
            continue
        if isinstance(value, m.Instruction):
            out.append(f"{indent}  {field.name}:")
            out.extend(_instruction(value, indent + "    "))
        elif field.name == "heredocs":
            for heredoc in value:
                out.append(f"{indent}  heredoc: {_value(heredoc)}")
        else:
            out.append(f"{indent}  {field.name}: {_value(value)}")
    return out


def dump(dockerfile: m.Dockerfile) -> str:
    """The dump of a parsed Dockerfile, ending with a newline."""
    out: list[str] = []
    for key in sorted(dockerfile.directives):
        out.append(f"directive {key} = {_q(dockerfile.directives[key])}")
    if dockerfile.escape != "\\":
        out.append(f"escape {_q(dockerfile.escape)}")
    for instr in dockerfile.instructions:
        out.extend(_instruction(instr, ""))
    for arg in dockerfile.global_args:
        out.append(f"global ARG line {arg.location.line}")
    for stage in dockerfile.stages:
        name = _q(stage.name) if stage.name is not None else "-"
        body = " ".join(str(instr.location.line) for instr in stage.instructions)
        out.append(f"stage {stage.index} {name} from line {stage.base.location.line}: {body}".rstrip())
    for warning in dockerfile.warnings:
        out.append(f"warning {warning.location.line} {warning.rule}: {warning.message}")
    return "\n".join(out) + "\n"


def dump_result(text: str | bytes, name: str = "Dockerfile") -> str:
    """``dump(parse(text))``, or ``error: <message>`` (and ``hint: ...``) when parsing fails."""
    from ocibuild.dockerfile.parser import parse

    try:
        return dump(parse(text, name))
    except OcibuildError as exc:
        out = f"error: {exc}\n"
        if exc.hint:
            out += f"hint: {exc.hint}\n"
        return out
