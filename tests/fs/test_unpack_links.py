"""Hard-link entries: the link's own header sets the shared inode's metadata (containerd's and
go-archive's createTarFile chown, chmod and chtimes the link path after linking)."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from fs_helpers import IS_ROOT

from ocibuild.fs import unpack_layer
from ocibuild.fs.ownership import OwnershipRecord


def _links_tar(path: Path) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        target = tarfile.TarInfo("target.txt")
        target.size, target.mode, target.uid, target.gid, target.mtime = 3, 0o640, 1234, 4321, 1_000
        tf.addfile(target, io.BytesIO(b"hi\n"))
        link = tarfile.TarInfo("alias")
        link.type, link.linkname = tarfile.LNKTYPE, "target.txt"
        link.mode, link.uid, link.gid, link.mtime = 0o644, 0, 0, 2_000
        tf.addfile(link)


def test_hard_link_header_sets_the_shared_inode(tmp_path: Path) -> None:
    _links_tar(tmp_path / "l.tar")
    dest = tmp_path / "root"
    dest.mkdir()
    record = None if IS_ROOT else OwnershipRecord()
    unpack_layer(tmp_path / "l.tar", dest, ownership=record)
    a, t = os.lstat(dest / "alias"), os.lstat(dest / "target.txt")
    assert a.st_ino == t.st_ino
    assert stat.S_IMODE(t.st_mode) == 0o644 and t.st_mtime == 2_000
    if record is None:
        assert (t.st_uid, t.st_gid) == (0, 0)
    else:
        assert (record.get("alias").uid, record.get("alias").gid) == (0, 0)  # type: ignore[union-attr]


def test_hard_link_to_a_symlink_leaves_the_symlink_alone(tmp_path: Path) -> None:
    with tarfile.open(tmp_path / "s.tar", "w") as tf:
        sym = tarfile.TarInfo("sym")
        sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(sym)
        link = tarfile.TarInfo("alias")
        link.type, link.linkname, link.mode = tarfile.LNKTYPE, "sym", 0o777
        tf.addfile(link)
    dest = tmp_path / "root"
    dest.mkdir()
    before = os.stat("/etc/passwd")
    unpack_layer(tmp_path / "s.tar", dest, ownership=None if IS_ROOT else OwnershipRecord())
    assert os.readlink(dest / "alias") == "/etc/passwd"
    assert os.stat("/etc/passwd").st_mode == before.st_mode  # never chmod through the link
