"""Layer compression in and out: parallel gzip, multi-threaded zstd, none; detection on read.

Writers (``open_compressor``) are plain objects with ``write``/``close`` that push compressed
bytes into a caller-owned ``raw`` file; ``close`` finishes the stream and stops every thread the
writer started (``abort`` does the same after an error, discarding output). Readers
(``open_decompressed``) are context managers yielding an object with ``read(n)``; leaving the
block stops their threads. There is no module state: both are safe in a forked child.

Parallel gzip (``fs.pgzip``) compresses blocks in a thread pool like pigz.

Deflate and inflate are zlib-ng's (the ``zlib-ng`` package, zlib's API): at the same level it
compresses 2-3x faster than the system zlib for a ratio within 1-3% (measured on shared
libraries and Python sources at level 6: 68 against 24 MB/s, 75 against 36), and BuildKit's
default level is the level we keep.
"""

from __future__ import annotations

import bz2
import contextlib
import lzma
import os
import queue
import threading
from collections.abc import Iterator
from typing import Protocol

from zlib_ng import zlib_ng

from ocibuild.errors import ContentError
from ocibuild.fs import zstdlib
from ocibuild.fs.pgzip import ParallelGzipWriter, Writable

_READ_CHUNK = 1 << 20


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Compressor(Protocol):
    def write(self, data: bytes | bytearray | memoryview) -> int: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def open_compressor(
    raw: Writable, compression: str, level: int | None = None, threads: int | None = None
) -> Compressor:
    """A writer compressing into ``raw`` with ``"gzip"``, ``"zstd"`` or ``"none"``."""
    threads = threads or len(os.sched_getaffinity(0)) or 1
    if compression == "gzip":
        return ParallelGzipWriter(raw, 6 if level is None else level, threads=threads)
    if compression == "zstd":
        # Never 0 workers: zstd's single-threaded mode writes other bytes, and a layer's digest
        # must not depend on the machine's core count (1..n workers all give the same bytes).
        return _ZstdWriter(raw, 3 if level is None else level, max(1, threads))
    if compression in ("none", "uncompressed"):
        return _PlainWriter(raw)
    raise ValueError(f"unknown compression {compression!r}: want gzip, zstd or none")


class _PlainWriter:
    def __init__(self, raw: Writable):
        self._raw = raw

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._raw.write(data)
        return len(data)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _ZstdWriter:
    """zstd with its own worker threads (zstd releases the GIL while compressing).

    Measured against a thread of our own feeding a single-threaded compressor: that one used
    less CPU but was slower on a busy machine and peaked at 159 MB of RSS for a 1 GB layer."""

    def __init__(self, raw: Writable, level: int, workers: int):
        self._raw = raw
        param = zstdlib.CompressionParameter
        params: dict[int, int] = {
            param.compression_level: level,
            param.checksum_flag: 1,
            param.nb_workers: workers,
        }
        if workers:  # always, see open_compressor
            # 4 MiB jobs: the default (several times the window) peaked above 100 MB of RSS
            # for a 1 GB layer and was not faster; the ratio cost is ~0.5%.
            params[param.job_size] = 4 << 20
        self._zc: zstdlib.ZstdCompressor | None = zstdlib.ZstdCompressor(options=params)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        assert self._zc is not None, "write after close"
        out = self._zc.compress(data)
        if out:
            self._raw.write(out)
        return len(data)

    def close(self) -> None:
        if self._zc is not None:
            self._raw.write(self._zc.flush(self._zc.FLUSH_FRAME))
        self._zc = None  # frees the context: zstd's worker threads end here

    def abort(self) -> None:
        self._zc = None


# -- reading ---------------------------------------------------------------------------------


def detect_compression(head: bytes) -> str:
    """``gzip``, ``zstd``, ``bzip2``, ``xz`` or ``none`` from a stream's first bytes."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"BZh"):
        return "bzip2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    return "none"


class _Prefixed:
    """A read-only stream that first returns ``head`` and then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: Readable):
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += self._stream.read(n - len(data))
            return data
        return self._stream.read(n)

    def readable(self) -> bool:
        return True


@contextlib.contextmanager
def open_decompressed(stream: Readable) -> Iterator[Readable]:
    """Yield ``stream`` decompressed (format detected from its content). Caller owns ``stream``."""
    head = stream.read(6)
    kind = detect_compression(head)
    source = _Prefixed(head, stream)
    if kind == "gzip":
        reader = _ThreadedGunzip(source)
        try:
            yield reader
        finally:
            reader.close()
    elif kind == "zstd":
        with zstdlib.ZstdFile(source, "rb") as zf:  # type: ignore[call-overload]
            yield _wrap_errors(zf, "zstd")
    elif kind == "bzip2":
        with bz2.BZ2File(source, "rb") as bf:  # type: ignore[call-overload]
            yield _wrap_errors(bf, "bzip2")
    elif kind == "xz":
        with lzma.LZMAFile(source, "rb") as xf:  # type: ignore[arg-type]
            yield _wrap_errors(xf, "xz")
    else:
        yield source


class _wrap_errors:  # noqa: N801 - a tiny adapter, named like a function on purpose
    def __init__(self, inner: Readable, kind: str):
        self._inner = inner
        self._kind = kind

    def read(self, n: int = -1) -> bytes:
        try:
            return self._inner.read(n)
        except (OSError, EOFError, ValueError, lzma.LZMAError, zstdlib.ZstdError) as exc:
            raise ContentError(f"corrupt {self._kind} stream: {exc}") from exc


class _ThreadedGunzip:
    """Gunzip in a background thread (zlib-ng releases the GIL) so inflating overlaps the
    caller's writes, as ``tar -xzf`` overlaps gzip and tar. Handles concatenated members."""

    _EOF = object()

    def __init__(self, source: _Prefixed):
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._buf = b""
        self._pos = 0
        self._done = False
        self._thread = threading.Thread(target=self._run, name="ocibuild-gunzip", daemon=True)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            d = zlib_ng.decompressobj(31)
            data = b""
            in_member = False
            while not self._stop.is_set():
                if not data:
                    data = self._source.read(_READ_CHUNK)
                    if not data:
                        break
                if d.eof:
                    # After a member: another member, or zero padding some writers append.
                    if data.count(0) == len(data):
                        data = b""
                        continue
                    d = zlib_ng.decompressobj(31)
                out = d.decompress(data, 4 * _READ_CHUNK)
                in_member = not d.eof
                data = d.unused_data if d.eof else d.unconsumed_tail
                if out and not self._put(out):
                    return
            if in_member:
                raise ContentError("truncated gzip stream")
            self._put(self._EOF)
        except zlib_ng.error as exc:  # type: ignore[misc]  # an exception class, untyped
            self._put(ContentError(f"corrupt gzip stream: {exc}"))
        except (ContentError, OSError) as exc:
            self._put(exc)

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            parts = []
            while chunk := self.read(_READ_CHUNK):
                parts.append(chunk)
            return b"".join(parts)
        if self._pos >= len(self._buf):
            if self._done:
                return b""
            item = self._queue.get()
            if item is self._EOF:
                self._done = True
                return b""
            if isinstance(item, BaseException):
                self._done = True
                raise item
            assert isinstance(item, bytes)
            self._buf, self._pos = item, 0
        if self._pos == 0 and n >= len(self._buf):
            data = self._buf
        else:
            data = self._buf[self._pos : self._pos + n]
        self._pos += len(data)
        return data

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
