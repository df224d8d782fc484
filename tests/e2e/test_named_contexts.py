"""``--build-context NAME=...``: FROM and COPY --from naming a context use it, not a registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_harness import PLACEHOLDER

from ocibuild import cli
from ocibuild.testing.flatten import load_layout


def _build(tmp: Path, text: str, *flags: str) -> Path:
    df = tmp / "Dockerfile"
    df.write_text(text)
    ctx = tmp / "ctx"
    ctx.mkdir(exist_ok=True)
    out = tmp / "out"
    assert cli.main(["-f", str(df), "--progress", "quiet", *flags,
                     "--output", f"type=oci,dest={out},tar=false", str(ctx)]) == 0
    return out


@pytest.mark.rootless
def test_oci_layout_docker_image_and_directory_contexts(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    host = e2e_registry.host
    # A base image written as an OCI layout, named "busybox:latest" inside it.
    (tmp_path / "a").mkdir()
    base_text = f"FROM {PLACEHOLDER}/busybox:latest\nRUN echo base > /base\n".replace(
        PLACEHOLDER, host)
    df = tmp_path / "a" / "Dockerfile"
    df.write_text(base_text)
    layout = tmp_path / "layout"
    assert cli.main(["-f", str(df), "--progress", "quiet", "--output",
                     f"type=oci,dest={layout},tar=false,name=busybox:latest",
                     str(tmp_path / "a")]) == 0
    files = tmp_path / "files"
    files.mkdir()
    (files / "note.txt").write_text("from a directory context\n")
    (tmp_path / "b").mkdir()
    out = _build(tmp_path / "b",
                 "FROM debian:buster AS first\nRUN echo first > /first\n"
                 "FROM alpine\nCOPY --from=first /base /first /\n"
                 "COPY --from=notes /note.txt /note.txt\n",
                 "--build-context", f"debian:buster=oci-layout://{layout}:latest",
                 "--build-context", f"alpine=docker-image://{host}/alpine:latest",
                 "--build-context", f"notes={files}")
    tree = load_layout(out).tree
    assert {"/base", "/first", "/note.txt"} <= set(tree)
    assert "/bin/busybox" in tree  # the alpine stand-in came from the registry by another name
    capsys.readouterr()


def test_unknown_context_source_is_a_usage_error(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    code = cli.main(["-f", str(tmp_path / "Dockerfile"), "--build-context", "x=ftp://nope",
                     str(tmp_path)])
    assert code == 2
    assert "unsupported source" in capsys.readouterr().err
