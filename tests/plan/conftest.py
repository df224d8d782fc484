"""Fixtures for the build-plan tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when pytest runs with ``--update-golden`` (defined in tests/conftest.py)."""
    return bool(request.config.getoption("--update-golden"))
