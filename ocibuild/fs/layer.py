"""Changes to a file tree -> a deterministic, compressed layer blob, hashed in one pass.

The tar follows containerd's diff writer (what BuildKit ships): entries in walk order (parents
before children, siblings sorted by name bytes), a parent directory is written before its first
changed child even when it did not change itself, entries other than directories (symlinks,
fifos and devices too) that are hard links of one already in the layer become tar hard links,
deletions become empty ``.wh.<name>`` files and opaque directories an empty ``.wh..wh..opq``
right after the directory. Headers: numeric ids, empty uname/gname, mtime truncated to seconds
(clamped to ``source_date_epoch`` when given), no atime/ctime, xattrs as ``SCHILY.xattr.*``
(overlay's own and SELinux labels left out). Whiteout entries are mode 0, ids 0, mtime
``source_date_epoch`` or 0. Sockets are skipped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import hashlib
import os
import queue
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocibuild import mediatypes
from ocibuild.digest import Digest, DigestingWriter
from ocibuild.errors import ContentError
from ocibuild.fs.compression import Compressor, open_compressor
from ocibuild.fs.forked import Copy, open_copy
from ocibuild.fs.ownership import OwnershipRecord
from ocibuild.fs.tarformat import BLOCK, EntryKind, TarEntry, encode_header
from ocibuild.fs.writeback import WritebackFile

# Xattrs that describe the snapshot machinery or the host, never the image.
SKIPPED_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.", "security.selinux")
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_CHUNK = 1 << 20
_BUFFERS = 4
_ZEROS = bytes(BLOCK)


class ChangeKind(enum.Enum):
    ADD = "add"
    MODIFY = "modify"
    DELETE = "delete"  # written as a .wh.<name> whiteout
    OPAQUE = "opaque"  # the directory hides everything below it in lower layers


@dataclass(frozen=True)
class Change:
    """One change to a tree. ``path`` is clean and relative (``usr/bin/x``); for ADD, MODIFY
    and OPAQUE the content and metadata are read from ``root / path`` when the layer is
    written (and parent directories from ``root`` too, also for DELETE). ``stat`` is the
    path's ``lstat`` when the producer already made it (the diff walks do), saving the
    writer a second one; the tree must not change between the two."""

    kind: ChangeKind
    path: str
    root: Path
    stat: os.stat_result | None = field(default=None, compare=False, repr=False)

    @property
    def source(self) -> Path:
        return self.root / self.path


@dataclass(frozen=True)
class LayerBlob:
    """A written layer: ``digest`` of the blob at ``path``, ``diff_id`` of its tar."""

    path: Path
    digest: Digest
    diff_id: Digest
    size: int
    media_type: str
    copy: LayerBlob | None = None  # the compressed copy ``write_layer(also=...)`` wrote
    streamed: bool = False  # written beside the step that made it (``executor.copy_feed``)


def write_layer(
    changes: Iterable[Change],
    dest: Path,
    compression: str = "gzip",
    level: int | None = None,
    ownership: OwnershipRecord | None = None,
    source_date_epoch: int | None = None,
    *,
    threads: int | None = None,
    ordered: bool = False,
    xattr_names: frozenset[str] | None = None,
    also: tuple[Path, str, int | None] | None = None,
    headers: Any = None,
) -> LayerBlob:
    """Write the layer for ``changes`` to the new file ``dest`` and describe it.

    ``changes`` may come in any order and repeat a path (the last wins); they are sorted here,
    so equal trees give equal bytes. ``ordered`` says they already come in layer order without
    repeats (``overlay_changes`` and ``tree_changes`` yield them so): then they are streamed,
    not collected, and a change out of order raises ``ValueError``. ``ownership`` overrides
    uid/gid, device placeholders and xattrs per path (single-id rootless snapshots); modes
    always come from disk. ``xattr_names``, when given, are the only xattrs written (BuildKit's
    differ writes ``security.capability`` alone). Memory stays flat: file data is streamed
    (and, ``ordered``, the changes too). On error ``dest`` is removed and no thread is left
    running.

    ``also=(path, compression, level)``, for an uncompressed layer only, writes a second blob
    of the same tar in another compression in the same pass (``LayerBlob.copy``): the
    uncompressed layer for the store and the compressed one an output will send, without
    reading the first back. The copy is compressed in a forked child process when this one has
    a single thread (``fs.forked``).

    ``headers``, a hashlib object, is updated with every header written (``layer_headers``).
    """
    changes = _checked_order(changes) if ordered else _sorted_changes(changes)
    plain = compression in ("none", "uncompressed")
    if also is not None and not plain:
        raise ValueError("write_layer: a copy (also=) is made of an uncompressed layer only")
    comp: Compressor | None = None
    sink: _TarSink | None = None
    second: Copy | None = None
    blob: DigestingWriter | None = None
    with contextlib.ExitStack() as files:
        try:
            out = files.enter_context(WritebackFile(dest))
            if also is not None:
                copy_file = files.enter_context(open(also[0], "wb", buffering=0))
                comp = second = open_copy(copy_file.fileno(), also[1], also[2], threads)
            if not plain:
                blob = DigestingWriter(out)
                comp = open_compressor(blob, compression, level, threads)
            # Uncompressed, the blob is the tar: written by the walk itself (``direct``), its
            # one hash gives both digests.
            sink = _TarSink(comp, direct=out if plain else None)
            writer = _LayerWriter(sink, ownership, source_date_epoch, xattr_names, headers)
            for change in changes:
                writer.add(change)
            sink.write(bytes(2 * BLOCK))
            sink.close()
            if comp is not None:
                comp.close()
        except BaseException:
            if sink is not None:
                sink.abort()
            if comp is not None:
                comp.abort()
            # Closing flushes what the file object still buffers, which can fail again (a
            # full disk): the files are removed all the same, and the first error is raised.
            with contextlib.suppress(OSError):
                files.close()
            for path in (dest, *((also[0],) if also is not None else ())):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
    diff_id = Digest("sha256", sink.hash.hexdigest())
    copy = None
    if also is not None and second is not None:
        copy = LayerBlob(path=also[0], digest=second.digest, diff_id=diff_id, size=second.size,
                         media_type=mediatypes.layer_media_type(also[1]))
    digest, size = (diff_id, sink.size) if blob is None else (blob.digest, blob.size)
    return LayerBlob(path=dest, digest=digest, diff_id=diff_id, size=size,
                     media_type=mediatypes.layer_media_type(compression), copy=copy)


def layer_headers(
    changes: Iterable[Change],
    ownership: OwnershipRecord | None = None,
    source_date_epoch: int | None = None,
    *,
    xattr_names: frozenset[str] | None = None,
) -> bytes:
    """The SHA-256 of the headers ``write_layer`` would write for ``changes`` (given in
    layer order), without reading any file's data: two walks with the same headers give the
    same layer when the files' data did not change between them."""
    log = hashlib.sha256()
    writer = _LayerWriter(_HeadersOnly(), ownership, source_date_epoch, xattr_names, log)
    for change in _checked_order(changes):
        writer.add(change)
    return log.digest()


class _HeadersOnly:
    """A sink for ``layer_headers``: the writer's log holds what matters."""

    def write(self, data: bytes | memoryview) -> None:
        pass


def _order_key(change: Change) -> tuple[bytes, ...]:
    key = tuple(p for p in change.path.encode("utf-8", "surrogateescape").split(b"/") if p)
    if change.kind is ChangeKind.OPAQUE:
        key += (b"",)  # right after the directory, before any child
    return key


def _sorted_changes(changes: Iterable[Change]) -> list[Change]:
    by_key = {_order_key(change): change for change in changes}
    return [by_key[k] for k in sorted(by_key)]


def _checked_order(changes: Iterable[Change]) -> Iterator[Change]:
    previous: tuple[bytes, ...] | None = None
    for change in changes:
        key = _order_key(change)
        if previous is not None and key <= previous:
            raise ValueError(f"layer changes out of order: {change.path!r} after {previous!r}")
        previous = key
        yield change


class _TarSink:
    """Builds the tar stream in 1 MiB batches and passes each to the diff id hash and the
    compressor (whose output is hashed and written by the ``DigestingWriter`` below it).

    A feeder thread hashes (the diff id) and compresses each batch, so that overlaps with the
    producer's walking, header encoding and reading (on 2 cores with zstd, as fast as doing it
    all in the producer on an idle machine; ~25% faster on a busy one). hashlib, zlib and zstd
    release the GIL for the big calls made here.

    Batches live in a few recycled buffers (fresh 1 MiB allocations cost a page fault per 4 KiB;
    the small pool also bounds memory and throttles the producer). File content is read
    straight into them (``read_from``). The compressor sees memoryviews valid only during its
    ``write`` call: every compressor copies what it keeps.

    ``direct`` (an uncompressed layer; ``comp`` is then its compressed copy, or None): the
    producer writes each batch to that file itself before the feeder hashes it, so the write
    and the hash run side by side (for 30 MB about 15 and 17 ms, which one thread spends one
    after the other); ``size`` counts it.
    """

    def __init__(self, comp: Compressor | None, *, direct: WritebackFile | None = None):
        self.hash = hashlib.sha256()
        self.size = 0
        self._comp = comp
        self._direct = direct
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(_BUFFERS):
            self._free.put(bytearray(_CHUNK))
        self._full: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._buf = self._free.get()
        self._view = memoryview(self._buf)
        self._pos = 0
        feeder = threading.Thread(target=self._feed, name="ocibuild-layer", daemon=True)
        feeder.start()
        self._thread: threading.Thread | None = feeder

    def write(self, data: bytes | memoryview) -> None:
        n = len(data)
        pos = self._pos
        if pos + n <= _CHUNK:  # nearly always: a header or padding
            self._view[pos : pos + n] = data
            self._pos = pos + n
            return
        while n:
            if self._pos == _CHUNK:
                self._hand_off()
            take = min(n, _CHUNK - self._pos)
            self._view[self._pos : self._pos + take] = data[len(data) - n : len(data) - n + take]
            self._pos += take
            n -= take

    def read_from(self, fd: int, size: int, name: str) -> None:
        """Append exactly ``size`` bytes read from ``fd``; ContentError if the file is shorter."""
        left = size
        while left:
            if self._pos == _CHUNK:
                self._hand_off()
            want = min(left, _CHUNK - self._pos)
            got = os.readv(fd, [self._view[self._pos : self._pos + want]])
            if not got:
                raise ContentError(f"{name}: file shrank while its layer was written")
            self._pos += got
            left -= got

    def _hand_off(self) -> None:
        if self._error is not None:
            raise self._error
        if self._direct is not None:
            with self._view[: self._pos] as batch:
                self.size += self._direct.write(batch)
        self._view.release()
        self._full.put((self._buf, self._pos))
        self._buf = self._free.get()
        self._view = memoryview(self._buf)
        self._pos = 0

    def _consume(self, buf: bytearray, n: int) -> None:
        with memoryview(buf) as view, view[:n] as chunk:
            self.hash.update(chunk)
            if self._comp is not None:
                self._comp.write(chunk)

    def _feed(self) -> None:
        while (item := self._full.get()) is not None:
            buf, n = item
            if self._error is None:
                try:
                    self._consume(buf, n)
                except BaseException as exc:  # re-raised in the producer
                    self._error = exc
            self._free.put(buf)  # keep draining after an error: the producer never blocks

    def close(self) -> None:
        """Pass on everything and stop the feeder; raise what it raised."""
        if self._pos:
            self._hand_off()
        self.abort()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Stop the feeder (what it has not consumed is dropped by the caller's abort)."""
        if self._thread is not None:
            self._full.put(None)
            self._thread.join()
            self._thread = None


class _LayerWriter:
    def __init__(self, sink: _TarSink | _HeadersOnly, ownership: OwnershipRecord | None,
                 epoch: int | None, xattr_names: frozenset[str] | None = None,
                 log: Any = None):
        self._sink = sink
        self._log = log
        self._xattr_names = xattr_names
        self._ownership = ownership
        self._epoch = epoch
        self._dirs_written: set[str] = set()
        self._inodes: dict[tuple[int, int], str] = {}

    def add(self, change: Change) -> None:
        parent = change.path.rpartition("/")[0]
        self._include_parents(change.root, parent)
        if change.kind is ChangeKind.DELETE:
            base = change.path.rpartition("/")[2]
            self._whiteout(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base)
        elif change.kind is ChangeKind.OPAQUE:
            self._include_parents(change.root, change.path)
            self._whiteout(f"{change.path}/{OPAQUE_MARKER}" if change.path else OPAQUE_MARKER)
        elif change.path and change.path not in self._dirs_written:
            self._write_path(change.root, change.path, change.stat)

    def _include_parents(self, root: Path, parent: str) -> None:
        if not parent or parent in self._dirs_written:
            return
        parts = parent.split("/")
        for i in range(1, len(parts) + 1):
            path = "/".join(parts[:i])
            if path in self._dirs_written:
                continue
            try:
                st = os.lstat(root / path)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                self._write_path(root, path, st)

    def _whiteout(self, name: str) -> None:
        entry = TarEntry(name=name, kind=EntryKind.FILE, mode=0, mtime=self._epoch or 0)
        self._emit(encode_header(entry))

    def _emit(self, header: bytes) -> None:
        self._sink.write(header)
        if self._log is not None:
            self._log.update(header)

    def _write_path(self, root: Path, path: str, st: os.stat_result | None = None) -> None:
        full = os.path.join(root, path)
        if st is None:
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                return  # gone since the diff was taken: nothing to record
        entry = entry_from_stat(path, full, st, self._epoch)
        if entry is None:
            return
        owner = self._ownership.get(path) if self._ownership is not None else None
        if owner is not None:
            # Ids (and devices, xattrs) from the record; the mode on disk is authoritative:
            # chmod works on our own files, and a RUN may have changed it since.
            changes: dict[str, object] = {"uid": owner.uid, "gid": owner.gid}
            if owner.device is not None and entry.kind is EntryKind.FILE:
                kind = EntryKind.CHAR if owner.device[0] == "char" else EntryKind.BLOCK
                changes.update(kind=kind, size=0, devmajor=owner.device[1], devminor=owner.device[2])
            if owner.xattrs:
                changes["xattrs"] = tuple(sorted({**dict(entry.xattrs), **dict(owner.xattrs)}.items()))
            entry = _replace(entry, changes)
        if self._xattr_names is not None and entry.xattrs:
            entry = _replace(entry, {"xattrs": tuple(
                (k, v) for k, v in entry.xattrs if k in self._xattr_names)})
        if entry.kind is EntryKind.DIR:
            self._dirs_written.add(path)
        elif st.st_nlink > 1:  # any other kind: symlinks, fifos, devices too, as BuildKit's
            first = self._inodes.setdefault((st.st_dev, st.st_ino), path)
            if first != path:
                entry = _replace(
                    entry, {"kind": EntryKind.HARDLINK, "linkname": first, "size": 0, "xattrs": ()}
                )
        self._emit(encode_header(entry))
        if entry.kind is EntryKind.FILE and entry.size and isinstance(self._sink, _TarSink):
            self._copy_content(full, entry.size)

    def _copy_content(self, full: str, size: int) -> None:
        assert isinstance(self._sink, _TarSink)
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            self._sink.read_from(fd, size, full)
        finally:
            os.close(fd)
        if size % BLOCK:
            self._sink.write(_ZEROS[: BLOCK - size % BLOCK])


def _replace(entry: TarEntry, changes: dict[str, object]) -> TarEntry:
    return dataclasses.replace(entry, **changes)  # type: ignore[arg-type]


def entry_from_stat(path: str, full: str, st: os.stat_result, epoch: int | None) -> TarEntry | None:
    """The tar entry for a file on disk (``None`` for sockets and other unsupported types)."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        kind = EntryKind.FILE
    elif stat.S_ISDIR(mode):
        kind = EntryKind.DIR
    elif stat.S_ISLNK(mode):
        kind = EntryKind.SYMLINK
    elif stat.S_ISCHR(mode):
        kind = EntryKind.CHAR
    elif stat.S_ISBLK(mode):
        kind = EntryKind.BLOCK
    elif stat.S_ISFIFO(mode):
        kind = EntryKind.FIFO
    else:
        return None  # sockets: not representable, skipped like containerd does
    mtime = st.st_mtime_ns // 1_000_000_000
    if epoch is not None and mtime > epoch:
        mtime = epoch
    is_dev = kind in (EntryKind.CHAR, EntryKind.BLOCK)
    return TarEntry(
        name=path,
        kind=kind,
        mode=stat.S_IMODE(mode),
        uid=st.st_uid,
        gid=st.st_gid,
        size=st.st_size if kind is EntryKind.FILE else 0,
        mtime=mtime,
        linkname=os.readlink(full) if kind is EntryKind.SYMLINK else "",
        devmajor=os.major(st.st_rdev) if is_dev else 0,
        devminor=os.minor(st.st_rdev) if is_dev else 0,
        xattrs=read_xattrs(full),
    )


def read_xattrs(full: str) -> tuple[tuple[str, bytes], ...]:
    """The file's own xattrs (not following a symlink), minus the skipped prefixes, sorted."""
    try:
        names = os.listxattr(full, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM, errno.ENOENT):
            return ()
        raise
    out = []
    for name in names:
        if name.startswith(SKIPPED_XATTR_PREFIXES):
            continue
        try:
            out.append((name, os.getxattr(full, name, follow_symlinks=False)))
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                continue
            raise
    return tuple(sorted(out))
