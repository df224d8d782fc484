"""ImageSource against a real registry: planning and pulling share one resolution."""

from __future__ import annotations

from pathlib import Path

from ocibuild.executor.pull import ImageSource
from ocibuild.image import Image
from ocibuild.plan.model import ImageRef
from ocibuild.registry.client import RegistryClient
from ocibuild.store import BlobStore
from ocibuild.testing.faultproxy import FaultProxy
from ocibuild.testing.registry import RegistryServer, make_tar, push_image


def test_config_then_image_resolve_the_manifest_once(
    registry: RegistryServer, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    layer = make_tar(tmp_path / "l.tar", {"etc/hello": b"hello\n"})
    push_image(registry.host, "pull-source/img:1", [layer], {"config": {"Env": ["A=1"]}})
    ref = ImageRef(f"{fault_proxy.host}/pull-source/img:1", "linux/amd64")
    with BlobStore(tmp_path / "store") as store:
        source = ImageSource(store, RegistryClient)
        try:
            config = source.config(ref)
            image = source.image(ref)
            assert source.image(ref) is image  # pulled once
        finally:
            source.close()
        assert image.config == config
        assert config.to_json()["config"]["Env"] == ["A=1"]
        assert [store.has(layer.digest) for layer in image.layers] == [True]
    manifest_gets = [path for method, path, _, _ in fault_proxy.log
                     if method == "GET" and "/manifests/" in path]
    assert manifest_gets == ["/v2/pull-source/img/manifests/1"]


def test_a_base_pulled_before_is_resolved_without_fetching_its_config(
    registry: RegistryServer, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    """The tag is resolved again (it may have moved); the config it names comes from the
    store when the store holds it, verified: a corrupt copy is dropped and fetched again."""
    layer = make_tar(tmp_path / "l.tar", {"etc/hello": b"hello\n"})
    push_image(registry.host, "pull-source/cfg:1", [layer], {"config": {"Env": ["B=2"]}})
    ref = ImageRef(f"{fault_proxy.host}/pull-source/cfg:1", "linux/amd64")

    def resolve(store: BlobStore) -> tuple[Image, list[str]]:
        start = len(fault_proxy.log)
        source = ImageSource(store, RegistryClient)
        try:
            source.config(ref)  # as a build does: the plan first, then the pull
            image = source.image(ref)
        finally:
            source.close()
        gets = [path for method, path, _, _ in fault_proxy.log[start:] if method == "GET"]
        return image, gets

    with BlobStore(tmp_path / "store") as store:
        first, gets = resolve(store)
        config = first.config.digest
        assert f"/v2/pull-source/cfg/blobs/{config}" in gets
        again, gets = resolve(store)
        assert gets == ["/v2/", "/v2/pull-source/cfg/manifests/1"]
        assert again == first
        store.path(config).write_bytes(b"{}")  # corrupt
        healed, gets = resolve(store)
        assert f"/v2/pull-source/cfg/blobs/{config}" in gets
        assert healed == first and store.get_bytes(config) == first.config.to_bytes()
