"""Early writeback of a file written in one pass (a layer blob on its way into the store).

The store fsyncs a blob before it names it (``store.blobs``), and a build ends by waiting for
the last of those fsyncs: for a 30 MB layer, 15-30 ms here spent writing every page the file
dirtied. Asking the kernel to start writing each stretch as soon as it is complete
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``, which does not wait) leaves that fsync only the
tail. Python's ``os`` lacks the call; ctypes reaches it, and where it cannot (no glibc), the
file is written as before.
"""

from __future__ import annotations

import ctypes
import io
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

STRETCH = 8 << 20  # bytes written before the kernel is asked to start writing them back
_SYNC_FILE_RANGE_WRITE = 2


def _load() -> Callable[[int, int, int, int], int] | None:
    try:
        call = ctypes.CDLL("libc.so.6", use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


_sync_file_range = _load()


class WritebackFile(io.FileIO):
    """A file opened for writing from its start, in order, whose pages the kernel starts
    writing back every ``STRETCH`` bytes (a failed request changes nothing: it is a hint).
    Unbuffered: each ``write`` goes whole to the kernel, in as many calls as it takes."""

    def __init__(self, path: str | os.PathLike[str]):
        super().__init__(path, "wb")
        self._written = 0
        self._requested = 0  # bytes from the start already handed to the kernel

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += super().write(view[done:]) or 0
        self._written += done
        if self._written - self._requested >= STRETCH and _sync_file_range is not None:
            _sync_file_range(self.fileno(), self._requested, self._written - self._requested,
                             _SYNC_FILE_RANGE_WRITE)
            self._requested = self._written
        return done
