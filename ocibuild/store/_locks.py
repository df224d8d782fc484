"""``flock`` helpers. Locks are advisory and per open file, so they also serialise threads
that open the lock file separately, and they vanish when a process dies (no stale locks)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ocibuild.errors import StoreError


@contextlib.contextmanager
def locked(path: Path, *, shared: bool = False, blocking: bool = True) -> Iterator[bool]:
    """Hold a flock on ``path`` (created if needed) for the ``with`` body.

    Yields True when the lock is held; with ``blocking=False`` yields False instead of waiting
    when someone else holds it.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreError(f"open lock file {path}: {exc.strerror}") from exc
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode if blocking else mode | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        yield held
    finally:
        os.close(fd)  # closing releases the lock
