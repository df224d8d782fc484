"""ADD of a local archive: detection by content and unpacking into the destination.

As BuildKit (``isArchivePath`` + ``chrootarchive.Untar``): a source is an archive when it is a
regular file whose content, once decompressed (gzip, bzip2, xz, zstd or none, by magic bytes,
never by name), starts with a valid tar header. It is unpacked *into* the destination directory
(created with missing parents, 0755, owned by the ``--chown`` user), merged with what is there;
whiteout names are kept as plain files. Entries keep the tar's ownership unless ``--chown``
is given, which then applies to every unpacked entry.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from ocibuild.errors import ContentError, ExecutionError
from ocibuild.fs.compression import open_decompressed
from ocibuild.fs.ownership import OwnershipRecord
from ocibuild.fs.safepath import safe_join
from ocibuild.fs.tarreader import TarReader


def is_archive(path: Path) -> bool:
    """True when ``path`` is a regular file holding a (possibly compressed) tar."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return False
    try:
        with open(path, "rb") as raw, open_decompressed(raw) as plain:
            return next(iter(TarReader(plain)), None) is not None
    except (ContentError, OSError, EOFError, ValueError):
        return False


def unpack_archive(
    path: Path,
    dest: Path,
    owner: tuple[int, int] | None,
    chown: Callable[..., None],
) -> None:
    """Unpack the archive at ``path`` into the directory ``dest`` (already resolved inside the
    stage root and created), reading it once. Each entry gets the tar's ids, or ``owner`` when
    given (current BuildKit's ChownOpts: every entry of the archive; the parents it implies
    stay root's), through ``chown`` (which records what the sandbox cannot set on disk)."""
    try:
        from ocibuild.fs.unpack import unpack_layer
    except ImportError as exc:  # pragma: no cover - the layer unpacker ships with ocibuild
        raise ExecutionError("ADD of an archive needs ocibuild.fs.unpack") from exc
    # With ``owner``, unpacked without chown: the record then lists every entry with its mode,
    # and the owner is applied from it rather than from a second pass over the archive.
    # Without, the tar's ids are set while unpacking; the record holds those the disk could
    # not take (single-id), handed to ``chown``, which records them for the snapshot.
    record = OwnershipRecord()
    try:
        with open(path, "rb") as raw:
            result = unpack_layer(raw, dest, ownership=record, apply_whiteouts=False,
                                  chown=owner is None)
    except ContentError as exc:
        raise ExecutionError(f"unpack {path.name}: {exc.message}") from exc
    # go-archive's createImpliedDirectories: parents the archive does not list are made 0755
    # and chowned to root, whatever --chown says; under a setgid directory they keep the bit
    # the kernel gave them but not the inherited group.
    for rel in result.implied:
        target = safe_join(dest, rel, follow_symlinks=False)
        st = os.lstat(target)
        if stat.S_ISDIR(st.st_mode) and (st.st_uid, st.st_gid) != (0, 0):
            chown(target, 0, 0)
    for rel, true in record.entries.items():
        target = safe_join(dest, rel, follow_symlinks=False)
        if not os.path.lexists(target):
            continue
        uid, gid = owner if owner is not None else (true.uid, true.gid)
        if os.path.islink(target):
            chown(target, uid, gid)
            continue
        if true.device is not None:  # a placeholder file (no mknod here): the record says what
            chown(target, uid, gid, true.device)
            continue
        caps = _capability(target)
        chown(target, uid, gid)
        os.chmod(target, stat.S_IMODE(true.mode))  # chown cleared setuid/setgid
        if caps is not None:  # and file capabilities, which the archive set
            with contextlib.suppress(OSError):
                os.setxattr(target, _CAPS, caps, follow_symlinks=False)


_CAPS = "security.capability"


def _capability(path: Path) -> bytes | None:
    try:
        return os.getxattr(path, _CAPS, follow_symlinks=False)
    except OSError:
        return None
