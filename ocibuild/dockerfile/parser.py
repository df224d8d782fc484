"""``parse(text) -> Dockerfile``: the Dockerfile frontend's entry point.

Three stages, as in BuildKit: physical lines -> logical lines (:mod:`.lines`: directives,
continuations, comments, heredoc bodies), logical lines -> raw nodes (:mod:`.nodes`: keyword,
flags, argument words; syntax errors for the whole file come first), raw nodes -> typed
instructions (:mod:`.instructions`) grouped into stages. Whatever the input, only
DockerfileError (an OcibuildError) leaves :func:`parse`.
"""

from __future__ import annotations

from ocibuild.dockerfile import model as m
from ocibuild.dockerfile.instructions import to_instruction
from ocibuild.dockerfile.lines import LineReader, decode
from ocibuild.dockerfile.nodes import read_nodes
from ocibuild.errors import DockerfileError, Location, OcibuildError

__all__ = ["parse", "parse_instruction"]

_EMPTY_CONTINUATION_URL = "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/"


def parse(text: str | bytes, name: str = "Dockerfile") -> m.Dockerfile:
    """Parse a whole Dockerfile.

    Raises DockerfileError (with ``location``) for: bad directives, unterminated heredocs,
    JSON arrays of non-strings, unknown instructions (with a suggestion), bad flags and
    arguments, an instruction other than ARG before the first FROM ("no build stage in
    current context"), an empty file ("file with no instructions") or one without FROM.
    """
    try:
        return _parse(text, name)
    except OcibuildError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise DockerfileError(f"{name}: input too complex to parse: {type(exc).__name__}") from exc


def _parse(text: str | bytes, name: str) -> m.Dockerfile:
    reader = LineReader(decode(text), name)
    nodes = read_nodes(reader)
    instructions: list[m.Instruction] = []
    global_args: list[m.Arg] = []
    stages: list[m.Stage] = []
    current: tuple[m.From, list[m.Instruction]] | None = None
    for node in nodes:
        instruction = to_instruction(node, name)
        instructions.append(instruction)
        if isinstance(instruction, m.From):
            if current is not None:
                stages.append(_stage(len(stages), *current))
            current = (instruction, [])
        elif current is not None:
            current[1].append(instruction)
        elif isinstance(instruction, m.Arg):
            global_args.append(instruction)
        else:
            raise DockerfileError(
                "no build stage in current context",
                location=instruction.location,
                hint="a Dockerfile must start with FROM (only ARG may come before it)",
            )
    if current is None:
        raise DockerfileError(
            "dockerfile contains no stages to build",
            location=Location(name, nodes[-1].start, nodes[-1].end),
            hint="add a FROM instruction",
        )
    stages.append(_stage(len(stages), *current))
    warnings = tuple(
        m.Warning(
            rule="NoEmptyContinuation",
            message=f"Empty continuation line found in: {line}",
            location=Location(name, number),
            url=_EMPTY_CONTINUATION_URL,
        )
        for number, line in reader.empty_continuations
    )
    return m.Dockerfile(
        name=name,
        instructions=tuple(instructions),
        global_args=tuple(global_args),
        stages=tuple(stages),
        directives=dict(reader.directives),
        escape=reader.escape,
        warnings=warnings,
    )


def _stage(index: int, base: m.From, body: list[m.Instruction]) -> m.Stage:
    return m.Stage(
        index=index,
        name=base.name.lower() if base.name is not None else None,
        base=base,
        instructions=tuple(body),
    )


def parse_instruction(
    text: str, *, escape: str = "\\", name: str = "Dockerfile", line: int = 1
) -> m.Instruction:
    """Parse one instruction, e.g. an ONBUILD trigger stored in a base image's config
    (``RUN make``, or ``RUN <<EOF`` followed by its body lines and delimiter).

    ``escape`` is the escape character in force; ``name`` and ``line`` locate errors (line
    numbers count from ``line``). Raises DockerfileError unless ``text`` holds exactly one
    instruction.
    """
    try:
        prefix = f"# escape={escape}\n" if escape != "\\" else ""
        reader = LineReader(prefix + text, name)
        nodes = read_nodes(reader)
        if len(nodes) != 1:
            raise DockerfileError(
                f"expected one instruction, found {len(nodes)}", location=Location(name, line)
            )
        node = nodes[0]
        shift = line - 1 - (1 if prefix else 0)
        node.start += shift
        node.end += shift
        return to_instruction(node, name)
    except OcibuildError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise DockerfileError(f"{name}: input too complex to parse: {type(exc).__name__}") from exc
