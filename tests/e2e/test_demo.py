"""``make demo`` end to end: the seed examples built offline from a base made by ocibuild."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocibuild import demo


@pytest.mark.rootless
def test_demo_builds_every_seed_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main([str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert out.count("running its CMD in the sandbox: Stage1 Stage2") == 2
    assert "running cat /opt/stage1 /opt/stage2 in the sandbox: Stage1 Stage2" in out
    assert "href-counter (shell stand-in" in out
    assert "adapted: replaced `RUN CGO_ENABLED=0 go build" in out
    assert (tmp_path / "demo" / "example2.oci.tar").stat().st_size > 100_000
    assert "demo: all examples built" in out
