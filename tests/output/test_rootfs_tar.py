"""``type=tar``: the final filesystem as one tar, written beside the destination and renamed
into place (whole or not at all)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from ocibuild.output._atomic import atomic_path
from ocibuild.output.rootfs import write_rootfs
from ocibuild.store import BlobStore
from ocibuild.testing import busybox


def test_rootfs_tar_lands_whole_with_nothing_beside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with BlobStore(tmp_path / "s") as store:
        image = busybox.make_image(store)
        write_rootfs(image, store, str(out / "rootfs.tar"), as_tar=True)
    assert os.listdir(out) == ["rootfs.tar"]
    with tarfile.open(out / "rootfs.tar") as tar:
        names = tar.getnames()
        busybox_member = tar.getmember("bin/busybox")
    assert "bin/sh" in names and busybox_member.isfile() and busybox_member.size > 100_000
    assert (out / "rootfs.tar").stat().st_mode & 0o777 == 0o644 & ~_umask()


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "f.tar"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        assert tmp.parent == tmp_path
        tmp.write_bytes(b"partial")
        raise RuntimeError("writer failed")
    assert dest.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.tar"]
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new" and os.listdir(tmp_path) == ["f.tar"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
