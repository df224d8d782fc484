"""Fixtures for the end-to-end build tests.

``e2e_registry``: the session's ``registry`` seeded with the base images the cases name
(``localhost:5000/<name>`` in a case's Dockerfile is rewritten to this registry):

- ``busybox:latest``, ``debian:buster``, ``alpine:latest``, ``golang:1.16``: the static busybox
  rootfs (``ocibuild.testing.busybox``), one layer, ``Cmd ["sh"]``;
- ``richbase:1``: the same plus a second layer and config fields to carry over (Env,
  WorkingDir, User, Entrypoint, Cmd, Labels, ExposedPorts, Volumes, StopSignal, Healthcheck);
- ``onbuild-base:1``: with ONBUILD triggers in its config.

``e2e_store``: one content store for the session (layers unpacked once, as across builds).
The isolation mode comes from ``OCIBUILD_E2E_ISOLATION`` (default ``auto``), so the same tests
run rootless and in chroot mode (see tests/run-rootless.sh).
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocibuild.testing import busybox


@dataclass(frozen=True)
class E2ERegistry:
    host: str
    busybox_tree: dict  # path -> flatten.Entry of the busybox rootfs
    busybox_history: tuple[str, ...]


def _extra_layer(path: Path) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("srv/app/config.txt", b"rich\n"),):
            d = tarfile.TarInfo("srv/app/")
            d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            srv = tarfile.TarInfo("srv/")
            srv.type, srv.mode, srv.mtime = tarfile.DIRTYPE, 0o755, 1_700_000_000
            tar.addfile(srv)
            tar.addfile(d)
            f = tarfile.TarInfo(name)
            f.size, f.mode, f.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(f, io.BytesIO(data))
    return path


RICH_CONFIG = {
    "config": {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "RICH=1", "LANG=C.UTF-8"],
        "WorkingDir": "/srv/app",
        "User": "app",
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo rich"],
        "Labels": {"org.example.base": "rich", "maintainer": "base"},
        "ExposedPorts": {"8080/tcp": {}},
        "Volumes": {"/var/lib/rich": {}},
        "StopSignal": "SIGQUIT",
        "Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 10_000_000_000},
    },
}
ONBUILD_CONFIG = {
    "config": {
        "OnBuild": ["RUN echo from-onbuild > /onbuild.txt", "ENV ONBUILD_RAN=yes"],
    },
}


@pytest.fixture(scope="session", autouse=True)
def case_contexts() -> None:
    """Every case's ``ctx`` directory, also the empty ones git does not keep: a test may
    build a case before (or without) ``build_case`` making its directory."""
    from e2e_harness import CASES

    for case in CASES.iterdir():
        if (case / "Dockerfile").is_file():
            (case / "ctx").mkdir(exist_ok=True)


@pytest.fixture(scope="session")
def e2e_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-store")


@pytest.fixture(scope="session")
def e2e_registry(registry, e2e_store: Path, tmp_path_factory) -> Iterator[E2ERegistry]:  # type: ignore[no-untyped-def]
    from ocibuild.reference import Reference
    from ocibuild.registry.client import RegistryClient
    from ocibuild.store.blobs import BlobStore
    from ocibuild.testing.flatten import tree_of_tar

    work = tmp_path_factory.mktemp("e2e-seed")
    store = BlobStore(e2e_store)
    plain = busybox.make_image(store)
    rich = busybox.make_image(store, config=RICH_CONFIG,
                              extra_layers=[_extra_layer(work / "rich.tar")])
    onbuild = busybox.make_image(store, config=ONBUILD_CONFIG)
    with RegistryClient(insecure_hosts=[registry.host]) as client:
        for name in ("busybox:latest", "debian:buster", "alpine:latest", "golang:1.16"):
            client.push_image(plain, [Reference.parse(f"{registry.host}/{name}")], store)
        client.push_image(rich, [Reference.parse(f"{registry.host}/richbase:1")], store)
        client.push_image(onbuild, [Reference.parse(f"{registry.host}/onbuild-base:1")], store)
    tree = tree_of_tar(busybox.write_tar(work / "busybox.tar"))
    history = tuple(h.get("created_by", "") for h in busybox.image_config()["history"])  # type: ignore[union-attr]
    yield E2ERegistry(registry.host, tree, history)


@pytest.fixture(scope="session")
def isolation() -> str:
    return os.environ.get("OCIBUILD_E2E_ISOLATION", "auto")


@pytest.fixture(scope="session")
def single_id(isolation: str) -> bool:
    """Whether builds here run in a single-id rootless sandbox (no sub-id range): only the
    caller's id exists, so a case that needs others (``ids=all`` in its options) is skipped."""
    from ocibuild.executor.runtime import Runtime

    with Runtime.detect(isolation=isolation) as runtime:
        return bool(runtime.isolation.single_id)


@pytest.fixture(scope="session")
def namespaced(isolation: str) -> bool:
    """Whether builds here get namespaces (not chroot mode, picked or detected): a case with
    ``needs=namespaces`` (``RUN --network=none``) is skipped without them."""
    from ocibuild.executor.runtime import Runtime

    with Runtime.detect(isolation=isolation) as runtime:
        return bool(runtime.isolation.namespaced)
