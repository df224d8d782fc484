"""Where ``RUN --mount=type=bind`` takes its files from: a stage or an image is the stack of its
unpacked layer dirs (an overlay, never a per-mount flattening of the blobs), a ``rw`` mount never
changes its source, two stages mounting one source at once share one flattened copy where the
snapshotter is not overlay, and a context mount honours ``.dockerignore`` as BuildKit does."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from e2e_harness import PLACEHOLDER

from ocibuild import cli
from ocibuild.output import rootfs as output_rootfs

pytestmark = [pytest.mark.rootless, pytest.mark.chroot]


def _build(tmp: Path, text: str, ctx: Path | None = None, *flags: str) -> Path:
    df = tmp / "Dockerfile"
    df.write_text(text)
    if ctx is None:
        ctx = tmp / "ctx"
        ctx.mkdir(exist_ok=True)
    out = tmp / "out"
    assert cli.main(["-f", str(df), "--progress", "quiet", *flags,
                     "--output", f"type=local,dest={out}", str(ctx)]) == 0
    return out


@pytest.fixture
def flattens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each whole-image flattening a RUN mount asks for (a spy around the real one, slowed so
    that two stages asking at once overlap)."""
    calls: list[str] = []
    real = output_rootfs._flatten
    lock = threading.Lock()

    def spy(image, store, dest, **kwargs):  # type: ignore[no-untyped-def]
        if "ocibuild-mounts-" in str(dest):  # not the local output's own flattening
            with lock:
                calls.append(str(dest))
            time.sleep(0.3)
        return real(image, store, dest, **kwargs)

    monkeypatch.setattr(output_rootfs, "_flatten", spy)
    return calls


def _overlay_available() -> bool:
    from ocibuild.executor.runtime import Runtime

    with Runtime.detect() as runtime:
        return runtime.snapshotter == "overlay" and runtime.isolation.namespaced


def test_bind_from_stage_and_image_is_their_layer_stack(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        flattens: list[str]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    base = f"{PLACEHOLDER}/busybox:latest".replace(PLACEHOLDER, e2e_registry.host)
    out = _build(tmp_path, f"""FROM {base} AS src
RUN mkdir -p /data/sub && echo one > /data/a && echo gone > /data/b && echo s > /data/sub/s
RUN rm /data/b && rm -r /data/sub && mkdir /data/sub && echo two > /data/c
FROM {base}
RUN --mount=type=bind,from=src,source=/data,target=/m ls -A /m /m/sub > /listing && cat /m/a /m/c >> /listing
RUN --mount=type=bind,from=src,source=/data,target=/m,rw echo x > /m/a && rm /m/c && touch /m/new && cat /m/a > /rw
RUN --mount=type=bind,from=src,source=/data/a,target=/one cat /one /one > /file
RUN --mount=type=bind,from=src,source=/data,target=/m cat /m/a /m/c > /after && ls -A /m >> /after
RUN --mount=type=bind,from={base},target=/b test -x /b/bin/busybox && echo ok > /img
""")
    # The whiteout of b and the opaque sub/ of the second layer hide what the first had.
    assert (out / "listing").read_text() == "/m:\na\nc\nsub\n\n/m/sub:\none\ntwo\n"
    assert (out / "rw").read_text() == "x\n"
    assert (out / "file").read_text() == "one\none\n"
    assert (out / "after").read_text() == "one\ntwo\na\nc\nsub\n"  # rw left the stage alone
    assert (out / "img").read_text() == "ok\n"
    for name in ("m", "b", "one"):
        assert not (out / name).exists()
    if _overlay_available():
        assert flattens == []  # the store's unpacked layers, not a flattened copy per mount


def test_one_flattening_per_source_when_not_overlay(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    flattens: list[str]) -> None:
    """With the copy snapshotter the source is flattened: once, though two stages in one wave
    mount it at the same moment."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    base = f"{PLACEHOLDER}/busybox:latest".replace(PLACEHOLDER, e2e_registry.host)
    out = _build(tmp_path, f"""FROM {base} AS src
RUN echo one > /a
FROM {base} AS x
RUN --mount=type=bind,from=src,target=/m cat /m/a > /x
FROM {base} AS y
RUN --mount=type=bind,from=src,target=/m,rw echo changed > /m/a && cat /m/a > /y
FROM {base}
COPY --from=x /x /x
COPY --from=y /y /y
RUN --mount=type=bind,from=src,target=/m cat /m/a > /z
""", None, "--snapshotter", "copy")
    assert (out / "x").read_text() == "one\n"
    assert (out / "y").read_text() == "changed\n"
    assert (out / "z").read_text() == "one\n"
    assert len(flattens) == 1


def test_context_bind_mount_honours_dockerignore(tmp_path: Path, e2e_registry,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing is what the reference BuildKit (0.13) gave for this context and Dockerfile:
    ignored files are absent from the mount, ``rw`` writes stay out of the context."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / ".dockerignore").write_text("secret.txt\nsub/ignored*\nDockerfile*\n!Dockerfile.in\n")
    (ctx / "secret.txt").write_text("s\n")
    (ctx / "keep.txt").write_text("k\n")
    (ctx / "sub" / "ignored1").write_text("a\n")
    (ctx / "sub" / "kept").write_text("b\n")
    (ctx / "Dockerfile.in").write_text("FROM BASE\n")
    base = f"{PLACEHOLDER}/busybox:latest".replace(PLACEHOLDER, e2e_registry.host)
    text = (f"FROM {base}\n"
            "RUN --mount=type=bind,target=/ctx find /ctx | sort > /out.txt\n"
            "RUN --mount=type=bind,target=/ctx,rw touch /ctx/new && find /ctx | sort >> /out.txt\n"
            "RUN --mount=type=bind,source=sub,target=/s cat /s/kept > /sub.txt\n")
    (ctx / "Dockerfile").write_text(text)
    out = _build(tmp_path, text, ctx)
    listing = ["/ctx", "/ctx/.dockerignore", "/ctx/Dockerfile.in", "/ctx/keep.txt", "/ctx/sub",
               "/ctx/sub/kept"]
    with_new = listing[:4] + ["/ctx/new"] + listing[4:]
    assert (out / "out.txt").read_text().splitlines() == listing + with_new
    assert (out / "sub.txt").read_text() == "b\n"
    assert not (ctx / "new").exists()
    assert (ctx / "keep.txt").read_text() == "k\n"


def test_missing_source_path_is_one_clear_error(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    base = f"{PLACEHOLDER}/busybox:latest".replace(PLACEHOLDER, e2e_registry.host)
    (tmp_path / "ctx").mkdir()
    df = tmp_path / "Dockerfile"
    df.write_text(f"FROM {base} AS src\nRUN echo > /a\nFROM {base}\n"
                  "RUN --mount=type=bind,from=src,source=/nope,target=/m true\n")
    code = cli.main(["-f", str(df), "--progress", "quiet", "--output",
                     f"type=local,dest={tmp_path / 'out'}", str(tmp_path / "ctx")])
    err = capsys.readouterr().err
    assert code != 0
    assert "/nope not found in the mount source" in err
    assert "Traceback" not in err


def test_rw_writes_of_another_user_are_cleaned_up(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A RUN user other than root writing into a ``rw`` mount (files of a sub-id when rootless)
    leaves nothing behind once the build is done."""
    import tempfile

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    base = f"{PLACEHOLDER}/busybox:latest".replace(PLACEHOLDER, e2e_registry.host)
    out = _build(tmp_path, f"""FROM {base} AS src
RUN mkdir -m 777 /data && echo one > /data/a
FROM {base}
USER 1000:1000
RUN --mount=type=bind,from=src,source=/data,target=/m,rw mkdir /m/d && echo x > /m/d/f && cat /m/a /m/d/f > /tmp/seen
""")
    assert (out / "tmp" / "seen").read_text() == "one\nx\n"
    assert [p.name for p in temp.iterdir() if p.name.startswith("ocibuild-mounts-")] == []
