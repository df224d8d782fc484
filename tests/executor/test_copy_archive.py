"""ADD of a local archive (``executor/copy_archive.py``): one read of the archive, ``--chown``
applied to every entry the archive holds while its modes, setuid bits and file capabilities
stay (current BuildKit's ChownOpts; see tests/conformance/REPORT.md section 2)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from ocibuild.executor import copy_archive
from ocibuild.fs import unpack as fs_unpack

# A v2 file capability (cap_net_bind_service, permitted + effective).
CAPS = bytes.fromhex("0100000200040000000000000000000000000000")


def _archive(path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "",
                pax: dict[str, str] | None = None) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid = kind, mode, 3, 4
            info.size, info.linkname, info.mtime = len(data), link, 1_600_000_000
            if pax:
                info.pax_headers = pax
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        add("top", tarfile.DIRTYPE, 0o750)
        add("top/suid", tarfile.REGTYPE, 0o4711, b"s")
        add("top/capped", tarfile.REGTYPE, 0o755, b"c",
            pax={"SCHILY.xattr.security.capability": CAPS.decode("latin-1")})
        add("top/link", tarfile.SYMTYPE, 0o777, link="suid")
        add("top/hard", tarfile.LNKTYPE, 0o4711, link="top/suid")  # as tar writers repeat it
        add("implied/f", tarfile.REGTYPE, 0o600, b"f")  # no entry for implied/ itself
    path.write_bytes(gzip.compress(buf.getvalue()))


def _chowner(seen: dict[str, tuple[int, int]], dest: Path):  # noqa: ANN202
    def chown(target: Path, uid: int, gid: int) -> None:
        seen[os.path.relpath(target, dest)] = (uid, gid)
        if os.geteuid() == 0:
            os.lchown(target, uid, gid)
    return chown


def test_add_chown_reads_the_archive_once(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive is decompressed once, not once to unpack and again to list names."""
    archive, dest = tmp_path / "a.tar.gz", tmp_path / "dest"
    _archive(archive)
    dest.mkdir()
    opened: list[object] = []
    real = fs_unpack.open_decompressed

    def counting(src):  # noqa: ANN001, ANN202 - a spy around the real decompressor
        opened.append(src)
        return real(src)

    monkeypatch.setattr(fs_unpack, "open_decompressed", counting)
    monkeypatch.setattr(copy_archive, "open_decompressed", counting)
    seen: dict[str, tuple[int, int]] = {}
    copy_archive.unpack_archive(archive, dest, (1000, 1001), _chowner(seen, dest))
    assert len(opened) == 1
    assert (dest / "top/suid").read_bytes() == b"s"


def test_add_chown_owns_every_entry_keeping_modes(tmp_path: Path) -> None:
    archive, dest = tmp_path / "a.tar.gz", tmp_path / "dest"
    _archive(archive)
    dest.mkdir()
    seen: dict[str, tuple[int, int]] = {}
    copy_archive.unpack_archive(archive, dest, (1000, 1001), _chowner(seen, dest))
    entries = {"top", "top/suid", "top/capped", "top/link", "top/hard", "implied/f"}
    assert entries <= set(seen)
    assert {seen[e] for e in entries} == {(1000, 1001)}
    assert "implied" not in seen  # a parent the archive only implies stays the caller's
    assert (dest / "top/suid").stat().st_mode & 0o7777 == 0o4711
    assert (dest / "top").stat().st_mode & 0o7777 == 0o750
    assert os.readlink(dest / "top/link") == "suid"
    assert os.path.samefile(dest / "top/hard", dest / "top/suid")
    if os.geteuid() == 0:
        for rel in entries:
            st = os.lstat(dest / rel)
            assert (st.st_uid, st.st_gid) == (1000, 1001), rel
        assert (dest / "implied").stat().st_uid == 0
        assert os.getxattr(dest / "top/capped", "security.capability") == CAPS


def test_add_without_chown_keeps_the_archive_ids(tmp_path: Path) -> None:
    archive, dest = tmp_path / "a.tar.gz", tmp_path / "dest"
    _archive(archive)
    dest.mkdir()
    seen: dict[str, tuple[int, int]] = {}
    copy_archive.unpack_archive(archive, dest, None, _chowner(seen, dest))
    assert (dest / "top/suid").stat().st_mode & 0o7777 == 0o4711
    if os.geteuid() == 0:
        st = os.lstat(dest / "top/suid")
        assert (st.st_uid, st.st_gid) == (3, 4)
        assert os.getxattr(dest / "top/capped", "security.capability") == CAPS
    else:  # the ids the disk cannot take are handed to chown (recorded for the snapshot)
        assert seen["top/suid"] == (3, 4)
