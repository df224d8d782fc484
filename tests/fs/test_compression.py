"""Parallel gzip is one valid, deterministic gzip member; readers detect and verify formats."""

from __future__ import annotations

import gzip
import io
import os
import random
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest
import pyzstd
from hypothesis import given, settings
from hypothesis import strategies as st

from ocibuild.errors import ContentError
from ocibuild.fs import pgzip as gzip_blocks
from ocibuild.fs.compression import open_compressor, open_decompressed
from ocibuild.fs.pgzip import ParallelGzipWriter

BS = 4096  # small blocks so a test crosses many block boundaries


def pgzip(data: bytes, *, chunk: int = 1000, threads: int = 2, block: int = BS, level: int = 6) -> bytes:
    out = io.BytesIO()
    w = ParallelGzipWriter(out, level, threads=threads, block_size=block)  # type: ignore[arg-type]
    for i in range(0, len(data), chunk):
        w.write(data[i : i + chunk])
    w.close()
    return out.getvalue()


def semi_random(n: int) -> bytes:
    text = b"the quick brown fox jumps over the lazy dog " * (n // 40 + 1)
    return bytes(a ^ (b & 0x03) for a, b in zip(text[:n], os.urandom(n), strict=True))


@pytest.mark.parametrize("size", [0, 1, BS - 1, BS, BS + 1, 3 * BS, 10 * BS + 17])
def test_parallel_gzip_decompresses_with_gzip_and_python(tmp_path: Path, size: int) -> None:
    data = semi_random(size)
    blob = pgzip(data)
    assert gzip.decompress(blob) == data
    (tmp_path / "x.gz").write_bytes(blob)
    out = subprocess.run(["gzip", "-dc", str(tmp_path / "x.gz")], check=True, capture_output=True)
    assert out.stdout == data
    # One member: header, deflate, then CRC-32 and ISIZE of the whole input.
    assert blob[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    assert int.from_bytes(blob[-8:-4], "little") == zlib.crc32(data)
    assert int.from_bytes(blob[-4:], "little") == size


@settings(max_examples=30, deadline=None)
@given(data=st.binary(max_size=5 * BS), chunk=st.integers(1, 3 * BS), threads=st.integers(1, 4))
def test_parallel_gzip_bytes_do_not_depend_on_write_sizes_or_threads(
    data: bytes, chunk: int, threads: int
) -> None:
    assert pgzip(data, chunk=chunk, threads=threads) == pgzip(data)
    assert gzip.decompress(pgzip(data, chunk=chunk, threads=threads)) == data


def test_parallel_gzip_ratio_is_close_to_single_stream() -> None:
    data = semi_random(64 * 1024) * 8
    ours = len(pgzip(data, block=1 << 20))
    assert ours <= len(gzip.compress(data, 6, mtime=0)) * 1.02


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))  # also counts zstd's native worker threads


def test_no_compressor_threads_survive(tmp_path: Path) -> None:
    before = threading.active_count()
    native_before = os_threads()
    for kind in ("gzip", "zstd", "none"):
        with open(tmp_path / kind, "wb") as f:
            c = open_compressor(f, kind)  # type: ignore[arg-type]
            c.write(b"x" * 3_000_000)
            c.close()
        with open(tmp_path / kind, "rb") as f, open_decompressed(f) as r:  # type: ignore[arg-type]
            assert r.read(10) == b"x" * 10  # stop early: the reader thread must still end
    assert threading.active_count() == before
    assert os_threads() == native_before


@pytest.mark.parametrize("kind", ["gzip", "zstd", "bzip2", "xz", "none"])
def test_reader_detects_format_from_content(tmp_path: Path, kind: str) -> None:
    data = semi_random(300_000)
    packed = {
        "gzip": lambda d: gzip.compress(d[:1000]) + gzip.compress(d[1000:]),  # two members
        "zstd": pyzstd.compress,
        "bzip2": __import__("bz2").compress,
        "xz": __import__("lzma").compress,
        "none": lambda d: d,
    }[kind](data)
    with open_decompressed(io.BytesIO(packed)) as r:  # type: ignore[arg-type]
        got = b"".join(iter(lambda: r.read(65536), b""))
    assert got == data


def test_truncated_or_corrupt_gzip_is_a_content_error() -> None:
    blob = pgzip(semi_random(50_000))
    for bad in (blob[: len(blob) // 2], blob[:20] + b"\xff" * 50 + blob[70:]):
        with pytest.raises(ContentError), open_decompressed(io.BytesIO(bad)) as r:  # type: ignore[arg-type]
            while r.read(65536):
                pass


def mixed(n_parts: int, part: int = 6000) -> bytes:
    """Alternating runs of random and text bytes with odd lengths: the probe's stored/deflated
    switches land everywhere relative to segment and block boundaries."""
    out = bytearray()
    for i in range(n_parts):
        size = part + 977 * i
        out += os.urandom(size) if i % 2 else semi_random(size)
    return bytes(out)


def test_incompressible_data_is_stored_not_deflated(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    blob = pgzip(data, block=1 << 20, chunk=100_000)
    # Stored blocks: 5 bytes per 64 KiB piece, a sync flush per block, header and trailer.
    assert len(data) < len(blob) < len(data) * 1.001 + 64
    assert gzip.decompress(blob) == data
    (tmp_path / "r.gz").write_bytes(blob)
    out = subprocess.run(["gzip", "-dc", str(tmp_path / "r.gz")], check=True, capture_output=True)
    assert out.stdout == data


@pytest.mark.parametrize("block", [BS, 1 << 16, 1 << 20])
def test_mixed_random_and_text_is_valid_deterministic_and_still_compresses(
    tmp_path: Path, block: int
) -> None:
    data = mixed(24)
    blob = pgzip(data, block=block, chunk=7001)
    assert pgzip(data, block=block, chunk=65536, threads=3) == blob
    assert gzip.decompress(blob) == data
    (tmp_path / "m.gz").write_bytes(blob)
    out = subprocess.run(["gzip", "-dc", str(tmp_path / "m.gz")], check=True, capture_output=True)
    assert out.stdout == data
    # The text half still shrinks as much as one zlib stream makes it (within 3%).
    assert len(blob) <= len(gzip.compress(data, 6, mtime=0)) * 1.03


def test_write_layer_error_in_the_feeder_thread_reaches_the_caller(tmp_path: Path) -> None:
    """A full disk while the gzip feeder thread writes: write_layer raises it, removes the
    partial blob and leaves no thread behind."""
    from fs_helpers import small_disk

    from ocibuild.fs.diff import overlay_changes
    from ocibuild.fs.layer import write_layer

    with small_disk(tmp_path, "2m", 8) as (tree, small):
        before = threading.active_count()
        with pytest.raises(OSError) as info:
            write_layer(overlay_changes(tree), small / "layer", "gzip")
        assert info.value.errno == 28  # ENOSPC
        assert not (small / "layer").exists()
        assert threading.active_count() == before


def test_layers_crossing_many_batches_hash_and_unpack_right(tmp_path: Path) -> None:
    """Files larger than, and straddling, the writer's 1 MiB batches (random and text): each
    compression's blob holds the same tar, its diff id is that tar's sha256, and tar reads
    every file back intact."""
    import hashlib
    import tarfile

    from ocibuild.fs.diff import overlay_changes
    from ocibuild.fs.layer import write_layer

    tree = tmp_path / "tree"
    tree.mkdir()
    contents = {f"f{i}": mixed(3 + i % 4, 5000 + 70_001 * i) for i in range(6)}
    contents["big"] = os.urandom((2 << 20) + 123)
    contents["empty"] = b""
    for name, data in contents.items():
        (tree / name).write_bytes(data)
    blobs = {c: write_layer(overlay_changes(tree), tmp_path / f"l.{c}", c) for c in ("gzip", "zstd", "none")}
    tar = blobs["none"].path.read_bytes()
    assert gzip.decompress(blobs["gzip"].path.read_bytes()) == tar
    assert pyzstd.decompress(blobs["zstd"].path.read_bytes()) == tar
    for blob in blobs.values():
        assert blob.diff_id.hex == hashlib.sha256(tar).hexdigest()
        assert blob.digest.hex == hashlib.sha256(blob.path.read_bytes()).hexdigest()
    with tarfile.open(blobs["gzip"].path) as tf:
        got = {m.name: tf.extractfile(m).read() for m in tf if m.isfile()}  # type: ignore[union-attr]
    assert got == contents


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 9000)), min_size=1, max_size=40),
       st.integers(0, 4095))
def test_segments_are_probed_in_one_loop_as_one_by_one(pieces: list[tuple[bool, int]],
                                                       cut: int) -> None:
    """The block-wide probe loop decides every segment as the per-segment probe does (random
    and text runs of any length, and a short last segment)."""
    data = b"".join(os.urandom(n) if rnd else (b"line %d of text\n" % n) * (n // 14 + 1)
                    for rnd, n in pieces)
    block = data[: max(1, len(data) - cut)]
    seg, sample = gzip_blocks._SEGMENT, gzip_blocks._SAMPLE
    one_by_one = [gzip_blocks._incompressible(block[i : i + seg])
                  for i in range(0, len(block), seg)]
    heads = [gzip_blocks._incompressible(block[i : i + sample])
             for i in range(0, len(block) - len(block) % seg, seg)]
    assert gzip_blocks._incompressible_segments(block) == (one_by_one, heads)


def test_an_ascii_sample_is_compressible_without_a_probe() -> None:
    """A sample of 7-bit bytes is deflated without a zstd probe; random bytes are stored."""
    rng = random.Random(7)
    ascii_noise = bytes(rng.randrange(0, 128) for _ in range(gzip_blocks._SAMPLE))
    assert not gzip_blocks._incompressible(ascii_noise)
    assert gzip_blocks._incompressible(os.urandom(gzip_blocks._SAMPLE))
    # What deflate makes of such bytes over a run: an eighth off, worth deflating.
    run = bytes(rng.randrange(0, 128) for _ in range(1 << 16))
    assert len(zlib.compress(run, 6)) < len(run) * 0.9


def _lines(n: int) -> bytes:
    """``n`` bytes of numbered text lines: every 512-byte piece of it compresses."""
    return b"".join(b"line %d of some text\n" % i for i in range(n // 10 + 1))[:n]


def _inflated(raw_deflate: bytes) -> bytes:
    return zlib.decompressobj(-15).decompress(raw_deflate + b"\x03\x00")


def test_a_block_of_random_bytes_is_stored_without_probing_its_segments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A random block is stored whole without probing its segments; a block with a tenth of
    text is probed segment by segment and its text deflated."""
    probed: list[int] = []
    per_segment = gzip_blocks._incompressible_segments
    monkeypatch.setattr(gzip_blocks, "_incompressible_segments",
                        lambda view: probed.append(len(view)) or per_segment(view))
    random_block = os.urandom(1 << 20)
    out = gzip_blocks._deflate_block(random_block, b"", 6)
    assert probed == []
    assert len(out) == len(random_block) + 5 * 17  # stored pieces of at most 65,535 bytes
    assert _inflated(out) == random_block

    tenth = random_block[: (1 << 20) - (1 << 17)] + _lines(1 << 17)
    out = gzip_blocks._deflate_block(tenth, b"", 6)
    assert probed == [1 << 20]
    assert len(out) < len(tenth) - (1 << 17) * 0.8
    assert _inflated(out) == tenth


def test_a_stored_run_takes_the_random_pieces_at_its_edges() -> None:
    """Random bytes that begin and end inside segments: the stored run reaches the 512-byte
    pieces at both ends, not only the segments that are random throughout (which would leave
    the random bytes of two segments to deflate), and the runs cover the block in order."""
    start, end = 5 * 1024, 47 * 512  # segments 1 and 5 are part text, part random
    data = _lines(start) + os.urandom(end - start) + _lines(8000)
    runs = gzip_blocks._runs(data)
    assert [(a, b) for a, b, stored in runs if stored] == [(start, end)]
    assert runs[0][0] == 0 and runs[-1][1] == len(data)
    assert all(a[1] == b[0] and a[2] != b[2] for a, b in zip(runs, runs[1:], strict=False))
    assert _inflated(gzip_blocks._deflate_block(data, b"", 6)) == data


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 9000)), min_size=1, max_size=40),
       st.integers(0, 4095))
def test_runs_cover_the_block_and_only_widen_the_stored_segments(
    pieces: list[tuple[bool, int]], cut: int,
) -> None:
    """Whatever the mix: the runs cover the block in order and alternate, every segment
    probed incompressible stays stored, a stored run only gains whole pieces, and the block
    deflates back to itself."""
    data = b"".join(os.urandom(n) if rnd else _lines(n) for rnd, n in pieces)
    data = data[: max(1, len(data) - cut)]
    runs = gzip_blocks._runs(data)
    assert runs[0][0] == 0 and runs[-1][1] == len(data)
    assert all(a[1] == b[0] and a[2] != b[2] for a, b in zip(runs, runs[1:], strict=False))
    seg = gzip_blocks._SEGMENT
    stored = [(a, b) for a, b, is_stored in runs if is_stored]
    for i, flag in enumerate(gzip_blocks._incompressible_segments(data)[0]):
        if flag:
            assert any(a <= i * seg and min((i + 1) * seg, len(data)) <= b for a, b in stored)
    assert all(a % gzip_blocks._SAMPLE == 0 for a, _ in stored)
    assert _inflated(gzip_blocks._deflate_block(data, b"", 6)) == data


def test_compressing_imports_neither_asyncio_nor_typing_extensions(tmp_path: Path) -> None:
    """Every commit's forked child compresses, and pays for every import on the step's
    critical path: pyzstd's own import pulls asyncio in (~35 ms), ``fs.zstdlib`` must not.
    A fresh interpreter compresses a layer both ways and lists what it imported."""
    script = (
        "import sys\n"
        "from ocibuild.fs.compression import open_compressor\n"
        "for kind in ('gzip', 'zstd'):\n"
        "    with open(sys.argv[1], 'wb') as f:\n"
        "        c = open_compressor(f, kind, threads=2)\n"
        "        c.write(bytes(range(256)) * 8192)\n"
        "        c.close()\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "               ('asyncio', 'typing_extensions', 'pyzstd'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "blob")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert (tmp_path / "blob").stat().st_size > 0
