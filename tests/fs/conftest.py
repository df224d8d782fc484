"""Fixtures for the fs tests (helpers live in fs_helpers.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fs_helpers import IS_ROOT, Overlay


@pytest.fixture
def overlay(tmp_path: Path) -> Iterator[Overlay]:
    """Directories for a real kernel overlay mount; the test fills ``lower`` and calls
    ``mount_overlay``; the mount is removed afterwards whatever happened."""
    if not IS_ROOT:
        pytest.skip("mounting overlay needs root")
    ov = Overlay([tmp_path / "lower"], tmp_path / "upper", tmp_path / "work", tmp_path / "merged")
    for d in (*ov.lower, ov.upper, ov.work, ov.merged):
        d.mkdir()
    yield ov
    subprocess.run(["umount", str(ov.merged)], capture_output=True)
