"""What a build does around its steps: transfer lines for pulls and pushes, gc roots that keep
what a rebuild needs, warnings shown once, the early error when RUN cannot work here, and
``sharing=private`` cache mounts."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from e2e_harness import PLACEHOLDER

from ocibuild.executor.build import BuildOptions, BuildResult, build
from ocibuild.image import Image
from ocibuild.image.platform import Platform
from ocibuild.store.blobs import BlobStore

REPO = Path(__file__).resolve().parents[2]


def _build(tmp: Path, host: str, text: str, store: Path, **extra: object) -> tuple[BuildResult,
                                                                                   str]:
    """Build ``text`` (``localhost:5000`` -> the test registry) with plain progress; returns
    the result and the progress text."""
    ctx = tmp / "ctx"
    ctx.mkdir(exist_ok=True)
    dockerfile = tmp / f"Dockerfile-{uuid.uuid4().hex[:8]}"
    dockerfile.write_text(text.replace(PLACEHOLDER, host))
    stream = io.StringIO()
    progress = str(extra.pop("progress", "plain"))
    options = BuildOptions(context=str(ctx), dockerfile=str(dockerfile), progress=progress,
                           store_root=store, progress_stream=stream,
                           outputs=extra.pop("outputs", ()), **extra)  # type: ignore[arg-type]
    try:
        result = build(options)
    except Exception as exc:
        exc.add_note(stream.getvalue()[-4000:])
        raise
    return result, stream.getvalue()


def _base_image(store: Path, host: str) -> Image:
    """The busybox image the test registry serves, as the store recorded it when pulled."""
    from ocibuild.executor.pull import pull_root
    from ocibuild.store import areas
    from ocibuild.store.images import read_image

    with BlobStore(store) as s:
        name = pull_root(f"{host}/busybox:latest", Platform.parse("linux/amd64"))
        found = [r for r in areas.roots(s) if r.name == name]
        assert found, f"no gc root {name!r}"
        return read_image(s, found[0].digest)


def _transfer_lines(log: str) -> list[str]:
    return re.findall(r"^#\d+ sha256:[0-9a-f]{64} \S+ / \S+(?: \d+\.\ds)? done$", log, re.M)


def test_pull_and_push_show_buildkit_transfer_lines(e2e_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    host = e2e_registry.host
    tag = f"{host}/services/pushed:{uuid.uuid4().hex[:8]}"
    text = f"FROM {PLACEHOLDER}/busybox:latest\nCOPY <<EOF /hello\n{uuid.uuid4()}\nEOF\n"
    result, log = _build(tmp_path, host, text, tmp_path / "store", tags=(tag,), push=True)
    base = _base_image(tmp_path / "store", host)
    lines = _transfer_lines(log)
    for layer in base.layers:  # pulled: one "done" line per layer blob, with its size
        size = layer.descriptor.size
        assert any(str(layer.digest) in line for line in lines), log
        assert re.search(rf"{layer.digest} (\S+) / \1", log), log
        assert size > 0
    # Pushed: the upload of the new layer, compressed for the push, is shown.
    with BlobStore(tmp_path / "store") as store:
        pushed = json.loads(store.get_bytes(result.manifest_digest))
    new = pushed["layers"][-1]["digest"]
    assert new != str(result.image.layers[-1].digest)  # the build's own copy is uncompressed
    assert any(new in line for line in lines), log


def test_tty_view_keeps_the_transfer_of_each_pulled_layer(e2e_registry,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    host = e2e_registry.host
    text = f"FROM {PLACEHOLDER}/busybox:latest\nCOPY <<EOF /x\nx\nEOF\n"
    _result, log = _build(tmp_path, host, text, tmp_path / "store", progress="tty")
    final = log[log.rindex("[+] Finished"):].replace("\x1b[K", "")
    for layer in _base_image(tmp_path / "store", host).layers:
        shown = [line for line in final.splitlines() if line.startswith(" => => sha256:")
                 and str(layer.digest)[:19] in line]
        assert len(shown) == 1, final
        assert re.search(r" (\S+) / \1 +\d+\.\ds$", shown[0]), shown


def test_prune_keeps_the_pulled_base_so_a_rebuild_pulls_nothing(e2e_registry,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path) -> None:
    from ocibuild.store.gc import prune

    host = e2e_registry.host
    store = tmp_path / "store"
    text = f"FROM {PLACEHOLDER}/busybox:latest\nRUN echo built > /built\n"
    first, log = _build(tmp_path, host, text, store)
    base = _base_image(store, host)
    assert all(str(layer.digest) in log for layer in base.layers)  # the first build pulled
    with BlobStore(store) as s:
        report = prune(s, grace=0)
        for layer in (*base.layers, *first.image.layers):
            assert s.has(layer.digest), f"prune removed {layer.digest} ({report})"
    again, log = _build(tmp_path, host, text, store)
    assert _transfer_lines(log) == [], log  # nothing downloaded
    assert again.image.config.diff_ids[:-1] == base.config.diff_ids


def test_prune_without_roots_removes_the_base(e2e_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The control for the test above: the roots are what keeps the base."""
    import shutil

    from ocibuild.store.gc import prune

    host = e2e_registry.host
    store = tmp_path / "store"
    _build(tmp_path, host, f"FROM {PLACEHOLDER}/busybox:latest\nCOPY <<EOF /x\nx\nEOF\n", store)
    base = _base_image(store, host)
    shutil.rmtree(store / "roots")
    (store / "roots").mkdir()
    with BlobStore(store) as s:
        prune(s, grace=0)
        assert not any(s.has(layer.digest) for layer in base.layers)


@pytest.mark.rootless
def test_single_id_warning_reaches_the_user_once(e2e_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from ocibuild.executor.runtime import SINGLE_ID_WARNING, Runtime

    try:
        with Runtime.detect(isolation="rootless") as runtime:
            single = runtime.isolation.single_id
    except Exception as exc:  # noqa: BLE001 - no user namespaces here
        pytest.skip(f"rootless isolation unavailable: {exc}")
    if not single:
        pytest.skip("this user has a sub-id range: the sandbox is not single-id")
    base = f"FROM {PLACEHOLDER}/busybox:latest"
    text = (f"{base} AS one\nRUN echo a > /a\n{base} AS two\nRUN echo b > /b\n"
            f"{base}\nCOPY --from=one /a /a\nCOPY --from=two /b /b\nRUN cat /a /b\n")
    result, log = _build(tmp_path, e2e_registry.host, text, tmp_path / "store",
                         isolation="rootless")
    assert log.count(SINGLE_ID_WARNING) == 1, log
    assert log.rstrip("\n").endswith(f"WARNING: {SINGLE_ID_WARNING}")
    assert result.warnings == (SINGLE_ID_WARNING,)


def test_no_warning_when_ids_are_kept(e2e_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if os.geteuid() != 0:
        pytest.skip("needs root for the root isolation mode")
    result, log = _build(tmp_path, e2e_registry.host,
                         f"FROM {PLACEHOLDER}/busybox:latest\nRUN true\n", tmp_path / "store")
    assert "WARNING" not in log and result.warnings == ()


def test_run_without_a_sandbox_fails_early_naming_what_is_missing(e2e_registry,  # type: ignore[no-untyped-def]
                                                                  tmp_path: Path) -> None:
    """As root without CAP_SYS_ADMIN and CAP_SYS_CHROOT no isolation mode works: a plan with
    RUN stops before pulling any layer; one without RUN still builds."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop capabilities with setpriv")
    host = e2e_registry.host
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "PYTHONPATH": str(REPO)}
    drop = ["setpriv", "--bounding-set", "-sys_admin,-sys_chroot",
            "--inh-caps", "-sys_admin,-sys_chroot"]
    (tmp_path / "ctx").mkdir()

    def run(text: str) -> subprocess.CompletedProcess[str]:
        df = tmp_path / "Dockerfile"
        df.write_text(text.replace(PLACEHOLDER, host))
        return subprocess.run(
            [*drop, sys.executable, "-m", "ocibuild", "-f", str(df), "--progress", "plain",
             "--output", f"type=oci,dest={tmp_path / 'out.tar'}", str(tmp_path / "ctx")],
            capture_output=True, text=True, env=env, timeout=120, cwd=REPO)

    failed = run(f"FROM {PLACEHOLDER}/busybox:latest\nRUN true\n")
    assert failed.returncode != 0
    assert "cannot run RUN here" in failed.stderr and "CAP_SYS_CHROOT" in failed.stderr, \
        failed.stderr
    assert "[internal] pull" not in failed.stderr
    assert not (tmp_path / "out.tar").exists()
    ok = run(f"FROM {PLACEHOLDER}/busybox:latest\nCOPY <<EOF /x\nx\nEOF\n")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out.tar").is_file()


@pytest.mark.rootless
def test_private_cache_gives_concurrent_runs_their_own_dir(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                           isolation: str) -> None:
    """Two parallel stages mount the same ``sharing=private`` cache: each must get its own
    directory (BuildKit), not wait for the other. A shared cache is their meeting point: each
    waits (up to 10 s) until the other is running too, then lists its private cache."""
    if isolation == "chroot":
        pytest.skip("RUN --mount needs mount namespaces")
    ident = uuid.uuid4().hex
    run = ("RUN --mount=type=cache,id=priv-{id},sharing=private,target=/c "
           "--mount=type=cache,id=sync-{id},target=/sync "
           "touch /c/{me} /sync/{me} && i=0; "
           "while [ ! -e /sync/{other} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; "
           "ls /c > /list\n")
    text = "".join(
        f"FROM {PLACEHOLDER}/busybox:latest AS {me}\n"
        + run.format(id=ident, me=me, other=other)
        for me, other in (("a", "b"), ("b", "a")))
    text += ("FROM scratch\nCOPY --from=a /list /a.list\nCOPY --from=b /list /b.list\n")
    result, log = _build(tmp_path, e2e_registry.host, text, tmp_path / "store",
                         isolation=isolation,
                         outputs=(f"type=local,dest={tmp_path / 'out'}",))
    assert (tmp_path / "out" / "a.list").read_text() == "a\n", log
    assert (tmp_path / "out" / "b.list").read_text() == "b\n", log
    del result


@pytest.mark.parametrize("chunk_size", [None, 1 << 20])
def test_client_reports_blob_progress(registry, tmp_path: Path, chunk_size: int | None) -> None:  # type: ignore[no-untyped-def]
    """``on_progress(digest, done, total)`` of a push (monolithic and chunked) and a fetch:
    from 0 up to the size, never backwards, ending at the size."""
    from ocibuild.image import Descriptor
    from ocibuild.reference import Reference
    from ocibuild.registry.client import RegistryClient

    data = os.urandom(3 << 20)
    with BlobStore(tmp_path / "src") as src, BlobStore(tmp_path / "dst") as dst, \
            RegistryClient(insecure_hosts=[registry.host], chunk_size=chunk_size) as client:
        digest = src.put_bytes(data)
        desc = Descriptor("application/octet-stream", digest, len(data))
        ref = Reference.parse(f"{registry.host}/services/progress-{uuid.uuid4().hex[:8]}:x")
        for op, store in (("push", src), ("fetch", dst)):
            seen: list[tuple[object, int, int]] = []

            def report(d: object, done: int, total: int, seen: list = seen) -> None:
                seen.append((d, done, total))

            if op == "push":
                client.push_blob(ref, desc, store, on_progress=report)
            else:
                client.fetch_blob(ref, desc, store, on_progress=report)
            done = [n for _, n, _ in seen]
            assert {d for d, _, _ in seen} == {digest} and {t for _, _, t in seen} == {len(data)}
            assert done[0] == 0 and done[-1] == len(data) and done == sorted(done), (op, done)
            assert len(done) >= 3, (op, done)
        assert dst.get_bytes(digest, len(data)) == data
