"""Fixtures shared by the executor's sandbox tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ocibuild.executor.runtime import Runtime, Snapshot
from ocibuild.testing.sandbox import BaseLayer, mounts_under


@pytest.fixture
def snap(sandbox_runtime: Runtime, busybox_layer: BaseLayer) -> Iterator[Snapshot]:
    """A snapshot over the test busybox layer, removed (and checked unmounted) afterwards."""
    lower = sandbox_runtime.unpack_layer(busybox_layer.chain_id, busybox_layer.blob)
    snapshot = sandbox_runtime.new_snapshot([lower])
    yield snapshot
    sandbox_runtime.remove(snapshot)
    assert mounts_under(snapshot.path) == []
