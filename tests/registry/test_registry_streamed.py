"""Streamed uploads (``registry.streamed``): a file uploaded while another writer appends to it,
against the real registry behind the fault proxy; every way it can end short leaves no blob."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from ocibuild.digest import Digest
from ocibuild.reference import Reference
from ocibuild.registry.blobs import has_blob
from ocibuild.registry.client import RegistryClient
from ocibuild.registry.streamed import GrowingUpload, StreamedUploads
from ocibuild.testing.faultproxy import Fault, FaultProxy


@pytest.fixture
def client():
    with RegistryClient() as c:
        yield c


def _write_slowly(path: Path, pieces: list[bytes]) -> None:
    with open(path, "wb") as f:
        for piece in pieces:
            f.write(piece)
            f.flush()
            time.sleep(0.01)


def test_a_file_is_uploaded_as_it_grows(fault_proxy: FaultProxy, client: RegistryClient,
                                        tmp_path: Path) -> None:
    ref = Reference.parse(f"{fault_proxy.host}/streamed/blob:1")
    path = tmp_path / "copy"
    pieces = [os.urandom(300_000) for _ in range(12)]
    data = b"".join(pieces)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    uploads = StreamedUploads(lambda: client, ref)
    upload = uploads.start(path)  # before the file exists, as a commit starts it
    assert upload is not None
    _write_slowly(path, pieces)  # the stream's thread reads as the file grows
    upload.finish(digest, len(data))
    path.rename(tmp_path / "moved")  # the store adopts the file right after finish()
    assert uploads.settle() == {digest: len(data)}
    assert has_blob(client, ref, digest)
    resp = client.request(ref, "GET", client.url(ref, f"blobs/{digest}"), scopes=[],
                          action="test")
    assert resp.content == data
    # One session, one streamed PATCH (no Content-Range chunks), one PUT naming the digest.
    calls = [m for m, p, _s, _r in fault_proxy.log if "/blobs/" in p]
    assert calls == ["POST", "PATCH", "PUT", "HEAD", "GET"]


def test_a_cancelled_stream_leaves_no_blob_and_drops_its_session(
        fault_proxy: FaultProxy, client: RegistryClient, tmp_path: Path) -> None:
    ref = Reference.parse(f"{fault_proxy.host}/streamed/blob:1")
    path = tmp_path / "copy"
    data = os.urandom(200_000)
    uploads = StreamedUploads(lambda: client, ref)
    upload = uploads.start(path)
    assert upload is not None
    path.write_bytes(data)
    time.sleep(0.05)
    upload.cancel()  # the commit failed
    assert uploads.settle() == {}
    assert not has_blob(client, ref, Digest.of_bytes(data))
    assert "DELETE" in [m for m, *_ in fault_proxy.log]


def _written(proxy: FaultProxy, client: RegistryClient, path: Path, size: int,
             ) -> tuple[Reference, bytes, StreamedUploads, GrowingUpload]:
    """A file of ``size`` random bytes already written at ``path``, and its stream started."""
    ref = Reference.parse(f"{proxy.host}/streamed/blob:1")
    data = os.urandom(size)
    path.write_bytes(data)
    uploads = StreamedUploads(lambda: client, ref)
    upload = uploads.start(path)
    assert upload is not None
    return ref, data, uploads, upload


@pytest.mark.parametrize("lie", ["digest", "size"])
def test_a_stream_that_is_not_the_announced_blob_fails(
        fault_proxy: FaultProxy, client: RegistryClient, tmp_path: Path, lie: str) -> None:
    ref, data, uploads, upload = _written(fault_proxy, client, tmp_path / "copy", 100_000)
    if lie == "digest":
        upload.finish(Digest.of_bytes(data + b"x"), len(data))
    else:
        upload.finish(Digest.of_bytes(data), len(data) + 1)
    assert uploads.settle() == {}
    assert not has_blob(client, ref, Digest.of_bytes(data))


def test_a_registry_refusing_the_stream_is_not_an_error(
        fault_proxy: FaultProxy, client: RegistryClient, tmp_path: Path) -> None:
    fault_proxy.add(Fault("status", method="PATCH", status=405))
    ref, data, uploads, upload = _written(fault_proxy, client, tmp_path / "copy", 50_000)
    upload.finish(Digest.of_bytes(data), len(data))
    assert uploads.settle() == {}
    assert not has_blob(client, ref, Digest.of_bytes(data))


def test_a_stream_that_ended_early_leaves_no_open_file(
        fault_proxy: FaultProxy, client: RegistryClient, tmp_path: Path) -> None:
    """The registry refuses the upload session before the file exists; the commit's finish()
    afterwards must not open a file nothing would close."""
    fault_proxy.add(Fault("status", method="POST", status=400))
    ref = Reference.parse(f"{fault_proxy.host}/streamed/blob:1")
    uploads = StreamedUploads(lambda: client, ref)
    upload = uploads.start(tmp_path / "copy")
    assert upload is not None
    assert upload.wait() is False  # ended: no session
    data = os.urandom(1000)
    (tmp_path / "copy").write_bytes(data)
    before = set(os.listdir("/proc/self/fd"))
    upload.finish(Digest.of_bytes(data), len(data))
    assert set(os.listdir("/proc/self/fd")) == before
    assert uploads.settle() == {}


def _resident(path: Path) -> int:
    """Bytes of ``path`` in the page cache (util-linux ``fincore``)."""
    done = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def test_a_streamed_copy_leaves_the_page_cache(fault_proxy: FaultProxy, client: RegistryClient,
                                               tmp_path: Path) -> None:
    """Nothing reads a pushed layer's compressed copy again: the stream lets the kernel drop
    the pages it has sent (the file is written back first, as the store would before naming
    it, so every page is clean)."""
    if shutil.which("fincore") is None:
        pytest.skip("no fincore (util-linux) here")
    probe = tmp_path / "probe"
    probe.write_bytes(os.urandom(1 << 20))
    with open(probe, "rb") as f:
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if _resident(probe):
        pytest.skip("this filesystem keeps clean pages cached (tmpfs)")
    ref = Reference.parse(f"{fault_proxy.host}/streamed/cache:1")
    path = tmp_path / "copy"
    data = os.urandom(8 << 20)
    with open(path, "wb") as f:
        f.write(data)
        os.fsync(f.fileno())
    assert _resident(path) == len(data)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())
    uploads = StreamedUploads(lambda: client, ref)
    upload = uploads.start(path)
    assert upload is not None
    upload.finish(digest, len(data))
    assert uploads.settle() == {digest: len(data)}
    assert _resident(path) == 0
