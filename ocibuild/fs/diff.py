"""What changed in a snapshot: from an overlay upper dir, or by walking two trees.

Both yield ``Change`` values in walk order (parents first, siblings by name bytes) for
``write_layer``. Neither yields the root itself. A snapshot in which nothing changed yields
nothing.

``overlay_changes(upper)``: every entry of the upper dir is a change (ADD; overlay cannot tell
added from modified without the lowers, and the layer does not need to). A 0:0 character device
is overlay's whiteout -> DELETE; a directory with ``trusted.overlay.opaque`` or
``user.overlay.opaque`` = ``y`` -> ADD of the directory plus OPAQUE. Directories copied up only
because something below them changed are kept, as containerd does. The upper must come from a
mount with ``metacopy=off`` and ``redirect_dir=off`` (the defaults), else files would be
metadata-only; overlay's ``workdir`` must live outside ``upper``.

``tree_changes(lower, new)`` (copy snapshotter) follows containerd's double walk: a path only in
``lower`` -> DELETE (not descended), only in ``new`` -> ADD (with all below it), in both ->
MODIFY when they differ. Directories differ by type, mode, uid, gid or xattrs (a directory's
mtime alone is not a change: adding a child changes it, and the child is the change). Other
files differ by type, mode, ids, device number, size, mtime (seconds and nanoseconds), xattrs
or link target; when both mtimes have zero nanoseconds (a tree unpacked from a tar) the mtime
cannot be trusted, so regular files are compared byte for byte. ``OwnershipRecord``s of either
side override the ids and mode found on disk (single-id rootless snapshots).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection, Iterator
from pathlib import Path

from ocibuild.fs.layer import Change, ChangeKind, read_xattrs
from ocibuild.fs.ownership import OwnershipRecord

OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def _sorted_entries(path: str) -> list[os.DirEntry[str]]:
    with os.scandir(path) as it:
        return sorted(it, key=lambda e: os.fsencode(e.name))


def overlay_changes(upper: Path, *, exclude: Collection[str] = ()) -> Iterator[Change]:
    """Changes recorded in an overlay upper dir; ``exclude`` names relative paths (and the
    trees below them) to leave out, e.g. mount points the sandbox created."""
    excluded = set(exclude)

    def walk(rel: str) -> Iterator[Change]:
        for entry in _sorted_entries(os.path.join(upper, rel) if rel else str(upper)):
            path = f"{rel}/{entry.name}" if rel else entry.name
            if path in excluded:
                continue
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                yield Change(ChangeKind.DELETE, path, upper)
                continue
            yield Change(ChangeKind.ADD, path, upper, st)
            if stat.S_ISDIR(st.st_mode):
                if _is_opaque(entry.path):
                    yield Change(ChangeKind.OPAQUE, path, upper)
                yield from walk(path)

    return walk("")


def _is_opaque(path: str) -> bool:
    for name in OPAQUE_XATTRS:
        try:
            if os.getxattr(path, name, follow_symlinks=False) == b"y":
                return True
        except OSError:
            continue
    return False


def tree_changes(
    lower: Path,
    new: Path,
    *,
    lower_ownership: OwnershipRecord | None = None,
    new_ownership: OwnershipRecord | None = None,
    exclude: Collection[str] = (),
) -> Iterator[Change]:
    """Changes that turn the tree ``lower`` into the tree ``new`` (see the module docstring)."""
    excluded = set(exclude)

    def walk(rel: str) -> Iterator[Change]:
        lower_dir = os.path.join(lower, rel)
        new_dir = os.path.join(new, rel)
        olds = {e.name: e for e in _sorted_entries(lower_dir)} if os.path.isdir(lower_dir) else {}
        news = {e.name: e for e in _sorted_entries(new_dir)}
        for name in sorted(olds.keys() | news.keys(), key=os.fsencode):
            path = f"{rel}/{name}" if rel else name
            if path in excluded:
                continue
            old, cur = olds.get(name), news.get(name)
            if cur is None:
                yield Change(ChangeKind.DELETE, path, new)
                continue
            cur_st = cur.stat(follow_symlinks=False)
            if old is None:
                yield Change(ChangeKind.ADD, path, new, cur_st)
                if stat.S_ISDIR(cur_st.st_mode):
                    yield from _all_below(new, path)
                continue
            old_st = old.stat(follow_symlinks=False)
            if stat.S_ISDIR(cur_st.st_mode):
                if not stat.S_ISDIR(old_st.st_mode):
                    yield Change(ChangeKind.ADD, path, new, cur_st)
                    yield from _all_below(new, path)
                    continue
                if _differs(path, old.path, old_st, cur.path, cur_st):
                    yield Change(ChangeKind.MODIFY, path, new, cur_st)
                yield from walk(path)
            elif _differs(path, old.path, old_st, cur.path, cur_st):
                yield Change(ChangeKind.MODIFY, path, new, cur_st)

    def owner_view(record: OwnershipRecord | None, path: str, st: os.stat_result) -> tuple[object, ...]:
        owner = record.get(path) if record is not None else None
        if owner is None:
            return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), None, ())
        return (owner.uid, owner.gid, stat.S_IMODE(st.st_mode), owner.device, owner.xattrs)

    def _differs(path: str, old_path: str, a: os.stat_result, new_path: str, b: os.stat_result) -> bool:
        if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
            return True
        if owner_view(lower_ownership, path, a) != owner_view(new_ownership, path, b):
            return True
        if read_xattrs(old_path) != read_xattrs(new_path):
            return True
        if stat.S_ISDIR(a.st_mode):
            return False
        if stat.S_ISREG(b.st_mode) and b.st_nlink > a.st_nlink:
            # A new hard link to it was made: overlay copies the file up for that, so the
            # layer holds both names (as one inode) and the link survives in the image.
            return True
        if a.st_rdev != b.st_rdev or a.st_size != b.st_size:
            return True
        if a.st_mtime_ns // 10**9 != b.st_mtime_ns // 10**9:
            return True
        if a.st_mtime_ns % 10**9 or b.st_mtime_ns % 10**9:
            return a.st_mtime_ns != b.st_mtime_ns
        if stat.S_ISLNK(a.st_mode):
            return os.readlink(old_path) != os.readlink(new_path)
        if stat.S_ISREG(a.st_mode):
            return not _same_content(old_path, new_path)
        return False

    return walk("")


def _all_below(root: Path, rel: str) -> Iterator[Change]:
    for entry in _sorted_entries(os.path.join(root, rel)):
        path = f"{rel}/{entry.name}"
        yield Change(ChangeKind.ADD, path, root, entry.stat(follow_symlinks=False))
        if entry.is_dir(follow_symlinks=False):
            yield from _all_below(root, path)


def _same_content(a: str, b: str, chunk: int = 1 << 20) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True
