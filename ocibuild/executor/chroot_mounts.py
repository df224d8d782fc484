"""``RUN --mount`` in chroot mode, where nothing can be mounted: the mounts are *placed* in the
rootfs before the command and taken out again after it, so the layer never sees them.

- A writable source (a cache dir, the private copy of a ``rw`` bind) is renamed to the target
  and renamed back afterwards: the RUN's writes land in the source as through a bind mount, in
  O(1). Across file systems it is copied in and its contents copied back.
- A read-only source (a bind, a secret) is copied in (``cp -a``, reflinks where possible) and
  removed afterwards. Read-only is not enforced: writes go to the copy and are discarded.
- ``tmpfs`` is an empty 1777 directory, removed afterwards.
- What the image had at the target is renamed aside for the RUN and put back, and the times of
  its parent too when the RUN did not change that directory itself. A target the image did
  not have, and the parents created for it, are mount stubs (:class:`rootfs.Stubs`).

Runs in the sandbox's init (as root, ``chroot`` mode); :func:`restore` must run before
``stubs.remove()`` (which removes the parents it created, once empty).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ocibuild.errors import SandboxError
from ocibuild.executor import rootfs
from ocibuild.executor.command import RunMount
from ocibuild.fs.safepath import safe_join


@dataclass
class Placed:
    """One placed mount (mutable bookkeeping, undone by :func:`restore`)."""

    target: Path
    kind: str  # "moved" (source renamed in), "synced" (copied in, copied back), "copy", "tmpfs"
    source: Path | None = None
    aside: Path | None = None  # what the image had at the target, renamed away


@dataclass
class Placement:
    """Everything :func:`place` did, in order; parents' (atime, mtime) before and after."""

    placed: list[Placed]
    parents: dict[Path, tuple[int, int]]
    after: dict[Path, int]


def new_placement() -> Placement:
    return Placement([], {}, {})


def place(root: Path, mounts: Sequence[RunMount], stubs: rootfs.Stubs, done: Placement) -> None:
    """Put each of ``mounts`` at its target under ``root`` (recording it in ``done`` as it goes,
    so :func:`restore` undoes a partial placement too)."""
    for m in mounts:
        if ".." in Path(m.target).parts:
            raise SandboxError(f"RUN --mount target {m.target}: must not use ..")
        # Resolved inside the rootfs, a symlinked target too (runc's rule; nothing is placed
        # outside it).
        target = safe_join(root, m.target)
        if m.kind == "overlay":
            raise SandboxError("RUN --mount of layers as an overlay is unavailable in chroot mode")
        stubs.ensure(target.parent, True)
        parent = target.parent
        if parent not in done.parents:
            st = os.stat(parent)
            done.parents[parent] = (st.st_atime_ns, st.st_mtime_ns)
        item = Placed(target, "tmpfs", m.source)
        if os.path.lexists(target):
            item.aside = parent / f".ocibuild-aside-{uuid.uuid4().hex}"
            os.rename(target, item.aside)
        done.placed.append(item)
        if m.kind == "tmpfs":
            os.mkdir(target, 0o700)
            os.chmod(target, 0o1777)
        elif m.readonly or not _is_dir_or_file(m.source):
            item.kind = "copy"
            _copy(m.source, target)
        else:
            assert m.source is not None
            try:
                os.rename(m.source, target)
                item.kind = "moved"
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                item.kind = "synced"
                _copy(m.source, target)
    for parent in done.parents:
        done.after[parent] = os.stat(parent).st_mtime_ns


def restore(done: Placement) -> None:
    """Undo :func:`place`, newest first: writable sources go back (with the RUN's writes),
    copies and tmpfs dirs are removed, what the image had is put back. A target the image
    did not have was a mount stub: its parent keeps the times it had just before (BuildKit's
    mount-stub cleaner, :meth:`rootfs.Stubs.remove`). The parent of one it had gets its
    times from before the RUN back unless the RUN changed the directory itself."""
    untouched = {p for p, mtime in done.after.items()
                 if _mtime(p) == mtime}
    stub_parents = {item.target.parent for item in done.placed if item.aside is None}
    for item in reversed(done.placed):
        before = os.stat(item.target.parent) if item.aside is None else None
        if item.kind == "moved" and item.source is not None:
            if os.path.lexists(item.target):
                os.rename(item.target, item.source)
            else:  # the RUN removed it: the source comes back empty, as rm -rf of a mount would
                os.mkdir(item.source, 0o755)
        elif item.kind == "synced" and item.source is not None:
            _replace_contents(item.target, item.source)
            _remove(item.target)
        else:
            _remove(item.target)
        if item.aside is not None:
            os.rename(item.aside, item.target)
        if before is not None:
            with contextlib.suppress(OSError):
                os.utime(item.target.parent, ns=(before.st_atime_ns, before.st_mtime_ns),
                         follow_symlinks=False)
    for parent, (atime, mtime) in done.parents.items():
        if parent in untouched and parent not in stub_parents:
            with contextlib.suppress(OSError):
                os.utime(parent, ns=(atime, mtime), follow_symlinks=False)


def _is_dir_or_file(path: Path | None) -> bool:
    if path is None:
        return False
    mode = os.lstat(path).st_mode
    return stat.S_ISDIR(mode) or stat.S_ISREG(mode)


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _copy(source: Path | None, target: Path) -> None:
    """``cp -a`` of ``source`` (a dir, file or socket) as ``target``: ids, modes, times kept."""
    assert source is not None
    if stat.S_ISSOCK(os.lstat(source).st_mode):
        try:
            os.link(source, target)  # an agent socket: the same inode, still listening
            return
        except OSError as exc:
            raise SandboxError(f"RUN --mount of socket {source} in chroot mode: it must be on "
                               f"the snapshot's file system ({exc.strerror})") from exc
    result = subprocess.run(["cp", "-a", "--reflink=auto", "-T", os.fspath(source),
                             os.fspath(target)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SandboxError(f"RUN --mount in chroot mode: copy {source}: "
                           f"{result.stderr.strip()}")


def _replace_contents(src: Path, dest: Path) -> None:
    """Make the writable source ``dest`` hold what the RUN left at ``src``."""
    if not os.path.isdir(dest) or not os.path.isdir(src):
        with contextlib.suppress(FileNotFoundError):
            _remove(dest)
        if os.path.lexists(src):
            _copy(src, dest)
        return
    for entry in os.scandir(dest):
        _remove(Path(entry.path))
    result = subprocess.run(["cp", "-a", "--reflink=auto", f"{src}/.", f"{dest}/"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SandboxError(f"RUN --mount in chroot mode: copy back to {dest}: "
                           f"{result.stderr.strip()}")


def _remove(path: Path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
