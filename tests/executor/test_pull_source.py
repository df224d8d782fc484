"""ImageSource against a real registry: planning and pulling share one resolution."""

from __future__ import annotations

from pathlib import Path

from ocibuild.executor.pull import ImageSource
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
