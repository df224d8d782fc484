"""A COPY's layer written while the copy runs (``copy_feed``): byte for byte the layer a commit
after the copy writes, or that layer written again when the copy could not promise it."""

from __future__ import annotations

import gzip
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocibuild.dockerfile.model import Instruction
from ocibuild.errors import ExecutionError, Location
from ocibuild.executor.context import IgnoreMatcher
from ocibuild.executor.copy import copy_into
from ocibuild.executor.copy_feed import FeedBroken, open_feed
from ocibuild.executor.runtime import Runtime
from ocibuild.fs.layer import LayerBlob
from ocibuild.plan.model import ContextRef, CopyStep
from ocibuild.testing.sandbox import BaseLayer

pytestmark = [pytest.mark.rootless, pytest.mark.timeout(120)]


def copy_step(sources: tuple[str, ...], dest: str, **flags: object) -> CopyStep:
    return CopyStep(Instruction("COPY", Location("Dockerfile", 2), "COPY ..."), add=False,
                    sources=sources, dest=dest, source=ContextRef(), **flags)  # type: ignore[arg-type]


@pytest.fixture
def overlay(sandbox_runtime: Runtime, busybox_layer: BaseLayer) -> Iterator[tuple[Runtime, Path]]:
    """The runtime, when it makes kernel overlay snapshots whose files hold their owners
    (where a build feeds its copies), and the busybox layer dir."""
    runtime = sandbox_runtime
    lower = runtime.unpack_layer(busybox_layer.chain_id, busybox_layer.blob)
    probe = runtime.new_snapshot([lower])
    kind = probe.kind
    runtime.remove(probe)
    if kind != "overlay" or not runtime.isolation.owns_files:
        pytest.skip(f"copies are fed in overlay snapshots that hold owners, not {kind} here")
    yield runtime, lower


@pytest.fixture
def context_dir(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    for d in range(12):
        sub = ctx / f"d{d:02d}" / "inner"
        sub.mkdir(parents=True)
        for f in range(30):
            (sub.parent / f"f{f:02d}").write_bytes(os.urandom(700) + b"text " * f)
        (sub / "deep").write_text("deep\n")
        os.chmod(sub, 0o750)
    os.symlink("d00/f01", ctx / "link")
    os.mkfifo(ctx / "fifo")
    (ctx / "empty").mkdir()
    (ctx / "skipped").write_text("ignored\n")
    (ctx / "setuid").write_text("#!/bin/sh\n")
    os.chmod(ctx / "setuid", 0o4755)
    return ctx


def fed_copy(runtime: Runtime, lower: Path, src: Path, step: CopyStep, out: Path, *,
             workdir: str = "/", also: bool = False, close_feed: bool = False,
             ) -> tuple[LayerBlob | BaseException, bytes]:
    """Run ``step`` with its commit fed beside it, as the stage loop does; returns the fed
    commit's blob (or what it raised) and the tar a commit after the copy writes."""
    snap = runtime.new_snapshot([lower])
    read_fd, write_fd = open_feed()
    result: list[LayerBlob | BaseException] = []
    copy = (out / "fed.gz", "gzip", None) if also else None

    def commit() -> None:
        try:
            result.append(runtime.commit(snap, out / "fed.tar", "none", also=copy, feed=read_fd))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result.append(exc)

    committer = threading.Thread(target=commit)
    if close_feed:
        os.close(read_fd)  # no commit reads it: the copy must not care
    else:
        committer.start()
    try:
        try:
            runtime.call(snap, copy_into, step, workdir, IgnoreMatcher(["skipped"]),
                         roots={"src": [src]}, feed=write_fd)
        finally:
            os.close(write_fd)
            if not close_feed:
                committer.join()
                os.close(read_fd)
        walked = runtime.commit(snap, out / "walked.tar", "none")
        return (result[0] if result else RuntimeError("no commit")), walked.path.read_bytes()
    finally:
        runtime.remove(snap)


@pytest.mark.parametrize("step, workdir", [
    (copy_step((".",), "/app/"), "/"),  # a new directory, its parents made by the copy
    (copy_step((".",), "."), "/home/bob"),  # into an existing one: its owner and mode stay
    (copy_step(("d03",), "/usr/local/share/d3", chown="7:8", chmod="u=rwx,go=rx"), "/"),
    (copy_step(("d05/f07",), "/data/"), "/"),  # one file into a directory of the lower
])
def test_a_copy_is_committed_while_it_runs(overlay: tuple[Runtime, Path], context_dir: Path,
                                           tmp_path: Path, step: CopyStep,
                                           workdir: str) -> None:
    runtime, lower = overlay
    blob, walked = fed_copy(runtime, lower, context_dir, step, tmp_path, workdir=workdir)
    assert isinstance(blob, LayerBlob), blob
    assert blob.streamed
    assert blob.path.read_bytes() == walked


def test_a_push_copy_is_compressed_while_the_copy_runs(overlay: tuple[Runtime, Path],
                                                       context_dir: Path, tmp_path: Path) -> None:
    runtime, lower = overlay
    blob, walked = fed_copy(runtime, lower, context_dir, copy_step((".",), "/app/"), tmp_path,
                            also=True)
    assert isinstance(blob, LayerBlob) and blob.streamed and blob.copy is not None
    assert blob.copy.path == tmp_path / "fed.gz"  # where the build's upload reads it
    assert gzip.decompress(blob.copy.path.read_bytes()) == walked


def test_hard_links_are_written_again_from_the_snapshot(overlay: tuple[Runtime, Path],
                                                        context_dir: Path,
                                                        tmp_path: Path) -> None:
    """The first name of a pair is reported as a lone file before the second is linked to
    it: the copy says so, and the layer is the walk's, with its tar hard link."""
    runtime, lower = overlay
    os.link(context_dir / "d02/f03", context_dir / "d02/g03")
    blob, walked = fed_copy(runtime, lower, context_dir, copy_step((".",), "/app/"), tmp_path,
                            also=True)
    assert isinstance(blob, LayerBlob) and not blob.streamed
    assert blob.path.read_bytes() == walked
    assert b"app/d02/f03" in walked[walked.index(b"app/d02/g03"):][:1024]  # its link target
    assert blob.copy is not None and blob.copy.path == tmp_path / "fed.gz.2"
    assert gzip.decompress(blob.copy.path.read_bytes()) == walked
    assert not (tmp_path / "fed.gz").exists()


def test_several_matches_are_written_again_from_the_snapshot(overlay: tuple[Runtime, Path],
                                                             context_dir: Path,
                                                             tmp_path: Path) -> None:
    """A wildcard's matches land side by side in one directory whose times each of them
    changes: nothing to promise; the walk's layer."""
    runtime, lower = overlay
    blob, walked = fed_copy(runtime, lower, context_dir, copy_step(("d0[12]",), "/w/"),
                            tmp_path)
    assert isinstance(blob, LayerBlob) and not blob.streamed
    assert blob.path.read_bytes() == walked


def test_a_failed_copy_fails_its_commit(overlay: tuple[Runtime, Path], context_dir: Path,
                                        tmp_path: Path) -> None:
    runtime, lower = overlay
    with pytest.raises(ExecutionError, match="not found"):
        fed_copy(runtime, lower, context_dir, copy_step(("missing",), "/x/"), tmp_path)
    assert not (tmp_path / "fed.tar").exists()


def test_the_commit_sees_a_copy_end_unfinished(overlay: tuple[Runtime, Path],
                                               tmp_path: Path) -> None:
    """A feed closed before the copy's end (its process died) fails the commit, and the
    commit leaves no blob."""
    runtime, lower = overlay
    snap = runtime.new_snapshot([lower])
    read_fd, write_fd = open_feed()
    os.write(write_fd, b"E" + (5).to_bytes(4, "little") + b"data/")
    os.close(write_fd)
    try:
        with pytest.raises(FeedBroken):
            runtime.commit(snap, tmp_path / "fed.tar", "none", feed=read_fd)
    finally:
        os.close(read_fd)
        runtime.remove(snap)
    assert not (tmp_path / "fed.tar").exists()


def test_a_copy_outlives_its_commit(overlay: tuple[Runtime, Path], context_dir: Path,
                                    tmp_path: Path) -> None:
    """No commit reads the feed (it failed early): the copy goes on and succeeds."""
    runtime, lower = overlay
    _, walked = fed_copy(runtime, lower, context_dir, copy_step((".",), "/app/"), tmp_path,
                         close_feed=True)
    assert b"app/d11/inner/deep" in walked
