"""The blob store: the put/open law, atomic writes, verification, concurrency, snapshots."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocibuild.digest import Digest
from ocibuild.errors import ContentError, StoreError
from ocibuild.store import BlobStore, default_root


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    s = BlobStore(tmp_path / "store")
    yield s
    s.close()


def tmp_entries(store: BlobStore) -> list[str]:
    return sorted(os.listdir(store.root / "tmp"))


@given(data=st.binary(max_size=5000), chunk=st.integers(1, 700))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_open_of_put_is_identity(store: BlobStore, data: bytes, chunk: int) -> None:
    with store.writer() as w:
        for i in range(0, len(data), chunk):
            w.write(data[i : i + chunk])
    assert w.digest == Digest.of_bytes(data) and w.size == len(data)
    with store.open(w.digest) as r:
        assert r.read() == data
    assert store.put_bytes(data) == w.digest
    assert store.get_bytes(w.digest) == data
    assert store.has(w.digest) and store.size(w.digest) == len(data)
    assert tmp_entries(store) == []


def test_expected_digest_and_size_are_enforced(store: BlobStore) -> None:
    data = b"hello world"
    good = Digest.of_bytes(data)
    with store.writer(good, len(data)) as w:
        w.write(data)
    assert store.path(good).read_bytes() == data
    wrong = Digest.of_bytes(b"other")
    with pytest.raises(ContentError, match=f"got {good}, want {wrong}"):
        with store.writer(wrong) as w:
            w.write(data)
    with pytest.raises(ContentError, match="got 11 bytes, want 12"):
        with store.writer(None, 12) as w:
            w.write(data)
    with pytest.raises(ContentError, match="larger than the expected 5 bytes"):
        with store.writer(None, 5) as w:
            w.write(data)
    assert not store.has(wrong) and tmp_entries(store) == []


def test_a_writer_that_raises_leaves_nothing(store: BlobStore) -> None:
    data = os.urandom(3 << 20)
    with pytest.raises(RuntimeError, match="network dropped"):
        with store.writer(Digest.of_bytes(data)) as w:
            w.write(data[: 1 << 20])
            raise RuntimeError("network dropped")
    assert not store.has(Digest.of_bytes(data))
    assert tmp_entries(store) == []
    assert list(store.digests()) == []


def test_corrupt_blob_is_detected_and_removed(store: BlobStore) -> None:
    data = os.urandom(3 << 20)
    digest = store.put_bytes(data)
    path = store.path(digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(2 << 20)
        f.write(bytes([data[2 << 20] ^ 1]))  # flip one bit
    with store.open(digest) as r:
        r.read(1 << 20)  # nothing is said before the end
        with pytest.raises(ContentError, match=f"blob {digest} in the store is corrupt"):
            r.read()
    assert not store.has(digest)
    # Truncation is caught too, also by get_bytes and verify.
    digest = store.put_bytes(b"abc")
    os.chmod(store.path(digest), 0o644)
    store.path(digest).write_bytes(b"ab")
    with pytest.raises(ContentError, match="corrupt"):
        store.verify(digest)


def test_reader_verifies_when_read_exactly_to_size(store: BlobStore) -> None:
    # tarfile and friends read exactly `size` bytes and never see EOF: verify anyway.
    digest = store.put_bytes(b"0123456789")
    os.chmod(store.path(digest), 0o644)
    store.path(digest).write_bytes(b"0123456780")
    with store.open(digest) as r, pytest.raises(ContentError):
        r.read(10)


def test_missing_blob(store: BlobStore) -> None:
    d = Digest.of_bytes(b"nope")
    with pytest.raises(StoreError, match="not in the store"):
        store.open(d)
    with pytest.raises(StoreError, match="not in the store"):
        store.size(d)


def test_adopt_moves_a_written_file_in(store: BlobStore) -> None:
    data = os.urandom(3000)
    digest = Digest.of_bytes(data)
    work = store.tempdir()
    src = work / "layer"
    src.write_bytes(data)
    with pytest.raises(ContentError, match="got 3000 bytes, want 3001"):
        store.adopt(src, digest, 3001)
    assert src.exists() and not store.has(digest)  # left for the caller
    store.adopt(src, digest, 3000)
    assert not src.exists()
    assert store.get_bytes(digest) == data
    assert store.path(digest).stat().st_mode & 0o777 == 0o444
    with pytest.raises(StoreError, match="into the store"):
        store.adopt(work / "absent", digest, 3000)
    work.rmdir()


def test_adopt_later_publishes_in_the_background(store: BlobStore) -> None:
    data = os.urandom(5000)
    digest = Digest.of_bytes(data)
    work = store.tempdir()
    (work / "layer").write_bytes(data)
    cleaned: list[bool] = []
    store.adopt_later(work / "layer", digest, 5000, lambda: cleaned.append(True))
    # In this process the blob is there as soon as anyone asks for it.
    assert store.has(digest)
    assert store.get_bytes(digest) == data
    assert cleaned == [True] and not (work / "layer").exists()
    store.flush()

    # A failed publication is raised where the blob is asked for, by flush, and the
    # cleanup runs anyway; nothing is published.
    other = os.urandom(100)
    bad = Digest.of_bytes(other)
    (work / "bad").write_bytes(other)
    store.adopt_later(work / "bad", bad, 101, lambda: cleaned.append(True))
    with pytest.raises(ContentError, match="got 100 bytes, want 101"):
        store.flush()
    with pytest.raises(ContentError):
        store.has(bad)
    assert cleaned == [True, True]
    assert not store._path(bad).exists()
    (work / "bad").unlink()
    work.rmdir()


def test_close_waits_for_background_publications(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    data = os.urandom(1 << 20)
    digest = Digest.of_bytes(data)
    work = store.tempdir()
    (work / "layer").write_bytes(data)
    store.adopt_later(work / "layer", digest, len(data), lambda: work.rmdir())
    store.close()
    assert not work.exists()
    assert BlobStore(tmp_path / "store").get_bytes(digest) == data


def test_put_file_streams(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "big"
    with open(src, "wb") as f:
        for _ in range(8):
            f.write(os.urandom(1 << 20))
    digest, size = store.put_file(src)
    assert size == 8 << 20
    assert store.path(digest).read_bytes() == src.read_bytes()
    with pytest.raises(StoreError, match="read .* into the store"):
        store.put_file(tmp_path / "absent")


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "ocibuild"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / ".cache" / "ocibuild"


WRITER = textwrap.dedent(
    """
    import sys, time
    from ocibuild.store import BlobStore
    from ocibuild.digest import Digest
    root, seed, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    import random
    data = random.Random(seed).randbytes(16 << 20)
    s = BlobStore(root)
    with s.writer(Digest.of_bytes(data), len(data)) as w:
        for i in range(0, len(data), 1 << 20):
            w.write(data[i:i + (1 << 20)])
            if i == 4 << 20:
                open(go + sys.argv[4], "w").close()   # tell the test we are mid-blob
                while not all(__import__("os").path.exists(go + x) for x in "ab"):
                    time.sleep(0.01)                  # wait until the other writer is too
    print(w.digest)
    """
)


def test_two_processes_writing_the_same_blob_both_succeed(store: BlobStore, tmp_path: Path) -> None:
    go = str(tmp_path / "go-")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store.root), "7", go, name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in "ab"
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    digests = {o[0].strip() for o in outs}
    assert len(digests) == 1
    digest = Digest.parse(digests.pop())
    store.verify(digest)
    assert tmp_entries(store) == []


def test_snapshot_is_filled_once(store: BlobStore) -> None:
    chain = Digest.of_bytes(b"chain")
    calls = []

    def fill(d: Path) -> None:
        calls.append(d)
        (d / "file").write_text("x")

    p1 = store.snapshot(chain, fill)
    p2 = store.snapshot(chain, fill)
    assert p1 == p2 == store.snapshot_path(chain) and len(calls) == 1
    assert (p1 / "file").read_text() == "x" and store.has_snapshot(chain)


def test_failed_fill_publishes_nothing(store: BlobStore) -> None:
    chain = Digest.of_bytes(b"chain")

    def fill(d: Path) -> None:
        (d / "sub").mkdir()
        (d / "sub" / "f").write_text("half")
        os.chmod(d / "sub", 0o500)  # removal must cope with read-only dirs
        raise ValueError("unpack failed")

    with pytest.raises(ValueError, match="unpack failed"):
        store.snapshot(chain, fill)
    assert not store.has_snapshot(chain)
    assert os.listdir(store.snapshot_path(chain).parent) == []


SNAPSHOTTER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from ocibuild.store import BlobStore
    from ocibuild.digest import Digest
    s = BlobStore(sys.argv[1])
    def fill(d):
        with open(sys.argv[2], "a") as f:
            f.write("filled\\n")
        time.sleep(0.5)
        (d / "f").write_text("x")
    print(s.snapshot(Digest.of_bytes(b"shared"), fill))
    """
)


def test_concurrent_snapshots_wait_for_one_fill(store: BlobStore, tmp_path: Path) -> None:
    log = tmp_path / "fills"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SNAPSHOTTER, str(store.root), str(log)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert outs == {str(store.snapshot_path(Digest.of_bytes(b"shared")))}
    assert log.read_text() == "filled\n"


def test_cache_dirs_and_tempdirs(store: BlobStore) -> None:
    a = store.cache_dir("go-build")
    assert a.is_dir() and store.cache_dir("go-build") == a and store.cache_dir("other") != a
    with store.cache_lock("go-build") as held:
        assert held
    t = store.tempdir()
    assert t.is_dir() and t.parent == store.root / "tmp"
    assert os.stat(t).st_dev == os.stat(store.root / "blobs").st_dev
