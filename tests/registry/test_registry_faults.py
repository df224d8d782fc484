"""Fault injection between the client and a real registry: every fault is either retried to
success or fails cleanly, and the store never holds an unverified byte."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import ContentError, RegistryError
from ocibuild.image.descriptor import Descriptor
from ocibuild.reference import Reference
from ocibuild.registry.client import RegistryClient
from ocibuild.registry.transport import RetryPolicy
from ocibuild.store import BlobStore
from ocibuild.testing.faultproxy import Fault, FaultProxy
from ocibuild.testing.registry import RegistryServer

SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture
def client():
    with RegistryClient(retry=RetryPolicy(attempts=4, base=0.01, cap=0.05)) as c:
        yield c


@pytest.fixture(scope="module")
def seeded(registry: RegistryServer) -> Descriptor:
    """A random blob pushed straight to the registry (not through the proxy)."""
    data = os.urandom(SIZE)
    digest = Digest.of_bytes(data)
    with RegistryClient() as c:
        from ocibuild.registry.blobs import BytesSource, push_blob

        push_blob(c, Reference.parse(f"{registry.host}/faults/blob:1"),
                  Descriptor(mt.OCI_LAYER, digest, len(data)), BytesSource(data), None)
    return Descriptor(mt.OCI_LAYER, digest, len(data))


def via(proxy: FaultProxy) -> Reference:
    return Reference.parse(f"{proxy.host}/faults/blob:1")


def assert_clean(store: BlobStore) -> None:
    assert list(store.digests()) == []
    assert list((store.root / "tmp").iterdir()) == []


def blob_gets(proxy: FaultProxy) -> list[tuple[str, str, int, str | None]]:
    return [e for e in proxy.log if e[0] == "GET" and "/blobs/sha256:" in e[1]]


def test_dropped_connection_resumes_with_range(fault_proxy: FaultProxy, seeded: Descriptor,
                                               store: BlobStore, client: RegistryClient) -> None:
    fault_proxy.add(Fault("drop", path="/blobs/sha256:", method="GET", after=1_000_000))
    client.fetch_blob(via(fault_proxy), seeded, store)
    assert store.has(seeded.digest)
    store.verify(seeded.digest)
    gets = blob_gets(fault_proxy)
    assert gets[0][3] is None and gets[1][3] is not None and gets[1][3].startswith("bytes=")
    assert int(gets[1][3].split("=")[1].rstrip("-")) > 0


def test_truncated_body_is_resumed(fault_proxy: FaultProxy, seeded: Descriptor,
                                   store: BlobStore, client: RegistryClient) -> None:
    fault_proxy.add(Fault("truncate", path="/blobs/sha256:", method="GET", after=123_456))
    client.fetch_blob(via(fault_proxy), seeded, store)
    store.verify(seeded.digest)
    assert blob_gets(fault_proxy)[1][3] == "bytes=123456-"


def test_corrupt_byte_is_downloaded_again(fault_proxy: FaultProxy, seeded: Descriptor,
                                          store: BlobStore, client: RegistryClient) -> None:
    fault_proxy.add(Fault("corrupt", path="/blobs/sha256:", method="GET", after=4096))
    client.fetch_blob(via(fault_proxy), seeded, store)
    store.verify(seeded.digest)
    assert len(blob_gets(fault_proxy)) == 2


def test_persistent_corruption_fails_cleanly(fault_proxy: FaultProxy, seeded: Descriptor,
                                             store: BlobStore, client: RegistryClient) -> None:
    fault_proxy.add(Fault("corrupt", path="/blobs/sha256:", method="GET", after=10, times=50))
    with pytest.raises(ContentError, match="digest mismatch"):
        client.fetch_blob(via(fault_proxy), seeded, store)
    assert_clean(store)


def test_persistent_drops_fail_cleanly(fault_proxy: FaultProxy, seeded: Descriptor,
                                       store: BlobStore, client: RegistryClient) -> None:
    fault_proxy.add(Fault("drop", path="/blobs/sha256:", method="GET", after=0, times=100))
    with pytest.raises(RegistryError, match="connection dropped"):
        client.fetch_blob(via(fault_proxy), seeded, store)
    assert_clean(store)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(fault_proxy: FaultProxy, seeded: Descriptor,
                                   store: BlobStore, client: RegistryClient, status: int) -> None:
    fault_proxy.add(Fault("status", path="/blobs/sha256:", method="GET", status=status, times=2))
    client.fetch_blob(via(fault_proxy), seeded, store)
    store.verify(seeded.digest)
    assert [e[2] for e in blob_gets(fault_proxy)] == [status, status, 200]


def test_429_honours_retry_after(fault_proxy: FaultProxy, seeded: Descriptor,
                                 store: BlobStore, client: RegistryClient) -> None:
    fault_proxy.add(Fault("status", path="/blobs/sha256:", method="GET", status=429,
                          retry_after="1"))
    start = time.monotonic()
    client.fetch_blob(via(fault_proxy), seeded, store)
    assert time.monotonic() - start >= 0.95
    store.verify(seeded.digest)


def test_persistent_503_gives_up_with_registry_message(
        fault_proxy: FaultProxy, seeded: Descriptor, store: BlobStore,
        client: RegistryClient) -> None:
    fault_proxy.add(Fault("status", path="/manifests/", status=503, times=100))
    with pytest.raises(RegistryError) as info:
        client.get_manifest(via(fault_proxy))
    assert str(info.value) == f"pull {via(fault_proxy)}: UNAVAILABLE: injected fault"
    assert len([e for e in fault_proxy.log if "/manifests/" in e[1]]) == 4  # bounded


def test_push_survives_faults_on_every_upload_step(
        fault_proxy: FaultProxy, registry: RegistryServer, tmp_path: Path) -> None:
    data = os.urandom(700_000)
    with BlobStore(tmp_path / "s") as store, \
            RegistryClient(retry=RetryPolicy(attempts=4, base=0.01, cap=0.05)) as client:
        digest = store.put_bytes(data)
        desc = Descriptor(mt.OCI_LAYER, digest, len(data))
        fault_proxy.add(Fault("status", path="/blobs/uploads/$", method="POST", status=503))
        fault_proxy.add(Fault("status", path="/blobs/uploads/", method="PUT", status=500))
        fault_proxy.add(Fault("drop", path="/blobs/uploads/", method="PUT", after=0))
        client.push_blob(Reference.parse(f"{fault_proxy.host}/faults/up:1"), desc, store)
    got = requests.get(f"{registry.url}/v2/faults/up/blobs/{digest}", timeout=10).content
    assert got == data
    puts = [e for e in fault_proxy.log if e[0] == "PUT"]
    # 500, then a PUT the registry took but whose answer was dropped, then a new session.
    assert [e[2] for e in puts] == [500, 201, 201]


def test_chunked_push_resumes_after_failed_chunk(
        fault_proxy: FaultProxy, registry: RegistryServer, tmp_path: Path) -> None:
    data = os.urandom(500_000)
    with BlobStore(tmp_path / "s") as store, \
            RegistryClient(chunk_size=100_000,
                           retry=RetryPolicy(attempts=4, base=0.01, cap=0.05)) as client:
        digest = store.put_bytes(data)
        desc = Descriptor(mt.OCI_LAYER, digest, len(data))
        # The third chunk fails once with a 500; then one chunk's answer is dropped.
        patches = {"n": 0}
        original = fault_proxy._take

        def take(method: str, path: str) -> Fault | None:
            if method == "PATCH":
                patches["n"] += 1
                if patches["n"] == 3:
                    return Fault("status", status=500)
                if patches["n"] == 4:
                    return Fault("drop", after=0)
            return original(method, path)

        fault_proxy._take = take  # type: ignore[method-assign]
        client.push_blob(Reference.parse(f"{fault_proxy.host}/faults/chunks:1"), desc, store)
    got = requests.get(f"{registry.url}/v2/faults/chunks/blobs/{digest}", timeout=10).content
    assert got == data
    statuses = [e[2] for e in fault_proxy.log if e[0] == "GET" and "/blobs/uploads/" in e[1]]
    # After the 500 it asked where the session stood and went on from there; after the
    # dropped answer the session URL it holds is stale (the registry's _state moved on), so
    # the status query fails and a new session is started.
    assert statuses[0] == 204 and statuses[1:] == [404]
    assert [e[0] for e in fault_proxy.log if e[0] == "POST"] == ["POST", "POST"]


def test_long_retry_after_gives_up_instead_of_hanging(
        fault_proxy: FaultProxy, seeded: Descriptor, store: BlobStore,
        client: RegistryClient) -> None:
    fault_proxy.add(Fault("status", path="/manifests/", status=429, retry_after="3600"))
    start = time.monotonic()
    with pytest.raises(RegistryError, match="TOOMANYREQUESTS: slow down"):
        client.get_manifest(via(fault_proxy))
    assert time.monotonic() - start < 5


def test_persistent_truncation_fails_cleanly(fault_proxy: FaultProxy, seeded: Descriptor,
                                             store: BlobStore, client: RegistryClient) -> None:
    fault_proxy.add(Fault("truncate", path="/blobs/sha256:", method="GET", after=1000,
                          times=1000))
    with pytest.raises(RegistryError, match="body ended early"):
        client.fetch_blob(via(fault_proxy), seeded, store)
    assert_clean(store)
