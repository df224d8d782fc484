"""A flattened image with what the realistic-build comparison needs beyond
``ocibuild.testing.flatten``: every path's xattrs, its content digest, the small files' bytes,
and hard-link groups; plus the noise rules for the paths whose bytes carry build times."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyzstd

XATTR = "SCHILY.xattr."
SMALL = 4096  # files up to this size keep their bytes (for content assertions)

# Paths whose bytes hold a time, a pid or an inode number (both builders write them, with
# different values): compared by type, mode, owner and xattrs only. ``ONE_SIDED`` paths carry
# a time in their name (npm's debug logs) and may exist on one side only.
NOISE = re.compile(
    r"\.pyc$"                                   # py_compile: the source's mtime in the header
    r"|^/var/log/"                              # dpkg.log, apt/term.log, alternatives.log, ...
    r"|^/var/cache/debconf/"                    # templates.dat etc.: debconf's own timestamps
    r"|^/var/cache/ldconfig/aux-cache$"         # ldconfig: inode, ctime of each library
    r"|^/var/cache/apt/\w+\.bin$"               # apt's binary caches: mtimes of the lists
    r"|/\.npm/_update-notifier-last-checked$"
)
ONE_SIDED = re.compile(r"/\.npm/_logs/[^/]+\.log$")


@dataclass(frozen=True)
class Node:
    kind: str  # d f l c b p
    mode: int
    uid: int
    gid: int
    digest: str = ""  # sha256 of a regular file's content
    target: str = ""  # symlink target, or "major,minor" of a device
    xattrs: tuple[tuple[str, bytes], ...] = ()
    link: str = ""  # hard link: the first path of its group (as the layer names it)
    data: bytes | None = None  # content of a file up to SMALL bytes

    def shape(self) -> tuple[object, ...]:
        return (self.kind, oct(self.mode), self.uid, self.gid, self.target, self.xattrs)


@dataclass(frozen=True)
class Flat:
    manifest: dict[str, Any]
    config: dict[str, Any]
    tree: dict[str, Node]


def _norm(name: str) -> str:
    return "/" + "/".join(p for p in name.split("/") if p not in ("", "."))


def _open(raw: BinaryIO) -> Any:
    head = raw.read(4)
    raw.seek(0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw)
    if head == b"\x28\xb5\x2f\xfd":
        return pyzstd.ZstdFile(raw)
    return raw


def apply(tree: dict[str, Node], layer: Path) -> None:
    """Apply one layer tar to ``tree`` (whiteouts, opaque markers, hard links)."""
    items: list[tuple[tarfile.TarInfo, str, bytes | None]] = []
    with open(layer, "rb") as raw, _open(raw) as stream, \
            tarfile.open(fileobj=stream, mode="r|") as tar:
        for m in tar:
            digest, data = "", None
            if m.isreg():
                f = tar.extractfile(m)
                assert f is not None
                h = hashlib.sha256()
                head = b""
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                    if len(head) <= SMALL:
                        head += chunk
                digest = h.hexdigest()
                data = head if m.size <= SMALL else None
            items.append((m, digest, data))
    for m, _, _ in items:
        path = _norm(m.name)
        if path.rpartition("/")[2] == ".wh..wh..opq":
            parent = path.rpartition("/")[0]
            for p in [p for p in tree if p.startswith(parent + "/")]:
                del tree[p]
    for m, digest, data in items:
        path = _norm(m.name)
        parent, _, base = path.rpartition("/")
        if base == ".wh..wh..opq" or path == "/":
            continue
        if base.startswith(".wh."):
            gone = f"{parent}/{base[4:]}"
            for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                del tree[p]
            continue
        old = tree.get(path)
        if old is not None and not (old.kind == "d" and m.isdir()):
            for p in [p for p in tree if p.startswith(path + "/")]:
                del tree[p]
        xattrs = tuple(sorted((k[len(XATTR):], v.encode("utf-8", "surrogateescape"))
                              for k, v in m.pax_headers.items() if k.startswith(XATTR)))
        mode = m.mode & 0o7777
        if m.islnk():
            src = tree[_norm(m.linkname)]
            tree[path] = Node("f", src.mode, src.uid, src.gid, src.digest, "", src.xattrs,
                              src.link or _norm(m.linkname), src.data)
        elif m.isdir():
            tree[path] = Node("d", mode, m.uid, m.gid, xattrs=xattrs)
        elif m.issym():
            tree[path] = Node("l", mode, m.uid, m.gid, target=m.linkname, xattrs=xattrs)
        elif m.isreg():
            tree[path] = Node("f", mode, m.uid, m.gid, digest, xattrs=xattrs, data=data)
        elif m.ischr() or m.isblk():
            tree[path] = Node("c" if m.ischr() else "b", mode, m.uid, m.gid,
                              target=f"{m.devmajor},{m.devminor}", xattrs=xattrs)
        elif m.isfifo():
            tree[path] = Node("p", mode, m.uid, m.gid, xattrs=xattrs)


def load(layout: Path) -> Flat:
    """The first image of an OCI layout (docker 26's ``docker save`` writes one too)."""

    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.split(":", 1)[1]

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
    if "manifests" in manifest:
        manifest = json.loads(blob(manifest["manifests"][0]["digest"]).read_text())
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    tree: dict[str, Node] = {}
    for layer in manifest["layers"]:
        apply(tree, blob(layer["digest"]))
    return Flat(manifest, config, tree)


def differences(ours: dict[str, Node], theirs: dict[str, Node]) -> list[str]:
    """Every path that differs in type, mode, owner, link target, xattrs, hard-link group or
    (outside :data:`NOISE`) content; one line each."""
    out = []
    for path in sorted(set(ours) | set(theirs)):
        a, b = ours.get(path), theirs.get(path)
        if a is None or b is None:
            if not ONE_SIDED.search(path):
                out.append(f"{path}: only in {'buildkit' if a is None else 'ours'}: {a or b}")
            continue
        if a.shape() != b.shape():
            out.append(f"{path}: ours {a.shape()} buildkit {b.shape()}")
        elif (a.link == "") != (b.link == "") or (a.link and a.link not in (b.link, path)
                                                 and b.link not in (a.link, path)):
            out.append(f"{path}: hard link ours {a.link!r} buildkit {b.link!r}")
        elif a.digest != b.digest and not NOISE.search(path):
            out.append(f"{path}: content differs ({a.digest[:12]} vs {b.digest[:12]})")
    return out
