"""An independent reader for built images: flattens an OCI layout's layers into a listing.

Used by the e2e golden tests and the demo as an oracle that shares no code with the layer
engine: layers are read with Python's ``tarfile`` and applied in order (opaque markers first,
then whiteouts, then entries), the way the OCI image spec describes it.

``Entry`` holds what the goldens compare: type, permission bits, uid/gid, size and sha256 of
file content, link target; hard links are reported as groups.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

WH = ".wh."
OPQ = ".wh..wh..opq"


@dataclass(frozen=True)
class Entry:
    kind: str  # d | f | l | c | b | p
    mode: int
    uid: int
    gid: int
    size: int = 0
    sha256: str = ""
    target: str = ""  # symlink target
    link: str = ""  # hard link: the path it links to (normalised to the group's first path)

    def line(self, path: str) -> str:
        head = f"{self.kind} {self.mode:04o} {self.uid}:{self.gid} {path}"
        if self.kind == "f":
            return f"{head} {self.size} {self.sha256[:16]}"
        if self.kind == "l":
            return f"{head} -> {self.target}"
        return head


def _decompress(stream: BinaryIO) -> BinaryIO:
    head = stream.read(4)
    stream.seek(0)
    if head[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    if head == b"\x28\xb5\x2f\xfd":
        import pyzstd

        return pyzstd.ZstdFile(stream)  # type: ignore[return-value]
    return stream


def _norm(name: str) -> str:
    return "/" + "/".join(p for p in name.split("/") if p not in ("", "."))


def apply_layer(tree: dict[str, Entry], stream: BinaryIO) -> None:
    """Apply one layer tar (any supported compression) to ``tree`` (path -> Entry)."""
    with tarfile.open(fileobj=_decompress(stream), mode="r|") as tar:
        members = []
        for m in tar:
            digest = ""
            if m.isreg():
                f = tar.extractfile(m)
                h = hashlib.sha256()
                while f is not None and (chunk := f.read(1 << 20)):
                    h.update(chunk)
                digest = h.hexdigest()
            members.append((m, digest))
    for m, _ in members:  # opaque markers hide what lower layers had, before this layer's adds
        path = _norm(m.name)
        base = path.rsplit("/", 1)[-1]
        if base == OPQ:
            parent = path.rsplit("/", 1)[0] or "/"
            for p in [p for p in tree if p.startswith(parent.rstrip("/") + "/")]:
                del tree[p]
    for m, digest in members:
        path = _norm(m.name)
        parent, _, base = path.rpartition("/")
        parent = parent or "/"
        if base == OPQ:
            continue
        if base.startswith(WH):
            gone = (parent.rstrip("/") + "/" + base[len(WH):])
            for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                del tree[p]
            continue
        if path == "/":
            continue
        old = tree.get(path)
        if old is not None and not (old.kind == "d" and m.isdir()):
            for p in [p for p in tree if p.startswith(path + "/")]:
                del tree[p]
        mode = m.mode & 0o7777
        if m.isdir():
            tree[path] = Entry("d", mode, m.uid, m.gid)
        elif m.issym():
            tree[path] = Entry("l", mode, m.uid, m.gid, target=m.linkname)
        elif m.islnk():
            target = _norm(m.linkname)
            src = tree.get(target)
            if src is None:
                raise ValueError(f"hard link {path} -> {target}: no such file")
            tree[path] = Entry("f", src.mode, src.uid, src.gid, src.size, src.sha256,
                               link=src.link or target)
        elif m.isreg():
            tree[path] = Entry("f", mode, m.uid, m.gid, m.size, digest)
        elif m.ischr() or m.isblk():
            tree[path] = Entry("c" if m.ischr() else "b", mode, m.uid, m.gid,
                               target=f"{m.devmajor},{m.devminor}")
        elif m.isfifo():
            tree[path] = Entry("p", mode, m.uid, m.gid)


@dataclass(frozen=True)
class LoadedImage:
    manifest: dict[str, Any]
    config: dict[str, Any]
    tree: dict[str, Entry]


def load_layout(layout: Path, index: int = 0) -> LoadedImage:
    """Read image ``index`` of an OCI layout directory and flatten it."""

    def blob(digest: str) -> Path:
        algo, hexpart = digest.split(":", 1)
        return layout / "blobs" / algo / hexpart

    idx = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(idx["manifests"][index]["digest"]).read_text())
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    tree: dict[str, Entry] = {}
    for layer in manifest["layers"]:
        with open(blob(layer["digest"]), "rb") as f:
            apply_layer(tree, f)
    return LoadedImage(manifest, config, tree)


def load_docker_save(archive: Path, work: Path) -> LoadedImage:
    """Unpack a ``docker save`` archive into ``work`` and flatten its first image (the
    ``manifest`` is the archive's ``manifest.json`` entry, not an OCI manifest)."""
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="tar")
    manifest = json.loads((work / "manifest.json").read_text())[0]
    config = json.loads((work / manifest["Config"]).read_text())
    tree: dict[str, Entry] = {}
    for layer in manifest["Layers"]:
        with open(work / layer, "rb") as f:
            apply_layer(tree, f)
    return LoadedImage(manifest, config, tree)


def tree_of_tar(path: Path) -> dict[str, Entry]:
    tree: dict[str, Entry] = {}
    with open(path, "rb") as f:
        apply_layer(tree, f)
    return tree


def listing(tree: dict[str, Entry], base: dict[str, Entry] | None = None) -> list[str]:
    """Lines for every path that differs from ``base`` (all paths without one), sorted;
    removed base paths as ``- PATH``; hard-link groups at the end."""
    base = base or {}
    lines = [e.line(p) for p, e in sorted(tree.items())
             if base.get(p) != e]
    lines.extend(f"- {p}" for p in sorted(base) if p not in tree)
    groups: dict[str, list[str]] = {}
    for p, e in tree.items():
        if e.link:
            groups.setdefault(e.link, [e.link]).append(p)
    for members in sorted(sorted(set(g)) for g in groups.values()):
        lines.append("hardlinks: " + " ".join(members))
    return lines


def describe(image: LoadedImage, base: dict[str, Entry] | None = None,
             base_history: Iterable[str] = ()) -> str:
    """The golden text of an image: config (no times), history, layer count, file listing."""
    cfg = {k: v for k, v in image.config.items() if k not in ("created", "history", "rootfs")}
    skip = list(base_history)
    history = []
    for h in image.config.get("history") or []:
        text = h.get("created_by", "")
        if skip and text == skip[0]:
            skip.pop(0)
            continue
        history.append(f"  {'[empty]' if h.get('empty_layer') else '[layer]'} {text}")
    out = ["config:", *("  " + line for line in json.dumps(cfg, indent=2, sort_keys=True)
                        .splitlines())]
    out.append("history:")
    out.extend(history)
    out.append(f"layers: {len(image.manifest['layers'])}")
    out.append("files:" + (" (changed from the base image)" if base else ""))
    out.extend("  " + line for line in listing(image.tree, base))
    return "\n".join(out) + "\n"
