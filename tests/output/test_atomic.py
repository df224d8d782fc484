"""Outputs are written beside their destination and renamed over it, except where a rename
would replace something that is not a file of ours to replace."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from ocibuild.output._atomic import atomic_file


def test_a_fifo_destination_is_written_in_place(tmp_path: Path) -> None:
    """``--iidfile /dev/null`` or a FIFO: renaming over it would put a plain file where the
    device node or the pipe was (as root, the host's /dev/null)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    with atomic_file(fifo) as f:
        f.write(b"sha256:abc")
    reader.join(10)
    assert got == [b"sha256:abc"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_symlink_destination_keeps_the_link_and_replaces_its_target(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"old")
    (tmp_path / "link").symlink_to("real")
    with atomic_file(tmp_path / "link") as f:
        f.write(b"new")
    assert os.readlink(tmp_path / "link") == "real"
    assert (tmp_path / "real").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "iid"
    dest.write_bytes(b"before")
    with pytest.raises(RuntimeError), atomic_file(dest) as f:
        f.write(b"half")
        raise RuntimeError("build failed")
    assert dest.read_bytes() == b"before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iid"]
