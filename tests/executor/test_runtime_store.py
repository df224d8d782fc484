"""The Runtime with the real content store: layers unpacked once per chain id, work area in the
store's temp space, everything removable by the runtime."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from ocibuild.executor.runtime import RunSpec, Runtime
from ocibuild.store import BlobStore
from ocibuild.testing.sandbox import BaseLayer, mounts_under

pytestmark = [pytest.mark.rootless, pytest.mark.chroot, pytest.mark.timeout(60)]


def test_runtime_over_the_blob_store(sandbox_runtime: Runtime, busybox_layer: BaseLayer,
                                     tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "store")
    digest, _ = store.put_file(busybox_layer.blob)
    runtime = Runtime.detect(sandbox_runtime.isolation.mode, sandbox_runtime.snapshotter,
                             store=store)
    try:
        lower = runtime.unpack_layer(busybox_layer.chain_id, store.path(digest))
        assert lower.parent == store.snapshot_path(busybox_layer.chain_id)
        assert runtime.unpack_layer(busybox_layer.chain_id, store.path(digest)) == lower
        snap = runtime.new_snapshot([lower])
        assert (tmp_path / "store") in snap.path.parents
        out: list[bytes] = []
        assert runtime.run(snap, RunSpec(("/bin/sh", "-c", "echo hi > /hi; chown 7:7 /hi")),
                           out.append) == 0, out
        blob = runtime.commit(snap, tmp_path / "layer.tar.gz")
        runtime.remove(snap)
        assert not snap.path.exists()
        with tarfile.open(blob.path) as tar:
            # /etc: the mount stubs' parent keeps their time (BuildKit's cleaner), except in
            # the copy snapshotter's double walk
            etc = ["etc"] if snap.kind != "copy" else []
            assert [m.name for m in tar.getmembers()] == [*etc, "hi"]
        assert mounts_under(tmp_path) == []
    finally:
        runtime.close()
        runtime.remove_tree(store.snapshot_path(busybox_layer.chain_id))
        store.close()
