"""Atomic file and directory creation: build beside the destination, then rename.

After a failure nothing is left at the destination and the temporary sibling is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ocibuild.errors import OutputError


@contextlib.contextmanager
def atomic_file(dest: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Yield a binary file that becomes ``dest`` (replacing it) when the block succeeds."""
    with atomic_path(dest, mode) as tmp, open(tmp, "wb") as f:
        yield f


@contextlib.contextmanager
def atomic_path(dest: Path, mode: int = 0o644) -> Iterator[Path]:
    """Yield the path of a new, empty file beside ``dest`` for a writer that opens files by
    name; when the block succeeds it is synced and renamed to ``dest`` (replacing it).

    A symlink ``dest`` stays: its target is replaced. A ``dest`` that is a device or a FIFO
    (``--iidfile /dev/null``) is yielded itself and written in place: renaming over it would
    replace the device node with a plain file."""
    dest = Path(os.path.realpath(dest)) if os.path.islink(dest) else Path(dest)
    try:
        kind = os.stat(dest).st_mode
    except FileNotFoundError:
        kind = stat.S_IFREG
    if not stat.S_ISREG(kind) and not stat.S_ISDIR(kind):
        yield dest
        return
    try:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent or ".")
    except OSError as exc:
        raise OutputError(f"create {dest}: {exc.strerror}") from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, mode & ~_umask())
        try:
            os.rename(tmp, dest)
        except OSError as exc:
            raise OutputError(f"rename {tmp} to {dest}: {exc.strerror}") from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield an empty directory that is renamed to ``dest`` when the block succeeds.

    ``dest`` must not exist (OutputError otherwise, checked again at rename time).
    """
    dest = Path(dest)
    if dest.exists():
        raise OutputError(f"create {dest}: already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent or "."))
    try:
        yield tmp
        os.chmod(tmp, 0o755 & ~_umask())
        try:
            os.rename(tmp, dest)
        except OSError as exc:
            raise OutputError(f"rename {tmp} to {dest}: {exc.strerror}") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    """The process umask, read from /proc (os.umask can only read it by changing it, which
    would race with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022
