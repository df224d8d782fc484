"""Reading built layers member by member (for what the flattened listing does not show:
whiteouts, hard-link entries, xattrs, every uid/gid a layer carries)."""

from __future__ import annotations

import gzip
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyzstd

XATTR = "SCHILY.xattr."
# struct vfs_cap_data, revision 2 with the effective flag (linux/capability.h)
VFS_CAP_REVISION_2 = 0x02000000
VFS_CAP_FLAGS_EFFECTIVE = 0x000001
CAP_NET_BIND_SERVICE = 10
CAP_NET_RAW = 13


@dataclass(frozen=True)
class Member:
    name: str  # normalised: no leading "./" or "/", no trailing "/"
    kind: str  # d f l h c b p
    mode: int
    uid: int
    gid: int
    linkname: str
    xattrs: dict[str, bytes]


def _kind(m: tarfile.TarInfo) -> str:
    for test, kind in ((m.isdir, "d"), (m.issym, "l"), (m.islnk, "h"), (m.ischr, "c"),
                       (m.isblk, "b"), (m.isfifo, "p")):
        if test():
            return kind
    return "f"


def members(layer: Path) -> Iterator[Member]:
    """Every member of a (gzip, zstd or plain) layer tar, streamed."""
    with open(layer, "rb") as raw:
        head = raw.read(4)
        raw.seek(0)
        stream = (gzip.GzipFile(fileobj=raw) if head[:2] == b"\x1f\x8b"
                  else pyzstd.ZstdFile(raw) if head == b"\x28\xb5\x2f\xfd" else raw)
        with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for m in tar:
                xattrs = {k[len(XATTR):]: v.encode("utf-8", "surrogateescape")
                          for k, v in m.pax_headers.items() if k.startswith(XATTR)}
                name = m.name.lstrip("/")
                while name.startswith("./"):
                    name = name[2:]
                yield Member(name.rstrip("/"), _kind(m), m.mode & 0o7777, m.uid, m.gid,
                             m.linkname.lstrip("/").removeprefix("./"), xattrs)


def by_name(layer: Path) -> dict[str, Member]:
    return {m.name: m for m in members(layer)}


def file_caps(*caps: int) -> bytes:
    """The ``security.capability`` value ``setcap CAPS+ep`` writes as real root."""
    permitted = 0
    for cap in caps:
        permitted |= 1 << cap
    return struct.pack("<IIIII", VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE,
                       permitted & 0xFFFFFFFF, 0, permitted >> 32, 0)
