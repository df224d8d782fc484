"""prune: keeps what roots reach and what is fresh, removes the rest; --all is exclusive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocibuild.digest import Digest
from ocibuild.errors import StoreError
from ocibuild.image import Platform, chain_ids
from ocibuild.store import BlobStore
from ocibuild.store.gc import prune
from ocibuild.testing.images import random_image, random_index, validate_image


def age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t), follow_symlinks=False)


def age_everything(store: BlobStore, seconds: float = 2 * 24 * 3600) -> None:
    for p in store.root.rglob("*"):
        age(p, seconds)


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    s = BlobStore(tmp_path / "store")
    yield s
    s.close()


def test_prune_keeps_roots_and_what_they_reach(store: BlobStore) -> None:
    kept, kept_m = random_image(store, seed=1, layers=2)
    index = random_index(store, [Platform.parse("linux/amd64"), Platform.parse("linux/arm64")], seed=10)
    gone, gone_m = random_image(store, seed=2, layers=2)
    store.add_root("docker.io/library/kept:latest", kept_m.digest)
    store.add_root("docker.io/library/multi:latest", index.digest)
    live_chain = chain_ids(kept.config.diff_ids)[-1]
    dead_chain = chain_ids(gone.config.diff_ids)[-1]
    for chain in (live_chain, dead_chain):
        store.snapshot(chain, lambda d: (d / "f").write_text("x"))
    leftover = store.tempdir()
    age_everything(store)

    report = prune(store)

    live = {kept_m.digest, kept_m.config.digest, *(x.digest for x in kept.layers), index.digest}
    for d in index.manifests:
        live.add(d.digest)
    assert live <= set(store.digests())
    for layer in gone.layers:
        assert not store.has(layer.digest)
    assert not store.has(gone_m.digest) and not store.has(gone_m.config.digest)
    assert store.has_snapshot(live_chain) and not store.has_snapshot(dead_chain)
    assert not leftover.exists()
    assert report.blobs == 4 and report.snapshots == 1 and report.temporary == 1
    assert "removed 4 blobs" in str(report)
    # Everything still reachable is intact.
    validate_image(store, kept_m.digest)
    validate_image(store, index.digest)


def test_fresh_unreferenced_content_survives_the_grace_period(store: BlobStore) -> None:
    _, m = random_image(store, seed=3)
    chain = Digest.of_bytes(b"in-use")
    store.snapshot(chain, lambda d: None)
    report = prune(store)
    assert report.blobs == 0 and store.has(m.digest) and store.has_snapshot(chain)
    assert prune(store, grace=0).blobs == 4 and not store.has_snapshot(chain)


def test_expired_roots_are_dropped(store: BlobStore) -> None:
    _, m = random_image(store, seed=4)
    store.add_root("old", m.digest)
    (root_file,) = (store.root / "roots").iterdir()
    obj = json.loads(root_file.read_text())
    obj["updated"] -= 31 * 24 * 3600
    root_file.write_text(json.dumps(obj))
    age_everything(store)
    report = prune(store)
    assert report.roots == 1 and not store.has(m.digest)
    assert list((store.root / "roots").iterdir()) == []


def test_corrupt_root_manifest_does_not_break_prune(store: BlobStore) -> None:
    _, m = random_image(store, seed=5)
    store.add_root("x", m.digest)
    os.chmod(store.path(m.digest), 0o644)
    store.path(m.digest).write_bytes(b"garbage")
    age_everything(store)
    prune(store)
    assert not store.has(m.digest)


HOLDER = "import sys, time; from ocibuild.store import BlobStore; s = BlobStore(sys.argv[1]); print('held', flush=True); time.sleep(30)"


def test_prune_all_refuses_while_another_process_uses_the_store(store: BlobStore) -> None:
    _, m = random_image(store, seed=6)
    store.cache_dir("c")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(store.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match="in use by another ocibuild process"):
            prune(store, everything=True)
        assert store.has(m.digest)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
    report = prune(store, everything=True)
    assert report.blobs == 4 and list(store.digests()) == []
    assert list((store.root / "cache").iterdir()) == []
    # The store is still usable afterwards (and our shared lock is back).
    assert store.get_bytes(store.put_bytes(b"again")) == b"again"


def test_prune_cli(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    with BlobStore(tmp_path / "xdg" / "ocibuild") as s:
        random_image(s, seed=7)
    out = subprocess.run(
        [sys.executable, "-m", "ocibuild", "prune", "--all"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "removed 4 blobs" in out.stdout
    out = subprocess.run(
        [sys.executable, "-m", "ocibuild", "prune"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "removed 0 blobs" in out.stdout


def test_record_image_keeps_a_pulled_or_built_image(store: BlobStore) -> None:
    from ocibuild.image import Image
    from ocibuild.store.images import read_image, record_image

    image, manifest = random_image(store, seed=8)
    pulled = Image.from_manifest(manifest, image.config.to_bytes())
    assert record_image(store, "docker.io/library/pulled:1", pulled) == manifest.digest
    built = pulled.with_config(pulled.config.with_config("User", "app"))  # no manifest yet
    built_digest = record_image(store, "localhost/built:1", built)
    age_everything(store)
    prune(store)
    validate_image(store, manifest.digest)
    assert read_image(store, built_digest).config.user == "app"
    validate_image(store, built_digest)


def test_has_counts_as_a_use(store: BlobStore) -> None:
    digest = store.put_bytes(b"used")
    age_everything(store)
    assert store.has(digest)
    assert prune(store).blobs == 0 and store.has(digest)
    assert not store.has(Digest.of_bytes(b"absent"))


def test_compressed_copies_are_made_once_and_kept_while_their_layer_lives(
        store: BlobStore) -> None:
    """An output compresses a build's uncompressed layer once (``store.variants``); prune
    keeps that copy while the uncompressed layer is live and forgets it with the layer."""
    from ocibuild.output.recompress import recompress_image
    from ocibuild.store import variants

    kept, kept_m = random_image(store, seed=5, layers=1, compression="none")
    gone, _ = random_image(store, seed=6, layers=1, compression="none")
    store.add_root("kept", kept_m.digest)
    kept_gz = recompress_image(kept, store, "gzip", 9)
    gone_gz = recompress_image(gone, store, "gzip", None)
    layer, gz = kept.layers[0], kept_gz.layers[0]
    assert gz.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert gz.diff_id == layer.diff_id == layer.digest and gz.digest != layer.digest
    assert store.get_bytes(gz.digest)[:2] == b"\x1f\x8b"
    # Made once: another output, at another level, gets the same blob (as BuildKit keeps
    # one blob per compression), and so does a zstd output its own.
    assert recompress_image(kept, store, "gzip", 1).layers == kept_gz.layers
    assert variants.lookup(store, layer.diff_id, "gzip") == (gz.digest, gz.size)
    assert variants.lookup(store, layer.diff_id, "zstd") is None
    age_everything(store)

    prune(store)

    assert store.has(gz.digest) and store.has(layer.digest)
    assert variants.lookup(store, layer.diff_id, "gzip") == (gz.digest, gz.size)
    assert not store.has(gone_gz.layers[0].digest)
    assert variants.lookup(store, gone.layers[0].diff_id, "gzip") is None
    assert not (store.root / "variants" / "sha256" / gone.layers[0].diff_id.hex).exists()
