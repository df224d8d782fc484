"""Golden layer: a fixed tree gives a fixed tar, byte for byte (listing + diff id).

Any change to header encoding, ordering or whiteout form shows up here; review the new golden
file like code (``pytest --update-golden tests/fs`` rewrites it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fs_helpers import make_file, needs_root

from ocibuild.fs import Change, ChangeKind, write_layer
from ocibuild.fs.tarreader import TarReader

GOLDEN = Path(__file__).parent / "golden" / "layer_listing.txt"


def fixed_tree(root: Path) -> None:
    make_file(root / "etc" / "hostname", b"box\n", 0o644, mtime=1_000_000_000)
    make_file(root / "usr" / "bin" / "sudo", b"\x7fELF", 0o4755, mtime=1_000_000_001)
    os.link(root / "usr" / "bin" / "sudo", root / "usr" / "bin" / "sudoedit")
    os.symlink("../lib/x" + "y" * 120, root / "usr" / "bin" / "longlink")
    os.chown(root / "etc" / "hostname", 1000, 2000)
    os.mkfifo(root / "pipe")
    os.chmod(root / "pipe", 0o644)
    make_file(root / ("d" * 90) / ("e" * 90) / "f", b"split", 0o600, mtime=5)
    os.setxattr(root / "etc" / "hostname", "user.test", b"\x00\x01")
    for d in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        os.chmod(d, 0o755)  # independent of the umask
        os.utime(d, (1_100_000_000, 1_100_000_000))
    os.utime(root / "pipe", (7, 7))
    os.utime(root / "usr" / "bin" / "longlink", (8, 8), follow_symlinks=False)


@needs_root
def test_golden_layer(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    root = tmp_path / "root"
    root.mkdir()
    fixed_tree(root)
    paths = ["etc", "etc/hostname", "usr/bin/sudo", "usr/bin/sudoedit", "usr/bin/longlink",
             "pipe", "d" * 90 + "/" + "e" * 90 + "/f"]
    changes = [Change(ChangeKind.ADD, p, root) for p in paths]
    changes += [Change(ChangeKind.DELETE, "usr/old", root), Change(ChangeKind.OPAQUE, "etc", root)]
    blob = write_layer(changes, tmp_path / "layer.tar", "none", source_date_epoch=1_050_000_000)
    lines = [f"diff_id {blob.diff_id}"]
    with open(blob.path, "rb") as f:
        for e in TarReader(f):
            xattrs = ",".join(f"{k}={v.hex()}" for k, v in e.xattrs)
            lines.append(f"{e.kind.name:8s} {e.mode:04o} {e.uid}:{e.gid} {e.size:>4} {e.mtime} "
                         f"{e.name}{' -> ' + e.linkname if e.linkname else ''}"
                         f"{' [' + xattrs + ']' if xattrs else ''}")
    text = "\n".join(lines) + "\n"
    if request.config.getoption("--update-golden"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()
