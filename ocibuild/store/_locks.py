"""``flock`` helpers. Locks are advisory and per open file, so they also serialise threads
that open the lock file separately, and they vanish when a process dies (no stale locks).

Per open file also means that a child forked while a lock is held holds it too, until it exits
or closes its copy of the descriptor: a sandbox forked by one stage's thread while another's
held a lock for a moment would keep that lock for as long as its RUN lasts. The descriptors
are close-on-exec, and a sandbox closes every such descriptor it inherits before anything else
(``executor.sandbox``), these among them.
"""

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
