"""``flock`` helpers. Locks are advisory and per open file, so they also serialise threads
that open the lock file separately, and they vanish when a process dies (no stale locks).

Per open file also means that a child forked while a lock is held holds it too, until it exits
or closes its copy of the descriptor: a sandbox forked by one stage's thread while another's
held a lock for a moment would keep that lock for as long as its RUN lasts. So a forked child
that goes on running Python code closes them first (``close_inherited``), and the fork
happens under ``fork_guard``: no descriptor is then between its opening and its entry in the
table, or between leaving the table and its closing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from ocibuild.errors import StoreError

_FDS: set[int] = set()  # descriptors of the locks ``locked`` holds now, in any thread
_FDS_LOCK = threading.Lock()


def fork_guard() -> threading.Lock:
    """Held around a fork whose child calls ``close_inherited``."""
    return _FDS_LOCK


def close_inherited() -> None:
    """In a freshly forked child that goes on running Python code: close the descriptors of
    the locks the parent's threads held (``locked``), so the child does not hold them too,
    and forget them. The child has a single thread: no lock is needed, and set operations are
    atomic under the GIL, so the set is whole."""
    for fd in _FDS:
        with contextlib.suppress(OSError):
            os.close(fd)
    _FDS.clear()


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Hold a flock on ``path`` (created if needed) for the ``with`` body.

    Yields True when the lock is held; with ``blocking=False`` yields False instead of waiting
    when someone else holds it.
    """
    with _FDS_LOCK:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"open lock file {path}: {exc.strerror}") from exc
        _FDS.add(fd)
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode if blocking else mode | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        with _FDS_LOCK:
            _FDS.discard(fd)
            os.close(fd)  # closing releases the lock
