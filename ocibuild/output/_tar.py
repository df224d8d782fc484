"""A deterministic, streaming tar writer for image archives (not for layers: see ocibuild.fs).

Entries carry mtime 0, uid/gid 0, no user/group names, mode 0755 for directories and 0644 for
files unless the caller gives one (containerd's archive exporter writes blobs and
``oci-layout`` read-only, 0444), in the order added; the output depends only on the entries. Works on non-seekable streams (``dest=-``).

Headers come from ``tarfile.TarInfo.tobuf`` (PAX format); data is copied straight to the
output: tarfile's own stream mode re-slices its buffer for every 10 KiB it writes, which
costs more than the disk for large blobs.
"""

from __future__ import annotations

import tarfile
from typing import BinaryIO

from ocibuild.errors import ContentError

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
CHUNK = 1 << 20


class ArchiveWriter:
    """Write entries to ``fileobj`` (not closed by ``close``). Directories are added once, on
    demand, before the first entry below them. Use as a context manager: a clean exit writes
    the end-of-archive blocks, an error writes nothing more."""

    def __init__(self, fileobj: BinaryIO):
        self._out = fileobj
        self._pos = 0
        self._dirs: set[str] = set()
        self._closed = False

    def _write(self, data: bytes | memoryview) -> None:
        self._out.write(data)
        self._pos += len(data)

    def _header(self, name: str, kind: bytes, size: int = 0, mode: int | None = None) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.size = size
        info.mtime = 0
        info.mode = mode if mode is not None else 0o755 if kind == tarfile.DIRTYPE else 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _parents(self, name: str) -> None:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self._dirs:
                self._dirs.add(d)
                self._header(d + "/", tarfile.DIRTYPE)

    def _pad(self) -> None:
        if self._pos % BLOCK:
            self._write(bytes(BLOCK - self._pos % BLOCK))

    def add_bytes(self, name: str, data: bytes, mode: int | None = None) -> None:
        self._parents(name)
        self._header(name, tarfile.REGTYPE, len(data), mode)
        self._write(data)
        self._pad()

    def add_stream(self, name: str, size: int, stream: BinaryIO, mode: int | None = None) -> None:
        """Copy exactly ``size`` bytes of ``stream``; ContentError if it ends early or has more
        (reading to its end also lets a verifying stream check its digest)."""
        self._parents(name)
        self._header(name, tarfile.REGTYPE, size, mode)
        left = size
        while left > 0:
            chunk = stream.read(min(CHUNK, left))
            if not chunk:
                raise ContentError(f"{name}: source ended before {size} bytes")
            self._write(chunk)
            left -= len(chunk)
        if stream.read(1):
            raise ContentError(f"{name}: source is longer than {size} bytes")
        self._pad()

    def close(self) -> None:
        """Write the end-of-archive blocks and pad to a whole record, as tar(1) does."""
        if self._closed:
            return
        self._closed = True
        self._write(bytes(2 * BLOCK))
        if self._pos % RECORD:
            self._write(bytes(RECORD - self._pos % RECORD))

    def abort(self) -> None:
        """Give up without writing anything more (the destination is being discarded)."""
        self._closed = True

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
