"""Laws of COPY: copying a directory reproduces it (from a stage: owners too), and copying it
again onto the result changes nothing but nothing breaks."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocibuild.dockerfile.model import Instruction
from ocibuild.errors import Location
from ocibuild.executor.copy import copy_into
from ocibuild.executor.runtime import CallContext
from ocibuild.plan.model import CopyStep, StageRef

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates files owned by others")

_NAME = st.sampled_from(["a", "b", "c.txt", ".hidden", "sp ace", "ü"])


def ctx_over(root: Path, roots: dict[str, Path] | None = None) -> CallContext:
    """The runtime's real ``CallContext`` over plain directories (as root: chown on disk)."""
    return CallContext(root, dict(roots or {}), owns_files=True)


@st.composite
def trees(draw: st.DrawFn) -> list[tuple[str, str, int, int, str]]:
    """Entries (path, kind, mode, uid, payload) with parents before children."""
    entries: list[tuple[str, str, int, int, str]] = []
    dirs = [""]
    for _ in range(draw(st.integers(1, 12))):
        parent = draw(st.sampled_from(dirs))
        name = draw(_NAME)
        path = f"{parent}/{name}" if parent else name
        if any(e[0] == path for e in entries):
            continue
        kind = draw(st.sampled_from(["f", "f", "d", "l", "h"]))
        mode = draw(st.sampled_from([0o644, 0o600, 0o755, 0o4755, 0o2750, 0o1777, 0o000]))
        uid = draw(st.sampled_from([0, 1, 1000, 65534]))
        if kind == "l":
            payload = draw(st.sampled_from(["a", "../x", "/etc/passwd", "c.txt", "nowhere"]))
        elif kind == "h":
            files = [e[0] for e in entries if e[1] == "f"]
            if not files:
                continue
            payload = draw(st.sampled_from(files))
        else:
            payload = draw(st.text(max_size=20))
        if kind == "d":
            dirs.append(path)
        entries.append((path, kind, mode, uid, payload))
    return entries


def build(root: Path, entries: list[tuple[str, str, int, int, str]]) -> None:
    for path, kind, mode, uid, payload in entries:
        full = root / path
        if kind == "d":
            full.mkdir()
        elif kind == "f":
            full.write_text(payload)
        elif kind == "l":
            os.symlink(payload, full)
        else:
            os.link(root / payload, full)
            continue
        os.lchown(full, uid, uid + 1)
        if kind != "l":
            os.chmod(full, mode)
    for path, _kind, _mode, _uid, _payload in reversed(entries):
        os.utime(root / path, (1_000_000, 1_000_000 + len(path)), follow_symlinks=False)


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()  # the same order in both trees: hard-link groups name the same path
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            s = os.lstat(full)
            if stat.S_ISLNK(s.st_mode):
                payload: object = os.readlink(full)
            elif stat.S_ISREG(s.st_mode):
                payload = (Path(full).read_bytes(), inodes.setdefault(s.st_ino, rel))
            else:
                payload = None
            mode = s.st_mode if not stat.S_ISLNK(s.st_mode) else stat.S_IFLNK
            out[rel] = (mode, s.st_uid, s.st_gid, s.st_mtime_ns, payload)
    return out


@settings(max_examples=40, deadline=None)
@given(entries=trees())
def test_copy_reproduces_a_stage_tree(entries: list[tuple[str, str, int, int, str]]) -> None:
    work = Path(tempfile.mkdtemp(prefix="ocibuild-prop-"))
    try:
        src, root = work / "src", work / "root"
        (src / "tree").mkdir(parents=True)
        root.mkdir()
        build(src / "tree", entries)
        os.utime(src / "tree", (5, 5))
        step = CopyStep(Instruction("COPY", Location("Dockerfile", 1), "COPY"), add=False,
                        sources=("/tree",), dest="/out", source=StageRef(0))
        copy_into(ctx_over(root, {"src": src}), step)
        assert snapshot(root / "out") == snapshot(src / "tree")
        copy_into(ctx_over(root, {"src": src}), step)  # again, onto itself: same result
        assert snapshot(root / "out") == snapshot(src / "tree")
    finally:
        shutil.rmtree(work)
