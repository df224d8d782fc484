"""Pull and push against the real distribution registry (plain HTTP)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
import requests

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import RegistryError
from ocibuild.image.descriptor import Descriptor
from ocibuild.image.manifest import Index
from ocibuild.image.platform import Platform
from ocibuild.reference import Reference
from ocibuild.registry.client import RegistryClient
from ocibuild.store import BlobStore
from ocibuild.testing.registry import RegistryServer, make_tar, push_image


@pytest.fixture
def client():
    with RegistryClient() as c:
        yield c


def test_push_then_pull_roundtrip(registry: RegistryServer, tmp_path: Path, store: BlobStore,
                                  client: RegistryClient) -> None:
    t1 = make_tar(tmp_path / "l1.tar", {"hello.txt": b"hello\n", "bin/x": b"\x00" * 5000})
    t2 = make_tar(tmp_path / "l2.tar", {"etc/motd": b"welcome\n"})
    digest = push_image(registry.host, "rt/app:1", [t1, t2], {"config": {"Env": ["A=1"]}})
    ref = Reference.parse(f"{registry.host}/rt/app:1")
    raw, media_type, got = client.get_manifest(ref)
    assert str(got) == digest and media_type == mt.OCI_MANIFEST
    # What the registry itself serves for the digest is the same bytes.
    served = requests.get(f"{registry.url}/v2/rt/app/manifests/{digest}",
                          headers={"Accept": mt.OCI_MANIFEST}, timeout=10).content
    assert served == raw
    image = client.pull_image(ref, Platform.parse("linux/amd64"), store)
    assert [layer.media_type for layer in image.layers] == [mt.OCI_LAYER_GZIP] * 2
    assert image.config.env == ["A=1"]
    with store.open(image.layers[0].digest) as r, gzip.open(r) as g:
        names = tarfile.open(fileobj=io.BytesIO(g.read())).getnames()
    assert names == ["bin/x", "hello.txt"]
    # diff ids in the config are the uncompressed tars' digests.
    assert image.layers[1].diff_id == Digest.of_bytes(t2.read_bytes())


def test_push_image_under_several_tags_and_repos_keeps_digest(
        registry: RegistryServer, tmp_path: Path, store: BlobStore, client: RegistryClient) -> None:
    t1 = make_tar(tmp_path / "l.tar", {"a": b"a" * 1000})
    push_image(registry.host, "multi/src:1", [t1])
    src = Reference.parse(f"{registry.host}/multi/src:1")
    image = client.pull_image(src, Platform.parse("linux/amd64"), store)
    refs = [Reference.parse(f"{registry.host}/multi/dst:{t}") for t in ("a", "b")] + [
        Reference.parse(f"{registry.host}/multi/other:c")]
    digest = client.push_image(image, refs, store)
    assert digest == image.manifest.digest
    for r in refs:
        assert client.get_manifest(r)[2] == digest


def test_docker_v2_manifest_pull(registry: RegistryServer, tmp_path: Path, store: BlobStore,
                                 client: RegistryClient) -> None:
    t1 = make_tar(tmp_path / "l.tar", {"docker": b"v2"})
    digest = push_image(registry.host, "dv2/app:1", [t1], docker=True)
    ref = Reference.parse(f"{registry.host}/dv2/app:1")
    raw, media_type, got = client.get_manifest(ref)
    assert media_type == mt.DOCKER_MANIFEST and str(got) == digest
    image = client.pull_image(ref, Platform.parse("linux/amd64"), store)
    assert image.layers[0].media_type == mt.DOCKER_LAYER_GZIP
    assert store.has(image.layers[0].digest)


def test_multi_arch_index_selection(registry: RegistryServer, tmp_path: Path, store: BlobStore,
                                    client: RegistryClient) -> None:
    entries = []
    for plat in ("linux/amd64", "linux/arm64/v8", "linux/arm/v7"):
        t = make_tar(tmp_path / f"{plat.replace('/', '_')}.tar", {"arch": plat.encode()})
        d = push_image(registry.host, f"idx/app:{plat.replace('/', '-')}", [t], platform=plat)
        ref = Reference.parse(f"{registry.host}/idx/app@{d}")
        raw, media_type, _ = client.get_manifest(ref)
        entries.append(Descriptor(media_type, Digest.parse(d), len(raw),
                                  platform=Platform.parse(plat)))
    index = Index.build(entries)
    idx_ref = Reference.parse(f"{registry.host}/idx/app:multi")
    assert client.push_manifest(idx_ref, index.raw, index.media_type) == index.digest
    raw, media_type, digest = client.get_manifest(idx_ref)
    assert (raw, media_type, digest) == (index.raw, mt.OCI_INDEX, index.digest)
    for plat in ("linux/arm64", "linux/arm/v7", "linux/amd64"):
        manifest, config = client.resolve_image(idx_ref, Platform.parse(plat))
        assert json.loads(config)["architecture"] == Platform.parse(plat).architecture
        image = client.pull_image(idx_ref, Platform.parse(plat), store)
        with store.open(image.layers[0].digest) as r, gzip.open(r) as g:
            member = tarfile.open(fileobj=io.BytesIO(g.read())).extractfile("arch")
            assert member is not None and member.read().decode().startswith(plat.split("/")[0])
    with pytest.raises(RegistryError, match=r"no image for platform linux/s390x .*linux/amd64"):
        client.resolve_image(idx_ref, Platform.parse("linux/s390x"))


def test_chunked_upload(registry: RegistryServer, tmp_path: Path, store: BlobStore) -> None:
    data = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, not a multiple of the chunk size
    digest = store.put_bytes(data)
    desc = Descriptor(mt.OCI_LAYER, digest, len(data))
    ref = Reference.parse(f"{registry.host}/chunked/blob:1")
    with RegistryClient(chunk_size=100_000) as client:
        client.push_blob(ref, desc, store)
        assert client.has_blob(ref, digest)
    got = requests.get(f"{registry.url}/v2/chunked/blob/blobs/{digest}", timeout=10).content
    assert got == data


def test_cross_repository_mount(registry: RegistryServer, tmp_path: Path, store: BlobStore,
                                client: RegistryClient) -> None:
    data = b"mount me" * 1000
    digest = store.put_bytes(data)
    desc = Descriptor(mt.OCI_LAYER, digest, len(data))
    src = Reference.parse(f"{registry.host}/mount/src:1")
    dst = Reference.parse(f"{registry.host}/mount/dst:1")
    client.push_blob(src, desc, store)
    # Remove the local copy: a mount must not need the bytes.
    store.delete(digest)
    client.push_blob(dst, desc, store, mount_from=src)
    assert client.has_blob(dst, digest)


def test_missing_manifest_error_quotes_registry(registry: RegistryServer,
                                                client: RegistryClient) -> None:
    ref = Reference.parse(f"{registry.host}/nothing/here:1")
    with pytest.raises(RegistryError) as info:
        client.get_manifest(ref)
    assert str(info.value).startswith(f"pull {registry.host}/nothing/here:1: ")
    assert "MANIFEST_UNKNOWN" in str(info.value) or "NAME_UNKNOWN" in str(info.value)


def test_wrong_digest_manifest_rejected(registry: RegistryServer, tmp_path: Path,
                                        client: RegistryClient) -> None:
    t = make_tar(tmp_path / "l.tar", {"x": b"y"})
    push_image(registry.host, "wd/app:1", [t])
    ref = Reference.parse(f"{registry.host}/wd/app@sha256:{'0' * 64}")
    with pytest.raises(RegistryError):
        client.get_manifest(ref)


def test_zstd_layer_image(registry: RegistryServer, tmp_path: Path, store: BlobStore,
                          client: RegistryClient) -> None:
    import pyzstd

    plain = make_tar(tmp_path / "z.tar", {"zstd.txt": b"compressed with zstd\n" * 100})
    data = pyzstd.compress(plain.read_bytes())
    layer_digest = store.put_bytes(data)
    layer = Descriptor(mt.OCI_LAYER_ZSTD, layer_digest, len(data))
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [str(Digest.of_bytes(plain.read_bytes()))]}}).encode()
    cfg = Descriptor(mt.OCI_CONFIG, Digest.of_bytes(config), len(config))
    from ocibuild.image.manifest import Manifest

    manifest = Manifest.build(cfg, [layer])
    ref = Reference.parse(f"{registry.host}/zstd/app:1")
    client.push_blob(ref, layer, store)
    client.push_blob_bytes(ref, cfg, config)
    client.push_manifest(ref, manifest.raw, manifest.media_type)
    with BlobStore(tmp_path / "fresh") as fresh:
        image = client.pull_image(ref, Platform.parse("linux/amd64"), fresh)
        assert image.layers[0].media_type == mt.OCI_LAYER_ZSTD
        with fresh.open(layer_digest) as r:
            assert pyzstd.decompress(r.read()) == plain.read_bytes()
