"""A layer's diff is written in the background: the next step, and a stage that copies from this
one, already run on its snapshot's upper dir (as BuildKit runs on a snapshot and computes its
diff only for the export); a failure to write it is still reported as the step that made it."""

from __future__ import annotations

import errno
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from e2e_harness import PLACEHOLDER

from ocibuild import cli
from ocibuild.executor.runtime import Runtime

pytestmark = [pytest.mark.rootless, pytest.mark.chroot]

CHAIN = """\
FROM localhost:5000/busybox:latest AS base
RUN echo one > /one
RUN cat /one > /two
FROM localhost:5000/busybox:latest
COPY --from=base /two /copied
RUN cat /copied > /three
"""


def _build(host: str, text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
           *extra: str) -> int:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "ctx").mkdir(exist_ok=True)
    df = tmp_path / "Dockerfile"
    df.write_text(text.replace(PLACEHOLDER, host))
    return cli.main(["-f", str(df), "--progress", "plain", *extra,
                     "--output", f"type=local,dest={tmp_path / 'out'}", str(tmp_path / "ctx")])


def _holds(snap: Any, name: str) -> bool:
    """Whether ``snap``'s diff has ``name`` (a copy snapshot's tree holds its lowers too)."""
    return (Path(snap.root if snap.kind == "copy" else snap.upper) / name).exists()


def _steps(log: str) -> dict[str, str]:
    """``{"[base 2/3] RUN echo one > /one": "DONE" | "CACHED"}`` from a plain progress log."""
    names = dict(re.findall(r"^#(\d+) (\[.*)$", log, re.M))
    return {names[n]: s for n, s in re.findall(r"^#(\d+) (CACHED|DONE)", log, re.M) if n in names}


def test_the_next_steps_run_while_a_layer_is_written(
        e2e_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str]) -> None:
    """The layer of ``RUN echo one`` is held back until the RUN after it has started, and that
    of ``RUN cat /one`` until the final stage's COPY of /two has started: each waits up to
    20 s, and a builder that wrote a layer before going on would fail the build. Only kernel
    overlay snapshots are written in the background (a copy snapshot has no dir that holds
    its diff alone): with others, the layers are not held."""
    started = {"two": threading.Event(), "copy": threading.Event()}
    run, call, commit = Runtime.run, Runtime.call, Runtime.commit

    def watched_run(self: Runtime, snap: Any, spec: Any, output: Any) -> int:
        if "cat /one" in spec.argv[-1]:
            started["two"].set()
        return run(self, snap, spec, output)

    def watched_call(self: Runtime, snap: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        started["copy"].set()
        return call(self, snap, fn, *args, **kwargs)

    def held_commit(self: Runtime, snap: Any, *args: Any, **kwargs: Any) -> Any:
        wait_for = None
        if snap.kind == "overlay":
            wait_for = ("two" if _holds(snap, "one") and not _holds(snap, "two")
                        else "copy" if _holds(snap, "two") else None)
        if wait_for is not None and not started[wait_for].wait(20):
            raise OSError(errno.ETIMEDOUT, f"nothing ran on the layer before {wait_for}")
        return commit(self, snap, *args, **kwargs)

    monkeypatch.setattr(Runtime, "run", watched_run)
    monkeypatch.setattr(Runtime, "call", watched_call)
    monkeypatch.setattr(Runtime, "commit", held_commit)
    assert _build(e2e_registry.host, CHAIN, tmp_path, monkeypatch) == 0
    out = tmp_path / "out"
    assert (out / "copied").read_text() == "one\n"
    assert (out / "three").read_text() == "one\n"
    assert not (out / "one").exists()

    # Every layer was recorded in the cache once it was written: the same build again is
    # all CACHED, and gives the same files.
    monkeypatch.setattr(Runtime, "commit", commit)
    capsys.readouterr()
    shutil.rmtree(out)
    assert _build(e2e_registry.host, CHAIN, tmp_path, monkeypatch) == 0
    steps = {k: v for k, v in _steps(capsys.readouterr().err).items() if " FROM " not in k
             and not k.startswith("[internal]")}
    assert list(steps.values()) == ["CACHED"] * 4, steps
    assert (out / "three").read_text() == "one\n"


def test_a_layer_that_cannot_be_written_fails_its_step(
        e2e_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str]) -> None:
    commit = Runtime.commit

    def failing_commit(self: Runtime, snap: Any, *args: Any, **kwargs: Any) -> Any:
        if _holds(snap, "one") and not _holds(snap, "two"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return commit(self, snap, *args, **kwargs)

    monkeypatch.setattr(Runtime, "commit", failing_commit)
    assert _build(e2e_registry.host, CHAIN, tmp_path, monkeypatch) != 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "Dockerfile:2" in last and "No space left on device" in last, last
    assert not (tmp_path / "out").exists()

    # Nothing was recorded for the step: built again, it runs (the cache has no entry).
    monkeypatch.setattr(Runtime, "commit", commit)
    assert _build(e2e_registry.host, CHAIN, tmp_path, monkeypatch) == 0
    assert _steps(capsys.readouterr().err)["[base 2/3] RUN echo one > /one"] == "DONE"
    assert (tmp_path / "out" / "three").read_text() == "one\n"
