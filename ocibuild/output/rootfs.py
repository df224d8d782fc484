"""``type=local`` and ``type=tar`` outputs: the final image's filesystem, not the image.

The layers are applied in order (whiteouts honoured) into a directory built beside the
destination and renamed into place; the tar is flattened in a temporary directory and
written beside the destination, then renamed into place. As root, ids and modes land on disk; otherwise they are
kept in an ``OwnershipRecord`` and the tar output carries the image's true ids. The tar is
written by E's deterministic layer writer (uncompressed), so the same image gives the same bytes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ocibuild.errors import OutputError
from ocibuild.image import Image


def _flatten(image: Image, store: Any, dest: Path) -> Any:
    from ocibuild.fs.ownership import OwnershipRecord
    from ocibuild.fs.unpack import unpack_layer

    record = OwnershipRecord()
    as_root = os.geteuid() == 0
    for layer in image.layers:
        with store.open(layer.digest) as src:
            unpack_layer(src, dest, ownership=record, chown=as_root)
    return record


def write_rootfs(image: Image, store: Any, dest: str, *, as_tar: bool) -> None:
    """Write the flattened filesystem of ``image`` to ``dest`` (a new directory, or a tar file;
    ``-`` is stdout for the tar)."""
    from ocibuild.output._atomic import atomic_dir, atomic_path

    if not as_tar:
        target = Path(dest)
        if target.exists() and target.is_dir() and not any(target.iterdir()):
            target.rmdir()  # an empty directory is fine to fill, like buildx
        with atomic_dir(target) as tmp:
            _flatten(image, store, tmp)
        return
    from ocibuild.fs.diff import tree_changes
    from ocibuild.fs.layer import write_layer

    work = Path(tempfile.mkdtemp(prefix="ocibuild-rootfs-"))
    try:
        root = work / "root"
        empty = work / "empty"
        root.mkdir()
        empty.mkdir()
        record = _flatten(image, store, root)
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
