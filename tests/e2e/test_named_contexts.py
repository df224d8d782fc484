"""``--build-context NAME=...``: FROM and COPY --from naming a context use it, not a registry."""

from __future__ import annotations

import os
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


@pytest.mark.rootless
def test_a_directory_context_is_sent_as_the_build_context(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # As buildx sends any local directory (checked with the reference BuildKit): owners reset
    # to root, the directory's own .dockerignore applied.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "a.txt").write_text("a\n")
    (extra / "skip.txt").write_text("skip\n")
    (extra / ".dockerignore").write_text("skip.txt\n")
    if os.geteuid() == 0:
        os.chown(extra / "a.txt", 1000, 1000)
    out = _build(tmp_path, f"FROM {e2e_registry.host}/busybox:latest\n"
                 "COPY --from=extra / /x/\n", "--build-context", f"extra={extra}")
    tree = load_layout(out).tree
    assert "/x/a.txt" in tree and "/x/skip.txt" not in tree
    assert (tree["/x/a.txt"].uid, tree["/x/a.txt"].gid) == (0, 0)


@pytest.mark.rootless
def test_a_context_named_like_a_stage_replaces_it(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # buildx: "When Dockerfile defines a stage with the same name it is overwritten"; the
    # stage's own instructions do not run (checked with the reference BuildKit).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    host = e2e_registry.host
    over = tmp_path / "over"
    over.mkdir()
    (over / "ov.txt").write_text("over\n")
    text = (f"FROM {host}/busybox:latest AS s0\nRUN echo built > /built.txt\n"
            f"FROM {host}/busybox:latest AS base\nRUN echo base > /base.txt\n"
            "FROM base\nCOPY --from=s0 /*.txt /x/\n")
    out = _build(tmp_path, text, "--build-context", f"s0={over}",
                 "--build-context", f"base=docker-image://{host}/busybox:latest")
    tree = load_layout(out).tree
    assert "/x/ov.txt" in tree and "/x/built.txt" not in tree
    assert "/base.txt" not in tree and "/bin/busybox" in tree
