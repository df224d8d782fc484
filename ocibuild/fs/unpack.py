"""Unpacking a (possibly hostile) layer tar into a directory.

What lands in ``dest``:

* Names are cleaned: a leading ``/`` is dropped (as containerd and Docker do); a ``..`` that
  would climb above the root is refused (``ContentError``), a harmless ``a/../b`` is folded. The
  root entry itself (``./``) is ignored: ``dest`` keeps its own metadata.
* Every path is resolved with ``safe_join``: symlinks already in ``dest`` (from this layer or a
  lower one) are followed *as if dest were /*, so nothing is ever created outside ``dest``.
  An entry's own last component is never followed: an existing symlink, file or non-matching
  directory there is removed first (a directory over a directory is merged and updated).
* Parent directories missing from the tar are created 0755, owned by the caller, with the
  current time (as Docker's and containerd's appliers do).
* Hard links must name an earlier entry of this layer or a file already in ``dest``; the
  target is resolved inside ``dest`` and never followed if it is a symlink.
* Metadata: lchown to the tar's uid/gid, then chmod (so setuid bits survive), xattrs byte for
  byte, mtimes (directories last, after their children). When ids cannot be set on disk
  (``chown=False``, or EPERM/EINVAL) and an ``OwnershipRecord`` is given, the true uid, gid and
  mode go into the record instead; device nodes that cannot be made become empty 0600
  placeholder files recorded as devices. Without a record such a node is skipped (listed in
  the result), or refused when ``strict_devices``.
* Whiteouts, ``whiteout_format``:
  - ``"apply"`` (``dest`` holds the lower layers already): ``.wh.NAME`` removes ``NAME``,
    ``.wh..wh..opq`` empties its directory; both only touch what this layer did not write, so
    an opaque marker takes effect "first" wherever it is in the tar.
  - ``"overlay"`` (``dest`` is this layer's own dir, stacked later as an overlay lowerdir):
    ``.wh.NAME`` becomes a 0:0 character device ``NAME``; an opaque directory gets
    ``trusted.overlay.opaque=y``. ``"userxattr"``: the same with ``user.overlay.opaque=y``, for
    overlay mounted with ``userxattr`` inside a user namespace.
  ``apply_whiteouts=False`` (ADD of a local archive) writes ``.wh.*`` entries as plain files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ocibuild.errors import ContentError
from ocibuild.fs.compression import open_decompressed
from ocibuild.fs.layer import OPAQUE_MARKER, WHITEOUT_PREFIX
from ocibuild.fs.ownership import Owner, OwnershipRecord
from ocibuild.fs.safepath import clean_member_name, safe_join
from ocibuild.fs.tarformat import EntryKind, TarEntry
from ocibuild.fs.tarreader import TarReader

WHITEOUT_FORMATS = ("apply", "overlay", "userxattr")
_NO_PERMISSION = (errno.EPERM, errno.EINVAL, errno.EACCES)


def _bound(mtime: int, nsec: int) -> int:
    """An archive's mtime (seconds and nanoseconds past them) as go-archive sets it
    (``boundTime``), in nanoseconds: before the epoch or after Go's latest time,
    ``time.Unix(0, MaxInt64)`` (2262-04-11), the epoch."""
    ns = mtime * 1_000_000_000 + nsec
    return ns if 0 <= ns < 1 << 63 else 0


@dataclass(frozen=True)
class UnpackResult:
    """What an unpack did not manage to reproduce on disk (empty when everything was exact)."""

    entries: int
    skipped_devices: tuple[str, ...] = ()
    skipped_xattrs: tuple[str, ...] = ()  # "path: name"
    # Directories made only because an entry needed a parent that the archive never listed
    # (relative to ``dest``, outermost first); the caller decides their owner.
    implied: tuple[str, ...] = ()


def unpack_layer(
    src: Path | BinaryIO,
    dest: Path,
    *,
    ownership: OwnershipRecord | None = None,
    apply_whiteouts: bool = True,
    chown: bool = True,
    whiteout_format: str = "apply",
    strict_devices: bool = False,
) -> UnpackResult:
    """Unpack the layer ``src`` (a path or a readable stream; gzip, zstd, bzip2, xz or plain,
    detected from the content) into the existing directory ``dest``; see the module docstring.

    Raises ``ContentError`` naming the entry for hostile or corrupt input; what was unpacked
    before the error stays in ``dest`` (callers unpack into a temp dir and rename on success).
    """
    if whiteout_format not in WHITEOUT_FORMATS:
        raise ValueError(f"whiteout_format {whiteout_format!r}: want one of {WHITEOUT_FORMATS}")
    if isinstance(src, (str, Path)):
        with open(src, "rb") as f:
            return unpack_layer(
                f, dest, ownership=ownership, apply_whiteouts=apply_whiteouts, chown=chown,
                whiteout_format=whiteout_format, strict_devices=strict_devices,
            )
    unpacker = _Unpacker(Path(dest), ownership, apply_whiteouts, chown, whiteout_format, strict_devices)
    with open_decompressed(src) as stream:
        reader = TarReader(stream)
        for entry in reader:
            try:
                unpacker.entry(entry, reader)
            except ContentError:
                raise
            except OSError as exc:
                raise ContentError(
                    f"cannot unpack layer entry {entry.name!r}: {exc.strerror or exc}"
                ) from exc
    unpacker.finish()
    return UnpackResult(
        unpacker.count, tuple(unpacker.skipped_devices), tuple(unpacker.skipped_xattrs),
        tuple(rel for rel in unpacker.implied if rel not in unpacker.written),
    )


class _Unpacker:
    def __init__(
        self,
        dest: Path,
        ownership: OwnershipRecord | None,
        apply_whiteouts: bool,
        chown: bool,
        whiteout_format: str,
        strict_devices: bool,
    ):
        self.dest = dest
        self.root = str(dest)
        self.ownership = ownership
        self.apply_whiteouts = apply_whiteouts
        self.chown = chown
        self.format = whiteout_format
        self.strict_devices = strict_devices
        self.written: set[str] = set()  # resolved relative paths this layer wrote
        self.dir_times: list[tuple[str, int]] = []
        self.skipped_devices: list[str] = []
        self.skipped_xattrs: list[str] = []
        self.implied: list[str] = []
        self.count = 0

    # -- entries -------------------------------------------------------------------------------

    def entry(self, entry: TarEntry, reader: TarReader) -> None:
        self.count += 1
        name = clean_member_name(entry.name)
        if not name:
            return
        parent, _, base = name.rpartition("/")
        if self.apply_whiteouts and base.startswith(WHITEOUT_PREFIX):
            if base == OPAQUE_MARKER:
                self._opaque(parent)
            elif base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                pass  # aufs hard-link bookkeeping (.wh..wh.plnk etc.): not content
            else:
                self._whiteout(parent, base[len(WHITEOUT_PREFIX) :], entry.name)
            return
        parent_dir = self._make_parent(parent)
        target = os.path.join(parent_dir, base)
        rel = os.path.relpath(target, self.root)
        self._clear(target, entry.kind is EntryKind.DIR)
        placeholder: tuple[str, int, int] | None = None
        match entry.kind:
            case EntryKind.DIR:
                if not os.path.isdir(target) or os.path.islink(target):
                    os.mkdir(target, 0o700)
            case EntryKind.FILE:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    reader.copy_data_to(fd)
                finally:
                    os.close(fd)
            case EntryKind.SYMLINK:
                os.symlink(entry.linkname, target)
            case EntryKind.HARDLINK:
                self.written.add(rel)
                if not self._hardlink(entry, target, rel):
                    return
                # The link's header sets the shared inode's metadata, as containerd's and
                # go-archive's createTarFile do (a writer normally repeats the target's).
            case EntryKind.FIFO:
                os.mkfifo(target, 0o600)
            case EntryKind.CHAR | EntryKind.BLOCK:
                placeholder = self._device(entry, target, rel)
                if placeholder is None and not os.path.lexists(target):
                    return  # skipped
        self.written.add(rel)
        self._metadata(entry, target, rel, placeholder)

    def _make_parent(self, parent: str) -> str:
        path = str(safe_join(self.dest, parent)) if parent else self.root
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            self._make_implied(path)
            return path
        if not stat.S_ISDIR(st.st_mode):
            # A file where a directory is needed: the entry replaces the lower file, as tar does.
            os.unlink(path)
            self._make_implied(path)
        return path

    def _make_implied(self, path: str) -> None:
        missing = []
        probe = path
        while probe != self.root and not os.path.lexists(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)
        os.makedirs(path, 0o755)
        # 0755 as BuildKit makes them, whatever the umask (a setgid parent's bit is kept)
        for made in missing:
            os.chmod(made, 0o755 | os.lstat(made).st_mode & stat.S_ISGID)
        self.implied.extend(os.path.relpath(m, self.root) for m in reversed(missing))

    def _clear(self, target: str, is_dir: bool) -> None:
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            if not is_dir:
                shutil.rmtree(target)
                self._forget(target)
        else:
            os.unlink(target)
            self._forget(target)

    def _forget(self, target: str) -> None:
        if self.ownership is not None:
            self.ownership.forget(os.path.relpath(target, self.root))

    def _hardlink(self, entry: TarEntry, target: str, rel: str) -> bool:
        """Link ``target`` to the earlier entry; whether the link's own header metadata
        applies to the shared inode (not for a symlink or device placeholder target)."""
        link = clean_member_name(entry.linkname)
        lparent, _, lbase = link.rpartition("/")
        if not lbase:
            raise ContentError(f"hostile layer: hard link {entry.name!r} to the root")
        source = os.path.join(safe_join(self.dest, lparent), lbase)
        try:
            st = os.lstat(source)
        except FileNotFoundError:
            raise ContentError(
                f"invalid layer: hard link {entry.name!r} to {entry.linkname!r}, which is not "
                "an earlier entry"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise ContentError(f"hostile layer: hard link {entry.name!r} to a directory")
        os.link(source, target, follow_symlinks=False)
        owner = self.ownership.get(os.path.relpath(source, self.root)) if self.ownership else None
        if stat.S_ISLNK(st.st_mode) or (owner is not None and owner.device is not None):
            # A link to a symlink or a device placeholder keeps what its target has.
            if owner is not None and self.ownership is not None:
                self.ownership.set(rel, owner)
            return False
        return True

    def _device(self, entry: TarEntry, target: str, rel: str) -> tuple[str, int, int] | None:
        kind = stat.S_IFCHR if entry.kind is EntryKind.CHAR else stat.S_IFBLK
        try:
            os.mknod(target, kind | 0o600, os.makedev(entry.devmajor, entry.devminor))
            return None
        except PermissionError:
            pass
        what = "char" if entry.kind is EntryKind.CHAR else "block"
        if self.strict_devices:
            raise ContentError(f"cannot create device node {entry.name!r} here (no CAP_MKNOD)")
        if self.ownership is None:
            self.skipped_devices.append(rel)
            return None
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        return (what, entry.devmajor, entry.devminor)

    def _metadata(
        self, entry: TarEntry, target: str, rel: str, placeholder: tuple[str, int, int] | None
    ) -> None:
        is_link = entry.kind is EntryKind.SYMLINK
        owned = False
        if entry.kind is EntryKind.HARDLINK and self.chown:
            st = os.lstat(target)
            # chown drops security.capability: skip the no-op one a hard link usually asks for.
            owned = (st.st_uid, st.st_gid) == (entry.uid, entry.gid)
        if self.chown and not owned:
            try:
                os.chown(target, entry.uid, entry.gid, follow_symlinks=False)
                owned = True
            except OSError as exc:
                if exc.errno not in _NO_PERMISSION or self.ownership is None:
                    raise ContentError(
                        f"cannot chown {entry.name!r} to {entry.uid}:{entry.gid}: {exc.strerror} "
                        "(unpack with an ownership record to keep the ids)"
                    ) from exc
        # Xattrs after chown, which drops security.capability; before chmod, as a read-only
        # file takes no user.* xattrs from a non-root owner.
        failed_xattrs = []
        for name, value in entry.xattrs:
            try:
                os.setxattr(target, name, value, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (*_NO_PERMISSION, errno.ENOTSUP):
                    raise
                failed_xattrs.append((name, value))
        if not is_link:
            os.chmod(target, entry.mode)  # after chown, which clears setuid/setgid
        if self.ownership is not None and (not owned or placeholder or failed_xattrs):
            self.ownership.set(
                rel,
                Owner(entry.uid, entry.gid, entry.mode, placeholder, tuple(failed_xattrs)),
            )
        elif self.ownership is not None:
            self.ownership.entries.pop(rel, None)
        if failed_xattrs and self.ownership is None:
            self.skipped_xattrs.extend(f"{rel}: {name}" for name, _ in failed_xattrs)
        if entry.kind is EntryKind.DIR:
            self.dir_times.append((target, _bound(entry.mtime, entry.mtime_nsec)))
        else:
            ns = _bound(entry.mtime, entry.mtime_nsec)
            os.utime(target, ns=(ns, ns), follow_symlinks=False)

    # -- whiteouts -----------------------------------------------------------------------------

    def _whiteout(self, parent: str, name: str, raw: str) -> None:
        if not name or name in (".", "..") or "/" in name:
            raise ContentError(f"hostile layer: whiteout {raw!r} names no file")
        if self.format == "apply":
            parent_dir = str(safe_join(self.dest, parent)) if parent else self.root
            target = os.path.join(parent_dir, name)
            if os.path.relpath(target, self.root) in self.written or not os.path.lexists(target):
                return
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.unlink(target)
            self._forget(target)
            return
        target = os.path.join(self._make_parent(parent), name)
        rel = os.path.relpath(target, self.root)
        if rel in self.written:
            return  # this layer also wrote the name: its entry already hides the lower one
        self._clear(target, False)
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(0, 0))
        self.written.add(rel)

    def _opaque(self, parent: str) -> None:
        if self.format == "apply":
            path = str(safe_join(self.dest, parent)) if parent else self.root
            if os.path.isdir(path):
                self._empty_dir(path)
            return
        path = self._make_parent(parent)
        xattr = "trusted.overlay.opaque" if self.format == "overlay" else "user.overlay.opaque"
        os.setxattr(path, xattr, b"y", follow_symlinks=False)

    def _empty_dir(self, path: str) -> None:
        """Remove everything below ``path`` that this layer did not write."""
        with os.scandir(path) as it:
            children = list(it)
        for child in children:
            rel = os.path.relpath(child.path, self.root)
            if rel in self.written:
                if child.is_dir(follow_symlinks=False):
                    self._empty_dir(child.path)
                continue
            if child.is_dir(follow_symlinks=False):
                shutil.rmtree(child.path)
            else:
                os.unlink(child.path)
            self._forget(child.path)

    def finish(self) -> None:
        for path, ns in reversed(self.dir_times):
            with contextlib.suppress(FileNotFoundError):
                os.utime(path, ns=(ns, ns), follow_symlinks=False)
