"""A comparable description of a file tree: the oracle for round-trip and diff tests.

``describe_tree(root)`` maps every path below ``root`` to a ``Node`` holding what a layer
carries: type, permission bits, ids, size, a content hash, link target, device numbers,
xattrs (overlay's own left out) and the mtime in whole seconds, plus a hard-link group (the
first path of the inode in walk order) so links compare by shape, not by inode number.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from ocibuild.fs.layer import read_xattrs
from ocibuild.fs.ownership import OwnershipRecord


@dataclass(frozen=True)
class Node:
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    content: str
    link: str
    rdev: tuple[int, int]
    xattrs: tuple[tuple[str, bytes], ...]
    mtime: int | None
    hardlink_group: str


def describe_tree(
    root: Path, *, mtimes: bool = True, ownership: OwnershipRecord | None = None
) -> dict[str, Node]:
    """Describe ``root`` (not the root directory itself). ``ownership`` overrides ids/modes."""
    out: dict[str, Node] = {}
    inodes: dict[tuple[int, int], str] = {}

    def walk(rel: str) -> None:
        base = os.path.join(root, rel) if rel else str(root)
        for name in sorted(os.listdir(base), key=os.fsencode):
            path = f"{rel}/{name}" if rel else name
            full = os.path.join(base, name)
            st = os.lstat(full)
            mode = st.st_mode
            content = link = ""
            kind = _kind(mode)
            if stat.S_ISREG(mode):
                h = hashlib.sha256()
                with open(full, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                content = h.hexdigest()
            elif stat.S_ISLNK(mode):
                link = os.readlink(full)
            group = ""
            if not stat.S_ISDIR(mode) and st.st_nlink > 1:
                group = inodes.setdefault((st.st_dev, st.st_ino), path)
            uid, gid, perm = st.st_uid, st.st_gid, stat.S_IMODE(mode)
            rdev = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char", "block") else (0, 0)
            xattrs = read_xattrs(full)
            owner = ownership.get(path) if ownership is not None else None
            if owner is not None:
                uid, gid = owner.uid, owner.gid
                if owner.device is not None:
                    kind, rdev, content = owner.device[0], owner.device[1:], ""
                xattrs = tuple(sorted({**dict(xattrs), **dict(owner.xattrs)}.items()))
            out[path] = Node(
                kind=kind,
                mode=perm if kind != "symlink" else 0o777,
                uid=uid,
                gid=gid,
                size=st.st_size if kind == "file" else 0,
                content=content,
                link=link,
                rdev=rdev,
                xattrs=xattrs,
                mtime=(st.st_mtime_ns // 10**9) if mtimes else None,
                hardlink_group=group,
            )
            if stat.S_ISDIR(mode):
                walk(path)

    walk("")
    return out


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "dir"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"),
        (stat.S_ISFIFO, "fifo"),
    ):
        if test(mode):
            return name
    return "other"
