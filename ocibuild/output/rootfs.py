"""``type=local`` and ``type=tar`` outputs: the final image's filesystem, not the image.

The layers are applied in order (whiteouts honoured) into a directory built beside the
destination and renamed into place; the tar is flattened in a temporary directory and
written beside the destination, then renamed into place. The tar carries the image's ids
(kept in an ``OwnershipRecord``); it is written by E's deterministic layer writer
(uncompressed), so the same image gives the same bytes.

``type=local`` follows buildx's receiving side (fsutil ``Receive`` with ``Merge``): files are
owned by whoever runs the build, not by the image's ids, the destination directory is created
0700, and an existing directory is merged into (entries of the image replace entries of the
same name; other entries stay).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ocibuild.digest import Digest
from ocibuild.errors import OutputError
from ocibuild.image import Image, chain_ids

#: Where the unpacked dir of a layer chain is, if anywhere (``BuildServices.layer_dir``).
LayerDirs = Callable[[Digest], Path | None]


def _flatten(image: Image, store: Any, dest: Path, *, rounded: bool = False,
             layer_dir: LayerDirs | None = None, epoch: int | None = None) -> Any:
    """Apply the layers into ``dest`` with the image's ids on disk when root (the executor's
    RUN --mount from a stage or image uses this); returns the ``OwnershipRecord``."""
    return _unpack(image, store, dest, chown=os.geteuid() == 0, rounded=rounded,
                   layer_dir=layer_dir, epoch=epoch)


def _unpack(image: Image, store: Any, dest: Path, *, chown: bool, rounded: bool = False,
            layer_dir: LayerDirs | None = None, epoch: int | None = None) -> Any:
    """Apply the layers into ``dest``; every entry's mtime then ``epoch`` when given
    (``_stamp``), else its snapshot's (``_exact_times``)."""
    from ocibuild.fs.ownership import OwnershipRecord
    from ocibuild.fs.unpack import unpack_layer

    record = OwnershipRecord()
    for layer in image.layers:
        with store.open(layer.digest) as src:
            unpack_layer(src, dest, ownership=record, chown=chown)
    if epoch is not None:
        _stamp(dest, epoch)
    else:
        _exact_times(image, layer_dir or store.unpacked_layer, dest, rounded=rounded)
    return record


_NS = 1_000_000_000


def _exact_times(image: Image, layer_dir: LayerDirs, root: Path, *, rounded: bool) -> None:
    """Give the entries of the flattened ``root`` the times of the snapshots they come from.

    A layer's tar holds whole seconds (BuildKit's differ truncates them too), but BuildKit's
    local and tar exporters read its snapshot: ``type=local`` keeps nanoseconds, ``type=tar``
    rounds them to the nearest second (Go's tar writer with no format chosen).

    The store keeps a layer this build or an earlier one committed from a kernel overlay
    snapshot as that snapshot's upper dir, times and all (``executor.stage``, per chain id);
    ``layer_dir`` finds those dirs (the build's, else the store's). An entry with a whole
    second takes the time of its copy in the top-most layer dir that has it, when that time is
    the same to the second and the type the same. The search stops at a layer whose dir is
    missing or unreadable: a layer below it might hold an entry that one replaced. Dirs
    unpacked from a tar (pulled layers, the copy and fuse-overlayfs snapshotters) hold what
    unpacking set, so nothing changes for them.

    ``rounded``: then every time is rounded to whole seconds (``type=tar``), also those
    unpacking set to the nanosecond (an archive's or a pulled layer's PAX ``mtime``)."""
    dirs: list[str] = []
    for chain in reversed(chain_ids(image.config.diff_ids)):
        found = layer_dir(chain)
        if found is None:
            break
        dirs.append(str(found))
    if not dirs and not rounded:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            mtime = st.st_mtime_ns
            if dirs and not mtime % _NS:  # whole seconds: maybe a layer tar's truncation
                source = _top_copy(dirs, name if rel == "." else os.path.join(rel, name))
                if source is not None and stat.S_IFMT(source.st_mode) == stat.S_IFMT(st.st_mode) \
                        and source.st_mtime_ns // _NS * _NS == mtime:
                    mtime = source.st_mtime_ns
            if rounded:
                # Go's time.Round(time.Second): halfway rounds up (to the later second).
                mtime = (mtime // _NS + (mtime % _NS >= _NS // 2)) * _NS
            if mtime != st.st_mtime_ns:
                with contextlib.suppress(OSError):
                    os.utime(path, ns=(st.st_atime_ns, mtime), follow_symlinks=False)


def _top_copy(dirs: Sequence[str], rel: str) -> os.stat_result | None:
    """The ``lstat`` of ``rel`` in the top-most of ``dirs`` that has it; None when none has it
    or a dir cannot tell (an entry above may hide a lower one)."""
    for layer in dirs:
        try:
            return os.lstat(os.path.join(layer, rel))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return None
    return None


def _stamp(root: Path, epoch: int) -> None:
    """Set the mtime (and atime) of everything below ``root`` to ``epoch``, symlinks
    themselves included; children first, so a directory's time is not changed afterwards."""
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in (*filenames, *dirnames):
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)


def _merge(src: Path, dest: Path) -> None:
    """Move the tree ``src`` into the existing directory ``dest``: a directory on both sides
    is merged (and takes ``src``'s mode and times), anything else replaces what was there."""
    for entry in os.scandir(src):
        target = dest / entry.name
        if entry.is_dir(follow_symlinks=False) and target.is_dir() and not target.is_symlink():
            _merge(Path(entry.path), target)
            st = os.lstat(entry.path)
            os.chmod(target, st.st_mode & 0o7777)
            os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.unlink(target)
        os.rename(entry.path, target)


def write_rootfs(image: Image, store: Any, dest: str, *, as_tar: bool,
                 epoch: int | None = None, layer_dir: LayerDirs | None = None) -> None:
    """Write the flattened filesystem of ``image`` to ``dest`` (a new directory, or a tar file;
    ``-`` is stdout for the tar). With ``SOURCE_DATE_EPOCH`` (``epoch``) every entry's mtime
    *is* the epoch, older ones included, as BuildKit's local and tar exporters set it
    (``CreateFS``'s map function); the destination directory itself keeps its own."""
    from ocibuild.output._atomic import atomic_dir

    if not as_tar:
        target = Path(dest)
        try:
            # buildx creates the directory and its missing parents 0700.
            os.makedirs(target.parent, mode=0o700, exist_ok=True)
            if target.is_dir() and any(target.iterdir()):
                # Merged like buildx: flattened beside it first, so a failed layer leaves
                # the directory as it was.
                work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
                try:
                    _unpack(image, store, work, chown=False, layer_dir=layer_dir, epoch=epoch)
                    _merge(work, target)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                return
            if target.is_dir():
                target.rmdir()  # an empty directory is fine to fill, like buildx
            with atomic_dir(target) as tmp:
                _unpack(image, store, tmp, chown=False, layer_dir=layer_dir, epoch=epoch)
            os.chmod(target, 0o700)  # buildx creates the destination 0700
        except OSError as exc:
            raise OutputError(f"write {dest}: {exc.strerror or exc}") from exc
        return
    write_rootfs_tar([("", image)], store, dest, epoch=epoch, layer_dir=layer_dir)


def write_rootfs_tar(parts: Sequence[tuple[str, Image]], store: Any, dest: str, *,
                     epoch: int | None = None, layer_dir: LayerDirs | None = None) -> None:
    """One tar of several filesystems: each image's below its directory name (``""``: at the
    top). A multi-platform ``type=tar`` names them ``linux_amd64`` etc., as BuildKit's tar
    exporter does: such a directory is 0755, root's, with mtime ``epoch`` (else 0)."""
    from ocibuild.fs.diff import tree_changes
    from ocibuild.fs.layer import write_layer
    from ocibuild.fs.ownership import Owner, OwnershipRecord
    from ocibuild.output._atomic import atomic_path

    work = Path(tempfile.mkdtemp(prefix="ocibuild-rootfs-"))
    try:
        root = work / "root"
        empty = work / "empty"
        root.mkdir()
        empty.mkdir()
        record = OwnershipRecord()
        for name, image in parts:
            sub = root / name if name else root
            if name:
                sub.mkdir(0o755)
            part = _flatten(image, store, sub, rounded=True, layer_dir=layer_dir, epoch=epoch)
            for path, owner in part:
                record.set(f"{name}/{path}" if name else path, owner)
            if name:
                os.chmod(sub, 0o755)
                os.utime(sub, (epoch or 0, epoch or 0))
                record.set(name, Owner(0, 0, 0o40755))
        changes = tree_changes(empty, root, new_ownership=record)
        if dest == "-":
            blob = write_layer(changes, work / "fs.tar", "none", ownership=record, ordered=True)
            with open(blob.path, "rb") as f:
                shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
            return
        # The tar is written once, beside the destination, and renamed into place (no copy
        # from a temporary directory that may be on another filesystem).
        target = Path(dest)
        with atomic_path(target) as tmp:
            write_layer(changes, tmp, "none", ownership=record, ordered=True)
    except OSError as exc:
        raise OutputError(f"write {dest}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
