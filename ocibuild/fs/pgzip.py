"""Parallel gzip: one gzip member whose blocks are compressed in a thread pool, like pigz.

The input is cut into fixed blocks at fixed offsets, each block is compressed on its own in a
thread pool (zlib-ng and zstd release the GIL) and ended with a sync flush; the pieces are
concatenated, then an empty final block, into ONE gzip member whose CRC-32 and size are
computed over the input. Inside a block, 4 KiB segments are probed with a fast zstd pass on
their first and last 512 bytes: runs of segments that do not shrink (random or already
compressed data, where zlib spends its time for nothing) become stored blocks; the other runs
are deflated, with the previous block's last 32 KiB as preset dictionary when the run opens the
block; where a deflated run meets a stored one, its edge is probed in 512-byte pieces and the
stored run takes the incompressible ones. The samples of a block are probed first a quarter of
the block at a time, and a block where they all barely shrink is stored whole. Every decision
depends on the bytes alone: same input, same level -> same bytes, whatever the write sizes or
thread count (the bytes can change with the zlib-ng or zstd version).

The only module state is each thread's single-threaded zstd probe context, so the writer is
safe in a forked child.
"""

from __future__ import annotations

import struct
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from zlib_ng import zlib_ng

from ocibuild.fs import zstdlib

GZIP_BLOCK = 1 << 20
_WINDOW = 32 * 1024
# mtime 0, no name, OS 255 ("unknown"): Go's compress/gzip header, as BuildKit writes it; the
# XFL byte is 2 for level 9, 4 for level 1, else 0 (as Go sets it).
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00%c\xff"


class Writable(Protocol):
    def write(self, data: bytes | bytearray | memoryview, /) -> int: ...


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
        zc = _probe_local.zc = zstdlib.ZstdCompressor(1)
    return zc


def _incompressible(segment: bytes) -> bool:
    """Whether the segment's first and last ``_SAMPLE`` bytes both barely shrink (a
    compressible head answers after one probe: most segments of text cost one call). A
    sample of ASCII bytes only is compressible without a probe: seven bits a byte at most,
    deflate's Huffman codes take that much off (random or compressed data is ASCII-only
    with a chance of 2^-512)."""
    zc = _probe_compressor()
    frame = zc.FLUSH_FRAME
    n = len(segment)
    if n <= 2 * _SAMPLE:
        return not segment.isascii() and len(zc.compress(segment, frame)) > n * _STORED_RATIO
    limit = _SAMPLE * _STORED_RATIO
    head, tail = segment[:_SAMPLE], segment[-_SAMPLE:]
    return (not head.isascii() and len(zc.compress(head, frame)) > limit
            and not tail.isascii() and len(zc.compress(tail, frame)) > limit)


def _incompressible_segments(block: bytes) -> tuple[list[bool], list[bool]]:
    """``_incompressible`` of each ``_SEGMENT`` of ``block``, as one loop (the same answers
    without a function call and a thread-local lookup per segment: a block of random data
    spends most of its time here), and whether each whole segment's head is."""
    n = len(block)
    whole = n - n % _SEGMENT
    zc = _probe_compressor()
    compress, frame = zc.compress, zc.FLUSH_FRAME
    limit = _SAMPLE * _STORED_RATIO
    tail = _SEGMENT - _SAMPLE
    heads = [not (h := block[i : i + _SAMPLE]).isascii() and len(compress(h, frame)) > limit
             for i in range(0, whole, _SEGMENT)]
    flags = [head and not (t := block[i + tail : i + _SEGMENT]).isascii()
             and len(compress(t, frame)) > limit
             for head, i in zip(heads, range(0, whole, _SEGMENT), strict=True)]
    if whole < n:
        flags.append(_incompressible(block[whole:]))
    return flags, heads


def _runs(block: bytes) -> list[tuple[int, int, bool]]:
    """The block cut into runs ``(start, end, stored)``: segments that agree form a run
    (``_incompressible_segments``), then a stored run takes the incompressible ``_SAMPLE``
    pieces at the edge of each deflated run next to it (``_edge``). Random data rarely ends on
    a segment boundary (a compressed file in a tar ends anywhere); without this, the rest of
    its last segment would be deflated, the slowest thing deflate does, for nothing. A run
    with no stored neighbour costs no probe more."""
    n = len(block)
    flags, heads = _incompressible_segments(block)
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
        if k > 0:  # a stored run before: it takes pieces at our start (a segment's head)
            head = heads[start // _SEGMENT] if start // _SEGMENT < len(heads) else None
            start += _SAMPLE * _edge(block, start, min(end - start, _SEGMENT) // _SAMPLE, 1,
                                     head)
            runs[k - 1][1] = run[0] = start
        if k + 1 < len(runs):  # a stored run after: it takes pieces at our end
            end -= _SAMPLE * _edge(block, end, min(end - start, _SEGMENT) // _SAMPLE, -1)
            runs[k + 1][0] = run[1] = end
    return [(start, end, stored) for start, end, stored in runs if end > start]


def _edge(block: bytes, at: int, pieces: int, step: int, first: bool | None = None) -> int:
    """How many of the ``pieces`` ``_SAMPLE``-byte pieces from ``at`` (forwards for ``step``
    1, backwards for -1) a stored run ending (or starting) at ``at`` takes: none when the
    first is compressible, else the count is bisected as if the pieces changed once, from
    incompressible to compressible (what a random file ending inside a segment gives). Four
    probes at most for a segment of eight pieces, one when the first piece compresses;
    ``first``: the first piece's answer, when a probe already gave it."""

    def incompressible(k: int) -> bool:  # the k-th piece from ``at``, counting from 1
        offset = at + (k - 1) * _SAMPLE if step > 0 else at - k * _SAMPLE
        return _incompressible(block[offset : offset + _SAMPLE])

    if pieces == 0 or not (incompressible(1) if first is None else first):
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
    for start, end, stored in _runs(block):
        run = view[start:end]
        if stored:
            _stored(run, out)
        else:
            use_dict = start == 0 and zdict and not _incompressible(zdict[-_SEGMENT:])
            c = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15, 8, zlib_ng.Z_DEFAULT_STRATEGY,
                                    *((zdict,) if use_dict else ()))
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
