"""Stages run side by side, as BuildKit's solver runs them: a step that needs another stage
waits for that stage alone, and a failure is reported as the step that failed."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_harness import PLACEHOLDER

from ocibuild import cli

# The slow stage waits (up to 20 s) for a file that only the final stage's second step makes,
# through a cache mount both share. The final stage's first step needs the fast stage only,
# so it must not wait for the slow one: a build that ran stages in waves (the final stage
# after every stage it uses) times out here.
CROSSING = """\
FROM localhost:5000/busybox:latest AS slow
RUN --mount=type=cache,id=signal,target=/signal,sharing=shared \\
    i=0; while [ ! -e /signal/go ]; do i=$((i+1)); [ $i -lt 200 ] || exit 7; sleep 0.1; done; \\
    echo slow > /slow
FROM localhost:5000/busybox:latest AS fast
RUN echo fast > /fast
FROM localhost:5000/busybox:latest
COPY --from=fast /fast /fast
RUN --mount=type=cache,id=signal,target=/signal,sharing=shared touch /signal/go
COPY --from=slow /slow /slow
"""

# ``first`` comes first in plan order: it waits until ``broken`` is about to fail, then is
# stopped before its next step; the error reported must still be ``broken``'s.
FAILING = """\
FROM localhost:5000/busybox:latest AS first
RUN --mount=type=cache,id=signal,target=/signal,sharing=shared \\
    i=0; while [ ! -e /signal/go ]; do i=$((i+1)); [ $i -lt 200 ] || exit 7; sleep 0.1; done; \\
    sleep 2
RUN echo never > /never
FROM localhost:5000/busybox:latest AS broken
RUN --mount=type=cache,id=signal,target=/signal,sharing=shared touch /signal/go && exit 3
FROM localhost:5000/busybox:latest AS user
RUN echo waiting > /w
COPY --from=broken /etc/hostname /h
FROM localhost:5000/busybox:latest
COPY --from=first /never /never
COPY --from=user /w /w
"""


def _build(host: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "ctx").mkdir()
    df = tmp_path / "Dockerfile"
    df.write_text(text.replace(PLACEHOLDER, host))
    return cli.main(["-f", str(df), "--progress", "plain",
                     "--output", f"type=local,dest={tmp_path / 'out'}", str(tmp_path / "ctx")])


def test_a_step_waits_for_the_stage_it_needs_and_no_other(
        e2e_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    assert _build(e2e_registry.host, CROSSING, tmp_path, monkeypatch) == 0
    out = tmp_path / "out"
    assert (out / "fast").read_text() == "fast\n"
    assert (out / "slow").read_text() == "slow\n"
    assert not (out / "signal").exists() or not any((out / "signal").iterdir())


def test_the_failure_reported_is_the_step_that_failed(
        e2e_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str]) -> None:
    assert _build(e2e_registry.host, FAILING, tmp_path, monkeypatch) != 0
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert "exit code: 3" in last and "Dockerfile:7" in last, last
    assert "[user 3/3] COPY --from=broken" not in err  # never started: its stage failed
    assert "[first 3/3] RUN echo never" not in err  # stopped: another stage failed
    assert not (tmp_path / "out").exists()
