"""Compressing a layer's second copy in a child process (``write_layer(also=...)``).

A commit that writes the plain layer and its compressed copy in one pass runs, in one Python
process, the tar producer, the feeder that hashes and writes the plain tar, and the gzip
workers. The workers' deflate and zstd calls release the GIL, but everything between them
(probing segments, cutting runs, joining pieces) needs it, and so does the producer: on a
context of 20,000 small files the process used 1.2 of 2 cores and switched threads ~100,000
times. A forked child has a GIL of its own: the parent sends it the tar through a pipe, and
it compresses, hashes and writes the copy, then answers with the copy's digest and size.

The child is forked only from a process with a single thread (a commit's sandbox process
is one when ``write_layer`` starts): forking a process whose other threads may hold locks
the child would then wait on forever is not safe. Elsewhere the copy is compressed in the
calling process, the same bytes either way (:func:`open_copy`).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import pickle
import signal
import threading
from typing import Protocol

from ocibuild.digest import Digest, DigestingWriter
from ocibuild.fs.compression import open_compressor

_PIPE_SIZE = 1 << 20  # the tar sink's batch: one write fills the pipe, one read empties it


def open_pipe(size: int) -> tuple[int, int]:
    """A close-on-exec pipe ``(read end, write end)`` holding ``size`` bytes where the kernel
    allows it (``pipe-max-size``, 1 MiB unprivileged); a smaller one only costs more switches."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, size)
    return read_fd, write_fd


class Copy(Protocol):
    """A compressor writing into a file it hashes: ``digest`` and ``size`` once closed."""

    digest: Digest
    size: int

    def write(self, data: bytes | bytearray | memoryview) -> int: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def open_copy(fd: int, compression: str, level: int | None, threads: int | None,
              *, child: bool | None = None) -> Copy:
    """A compressor writing ``compression`` into the open file ``fd`` and hashing it.

    ``child``: compress in a forked child process; by default, when this process has a
    single thread (see the module docstring) and can fork."""
    if child is None and threading.active_count() == 1:
        with contextlib.suppress(OSError):  # no fork (a process limit): compress here
            return ForkedCompressor(fd, compression, level, threads)
    if child:
        return ForkedCompressor(fd, compression, level, threads)
    return _InProcess(fd, compression, level, threads)


class _FdWriter:
    """Writes whole buffers to a file descriptor (no buffering: the fd is shared)."""

    def __init__(self, fd: int):
        self._fd = fd

    def write(self, data: bytes | bytearray | memoryview) -> int:
        _write_all(self._fd, data)
        return len(data)


class _InProcess:
    def __init__(self, fd: int, compression: str, level: int | None, threads: int | None):
        self._out = DigestingWriter(_FdWriter(fd))  # type: ignore[arg-type]
        self._comp = open_compressor(self._out, compression, level, threads)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        return self._comp.write(data)

    def close(self) -> None:
        self._comp.close()
        self.digest, self.size = self._out.digest, self._out.size

    def abort(self) -> None:
        self._comp.abort()


class ForkedCompressor:
    """``open_compressor`` in a forked child: bytes written here reach it through a pipe.

    The child reads the pipe in whole batches of ``_PIPE_SIZE`` bytes (the compressor sees
    the writes it would see in this process, so the bytes are the same), compresses into
    ``fd`` and hashes what it writes. ``close`` returns when the child has written everything
    and raises what it raised; ``abort`` kills it. Nothing is left running either way.
    """

    def __init__(self, fd: int, compression: str, level: int | None, threads: int | None):
        data_r, data_w = open_pipe(_PIPE_SIZE)
        answer_r, answer_w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except OSError:
            for end in (data_r, data_w, answer_r, answer_w):
                os.close(end)
            raise
        if pid == 0:  # pragma: no cover - runs in the child, reported through the answer pipe
            code = 1
            answer: object = None
            try:
                _close_other_fds((fd, data_r, answer_w))
                answer = _compress(data_r, fd, compression, level, threads)
                code = 0
            except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent
                answer = exc
            finally:
                with contextlib.suppress(BaseException):
                    _write_all(answer_w, _pickled(answer))
                os._exit(code)
        os.close(data_r)
        os.close(answer_w)
        self._pid: int | None = pid
        self._data: int | None = data_w
        self._answer = answer_r

    def write(self, data: bytes | bytearray | memoryview) -> int:
        assert self._data is not None, "write after close"
        try:
            _write_all(self._data, data)
        except BrokenPipeError:
            self._finish()  # the child stopped reading: raises what it raised
            raise
        return len(data)

    def close(self) -> None:
        """End the input; wait for the child and take its answer (or raise its error)."""
        self._finish()

    def abort(self) -> None:
        if self._pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(BaseException):
            self._finish()

    def _finish(self) -> None:
        if self._data is not None:
            os.close(self._data)
            self._data = None
        if self._pid is None:
            return
        try:
            data = bytearray()
            while chunk := os.read(self._answer, 65536):
                data += chunk
        finally:
            os.close(self._answer)
            _, status = os.waitpid(self._pid, 0)
            self._pid = None
        answer = pickle.loads(data) if data else None
        if isinstance(answer, BaseException):
            raise answer
        if not isinstance(answer, tuple) or status != 0:
            raise OSError(f"the compressing process died ({_describe(status)})")
        self.digest, self.size = answer


def _compress(data_r: int, fd: int, compression: str, level: int | None,
              threads: int | None) -> tuple[Digest, int]:
    gc.disable()  # short-lived; a collection would copy the pages the parent shares with it
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it (EOF or SIGKILL)
    copy = _InProcess(fd, compression, level, threads)
    try:
        buf = bytearray(_PIPE_SIZE)
        view = memoryview(buf)
        while True:
            n = _read_full(data_r, view)
            if n:
                copy.write(view[:n])
            if n < len(view):
                break
        copy.close()
    except BaseException:
        copy.abort()
        raise
    return copy.digest, copy.size


def _read_full(fd: int, view: memoryview) -> int:
    """Fill ``view`` from ``fd``; fewer bytes only at end of file."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if not n:
            break
        got += n
    return got


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _pickled(answer: object) -> bytes:
    try:
        return pickle.dumps(answer)
    except Exception:  # noqa: BLE001 - an exception that does not pickle: its text does
        return pickle.dumps(OSError(f"the compressing process failed: {answer!r}"))


def _close_other_fds(keep: tuple[int, ...]) -> None:
    """Close every descriptor above stderr but ``keep``: a pipe end the parent's parent waits
    on for end of file (a sandbox's answer pipe) must not stay open here."""
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
