"""Golden tests: ``golden/<case>/Dockerfile`` parses to ``golden/<case>/expected.txt``.

The expected file is :func:`ocibuild.dockerfile.dump.dump_result` of the Dockerfile (or
``error: ...`` when parsing must fail). Run ``pytest tests/dockerfile --update-golden`` to
rewrite them, then review the diff like code: each expectation was checked against BuildKit's
behaviour, not just accepted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ocibuild.dockerfile.dump import dump_result

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(path.name for path in GOLDEN.iterdir() if (path / "Dockerfile").is_file())


def test_enough_cases() -> None:
    assert len(CASES) >= 150


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, update_golden: bool) -> None:
    source = (GOLDEN / case / "Dockerfile").read_bytes()
    actual = dump_result(source)
    expected_path = GOLDEN / case / "expected.txt"
    if update_golden:
        expected_path.write_text(actual, encoding="utf-8")
        return
    assert expected_path.is_file(), f"missing {expected_path}; run with --update-golden"
    assert actual == expected_path.read_text(encoding="utf-8")
