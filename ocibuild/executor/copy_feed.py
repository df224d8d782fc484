"""A COPY's entries as it makes them, so that its layer is written while it copies.

A COPY into an overlay snapshot leaves its layer in the upper dir; committed after the copy,
the layer's tar (and, for a push, its compression and upload) waits for the last file. With a
feed, the commit runs beside the copy instead: the copier reports each entry once it is final
(``FeedWriter``) and the commit turns the reports into the layer's changes as they come
(``Feed.changes``), in layer order. A directory is reported when it is created, before its
entries, with the metadata the copier will give it at the end (its times change while it
fills); any other entry once its data and metadata are set.

The feed is only a guess at the diff: the commit checks it (``Runtime.commit``) against the
snapshot's real changes once the copy has ended, header by header, and writes the layer again
from the snapshot whenever they differ (hard links, a directory's xattrs, sources out of layer
order, anything the copier could not promise). A feed changes when the layer is written,
never its bytes.

Records on the pipe: one kind byte, then ``D`` mode uid gid mtime_ns and the path, ``E`` the
path, ``X`` (the copier cannot promise this copy: the commit waits for the end), ``Z`` (the
copy ended and changed nothing more). Paths are relative to the snapshot's root.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

from ocibuild.fs.forked import open_pipe
from ocibuild.fs.layer import Change, ChangeKind

_DIR = struct.Struct("<IIIqI")
_LEN = struct.Struct("<I")
_FLUSH = 8192
_PIPE_SIZE = 1 << 20  # the unprivileged maximum: the copier rarely waits for the commit


class FeedBroken(Exception):
    """The feed ended without the copy's end (the copy failed, or its process died)."""


class Unpromised(Exception):
    """The copier could not promise the copy's entries (``X``)."""


def open_feed() -> tuple[int, int]:
    """A pipe for one COPY's feed: ``(read end, write end)``, both close-on-exec."""
    return open_pipe(_PIPE_SIZE)


class FeedWriter:
    """The copier's end. Reports are buffered a little; a commit that went away (``EPIPE``)
    silences the feed and never fails the copy."""

    def __init__(self, fd: int, root: Path):
        self._fd = fd
        self._prefix = len(os.fspath(root)) + 1
        self._buf = bytearray()
        self._dead = False

    def rel(self, path: Path) -> str:
        """``path`` (under the root given) relative to it; ``""`` for the root itself."""
        return os.fspath(path)[self._prefix :]

    def directory(self, path: Path, mode: int, uid: int, gid: int, mtime_ns: int) -> None:
        name = os.fsencode(self.rel(path))
        self._buf += b"D" + _DIR.pack(mode, uid, gid, mtime_ns, len(name)) + name
        self._maybe_flush()

    def entry(self, path: Path) -> None:
        name = os.fsencode(self.rel(path))
        self._buf += b"E" + _LEN.pack(len(name)) + name
        self._maybe_flush()

    def unpromised(self) -> None:
        self._buf += b"X"
        self.flush()

    def end(self) -> None:
        self._buf += b"Z"
        self.flush()

    def _maybe_flush(self) -> None:
        if len(self._buf) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        view = memoryview(self._buf)
        try:
            while view and not self._dead:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise
            self._dead = True
        finally:
            view.release()
            self._buf.clear()


class Feed:
    """The commit's end: the reports of one copy, read as they come."""

    def __init__(self, fd: int):
        self._fd = fd
        self._buf = b""
        self._pos = 0
        self._ended = False  # the copy's end was read

    def changes(self, root: Path) -> Iterator[Change]:
        """The changes reported, for ``write_layer(ordered=True)``: a directory with its
        promised metadata as its ``stat``, any other entry read from disk when written. Ends
        at the copy's end; raises ``Unpromised`` or ``FeedBroken`` (see their docstrings)."""
        while (record := self._record()) is not None:
            kind, rel, promised = record
            if kind == b"X":
                raise Unpromised("the copier could not promise this copy's entries")
            yield Change(ChangeKind.ADD, rel, root, promised)

    def drain(self) -> None:
        """Skip the rest of the reports until the copy's end (``FeedBroken`` if it fails)."""
        while self._record() is not None:
            pass

    def _record(self) -> tuple[bytes, str, os.stat_result | None] | None:
        if self._ended:
            return None
        kind = self._take(1)
        if kind == b"Z":
            self._ended = True
            return None
        if kind == b"X":
            return kind, "", None
        if kind == b"D":
            mode, uid, gid, mtime_ns, n = _DIR.unpack(self._take(_DIR.size))
            promised = os.stat_result((stat.S_IFDIR | mode, 0, 0, 1, uid, gid, 0, 0,
                                       mtime_ns // 1_000_000_000, 0), {"st_mtime_ns": mtime_ns})
            return kind, os.fsdecode(self._take(n)), promised
        if kind == b"E":
            (n,) = _LEN.unpack(self._take(_LEN.size))
            return kind, os.fsdecode(self._take(n)), None
        raise FeedBroken(f"unknown feed record {kind!r}")

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        while len(self._buf) < end:
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                raise FeedBroken("the copy ended without finishing")
            self._buf = self._buf[self._pos :] + chunk
            end -= self._pos
            self._pos = 0
        out = self._buf[self._pos : end]
        self._pos = end
        return out
