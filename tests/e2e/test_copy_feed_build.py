"""A build writes a plain COPY's layer while the copy runs (``executor.copy_feed``)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ocibuild.executor.runtime import Runtime
from ocibuild.executor.stage import StageRunner
from ocibuild.fs.layer import LayerBlob

pytestmark = [pytest.mark.rootless]


def test_a_build_feeds_its_copies(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the stage loop: a plain COPY's layer is written from its feed, a COPY of two
    sources after the copy, and the image is the same as without feeds."""
    from ocibuild.executor.build import BuildOptions, build
    from ocibuild.testing.flatten import load_layout

    ctx = tmp_path / "ctx"
    (ctx / "src/pkg").mkdir(parents=True)
    (ctx / "src/pkg/mod.py").write_text("x = 1\n")
    (ctx / "a").write_text("a\n")
    (ctx / "b").write_text("b\n")
    df = tmp_path / "Dockerfile"
    df.write_text(f"FROM {e2e_registry.host}/busybox:latest\nCOPY src /opt/src\n"
                  "COPY a b /ab/\nRUN cat /opt/src/pkg/mod.py /ab/a\n")
    streamed: list[bool] = []
    real = Runtime.commit

    def spy(self: Runtime, *args: object, **kwargs: object) -> LayerBlob:
        blob = real(self, *args, **kwargs)  # type: ignore[arg-type]
        streamed.append(blob.streamed)
        return blob

    def image(name: str) -> dict[str, object]:
        out = tmp_path / name
        build(BuildOptions(context=str(ctx), dockerfile=str(df), store_root=tmp_path / f"{name}-store",
                           progress="plain", progress_stream=io.StringIO(),
                           build_args={"SOURCE_DATE_EPOCH": "1700000000"},
                           rewrite_timestamp=True,
                           outputs=(f"type=oci,dest={out},tar=false",)))
        return load_layout(out).tree  # type: ignore[no-any-return]

    monkeypatch.setattr(Runtime, "commit", spy)
    fed = image("fed")
    if not any(streamed):
        pytest.skip("no copy was fed here (no kernel overlay, or single-id rootless)")
    assert streamed == [True, False, False]  # COPY src (fed), COPY a b, RUN
    real_call = StageRunner._commit_call

    def unfed(self: StageRunner, *args: object, **kwargs: object) -> None:
        kwargs["feed"] = False
        real_call(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(StageRunner, "_commit_call", unfed)
    streamed.clear()
    assert image("walked") == fed
    assert streamed == [False, False, False]
