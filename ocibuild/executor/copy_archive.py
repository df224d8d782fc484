"""ADD of a local archive: detection by content and unpacking into the destination.

As BuildKit (``isArchivePath`` + ``chrootarchive.Untar``): a source is an archive when it is a
regular file whose content, once decompressed (gzip, bzip2, xz, zstd or none, by magic bytes,
never by name), starts with a valid tar header. It is unpacked *into* the destination directory
(created with missing parents, 0755, owned by the ``--chown`` user), merged with what is there;
whiteout names are kept as plain files. Entries keep the tar's ownership unless ``--chown``
is given, which then applies to every unpacked entry.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from ocibuild.errors import ContentError, ExecutionError
from ocibuild.fs.compression import open_decompressed
from ocibuild.fs.ownership import OwnershipRecord
from ocibuild.fs.safepath import clean_member_name, safe_join
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
    chown: Callable[[Path, int, int], None],
) -> None:
    """Unpack the archive at ``path`` into the directory ``dest`` (already resolved inside the
    stage root and created). With ``owner``, every unpacked entry is chowned to it."""
    try:
        from ocibuild.fs.unpack import unpack_layer
    except ImportError as exc:  # pragma: no cover - the layer unpacker ships with ocibuild
        raise ExecutionError("ADD of an archive needs ocibuild.fs.unpack") from exc
    # Ids the sandbox cannot set on disk (single-id) land in this record; they are handed to
    # ``chown``, which records them for the snapshot.
    record = OwnershipRecord()
    try:
        with open(path, "rb") as raw:
            unpack_layer(raw, dest, ownership=record, apply_whiteouts=False)
    except ContentError as exc:
        raise ExecutionError(f"unpack {path.name}: {exc.message}") from exc
    if owner is None:
        for rel, true in record.entries.items():
            target = safe_join(dest, rel, follow_symlinks=False)
            if not os.path.lexists(target):
                continue
            if not os.path.islink(target):
                os.chmod(target, stat.S_IMODE(true.mode))
            chown(target, true.uid, true.gid)
        return
    uid, gid = owner
    # Only the archive's own entries take the --chown ids (parents it implies stay root's).
    with open(path, "rb") as raw, open_decompressed(raw) as plain:
        for entry in TarReader(plain):
            name = clean_member_name(entry.name)
            if not name:
                continue
            target = safe_join(dest, name, follow_symlinks=False)
            try:
                st = os.lstat(target)
            except FileNotFoundError:
                continue
            chown(target, uid, gid)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(target, stat.S_IMODE(st.st_mode))  # chown cleared setuid/setgid
