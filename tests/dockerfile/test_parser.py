"""Direct tests of the parser API (the golden tests cover the syntax itself)."""

from __future__ import annotations

import pytest

from ocibuild.dockerfile import model as m
from ocibuild.dockerfile import parse, parse_instruction
from ocibuild.errors import DockerfileError, OcibuildError


def test_error_renders_file_line_message_and_suggestion() -> None:
    text = "FROM scratch\nRUN a\nRUN b\n\n# c\nRUN d\nCOPPY a b\n"
    with pytest.raises(DockerfileError) as info:
        parse(text, name="path/to/Dockerfile")
    assert str(info.value) == "path/to/Dockerfile:7: unknown instruction: COPPY (did you mean COPY?)"
    assert info.value.location is not None
    assert (info.value.location.line, info.value.location.end_line) == (7, 7)
    assert isinstance(info.value, OcibuildError)


def test_error_location_spans_continuation_lines() -> None:
    with pytest.raises(DockerfileError) as info:
        parse("FROM scratch\nRUN --bogus \\\n  a \\\n  b\n")
    assert info.value.location == m.Location("Dockerfile", 2, 4)


def test_bytes_and_str_parse_alike() -> None:
    text = "FROM scratch\nLABEL a=ü\n"
    assert parse(text) == parse(text.encode("utf-8"))


def test_instructions_in_source_order_with_stage_view() -> None:
    df = parse("ARG A\nFROM scratch AS One\nRUN x\nFROM one\nCMD y\n")
    assert [i.keyword for i in df.instructions] == ["ARG", "FROM", "RUN", "FROM", "CMD"]
    assert [a.location.line for a in df.global_args] == [1]
    assert [(s.index, s.name) for s in df.stages] == [(0, "one"), (1, None)]
    assert isinstance(df.stages[0].base, m.From) and df.stages[0].base.name == "One"
    assert [i.keyword for i in df.stages[1].instructions] == ["CMD"]
    assert df.stages[0].instructions[0] is df.instructions[2]


def test_directives_and_escape() -> None:
    df = parse("# Syntax=docker/dockerfile:1\n# ESCAPE=`\nFROM scratch\nRUN a `\n b\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "`"}
    assert df.escape == "`"
    run = df.instructions[1]
    assert isinstance(run, m.Run) and run.command == m.ShellForm("a  b")


def test_empty_continuation_warning() -> None:
    df = parse("FROM scratch\nRUN a \\\n\n b\n")
    assert [(w.rule, w.location.line) for w in df.warnings] == [("NoEmptyContinuation", 4)]


def test_parse_instruction_for_onbuild_triggers() -> None:
    run = parse_instruction("RUN <<EOF\necho hi\nEOF", line=10, name="base image ONBUILD")
    assert isinstance(run, m.Run)
    assert run.heredocs == (m.Heredoc("EOF", "echo hi\n"),)
    assert run.location == m.Location("base image ONBUILD", 10, 12)
    copy = parse_instruction("COPY --chown=app . /src")
    assert isinstance(copy, m.Copy) and copy.chown == "app" and copy.dest == "/src"
    windows = parse_instruction("RUN dir `\n C:\\", escape="`", line=3)
    assert isinstance(windows, m.Run) and windows.command == m.ShellForm("dir  C:\\")
    assert windows.location.line == 3


def test_parse_instruction_rejects_several() -> None:
    with pytest.raises(DockerfileError, match="expected one instruction, found 2"):
        parse_instruction("RUN a\nRUN b")
    with pytest.raises(DockerfileError, match="unknown instruction"):
        parse_instruction("COPPY a b")


def test_onbuild_roundtrip_through_expression() -> None:
    df = parse("FROM scratch\nONBUILD COPY <<EOF /f\nbody\nEOF\n")
    onbuild = df.instructions[1]
    assert isinstance(onbuild, m.Onbuild)
    again = parse_instruction(onbuild.expression)
    assert again == m.Copy(
        keyword="COPY",
        location=m.Location("Dockerfile", 1, 3),
        original="COPY <<EOF /f",
        dest="/f",
        heredocs=(m.Heredoc("EOF", "body\n"),),
    )


def test_healthcheck_durations_are_nanoseconds() -> None:
    df = parse("FROM scratch\nHEALTHCHECK --interval=1m30s --timeout=250ms --retries=2 CMD true\n")
    hc = df.instructions[1]
    assert isinstance(hc, m.Healthcheck)
    assert (hc.interval, hc.timeout, hc.retries) == (90 * 10**9, 250 * 10**6, 2)
    assert hc.test == ("CMD-SHELL", "true")


def test_instruction_before_from_has_hint() -> None:
    with pytest.raises(DockerfileError) as info:
        parse("ENV A=1\nFROM scratch\n")
    assert str(info.value) == "Dockerfile:1: no build stage in current context"
    assert info.value.hint


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe\x00", b"FROM scratch\nRUN \xc3\x28\n", b"\x00" * 100, b"FROM \x00\n", b"\r\r\r"],
)
def test_hostile_bytes_only_raise_ocibuild_errors(data: bytes) -> None:
    try:
        parse(data)
    except OcibuildError:
        pass


def test_large_file_parses_linearly() -> None:
    lines = ["FROM scratch AS s0"]
    for stage in range(1, 50):
        lines.append(f"FROM s{stage - 1} AS s{stage}")
        lines.extend(f"RUN echo {i} && \\\n    true" for i in range(50))
    df = parse("\n".join(lines) + "\n")
    assert len(df.stages) == 50
    assert df.instructions[-1].location.line == len("\n".join(lines).split("\n")) - 1
