"""Snapshots: a writable tree over read-only unpacked layers, and its diff.

Three kinds, one layout under the snapshot's own directory ``path``:

- ``overlay``: kernel overlayfs, ``upper/`` + ``work/`` mounted at ``merged/``; in a user
  namespace with ``userxattr`` (kernel >= 5.11). The diff is the upper dir.
- ``fuse-overlayfs``: the same layout served by the fuse-overlayfs binary (run inside the
  sandbox's pid namespace, so it dies with it).
- ``copy``: ``base/`` is the merged lower tree and ``fs/`` a copy of it (reflinks where the
  filesystem has them, never hard links to the lowers); the diff is a walk of both trees.

Lower dirs hold one layer each in overlay's format: whiteouts are 0:0 character devices, opaque
directories carry ``user.overlay.opaque=y`` (overlay is always mounted with ``userxattr``).
``ownership.jsonl`` beside a tree is its OwnershipRecord (rootless modes).

Mounting happens only inside the sandbox (:func:`mount` is called in its init process); the
directories are created by the caller, owned by the caller's id (root of a user namespace).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ocibuild.errors import SandboxError
from ocibuild.executor import _linux
from ocibuild.fs.diff import overlay_changes, tree_changes
from ocibuild.fs.layer import Change
from ocibuild.fs.ownership import RECORD_NAME, OwnershipRecord

Kind = Literal["overlay", "fuse-overlayfs", "copy"]
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


@dataclass(frozen=True)
class Snapshot:
    """A writable snapshot at ``path`` over ``lowers`` (layer dirs, top-most first)."""

    path: Path
    kind: Kind
    lowers: tuple[Path, ...]

    @property
    def root(self) -> Path:
        """Where the tree is seen (inside the sandbox, once mounted)."""
        return self.path / ("fs" if self.kind == "copy" else "merged")

    @property
    def upper(self) -> Path:
        return self.path / "upper"

    @property
    def base(self) -> Path:
        return self.path / "base"

    @property
    def scratch(self) -> Path:
        """Private files of a RUN (hosts, resolv.conf), outside the tree."""
        return self.path / "scratch"

    @property
    def record_path(self) -> Path:
        return self.path / RECORD_NAME


def layout(path: Path, kind: Kind) -> None:
    """Create the snapshot's directories (as the caller, before entering the sandbox)."""
    path.mkdir(parents=True, exist_ok=True)
    names = ("base", "fs", "scratch") if kind == "copy" else (
        "upper", "work", "merged", "scratch", "empty")
    for name in names:
        (path / name).mkdir(exist_ok=True)
        if name != "scratch":  # a tree's root (or overlay's work dir): 0755 whatever the umask
            os.chmod(path / name, 0o755)


def mount(snap: Snapshot) -> int | None:
    """Make ``snap.root`` the snapshot's tree; returns the pid of a fuse-overlayfs daemon to
    keep alive, if any. Runs inside the sandbox."""
    if snap.kind == "copy":
        return None
    lowers = [os.fspath(p) for p in snap.lowers] or [os.fspath(snap.path / "empty")]
    # The option string is limited to a page: name the lowers relative to their common parent.
    common = os.path.commonpath(lowers)
    os.chdir(common)
    rel = [os.path.relpath(p, common) for p in lowers]
    if any(":" in p or "," in p for p in rel):
        raise SandboxError(f"layer directory names may not contain ':' or ',': {common}")
    opts = f"lowerdir={':'.join(rel)},upperdir={snap.upper},workdir={snap.path / 'work'}"
    if snap.kind == "overlay":
        # userxattr (kernel >= 5.11) in every mode: the store's whiteout format is one, and it
        # implies what the diff needs (no redirect_dir, no metacopy). volatile (>= 5.10): a
        # snapshot is scratch until its commit, so the unmount need not sync the whole upper
        # filesystem (26-55 ms per step here, more on a busy disk). ``unmount`` removes the
        # marker volatile leaves in the work dir, so the snapshot can be mounted again.
        opts += ",userxattr"
        try:
            _linux.mount("overlay", snap.root, "overlay", 0, opts + ",volatile")
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            _linux.mount("overlay", snap.root, "overlay", 0, opts)
        return None
    proc = subprocess.Popen(["fuse-overlayfs", "-f", "-o", opts, os.fspath(snap.root)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not os.path.ismount(snap.root):
        if proc.poll() is not None or time.monotonic() > deadline:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            proc.kill()
            raise SandboxError(f"fuse-overlayfs failed: {err or 'mount did not appear'}")
        time.sleep(0.01)
    return proc.pid


def unmount(snap: Snapshot) -> None:
    if snap.kind == "copy":
        return
    try:
        _linux.umount(snap.root)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            _linux.umount(snap.root, _linux.MNT_DETACH)
    if snap.kind == "overlay":
        shutil.rmtree(snap.path / "work" / "work" / "incompat", ignore_errors=True)


def normalize_fuse_upper(snap: Snapshot) -> None:
    """Rewrite a fuse-overlayfs upper dir into the kernel's format, which the diff reads.

    fuse-overlayfs marks every directory it creates opaque (a ``.wh..wh..opq`` file, a
    ``.wh..opq`` whiteout, an xattr) and leaves whiteouts for names no lower has; a layer must
    carry neither. Whiteouts (``.wh.NAME`` files or 0:0 devices) are kept as 0:0 devices only
    where a lower has the name, opacity only on directories a lower has; its own xattrs go.
    Runs inside the sandbox with the snapshot unmounted; idempotent.
    """
    if snap.kind != "fuse-overlayfs":
        return

    def in_lower(rel: str) -> Path | None:
        return next((lo / rel for lo in snap.lowers if os.path.lexists(lo / rel)), None)

    for dirpath, dirnames, filenames in os.walk(snap.upper):
        rel_dir = os.path.relpath(dirpath, snap.upper)
        rel_dir = "" if rel_dir == "." else rel_dir
        opaque = False
        for name in list(filenames) + list(dirnames):
            full = os.path.join(dirpath, name)
            _strip_xattrs(full)
            st = os.lstat(full)
            if name in (".wh..wh..opq", ".wh..opq"):
                os.unlink(full)
                opaque = True
                continue
            whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
            target = name[4:] if name.startswith(".wh.") and stat.S_ISREG(st.st_mode) else None
            if not whiteout and target is None:
                continue
            gone = target or name
            os.unlink(full)
            if in_lower(os.path.join(rel_dir, gone)) and not os.path.lexists(
                    os.path.join(dirpath, gone)):
                os.mknod(os.path.join(dirpath, gone), stat.S_IFCHR | 0o600, os.makedev(0, 0))
        if not rel_dir:
            continue
        lower = in_lower(rel_dir)
        for name in OPAQUE_XATTRS + ("user.fuseoverlayfs.opaque",):
            if _xattr(Path(dirpath), name) == b"y":
                opaque = True
            with contextlib.suppress(OSError):
                os.removexattr(dirpath, name)
        if opaque and lower is not None and os.path.isdir(lower):
            os.setxattr(dirpath, "user.overlay.opaque", b"y")
    _strip_xattrs(os.fspath(snap.upper))


def _strip_xattrs(path: str) -> None:
    with contextlib.suppress(OSError):
        for name in os.listxattr(path, follow_symlinks=False):
            if name.startswith(("user.fuseoverlayfs.", "trusted.overlay.")):
                with contextlib.suppress(OSError):
                    os.removexattr(path, name, follow_symlinks=False)


def created_since(snap: Snapshot, since_ns: int) -> Iterator[tuple[str, int]]:
    """``(relative path, permission bits)`` of entries created in the snapshot's tree since
    ``since_ns`` that its lowers do not have (overlay: from the upper dir, unmounted)."""
    tree, below = (snap.root, [snap.base]) if snap.kind == "copy" else (snap.upper, snap.lowers)
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, tree)
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if st.st_ctime_ns < since_ns or (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
                continue
            if any(os.path.lexists(lo / rel) for lo in below):
                continue
            yield rel, stat.S_IMODE(st.st_mode)


def _xattr(path: Path, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def changes(snap: Snapshot, ownership: OwnershipRecord | None = None,
            lower_ownership: OwnershipRecord | None = None) -> Iterator[Change]:
    """The snapshot's changes against its lowers (overlay: with the overlay unmounted)."""
    if snap.kind == "copy":
        return tree_changes(snap.base, snap.root, lower_ownership=lower_ownership,
                            new_ownership=ownership)
    return overlay_changes(snap.upper)


def fill_copy(snap: Snapshot) -> None:
    """Build a copy snapshot's ``base`` from its lowers and ``fs`` from ``base``; inside the
    sandbox (ids of the lowers must be readable and reproducible)."""
    for lower in reversed(snap.lowers):
        merge_layer(lower, snap.base, links=False)
    # Hard-link-free (DESIGN 3): like overlay's copy-up, writing one name of a lower layer's
    # hard-link pair must not change the other; a link a RUN makes shows in the diff as a
    # rise of the file's link count (over ``base``, link-free too: ``ln b c`` of a lower
    # pair {a, b} then shows b and c, as overlay's upper holds them).
    _cp(snap.base, snap.root, links=False)
    _exact_dir_modes(snap.base, snap.root)


def merge_layer(layer: Path, dest: Path, *, links: bool = True) -> None:
    """Apply one overlay-format layer dir on top of the tree ``dest``: whiteouts delete,
    opaque dirs hide what was below, entries of another type replace the old one; ``links``:
    the layer's hard links kept in ``dest``."""
    removed: list[Path] = []
    opaque: list[Path] = []
    modes: list[tuple[Path, int]] = []
    for dirpath, dirnames, filenames in os.walk(layer):
        rel = os.path.relpath(dirpath, layer)
        for name in dirnames + filenames:
            src = os.path.join(dirpath, name)
            target = dest / rel / name
            st = os.lstat(src)
            if stat.S_ISDIR(st.st_mode):  # made under a setgid parent, cp keeps the kernel's bit
                modes.append((target, stat.S_IMODE(st.st_mode)))
            whiteout = stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
            is_opaque = stat.S_ISDIR(st.st_mode) and any(
                _xattr(Path(src), x) == b"y" for x in OPAQUE_XATTRS)
            if whiteout:
                removed.append(Path(rel) / name)
            if is_opaque:
                opaque.append(Path(rel) / name)
            if not os.path.lexists(target):
                continue
            old = os.lstat(target)
            if whiteout or is_opaque or stat.S_IFMT(old.st_mode) != stat.S_IFMT(st.st_mode):
                _remove(target)
            elif not stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
                modes.append((target, stat.S_IMODE(st.st_mode)))  # cp writes over it
    _cp(layer, dest, links=links)
    # GNU cp keeps an existing file's setuid/setgid and a directory's setgid (its own or the
    # parent's) over the mode it copies; what it creates otherwise has the layer's mode.
    for target, mode in modes:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(target, mode)
    for rel_path in removed:
        with contextlib.suppress(OSError):
            os.unlink(dest / rel_path)
    for rel_path in opaque:
        for name in OPAQUE_XATTRS:
            with contextlib.suppress(OSError):
                os.removexattr(dest / rel_path, name, follow_symlinks=False)


def _exact_dir_modes(src: Path, dest: Path) -> None:
    """Directories of ``dest`` (a ``cp -a`` of ``src``) given ``src``'s modes: a directory cp
    makes under a setgid parent keeps the setgid bit the kernel gave it."""
    for dirpath, dirnames, _ in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        for name in dirnames:
            mode = stat.S_IMODE(os.lstat(os.path.join(dirpath, name)).st_mode)
            target = dest / rel / name
            if stat.S_IMODE(os.lstat(target).st_mode) != mode:
                os.chmod(target, mode)


def _remove(path: Path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _cp(src: Path, dest: Path, *, links: bool = True) -> None:
    """``cp -a`` keeps ids, modes, times, xattrs and (``links``) hard links within the tree;
    reflinks where the filesystem can."""
    argv = ["cp", "-a", "--reflink=auto", *([] if links else ["--no-preserve=links"])]
    result = subprocess.run([*argv, f"{src}/.", f"{dest}/"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SandboxError(f"copy {src} to {dest}: {result.stderr.strip()}")


def load_record(path: Path) -> OwnershipRecord:
    return OwnershipRecord.load(path / RECORD_NAME if path.is_dir() else path)


def lowers_record(lowers: Sequence[Path]) -> OwnershipRecord:
    """The merged record of layer dirs (top-most first): each lower's ``ownership.jsonl``
    lives beside it (``<layer>/../ownership.jsonl``)."""
    record = OwnershipRecord()
    for lower in reversed(lowers):
        record = record.merge(OwnershipRecord.load(lower.parent / RECORD_NAME))
    return record
