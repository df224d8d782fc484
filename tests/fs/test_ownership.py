"""Ownership records: the true ids, modes and devices survive a single-id user namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fs_helpers import IS_ROOT

from ocibuild.fs import Owner, OwnershipRecord
from ocibuild.fs.tarformat import BLOCK, EntryKind, TarEntry, encode_header
from ocibuild.fs.tarreader import TarReader

REPO = Path(__file__).resolve().parents[2]
VENV_PY = Path(os.environ.get("OCIBUILD_TEST_VENV", "/opt/ocibuild-test-venv")) / "bin" / "python"
NOBODY = 65534


def test_record_save_load_merge_forget(tmp_path: Path) -> None:
    rec = OwnershipRecord()
    rec.set("etc/shadow", Owner(0, 42, 0o640))
    rec.set("dev/null", Owner(0, 0, 0o666, device=("char", 1, 3)))
    rec.set("bin/\udcffraw", Owner(5, 6, 0o4755, xattrs=(("trusted.x", b"\x00\xff"),)))
    rec.set("home/u/f", Owner(1000, 1000, 0o600))
    rec.save(tmp_path / "own.jsonl")
    loaded = OwnershipRecord.load(tmp_path / "own.jsonl")
    assert loaded == rec
    loaded.forget("home")
    assert loaded.get("home/u/f") is None and len(loaded) == 3
    upper = OwnershipRecord({"etc/shadow": Owner(0, 0, 0o600)})
    merged = rec.merge(upper)
    assert merged.get("etc/shadow") == Owner(0, 0, 0o600) and merged.get("dev/null") is not None
    assert OwnershipRecord.load(tmp_path / "missing.jsonl") == OwnershipRecord()


ENTRIES = [
    (TarEntry("bin", EntryKind.DIR, mode=0o755), b""),
    (TarEntry("bin/su", EntryKind.FILE, mode=0o4755, uid=0, gid=0, mtime=5), b"\x7fELF su"),
    (TarEntry("bin/su2", EntryKind.HARDLINK, mode=0o4755, linkname="bin/su", mtime=5), b""),
    (TarEntry("dev", EntryKind.DIR, mode=0o755), b""),
    (TarEntry("dev/null", EntryKind.CHAR, mode=0o666, devmajor=1, devminor=3), b""),
    (TarEntry("etc", EntryKind.DIR, mode=0o755), b""),
    (TarEntry("etc/shadow", EntryKind.FILE, mode=0o640, gid=42, mtime=7), b"root:*:"),
    (TarEntry("home", EntryKind.DIR, mode=0o755), b""),
    (TarEntry("home/.wh..wh..opq", EntryKind.FILE, mode=0), b""),
    (TarEntry("home/user", EntryKind.DIR, mode=0o700, uid=1000, gid=1000), b""),
    (TarEntry("home/user/f", EntryKind.FILE, mode=0o600, uid=1000, gid=1000,
              xattrs=(("trusted.note", b"kept"),)), b"secret"),
    (TarEntry(".wh.gone", EntryKind.FILE, mode=0), b""),
]

CHILD = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
from ocibuild.fs import OwnershipRecord, overlay_changes, unpack_layer, write_layer
work = Path({work!r})
if sys.argv[1] == "unpack":
    rec = OwnershipRecord()
    unpack_layer(work / "in.tar", work / "dest", ownership=rec, whiteout_format="userxattr")
    rec.save(work / "own.jsonl")
else:
    rec = OwnershipRecord.load(work / "own.jsonl")
    write_layer(overlay_changes(work / "dest"), work / "out.tar", "none", ownership=rec)
"""


@pytest.fixture
def userns_work() -> Iterator[Path]:
    if not IS_ROOT or not VENV_PY.exists() or shutil.which("unshare") is None:
        pytest.skip("needs root (to drop to nobody), unshare and the test venv")
    work = Path(tempfile.mkdtemp(prefix="ocibuild-own-", dir="/tmp"))
    os.chmod(work, 0o755)
    yield work
    shutil.rmtree(work)


def run_as_nobody_in_userns(work: Path, step: str) -> None:
    script = work / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), work=str(work)))
    for p in (work, script, work / "in.tar", work / "dest"):
        os.lchown(p, NOBODY, NOBODY)  # (never the unpacked files: chown clears their setuid)
    subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         "unshare", "--user", "--map-root-user", str(VENV_PY), str(script), step],
        check=True, capture_output=True, timeout=60,
    )


def test_single_id_userns_unpack_records_and_write_layer_restores(userns_work: Path) -> None:
    raw = bytearray()
    for entry, data in ENTRIES:
        entry = TarEntry(**{**entry.__dict__, "size": len(data)}) if data else entry
        raw += encode_header(entry) + data + bytes(-len(data) % BLOCK)
    (userns_work / "in.tar").write_bytes(bytes(raw) + bytes(2 * BLOCK))
    (userns_work / "dest").mkdir()

    run_as_nobody_in_userns(userns_work, "unpack")
    rec = OwnershipRecord.load(userns_work / "own.jsonl")
    # Only one id is mapped (0 -> nobody): other ids, the device and trusted.* go to the record.
    assert rec.get("etc/shadow") == Owner(0, 42, 0o640)
    assert rec.get("dev/null") == Owner(0, 0, 0o666, device=("char", 1, 3))
    assert rec.get("home/user/f") == Owner(1000, 1000, 0o600, xattrs=(("trusted.note", b"kept"),))
    assert rec.get("bin/su") is None  # 0:0 and the mode were set for real
    assert (userns_work / "dest" / "dev" / "null").stat().st_size == 0  # a placeholder file

    run_as_nobody_in_userns(userns_work, "write")
    with open(userns_work / "out.tar", "rb") as f:
        got = {e.name: e for e in TarReader(f)}
    for entry, _ in ENTRIES:
        if entry.name.rpartition("/")[2].startswith(".wh."):
            assert entry.name in got  # whiteouts come back from the overlay whiteouts
            continue
        back = got[entry.name]
        assert (back.kind, back.uid, back.gid, back.mode, back.devmajor, back.devminor,
                back.xattrs, back.linkname) == (
            entry.kind, entry.uid, entry.gid, entry.mode, entry.devmajor, entry.devminor,
            entry.xattrs, entry.linkname,
        ), entry.name
