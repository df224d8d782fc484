"""``cli.tune_allocator``: buffers of 1 MiB freed and allocated again, a few at a time, are
reused without the kernel faulting their pages in again (what writing and pushing a layer
does thousands of times)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

# Four 1 MiB buffers written, freed together, 20 times over; prints the page faults taken.
_PATTERN = """
import resource, sys
from ocibuild import cli
if sys.argv[1] == "tuned":
    cli.tune_allocator()
def rounds(n):
    for _ in range(n):
        buffers = [b"x" * (1 << 20) for _ in range(4)]
        del buffers
rounds(2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", _PATTERN, mode], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, check=True)
    return int(done.stdout)


def test_freed_buffers_are_reused_without_page_faults() -> None:
    untuned = _faults("default")
    if untuned < 4000:  # 20 rounds of 1024 pages: this C library keeps them already
        pytest.skip(f"the default allocator faulted only {untuned} times here")
    assert _faults("tuned") < 500, "the tuned allocator gave the buffers back to the kernel"


def test_the_command_tunes_the_allocator(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    from ocibuild import cli

    calls: list[str] = []
    monkeypatch.setattr(cli, "tune_allocator", lambda: calls.append("tuned"))
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    assert cli.main(["--check", str(tmp_path)]) == 0
    assert calls == ["tuned"]
