"""Modification times from PAX ``mtime`` records: unpacked to the nanosecond, as go-archive and
containerd set them (``hdr.ModTime`` from Go's ``parsePAXTime``, through ``boundTime``)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from fs_helpers import IS_ROOT

from ocibuild.errors import ContentError
from ocibuild.fs import unpack_layer
from ocibuild.fs.ownership import OwnershipRecord
from ocibuild.fs.tarreader import TarReader


def _tar(path: Path, times: dict[str, str]) -> None:
    """A PAX tar of ``d/`` (a directory), ``d/f`` (a file) and ``d/l`` (a symlink) and ``g``
    (a file), each with the PAX ``mtime`` text given for its name."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for name in ("d", "d/f", "d/l", "g"):
            info = tarfile.TarInfo(name)
            info.pax_headers = {"mtime": times[name]}
            if name == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            elif name == "d/l":
                info.type, info.linkname = tarfile.SYMTYPE, "f"
                tf.addfile(info)
            else:
                info.size = 2
                tf.addfile(info, io.BytesIO(b"x\n"))


def _unpack(tar: Path, dest: Path) -> None:
    dest.mkdir()
    unpack_layer(tar, dest, ownership=None if IS_ROOT else OwnershipRecord())


def test_pax_times_are_kept_to_the_nanosecond(tmp_path: Path) -> None:
    _tar(tmp_path / "t.tar", {"d": "1600000003.5", "d/f": "1600000000.123456789987",
                              "d/l": "1600000000.6", "g": "1600000002."})
    _unpack(tmp_path / "t.tar", tmp_path / "root")
    times = {name: os.lstat(tmp_path / "root" / name).st_mtime_ns
             for name in ("d", "d/f", "d/l", "g")}
    assert times == {
        "d": 1_600_000_003_500_000_000,  # set after its children
        "d/f": 1_600_000_000_123_456_789,  # digits past the ninth dropped
        "d/l": 1_600_000_000_600_000_000,
        "g": 1_600_000_002_000_000_000,
    }


def test_times_before_the_epoch_are_the_epoch(tmp_path: Path) -> None:
    _tar(tmp_path / "t.tar", {"d": "-1.5", "d/f": "-0.5", "d/l": "0.25", "g": "-7"})
    _unpack(tmp_path / "t.tar", tmp_path / "root")
    assert {name: os.lstat(tmp_path / "root" / name).st_mtime_ns
            for name in ("d", "d/f", "d/l", "g")} == {"d": 0, "d/f": 0, "d/l": 250_000_000,
                                                      "g": 0}


@pytest.mark.parametrize(("text", "seconds", "nsec"), [
    ("1600000000.7", 1_600_000_000, 700_000_000),
    ("1600000000", 1_600_000_000, 0),
    ("-1.5", -2, 500_000_000),  # 1.5 s before the epoch, as Go reads it
    ("-0.25", -1, 750_000_000),
])
def test_reader_splits_a_pax_mtime(tmp_path: Path, text: str, seconds: int, nsec: int) -> None:
    _tar(tmp_path / "t.tar", {"d": text, "d/f": text, "d/l": text, "g": text})
    with open(tmp_path / "t.tar", "rb") as f:
        entry = next(iter(TarReader(f)))
    assert (entry.mtime, entry.mtime_nsec) == (seconds, nsec)


def test_a_bad_fraction_is_refused(tmp_path: Path) -> None:
    _tar(tmp_path / "t.tar", {"d": "1600000000.5x", "d/f": "1", "d/l": "1", "g": "1"})
    with pytest.raises(ContentError, match="invalid PAX mtime"):
        _unpack(tmp_path / "t.tar", tmp_path / "root")
