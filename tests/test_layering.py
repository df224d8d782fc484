"""DESIGN.md's import rule: ``dockerfile``, ``plan``, ``image`` and ``fs`` are pure: they never
import ``executor``, ``registry`` or ``output``, nor network modules. Checked on the source with
``ast`` (imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "ocibuild"
PURE = ("dockerfile", "plan", "image", "fs")
FORBIDDEN = (
    "ocibuild.executor", "ocibuild.registry", "ocibuild.output",
    "requests", "urllib3", "http", "urllib.request", "socket", "ssl", "httpx", "aiohttp",
)


def imports_of(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import in ``path`` (a module of ``package``,
    by default derived from its place under ``ocibuild/``)."""
    tree = ast.parse(path.read_text(), str(path))
    if package is None:
        package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("area", PURE)
def test_pure_areas_do_not_import_io_layers(area: str) -> None:
    bad = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for path in sorted((PACKAGE / area).rglob("*.py"))
        for line, module in imports_of(path)
        if forbidden(module)
    ]
    assert bad == []


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    """The walk itself works: relative, absolute and function-local imports are found."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from ..executor import run\n"
        "from . import model\n"
        "def f():\n    import requests.adapters\n"
    )
    found = imports_of(sample, "ocibuild.plan")
    assert (1, "ocibuild.executor") in found
    assert (2, "ocibuild.plan.model") in found
    assert [m for _, m in found if forbidden(m)] == [
        "ocibuild.executor", "ocibuild.executor.run", "requests.adapters"
    ]
    assert not forbidden("ocibuild.registryx") and not forbidden("httpie")


def test_only_the_lint_reaches_up_into_plan() -> None:
    """``plan`` builds on ``dockerfile``; the lint (``dockerfile/check.py``) is the one module
    there allowed to import the planner back."""
    up = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}"
        for path in sorted((PACKAGE / "dockerfile").rglob("*.py"))
        if path.name != "check.py"
        for line, module in imports_of(path)
        if module == "ocibuild.plan" or module.startswith("ocibuild.plan.")
    ]
    assert up == []
