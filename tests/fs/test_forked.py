"""A layer's compressed copy made in a forked child: the same bytes, errors and cleanup."""

from __future__ import annotations

import errno
import functools
import gzip
import hashlib
import os
import select
import threading
from pathlib import Path

import pytest
import pyzstd

from ocibuild.fs import forked
from ocibuild.fs.forked import ForkedCompressor, open_copy


def _mixed(n_parts: int) -> bytes:
    """Random and text runs of odd lengths, about 3.5 MB."""
    out = bytearray()
    for i in range(n_parts):
        size = 70_001 + 41_017 * i
        out += os.urandom(size) if i % 2 else b"text line %d\n" % i * (size // 13)
    return bytes(out)


def _feed(copy: forked.Copy, data: bytes, chunk: int) -> None:
    for i in range(0, len(data), chunk):
        copy.write(data[i : i + chunk])
    copy.close()


def _forked_children() -> list[int]:
    """Children of this process that are forks of it (the same command line) or zombies."""
    me = str(os.getpid())
    mine = Path("/proc/self/cmdline").read_bytes()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[1] == me and (fields[0] == "Z" or (entry / "cmdline").read_bytes() == mine):
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _gone(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_the_child_writes_the_bytes_this_process_would(tmp_path: Path, compression: str) -> None:
    """Same data, different write sizes: the child's copy, digest and size are those of the
    copy made here, it decompresses to the data, and the child is reaped by close."""
    data = _mixed(7)
    made = {}
    for child, chunk in ((True, 65_537), (False, 1 << 20)):
        path = tmp_path / f"copy-{child}"
        with open(path, "wb") as f:
            copy = open_copy(f.fileno(), compression, None, 2, child=child)
            assert isinstance(copy, ForkedCompressor) == child
            _feed(copy, data, chunk)
            if child:
                assert isinstance(copy, ForkedCompressor)
                assert copy._pid is None  # reaped
        blob = path.read_bytes()
        assert copy.digest.hex == hashlib.sha256(blob).hexdigest()
        assert copy.size == len(blob)
        made[child] = blob
    assert made[True] == made[False]
    plain = gzip.decompress(made[True]) if compression == "gzip" else pyzstd.decompress(made[True])
    assert plain == data


def test_an_error_in_the_child_is_raised_by_the_parent(tmp_path: Path) -> None:
    """The child cannot write its output (a read-only descriptor): the parent raises the
    child's OSError, with its errno, and no process is left."""
    path = tmp_path / "ro"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        copy = ForkedCompressor(fd, "gzip", None, 2)
        pid = copy._pid
        assert pid is not None
        with pytest.raises(OSError) as info:
            _feed(copy, os.urandom(3 << 20), 1 << 20)
        assert info.value.errno == errno.EBADF
        assert _gone(pid)
    finally:
        os.close(fd)


def test_abort_stops_the_child(tmp_path: Path) -> None:
    with open(tmp_path / "copy", "wb") as f:
        copy = ForkedCompressor(f.fileno(), "gzip", None, 2)
        pid = copy._pid
        assert pid is not None
        copy.write(os.urandom(1 << 20))
        copy.abort()
        assert _gone(pid)
        copy.abort()  # twice is harmless


def test_the_child_keeps_no_other_descriptor_open(tmp_path: Path) -> None:
    """A pipe the parent's parent reads to its end (a sandbox's answer pipe) sees its end
    while the child still runs: the child closed its inherited copy."""
    r, w = os.pipe()
    with open(tmp_path / "copy", "wb") as f:
        copy = ForkedCompressor(f.fileno(), "gzip", None, 2)
        try:
            os.close(w)
            ready, _, _ = select.select([r], [], [], 5)
            assert ready and os.read(r, 1) == b""
        finally:
            os.close(r)
            copy.close()


def test_open_copy_forks_only_from_a_single_thread(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Forking while another thread may hold a lock is not safe: with another thread running
    the copy is made here; alone, in a child."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with open(tmp_path / "copy", "wb") as f:
            copy = open_copy(f.fileno(), "gzip", None, 2)
            assert not isinstance(copy, ForkedCompressor)
            _feed(copy, b"some bytes", 100)
    finally:
        stop.set()
        other.join()
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    with open(tmp_path / "copy2", "wb") as f:
        copy = open_copy(f.fileno(), "gzip", None, 2)
        assert isinstance(copy, ForkedCompressor)
        _feed(copy, b"some bytes", 100)
    assert gzip.decompress((tmp_path / "copy2").read_bytes()) == b"some bytes"


def test_write_layer_on_a_full_disk_removes_both_files(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The copy's child hits ENOSPC: write_layer raises it and leaves neither the layer nor
    the copy, and no process or thread behind."""
    from fs_helpers import small_disk

    from ocibuild.fs import layer
    from ocibuild.fs.diff import overlay_changes
    from ocibuild.fs.layer import write_layer

    monkeypatch.setattr(layer, "open_copy", functools.partial(open_copy, child=True))
    with small_disk(tmp_path, "3m", 6) as (tree, small):
        before = threading.active_count()
        with pytest.raises(OSError) as info:
            write_layer(overlay_changes(tree), tmp_path / "layer", "none", ordered=True,
                        also=(small / "copy", "gzip", None))
        assert info.value.errno == errno.ENOSPC
        assert not (tmp_path / "layer").exists()
        assert not (small / "copy").exists()
        assert threading.active_count() == before
        assert _forked_children() == []


def test_a_process_that_cannot_fork_compresses_in_itself(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """fork fails (EAGAIN: a process limit): the copy is made here, no descriptor leaks."""
    def no_fork() -> int:
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(threading, "active_count", lambda: 1)
    monkeypatch.setattr(forked.os, "fork", no_fork)
    fds = len(os.listdir("/proc/self/fd"))
    with open(tmp_path / "copy", "wb") as f:
        copy = open_copy(f.fileno(), "gzip", None, 2)
        assert not isinstance(copy, ForkedCompressor)
        _feed(copy, b"some bytes" * 1000, 999)
    assert gzip.decompress((tmp_path / "copy").read_bytes()) == b"some bytes" * 1000
    assert len(os.listdir("/proc/self/fd")) == fds
    with pytest.raises(OSError), open(tmp_path / "copy2", "wb") as f:
        open_copy(f.fileno(), "gzip", None, 2, child=True)  # asked for: the error is raised
    assert len(os.listdir("/proc/self/fd")) == fds
