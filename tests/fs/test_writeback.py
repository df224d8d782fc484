"""``fs.writeback``: a layer file is written whole, in order, across the stretches whose
writeback it asks for (the effect itself, fewer dirty pages at the store's fsync, is measured
by ``make bench``: the end of a build's flush)."""

from __future__ import annotations

import os
from pathlib import Path

from ocibuild.fs import writeback
from ocibuild.fs.writeback import STRETCH, WritebackFile


def test_the_call_is_reached_here() -> None:
    assert writeback._sync_file_range is not None  # glibc: the hint is given


def test_every_byte_lands_in_order_across_stretches(tmp_path: Path) -> None:
    data = os.urandom(2 * STRETCH + 12345)
    pieces: list[bytes | bytearray | memoryview] = [
        data[:1], bytearray(data[1:STRETCH - 7]), memoryview(data)[STRETCH - 7:STRETCH + 9],
        data[STRETCH + 9:2 * STRETCH + 5], memoryview(bytearray(data[2 * STRETCH + 5:])),
    ]
    with WritebackFile(tmp_path / "layer") as f:
        written = [f.write(p) for p in pieces]
    assert written == [len(p) for p in pieces]
    assert (tmp_path / "layer").read_bytes() == data
