"""A deterministic text form of a BuildPlan (golden tests, ``--print-plan``) and the
``--print-plan`` command.

The dump lists the plan header (target, build args, images, warnings, parallel waves), then
every stage in order with its base, dependencies, resolved ARGs and one line per step. Values
are JSON-quoted wherever whitespace or emptiness would be ambiguous.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ocibuild.dockerfile import model as df
from ocibuild.errors import UsageError
from ocibuild.plan.model import (
    BaseConfig,
    BuildPlan,
    ConfigStep,
    ContextRef,
    CopyStep,
    ImageRef,
    Mount,
    RunStep,
    Scratch,
    Source,
    StageRef,
    Step,
)

_q = json.dumps


def _command(command: df.Command) -> str:
    if isinstance(command, df.ExecForm):
        return _q(list(command.args))
    return command.text


def _source(source: Source, names: Callable[[int], str]) -> str:
    match source:
        case Scratch():
            return "scratch"
        case StageRef(index=index):
            return f"stage {index} ({names(index)})"
        case ImageRef(ref=ref, platform=platform):
            return f"image {ref} ({platform})"
        case ContextRef():
            return "context"
    raise AssertionError(source)


def _mount(mount: Mount, names: Callable[[int], str]) -> str:
    parts = [f"type={mount.type}", f"target={_q(mount.target)}"]
    if mount.type in ("bind", "cache"):
        parts.append(f"from={_source(mount.source, names)}")
        if mount.source_path:
            parts.append(f"source={_q(mount.source_path)}")
    if mount.type in ("bind", "cache", "tmpfs"):
        parts.append("ro" if mount.readonly else "rw")
    if mount.type == "cache":
        parts.append(f"id={_q(mount.id)} sharing={mount.sharing}")
    if mount.type in ("secret", "ssh"):
        parts.append(f"id={_q(mount.id)}")
        if mount.required:
            parts.append("required")
    if mount.env is not None:
        parts.append(f"env={mount.env}")
    for key in ("mode", "uid", "gid", "size"):
        value = getattr(mount, key)
        if value is not None:
            parts.append(f"{key}={oct(value) if key == 'mode' else value}")
    return "[" + " ".join(parts) + "]"


def _config(ins: df.Instruction) -> str:
    match ins:
        case df.Env() | df.Label():
            return " ".join(f"{p.key}={_q(p.value)}" for p in ins.pairs)
        case df.Expose():
            return " ".join(ins.ports)
        case df.User():
            return _q(ins.user)
        case df.Workdir():
            return ins.path
        case df.Volume():
            return _q(list(ins.paths))
        case df.Stopsignal():
            return ins.signal
        case df.Arg():
            return " ".join(
                a.name if a.default is None else f"{a.name}={_q(a.default)}" for a in ins.args
            )
        case df.Cmd() | df.Entrypoint():
            return _command(ins.command)
        case df.Shell():
            return _q(list(ins.args))
        case df.Healthcheck():
            times = (ins.interval, ins.timeout, ins.start_period, ins.start_interval)
            return f"{_q(list(ins.test))} times={list(times)} retries={ins.retries}"
        case df.Onbuild():
            return ins.expression
        case df.Maintainer():
            return _q(ins.name)
    return ins.original


def describe_step(step: Step, names: Callable[[int], str] = str) -> str:
    """One line for a step: keyword, expanded arguments and options."""
    where = f"{step.instruction.location} "
    match step:
        case RunStep():
            out = f"RUN {_command(step.command)}"
            out += "".join(f" <<{h.name}={_q(h.content)}" for h in step.heredocs)
            out += "".join(f" mount={_mount(m, names)}" for m in step.mounts)
            if step.network != "default":
                out += f" network={step.network}"
            if step.security != "sandbox":
                out += f" security={step.security}"
            if step.build_args:
                out += " env=" + " ".join(f"{k}={_q(v)}" for k, v in step.build_args)
            if step.history_args:
                out += f" history=|{len(step.history_args)} " + " ".join(
                    f"{k}={v}" for k, v in step.history_args
                )
            return where + out
        case CopyStep():
            out = "ADD" if step.add else "COPY"
            if not isinstance(step.source, ContextRef):
                out += f" from={_source(step.source, names)}"
            for key in ("chown", "chmod", "checksum"):
                if getattr(step, key) is not None:
                    out += f" {key}={getattr(step, key)}"
            for key in ("link", "parents", "keep_git_dir"):
                if getattr(step, key):
                    out += f" {key}"
            if step.unpack is not None:
                out += f" unpack={str(step.unpack).lower()}"
            out += "".join(f" exclude={_q(e)}" for e in step.excludes)
            out += "".join(f" {_q(s)}" for s in step.sources)
            out += "".join(f" <<{h.name}={_q(h.content)}" for h in step.heredocs)
            return where + out + f" -> {_q(step.dest)}"
        case ConfigStep():
            return where + f"{step.instruction.keyword} {_config(step.instruction)}"
    raise AssertionError(step)


def dump_plan(plan: BuildPlan, note: str = "") -> str:
    """The plan as text, stable across runs (golden files compare it byte for byte)."""
    names = {s.index: s.name or f"stage-{s.index}" for s in plan.stages}

    def name_of(index: int) -> str:
        return names.get(index, f"stage-{index}")

    lines = [f"target: stage {plan.target} ({name_of(plan.target)})"]
    if note:
        lines.append(f"note: {note}")
    args = " ".join(f"{k}={_q(v)}" for k, v in sorted(plan.build_args.items()))
    lines.append(f"build args: {args or '-'}")
    lines.append("images: " + (", ".join(f"{i.ref} ({i.platform})" for i in plan.images) or "-"))
    lines.extend(f"warning: {w}" for w in plan.warnings)
    lines.append("groups: " + " ".join("[" + ", ".join(map(str, g)) + "]" for g in plan.groups))
    for stage in plan.stages:
        lines.append("")
        lines.append(
            f"stage {stage.index} ({name_of(stage.index)}) from {_source(stage.base, name_of)}"
            f" platform {stage.platform}"
        )
        deps = ", ".join(str(d) for d in stage.depends_on)
        lines.append(f"  depends on: {deps or '-'}")
        resolved = " ".join(f"{k}={_q(v)}" for k, v in stage.args)
        lines.append(f"  args: {resolved or '-'}")
        lines.extend(f"  {describe_step(step, name_of)}" for step in stage.steps)
    return "\n".join(lines) + "\n"


# --- command line ----------------------------------------------------------------------------


def parse_build_args(values: Sequence[str]) -> dict[str, str]:
    """``--build-arg K=V`` values; a bare ``K`` takes ``$K`` from the environment when set
    (as ``docker build`` does) and is dropped otherwise."""
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid --build-arg {item!r}: expected KEY=VALUE")
        if sep:
            out[key] = value
        elif key in os.environ:
            out[key] = os.environ[key]
    return out


def read_dockerfile(args: argparse.Namespace) -> df.Dockerfile:
    """Read and parse the Dockerfile named by ``-f`` (``-`` for stdin) or ``CONTEXT/Dockerfile``;
    locations carry the file name as given (``Dockerfile`` by default)."""
    from ocibuild.dockerfile.parser import parse

    given = getattr(args, "file", None)
    if given == "-":
        data = sys.stdin.buffer.read()
        name = "Dockerfile"
    else:
        path = Path(given) if given else Path(args.context) / "Dockerfile"
        name = given or "Dockerfile"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"read Dockerfile {path}: {exc.strerror}") from exc
    return parse(data.decode("utf-8", errors="replace"), name)


def run_print_plan_cli(args: argparse.Namespace) -> int:
    """``ocibuild --print-plan``: plan without a registry (base images get empty configs) and
    print the dump. Errors propagate as OcibuildError for the CLI to render."""
    from ocibuild.plan import base_images, make_plan

    dockerfile = read_dockerfile(args)
    build_args = parse_build_args(args.build_arg)
    images = base_images(dockerfile, args.target, build_args, args.platform)
    bases = {image.ref: BaseConfig() for image in images}
    plan = make_plan(dockerfile, bases, args.target, build_args, args.platform)
    note = "base image configs are not fetched: planned with empty configs" if bases else ""
    sys.stdout.write(dump_plan(plan, note))
    return 0
