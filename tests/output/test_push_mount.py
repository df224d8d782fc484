"""Pushing a build result mounts the layers pulled from a repository of the same registry
(cross-repository mount) instead of uploading them again, and further repositories of one
push mount from the first; checked on a real registry through the logging proxy."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from ocibuild.executor.pull import ImageSource
from ocibuild.image import Platform
from ocibuild.output.export import _push, manifest_for
from ocibuild.output.spec import OutputSpec
from ocibuild.plan.model import ImageRef
from ocibuild.reference import Reference
from ocibuild.registry.client import RegistryClient
from ocibuild.store import BlobStore
from ocibuild.testing import busybox
from ocibuild.testing.faultproxy import FaultProxy
from ocibuild.testing.registry import RegistryServer


def test_push_mounts_pulled_layers(registry: RegistryServer, fault_proxy: FaultProxy,
                                   tmp_path: Path) -> None:
    host = fault_proxy.host
    with BlobStore(tmp_path / "seed") as seed, RegistryClient() as c:
        c.push_image(busybox.make_image(seed), [Reference.parse(f"{host}/base/bb:1")], seed)
    with BlobStore(tmp_path / "s") as store, RegistryClient() as client:
        images = ImageSource(store, lambda: client)
        image = images.image(ImageRef(f"{host}/base/bb:1", str(Platform.default())))
        layer = image.layers[0].digest
        assert images.pulled_from() == {layer: Reference.parse(f"{host}/base/bb:1")}
        manifest, _ = manifest_for(image, store, oci=True)
        fault_proxy.log.clear()
        out = OutputSpec("image", names=(f"{host}/app/one:1", f"{host}/app/two:1"), push=True)
        _push(out, image, manifest, store, images)
    posts = [unquote(p) for m, p, _, _ in fault_proxy.log if m == "POST"]
    puts = [unquote(p) for m, p, _, _ in fault_proxy.log
            if m in ("PUT", "PATCH") and "uploads" in p]
    # The layer: mounted into app/one from base/bb, into app/two from app/one; never sent.
    assert any(f"mount={layer}" in p and "from=base/bb" in p and "/app/one/" in p
               for p in posts), posts
    assert any(f"mount={layer}" in p and "from=app/one" in p and "/app/two/" in p
               for p in posts), posts
    assert not any(str(layer) in p for p in puts), puts
    # The config (not pulled) was uploaded once, then mounted into app/two.
    config = str(manifest.config.digest)
    assert sum(config in p for p in puts) == 1
    with RegistryClient() as c:
        for repo in ("app/one", "app/two"):
            ref = Reference.parse(f"{registry.host}/{repo}:1")
            assert c.has_blob(ref, layer)
            assert c.has_blob(ref, manifest.config.digest)
