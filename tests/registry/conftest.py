"""Fixtures shared by the registry tests (the registries themselves come from
``ocibuild.testing.registry``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ocibuild.store import BlobStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BlobStore]:
    """An empty content store of this test's own, closed afterwards."""
    with BlobStore(tmp_path / "store") as s:
        yield s
