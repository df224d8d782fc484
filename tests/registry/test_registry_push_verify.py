"""A push reads blobs from the store and checks them on the way: a corrupt stored blob fails
the push with ContentError before its last byte is sent, and leaves the store."""

from __future__ import annotations

import os

import pytest
import requests

from ocibuild import mediatypes as mt
from ocibuild.errors import ContentError
from ocibuild.image import Descriptor
from ocibuild.reference import Reference
from ocibuild.registry.client import RegistryClient
from ocibuild.store import BlobStore
from ocibuild.testing.registry import RegistryServer


def _corrupt(store: BlobStore, data: bytes) -> Descriptor:
    digest = store.put_bytes(data)
    path = store.path(digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:  # same size, one byte flipped near the end
        f.seek(len(data) - 10)
        byte = f.read(1)
        f.seek(len(data) - 10)
        f.write(bytes([byte[0] ^ 0xFF]))
    return Descriptor(mt.OCI_LAYER, digest, len(data))


@pytest.mark.parametrize("chunk_size", [None, 100_000])
def test_corrupt_stored_blob_fails_push_and_leaves_store(
        registry: RegistryServer, store: BlobStore, chunk_size: int | None) -> None:
    desc = _corrupt(store, os.urandom(350_000))
    ref = Reference.parse(f"{registry.host}/verify/corrupt:1")
    with RegistryClient(chunk_size=chunk_size) as client:
        with pytest.raises(ContentError, match="corrupt"):
            client.push_blob(ref, desc, store)
        assert not client.has_blob(ref, desc.digest)
    assert not store.has(desc.digest)


@pytest.mark.parametrize("chunk_size", [None, 100_000])
def test_sound_blob_pushes(registry: RegistryServer, store: BlobStore,
                           chunk_size: int | None) -> None:
    data = os.urandom(350_000)
    digest = store.put_bytes(data)
    ref = Reference.parse(f"{registry.host}/verify/sound:1")
    with RegistryClient(chunk_size=chunk_size) as client:
        client.push_blob(ref, Descriptor(mt.OCI_LAYER, digest, len(data)), store)
    got = requests.get(f"{registry.url}/v2/verify/sound/blobs/{digest}", timeout=10).content
    assert got == data
    assert store.has(digest)
