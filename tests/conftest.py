"""Shared pytest configuration: fixtures from the package's test kits.

Each helper adds its plugin module to ``pytest_plugins`` (one line each).
"""

pytest_plugins = [
    "ocibuild.testing.registry",
    "ocibuild.testing.sandbox",
]


def pytest_addoption(parser):  # type: ignore[no-untyped-def]
    """``--update-golden``: golden-file tests (any area) rewrite their expected files instead
    of comparing. Defined once here so every area's conftest can read it."""
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden expected files instead of comparing against them",
    )
