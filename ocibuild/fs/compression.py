"""Layer compression in and out: parallel gzip, multi-threaded zstd, none; detection on read.

Writers (``open_compressor``) are plain objects with ``write``/``close`` that push compressed
bytes into a caller-owned ``raw`` file; ``close`` finishes the stream and stops every thread the
writer started (``abort`` does the same after an error, discarding output). Readers
(``open_decompressed``) are context managers yielding an object with ``read(n)``; leaving the
block stops their threads. The only module state is each thread's single-threaded zstd probe
context, so both are safe in a forked child.

Parallel gzip works like pigz: the input is cut into fixed blocks at fixed offsets, each block
is compressed on its own in a thread pool (zlib-ng and zstd release the GIL) and ended with a sync
flush; the pieces are concatenated, then an empty final block, into ONE gzip member whose CRC-32
and size are computed over the input. Inside a block, 4 KiB segments are probed with a fast zstd
pass on their first and last 512 bytes: runs of segments that do not shrink (random or already
compressed data, where zlib spends its time for nothing) become stored blocks; the other runs
are deflated, with the previous block's last 32 KiB as preset dictionary when the run opens the
block; where a deflated run meets a stored one, its edge is probed in 512-byte pieces and the
stored run takes the incompressible ones. The samples of a block are probed first a quarter of
the block at a time, and a block where they all barely shrink is stored whole. Every decision
depends on the bytes alone: same input, same level -> same bytes, whatever the write sizes or
thread count (the bytes can change with the zlib-ng or zstd version).

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
import struct
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol

from zlib_ng import zlib_ng

from ocibuild.errors import ContentError

if TYPE_CHECKING:
    import pyzstd

GZIP_BLOCK = 1 << 20
_WINDOW = 32 * 1024
# mtime 0, no name, OS 255 ("unknown"): Go's compress/gzip header, as BuildKit writes it; the
# XFL byte is 2 for level 9, 4 for level 1, else 0 (as Go sets it).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00%c\xff"
_READ_CHUNK = 1 << 20


def _zstd() -> Any:
    """pyzstd, imported on first use: it costs ~25 ms (through typing_extensions and asyncio),
    and a build that compresses nothing (its layers are committed plain) does not need it."""
    import pyzstd

    return pyzstd


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


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
    """zstd with its own worker threads (pyzstd releases the GIL while compressing).

    Measured against a thread of our own feeding a single-threaded compressor: that one used
    less CPU but was slower on a busy machine and peaked at 159 MB of RSS for a 1 GB layer."""

    def __init__(self, raw: Writable, level: int, workers: int):
        self._raw = raw
        zstd = _zstd()
        params = {
            zstd.CParameter.compressionLevel: level,
            zstd.CParameter.checksumFlag: 1,
            zstd.CParameter.nbWorkers: workers,
        }
        if workers:  # always, see open_compressor
            # 4 MiB jobs: the default (several times the window) peaked above 100 MB of RSS
            # for a 1 GB layer and was not faster; the ratio cost is ~0.5%.
            params[zstd.CParameter.jobSize] = 4 << 20
        self._zc: pyzstd.ZstdCompressor | None = zstd.ZstdCompressor(params)

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


# Parallel gzip cuts each block into segments and probes each with a fast zstd pass; a run of
# segments that barely shrink (random or already compressed data) is written as stored deflate
# blocks instead of being deflated at ~25 MB/s for no gain. The decision depends only on the
# segment's bytes, so the output stays deterministic.
_SEGMENT = 4096
_SAMPLE = 512
_STORED_RATIO = 0.95  # a probe larger than this fraction of its input: store the segment
_BLOCK_STORED_RATIO = 0.99  # the same for all of a block's samples at once: store the block
_STORED_MAX = 0xFFFF  # a stored block's LEN field is 16 bits
_STORED_HEADER = b"\x00"  # BFINAL=0, BTYPE=00, padding: valid after a sync flush (byte-aligned)
# An empty final block with fixed codes, written once after the last block ends the stream.
_FINAL_BLOCK = b"\x03\x00"
_probe_local = threading.local()


def _probe_compressor() -> Any:
    """This thread's zstd level-1 compressor for probes."""
    zc = getattr(_probe_local, "zc", None)
    if zc is None:
        zc = _probe_local.zc = _zstd().ZstdCompressor(1)
    return zc


def _incompressible(segment: memoryview | bytes) -> bool:
    """Whether a probe of the segment's first and last ``_SAMPLE`` bytes both barely shrink
    (a compressible head answers after one probe: most segments of text cost one call)."""
    zc = _probe_compressor()
    frame = zc.FLUSH_FRAME
    n = len(segment)
    if n <= 2 * _SAMPLE:
        return len(zc.compress(segment, frame)) > n * _STORED_RATIO
    limit = _SAMPLE * _STORED_RATIO
    return (
        len(zc.compress(segment[:_SAMPLE], frame)) > limit
        and len(zc.compress(segment[-_SAMPLE:], frame)) > limit
    )


def _incompressible_segments(view: memoryview) -> list[bool]:
    """``_incompressible`` of each ``_SEGMENT`` of ``view``, as one loop: the same answers
    without a function call and a thread-local lookup per segment (a block of random data
    spends most of its time here)."""
    n = len(view)
    whole = n - n % _SEGMENT
    zc = _probe_compressor()
    compress, frame = zc.compress, zc.FLUSH_FRAME
    limit = _SAMPLE * _STORED_RATIO
    head, tail = _SAMPLE, _SEGMENT - _SAMPLE
    flags = [
        len(compress(view[i : i + head], frame)) > limit
        and len(compress(view[i + tail : i + _SEGMENT], frame)) > limit
        for i in range(0, whole, _SEGMENT)
    ]
    if whole < n:
        flags.append(_incompressible(view[whole:]))
    return flags


def _runs(view: memoryview) -> list[tuple[int, int, bool]]:
    """The block cut into runs ``(start, end, stored)``: segments that agree form a run
    (``_incompressible_segments``), then a stored run takes the incompressible ``_SAMPLE``
    pieces at the edge of each deflated run next to it (``_edge``). Random data rarely ends on
    a segment boundary (a compressed file in a tar ends anywhere); without this, the rest of
    its last segment would be deflated, the slowest thing deflate does, for nothing. A run
    with no stored neighbour costs no probe more."""
    n = len(view)
    flags = _incompressible_segments(view)
    runs: list[list[Any]] = []
    for i, flag in enumerate(flags):
        if runs and runs[-1][2] == flag:
            runs[-1][1] = min((i + 1) * _SEGMENT, n)
        else:
            runs.append([i * _SEGMENT, min((i + 1) * _SEGMENT, n), flag])
    for k, run in enumerate(runs):
        if run[2]:
            continue
        start, end = run[0], run[1]
        if k > 0:  # a stored run before: it takes pieces at our start
            start += _SAMPLE * _edge(view, start, min(end - start, _SEGMENT) // _SAMPLE, 1)
            runs[k - 1][1] = run[0] = start
        if k + 1 < len(runs):  # a stored run after: it takes pieces at our end
            end -= _SAMPLE * _edge(view, end, min(end - start, _SEGMENT) // _SAMPLE, -1)
            runs[k + 1][0] = run[1] = end
    return [(start, end, stored) for start, end, stored in runs if end > start]


def _edge(view: memoryview, at: int, pieces: int, step: int) -> int:
    """How many of the ``pieces`` ``_SAMPLE``-byte pieces from ``at`` (forwards for ``step``
    1, backwards for -1) a stored run ending (or starting) at ``at`` takes: none when the
    first is compressible, else the count is bisected as if the pieces changed once, from
    incompressible to compressible (what a random file ending inside a segment gives). Five
    probes at most for a segment of eight pieces, one when the first piece compresses."""
    zc = _probe_compressor()
    compress, frame = zc.compress, zc.FLUSH_FRAME
    limit = _SAMPLE * _STORED_RATIO

    def incompressible(k: int) -> bool:  # the k-th piece from ``at``, counting from 1
        first = at + (k - 1) * _SAMPLE if step > 0 else at - k * _SAMPLE
        return len(compress(view[first : first + _SAMPLE], frame)) > limit

    if pieces == 0 or not incompressible(1):
        return 0
    low, high = 1, pieces  # piece ``low`` is incompressible; the answer is in [low, high]
    while low < high:
        mid = (low + high + 1) // 2
        if incompressible(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _block_incompressible(view: memoryview) -> bool:
    """Whether the samples ``_incompressible_segments`` would probe, every segment's head and
    tail, barely shrink (``_BLOCK_STORED_RATIO``) when probed together, a quarter of the block
    per call: then the whole block is stored. A block of random or compressed data answers
    after four calls instead of two per segment; a block with more than a few compressible
    segments fails in the first quarter that holds them and is probed segment by segment."""
    n = len(view)
    whole = n - n % _SEGMENT
    if not whole:
        return False
    zc = _probe_compressor()
    tail = _SEGMENT - _SAMPLE
    quarter = max(_SEGMENT, whole // 4 - whole // 4 % _SEGMENT)
    for first in range(0, whole, quarter):
        samples = b"".join([view[i + off : i + off + _SAMPLE]
                            for i in range(first, min(first + quarter, whole), _SEGMENT)
                            for off in (0, tail)])
        if len(zc.compress(samples, zc.FLUSH_FRAME)) <= len(samples) * _BLOCK_STORED_RATIO:
            return False
    return True


def _stored(view: memoryview, out: list[bytes | memoryview]) -> None:
    for i in range(0, len(view), _STORED_MAX):
        piece = view[i : i + _STORED_MAX]
        n = len(piece)
        out.append(_STORED_HEADER + struct.pack("<HH", n, n ^ 0xFFFF))
        out.append(piece)


def _deflate_block(block: bytes, zdict: bytes, level: int) -> bytes:
    """Raw deflate of ``block`` ending byte-aligned (sync flush), never a final block.

    A block whose samples all barely shrink is stored whole. Otherwise it is cut into runs
    (``_runs``): stored runs become stored blocks, the others are deflated with a fresh stream
    whose dictionary is the previous block's tail when the run starts the block and that tail
    was deflated too (after a stored run, a dictionary of random bytes would cost time and
    find nothing)."""
    view = memoryview(block)
    out: list[bytes | memoryview] = []
    if _block_incompressible(view):
        _stored(view, out)
        return b"".join(out)
    for start, end, stored in _runs(view):
        run = view[start:end]
        if stored:
            _stored(run, out)
        else:
            if start == 0 and zdict and not _incompressible(zdict[-_SEGMENT:]):
                c = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15, 8, zlib_ng.Z_DEFAULT_STRATEGY, zdict)
            else:
                c = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15, 8, zlib_ng.Z_DEFAULT_STRATEGY)
            out.append(c.compress(run))
            out.append(c.flush(zlib_ng.Z_SYNC_FLUSH))
    return b"".join(out)


class ParallelGzipWriter:
    """One gzip member compressed in parallel blocks; see the module docstring."""

    def __init__(
        self, raw: Writable, level: int = 6, *, threads: int = 2, block_size: int = GZIP_BLOCK
    ):
        self._raw = raw
        self._level = level
        self._block_size = block_size
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="ocibuild-gzip")
        self._pending: deque[Future[bytes]] = deque()
        self._max_pending = 2 * max(1, threads) + 1
        self._buf = bytearray()
        self._tail = b""
        self._crc = 0
        self._size = 0
        raw.write(_GZIP_HEADER % {9: 2, 1: 4}.get(level, 0))

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        self._crc = zlib_ng.crc32(data, self._crc)
        self._size += n
        bs = self._block_size
        if n == bs and not self._buf:  # a whole block at a block's offset (the tar's batches)
            self._submit(bytes(data))
            return n
        self._buf += data
        if len(self._buf) >= bs:
            view = memoryview(self._buf)
            start = 0
            while len(self._buf) - start >= bs:
                self._submit(bytes(view[start : start + bs]))
                start += bs
            view.release()
            del self._buf[:start]
        return n

    def _submit(self, block: bytes) -> None:
        if not block:
            return
        zdict, self._tail = self._tail, block[-_WINDOW:]
        self._pending.append(self._pool.submit(_deflate_block, block, zdict, self._level))
        while len(self._pending) > self._max_pending:
            self._raw.write(self._pending.popleft().result())

    def close(self) -> None:
        try:
            self._submit(bytes(self._buf))
            self._buf = bytearray()
            while self._pending:
                self._raw.write(self._pending.popleft().result())
            self._raw.write(_FINAL_BLOCK)
            self._raw.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))
        finally:
            self._pool.shutdown(wait=True)

    def abort(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)


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
        with _zstd().ZstdFile(source, "rb") as zf:
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
        except (OSError, EOFError, ValueError, lzma.LZMAError, _zstd().ZstdError) as exc:
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
        except zlib_ng.error as exc:
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
