"""Fixtures for the BuildKit conformance corpus: one registry seeded with the same busybox
image the goldens were recorded against (``conformance.seed``), one content store, the base
rootfs listing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conformance import base_tree, seed

from ocibuild.testing.flatten import Entry


@pytest.fixture(scope="session")
def conformance_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("conformance-store")


@pytest.fixture(scope="session")
def conformance_registry(registry, conformance_store: Path) -> str:  # type: ignore[no-untyped-def]
    """The host of the session registry, with every ``BASE_TAGS`` name pushed."""
    seed(registry.host, conformance_store)
    return str(registry.host)


@pytest.fixture(scope="session")
def busybox_tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Entry]:
    return base_tree(tmp_path_factory.mktemp("conformance-base"))


@pytest.fixture(scope="session")
def isolation() -> str:
    return os.environ.get("OCIBUILD_E2E_ISOLATION", "auto")


@pytest.fixture(scope="session")
def single_id(isolation: str) -> bool:
    """Whether builds here run in a single-id rootless sandbox (no sub-id range)."""
    from ocibuild.executor.runtime import Runtime

    with Runtime.detect(isolation=isolation) as runtime:
        return bool(runtime.isolation.single_id)
