"""copy_into run the way the stage loop runs it: inside the sandbox through ``runtime.call``,
in every isolation x snapshotter pair available, checked on the committed layer's bytes."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from ocibuild.dockerfile.model import Instruction
from ocibuild.errors import ExecutionError, Location
from ocibuild.executor.context import IgnoreMatcher
from ocibuild.executor.copy import copy_into
from ocibuild.executor.runtime import Runtime
from ocibuild.executor.snapshot import lowers_record
from ocibuild.plan.model import ContextRef, CopyStep, Source, StageRef
from ocibuild.testing.sandbox import BaseLayer

pytestmark = [pytest.mark.rootless, pytest.mark.chroot, pytest.mark.timeout(120)]


def step(sources: tuple[str, ...], dest: str, *, source: Source | None = None,
         chown: str | None = None) -> CopyStep:
    return CopyStep(Instruction("COPY", Location("Dockerfile", 4), "COPY ..."), add=False,
                    sources=sources, dest=dest, source=source or ContextRef(), chown=chown)


@pytest.fixture
def context_dir(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "bin").mkdir(parents=True)
    (ctx / "bin/run.sh").write_text("#!/bin/sh\n")
    os.chmod(ctx / "bin/run.sh", 0o4755)
    os.link(ctx / "bin/run.sh", ctx / "bin/again.sh")
    os.symlink("run.sh", ctx / "bin/link")
    (ctx / "secret").write_text("no")
    os.chmod(ctx / "bin", 0o750)
    with tarfile.open(ctx / "arc.tar", "w") as tar:
        for name, kind, mode in [("x", tarfile.DIRTYPE, 0o750), ("x/f", tarfile.REGTYPE, 0o4711)]:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, 3, 4
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    return ctx


def layer(runtime: Runtime, snap: object, tmp_path: Path) -> dict[str, tarfile.TarInfo]:
    blob = runtime.commit(snap, tmp_path / "layer.tar.gz")  # type: ignore[arg-type]
    with tarfile.open(blob.path) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def test_copy_in_sandbox(sandbox_runtime: Runtime, busybox_layer: BaseLayer, context_dir: Path,
                         tmp_path: Path) -> None:
    runtime = sandbox_runtime
    lower = runtime.unpack_layer(busybox_layer.chain_id, busybox_layer.blob)
    snap = runtime.new_snapshot([lower])
    try:
        runtime.call(snap, copy_into, step((".",), "/app/", chown="bob"), "/",
                     IgnoreMatcher(["secret"]), roots={"src": [context_dir]})
        runtime.call(snap, copy_into, step(("/data/suid",), "sub/", source=StageRef(0)),
                     "/srv", roots={"src": [lower]})
        # In a single-id sandbox the stage's true owners live in its ownership record.
        record = None if runtime.isolation.owns_files else lowers_record([lower])
        runtime.call(snap, copy_into, step(("/home/bob",), "/b/", source=StageRef(0)),
                     "/", None, record, roots={"src": [lower]})
        runtime.call(snap, copy_into, replace(step(("arc.tar",), "/arc/"), add=True), "/",
                     roots={"src": [context_dir]})
        entries = layer(runtime, snap, tmp_path)
    finally:
        runtime.remove(snap)
    inner = entries["arc/x/f"]
    assert (inner.uid, inner.gid, inner.mode) == (3, 4, 0o4711)  # the archive's own ids
    profile = entries["b/.profile"]
    assert (profile.uid, profile.gid) == (1000, 1000)  # --from keeps the stage's owners
    assert "app/secret" not in entries
    app = entries["app"]
    assert (app.uid, app.gid, app.mode) == (1000, 1000, 0o755)  # bob from the stage's passwd
    run = entries["app/bin/run.sh"]
    assert (run.uid, run.gid, run.mode) == (1000, 1000, 0o4755)  # setuid kept after chown
    assert entries["app/bin"].mode == 0o750
    linked = {entries["app/bin/run.sh"].islnk(), entries["app/bin/again.sh"].islnk()}
    assert linked == {True, False}  # one hard link group
    assert entries["app/bin/link"].issym() and entries["app/bin/link"].linkname == "run.sh"
    suid = entries["srv/sub/suid"]
    assert (suid.uid, suid.gid, suid.mode) == (0, 0, 0o4755)
    assert stat.S_IMODE(entries["srv"].mode) == 0o755


def test_copy_error_in_sandbox(sandbox_runtime: Runtime, busybox_layer: BaseLayer,
                               context_dir: Path) -> None:
    runtime = sandbox_runtime
    lower = runtime.unpack_layer(busybox_layer.chain_id, busybox_layer.blob)
    snap = runtime.new_snapshot([lower])
    try:
        with pytest.raises(ExecutionError, match='Dockerfile:4: COPY: "/nope": not found'):
            runtime.call(snap, copy_into, step(("nope",), "/x/"), "/",
                         roots={"src": [context_dir]})
    finally:
        runtime.remove(snap)
