"""The local build cache (``executor.cache``): a rebuild of an unchanged Dockerfile and context
shows every step ``CACHED`` and gives the same image; a change reruns only the steps that
depend on it; ``--no-cache`` reruns everything; a lost blob or a torn entry is a miss; two
builds on one store at once leave valid entries; ``prune`` keeps entries as roots (by age).

Builds run against the e2e registry (busybox base) with plain progress, each test on its own
store, so the statuses parsed from the progress are this test's alone.
"""

from __future__ import annotations

import io
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from e2e_harness import PLACEHOLDER

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.executor.build import BuildOptions, BuildResult, build
from ocibuild.store import buildcache
from ocibuild.store.blobs import BlobStore
from ocibuild.store.gc import prune

pytestmark = [pytest.mark.rootless, pytest.mark.chroot]

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
# Reproducible layers: SOURCE_DATE_EPOCH with an image output's ``rewrite-timestamp=true``.
CLAMPED = {"build_args": EPOCH, "rewrite_timestamp": True}


class Builder:
    """One context dir, Dockerfile and store; ``build`` returns (result, {step: status})."""

    def __init__(self, tmp: Path, host: str, isolation: str, text: str):
        self.tmp = tmp
        self.ctx = tmp / "ctx"
        self.ctx.mkdir(exist_ok=True)
        self.store = tmp / "store"
        self.isolation = isolation
        self.dockerfile = tmp / "Dockerfile"
        self.dockerfile.write_text(text.replace(PLACEHOLDER, host))
        self.log = ""

    def write(self, name: str, data: str) -> None:
        path = self.ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)

    def build(self, **extra: object) -> tuple[BuildResult, dict[str, str]]:
        stream = io.StringIO()
        options = BuildOptions(context=str(self.ctx), dockerfile=str(self.dockerfile),
                               progress="plain", store_root=self.store, progress_stream=stream,
                               isolation=self.isolation, **extra)  # type: ignore[arg-type]
        try:
            result = build(options)
        except Exception as exc:
            exc.add_note(stream.getvalue()[-4000:])
            raise
        self.log = stream.getvalue()
        return result, statuses(self.log)


def statuses(log: str) -> dict[str, str]:
    """``{"[2/5] RUN echo hi": "CACHED" | "DONE"}`` for the build steps (``[...]`` names)."""
    names: dict[str, str] = {}
    out: dict[str, str] = {}
    for line in log.splitlines():
        m = re.match(r"^#(\d+) (\[.*)$", line)
        if m:
            names[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^#(\d+) (CACHED|DONE|ERROR)", line)
        if m and m.group(1) in names:
            out[names[m.group(1)]] = m.group(2)
    return out


def cached(st: dict[str, str]) -> set[str]:
    return {name for name, s in st.items() if s == "CACHED"}


def ran(st: dict[str, str]) -> set[str]:
    """Steps that made a layer this time (RUN, COPY, ADD, WORKDIR) and were not cached."""
    keywords = (" RUN ", " COPY ", " ADD ", " WORKDIR ")
    return {n for n, s in st.items() if s == "DONE" and any(k in n for k in keywords)}


def layer_steps(st: dict[str, str]) -> set[str]:
    return cached(st) | ran(st)


def normalised_config(result: BuildResult) -> dict[str, object]:
    """The config without the times BuildKit also renews on a cached rebuild: the image's
    ``created`` and that of history entries without a layer."""
    data = result.image.config.to_json()
    data.pop("created", None)
    for h in data.get("history", []):
        if h.get("empty_layer"):
            h.pop("created", None)
    return data


SIMPLE = f"""\
FROM {PLACEHOLDER}/busybox:latest
COPY a.txt /a.txt
RUN cat /a.txt > /copy-a && echo run >> /copy-a
ENV STEP=env
WORKDIR /work/dir
COPY b.txt ./
RUN wc -c b.txt > size
"""


@pytest.fixture
def simple(e2e_registry, tmp_path: Path, isolation: str) -> Builder:  # type: ignore[no-untyped-def]
    b = Builder(tmp_path, e2e_registry.host, isolation, SIMPLE)
    b.write("a.txt", "alpha\n")
    b.write("b.txt", "beta\n")
    return b


def test_second_build_is_all_cached_and_gives_the_same_image(simple: Builder) -> None:
    first, st1 = simple.build()
    assert not cached(st1) and len(ran(st1)) == 5, simple.log
    time.sleep(1.1)  # a new build time, which a cached rebuild must not show
    second, st2 = simple.build()
    assert ran(st2) == set(), simple.log
    assert cached(st2) == layer_steps(st1), simple.log
    # As BuildKit: layers keep their creation time, the other history entries and the config's
    # ``created`` follow them, so the image is the same, byte for byte.
    assert second.image.config.to_bytes() == first.image.config.to_bytes()
    assert second.manifest_digest == first.manifest_digest


def test_partly_cached_rebuild_keeps_the_times_of_cached_layers(simple: Builder) -> None:
    first, _ = simple.build()
    time.sleep(1.1)
    simple.write("b.txt", "changed\n")
    second, st = simple.build()
    assert len(ran(st)) == 2, simple.log
    h1 = first.image.config.to_json()["history"]
    h2 = second.image.config.to_json()["history"]
    assert len(h1) == len(h2)
    new = [i for i, h in enumerate(h2) if "b.txt" in h.get("created_by", "")][0]
    for i in range(len(h2)):  # before the changed COPY: as in the first build; after: newer
        if i < new:
            assert h2[i] == h1[i], i
        else:
            assert h2[i]["created"] > h1[i]["created"], i
    assert second.image.config.to_json()["created"] == h2[-1]["created"]
    assert normalised_config(second) != normalised_config(first)


def test_cached_image_is_byte_identical_to_a_no_cache_build(simple: Builder) -> None:
    # SOURCE_DATE_EPOCH with rewrite-timestamp (an output's ``rewrite-timestamp=true``): the
    # epoch alone leaves a RUN's file times as made, so a --no-cache build differs.
    cold, _ = simple.build(**CLAMPED)
    warm, st = simple.build(**CLAMPED)
    assert ran(st) == set(), simple.log
    fresh, st3 = simple.build(**CLAMPED, no_cache=True)
    assert not cached(st3) and len(ran(st3)) == 5, simple.log
    assert warm.manifest_digest == cold.manifest_digest == fresh.manifest_digest
    assert warm.image.config.to_bytes() == fresh.image.config.to_bytes()
    unclamped, st4 = simple.build(build_args=EPOCH)  # other layers: not taken from the cache
    assert len(ran(st4)) == 5 and unclamped.manifest_digest != cold.manifest_digest, simple.log


def test_changed_context_file_reruns_its_copy_and_what_follows(simple: Builder) -> None:
    _, st1 = simple.build()
    simple.write("b.txt", "beta, longer\n")
    simple.write("unrelated.txt", "not copied\n")
    result, st2 = simple.build()
    names = sorted(layer_steps(st1))
    later = {n for n in names if "b.txt" in n or "wc -c" in n}
    assert ran(st2) == later, simple.log
    assert cached(st2) == set(names) - later, simple.log


def test_changed_mode_of_a_copied_file_reruns(simple: Builder) -> None:
    simple.build()
    (simple.ctx / "a.txt").chmod(0o600)
    _, st = simple.build()
    assert any("COPY a.txt" in n for n in ran(st)), simple.log


def test_build_arg_used_by_a_run_reruns_it_and_an_unused_one_does_not(  # type: ignore[no-untyped-def]
        e2e_registry, tmp_path: Path, isolation: str) -> None:
    b = Builder(tmp_path, e2e_registry.host, isolation, f"""\
FROM {PLACEHOLDER}/busybox:latest
RUN echo first > /first
ARG V=default
RUN echo "$V" > /v
""")
    _, st1 = b.build(build_args={"V": "1"})
    assert len(ran(st1)) == 2, b.log
    _, st2 = b.build(build_args={"V": "1", "UNUSED": "x"})
    assert ran(st2) == set(), b.log
    _, st3 = b.build(build_args={"V": "2"})
    assert {n for n in ran(st3)} == {n for n in st3 if "/v" in n}, b.log
    assert any("/first" in n for n in cached(st3)), b.log


MULTI = f"""\
FROM {PLACEHOLDER}/busybox:latest AS a
COPY a.txt /a.txt
RUN cp /a.txt /a.out
FROM {PLACEHOLDER}/busybox:latest AS b
COPY b.txt /b.txt
RUN cp /b.txt /b.out
FROM a AS c
RUN echo c > /c.out
FROM scratch
COPY --from=b /b.out /b.out
COPY --from=c /a.out /c.out /
"""


def test_multi_stage_change_reruns_only_the_dependent_stages(  # type: ignore[no-untyped-def]
        e2e_registry, tmp_path: Path, isolation: str) -> None:
    b = Builder(tmp_path, e2e_registry.host, isolation, MULTI)
    b.write("a.txt", "a1\n")
    b.write("b.txt", "b1\n")
    _, st1 = b.build()
    assert len(ran(st1)) == 7, b.log
    b.write("a.txt", "a2\n")
    result, st2 = b.build()
    rerun = {n for n in st2 if n.startswith(("[a ", "[c ")) and n in layer_steps(st1)}
    rerun |= {n for n in st2 if "--from=c" in n}
    assert ran(st2) == rerun, b.log
    assert {n for n in cached(st2)} == layer_steps(st1) - rerun, b.log
    assert any(n.startswith("[b ") for n in cached(st2)), b.log
    # The final image carries the new content.
    out = tmp_path / "out"
    b.build(outputs=(f"type=local,dest={out}",))
    assert (out / "a.out").read_text() == "a2\n"
    assert (out / "b.out").read_text() == "b1\n"


def test_no_cache_reruns_everything_and_still_records(simple: Builder) -> None:
    simple.build()
    _, st = simple.build(no_cache=True)
    assert not cached(st) and len(ran(st)) == 5, simple.log
    _, st = simple.build()
    assert ran(st) == set(), simple.log


def test_missing_blob_or_torn_entry_is_a_miss(simple: Builder) -> None:
    first, st1 = simple.build(**CLAMPED)
    run_layer = first.image.layers[-1]  # the last RUN's layer
    with BlobStore(simple.store) as store:
        store.path(run_layer.digest).unlink()
        entries = list(buildcache.entries(store))
        assert len(entries) == 5
        # Tear the entry of the first COPY: half a JSON document.
        first_copy = [e for e in entries
                      if "a.txt" in (e.history.get("created_by") or "")][0]
        first_copy.path.write_text(first_copy.path.read_text()[:20])
    second, st2 = simple.build(**CLAMPED)
    assert {n for n in ran(st2) if "wc -c" in n or "COPY a.txt" in n}, simple.log
    assert not any("wc -c" in n for n in cached(st2)), simple.log
    assert second.manifest_digest == first.manifest_digest
    with BlobStore(simple.store) as store:
        assert store.has(run_layer.digest)
    _, st3 = simple.build(**CLAMPED)
    assert ran(st3) == set(), simple.log


def test_two_builds_at_once_on_one_store(simple: Builder, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = Builder(tmp_path / "other", "", simple.isolation, "")
    other.store = simple.store
    other.dockerfile = simple.dockerfile
    other.ctx = simple.ctx
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(b.build, **CLAMPED) for b in (simple, other)]
        results = [f.result() for f in futures]
    assert results[0][0].manifest_digest == results[1][0].manifest_digest
    with BlobStore(simple.store) as store:
        entries = list(buildcache.entries(store))
        assert len(entries) == 5
        for e in entries:
            obj = json.loads(e.path.read_text())
            assert obj["key"] == e.key
            assert store.has(Digest.parse(obj["layer"]["digest"]))
    third, st = simple.build(**CLAMPED)
    assert ran(st) == set(), simple.log
    assert third.manifest_digest == results[0][0].manifest_digest


def test_prune_keeps_entries_as_roots_until_they_age_out(simple: Builder) -> None:
    simple.build()
    with BlobStore(simple.store) as store:
        for p in (store.root / "roots").glob("*.json"):  # no image roots left: only entries
            p.unlink()
        prune(store, grace=0)
    _, st = simple.build()
    assert ran(st) == set(), simple.log
    with BlobStore(simple.store) as store:
        report = prune(store, grace=0, root_max_age=-1)
        assert not list(buildcache.entries(store))
        assert report.roots >= 5
    _, st = simple.build()
    assert not cached(st) and len(ran(st)) == 5, simple.log


def test_prune_all_removes_entries(simple: Builder) -> None:
    simple.build()
    with BlobStore(simple.store) as store:
        prune(store, everything=True)
        assert not list(buildcache.entries(store))
    _, st = simple.build()
    assert not cached(st), simple.log


def test_stage_keys_name_the_build_uniquely(simple: Builder) -> None:
    """Distinct semantics never share a key: the same steps under another epoch are separate
    entries. The compression is not part of a key: layers are cached uncompressed and the
    outputs compress them, so a zstd build reuses every step of a gzip one."""
    _, st = simple.build()
    _, st_zstd = simple.build(compression="zstd")
    assert cached(st_zstd) == layer_steps(st) and not ran(st_zstd), simple.log
    _, st = simple.build(**CLAMPED)
    assert not cached(st), simple.log
    with BlobStore(simple.store) as store:
        assert len(list(buildcache.entries(store))) == 10


def test_bind_mount_sources_key_the_run_and_secrets_never_do(  # type: ignore[no-untyped-def]
        e2e_registry, tmp_path: Path, isolation: str) -> None:
    if isolation == "chroot":
        pytest.skip("RUN --mount needs mount namespaces")
    b = Builder(tmp_path, e2e_registry.host, isolation, f"""\
FROM {PLACEHOLDER}/busybox:latest
RUN --mount=type=bind,source=src,target=/m cat /m/x > /from-bind
RUN --mount=type=secret,id=s,required=true wc -c < /run/secrets/s > /secret-size
""")
    b.write("src/x", "one\n")
    b.write("elsewhere.txt", "1\n")
    secret = tmp_path / "secret"
    secret.write_text("hunter2")
    spec = (f"id=s,src={secret}",)
    _, st1 = b.build(secrets=spec)
    assert len(ran(st1)) == 2, b.log
    secret.write_text("a different secret")
    b.write("elsewhere.txt", "2\n")
    _, st2 = b.build(secrets=spec)
    assert ran(st2) == set(), b.log
    with BlobStore(b.store) as store:
        for e in buildcache.entries(store):
            assert "hunter2" not in e.path.read_text()
    b.write("src/x", "two\n")
    _, st3 = b.build(secrets=spec)
    assert ran(st3) == layer_steps(st1), b.log  # the bind's RUN and the RUN on top of it


def test_moved_lines_and_comments_keep_the_cache(simple: Builder) -> None:
    first, _ = simple.build()
    text = simple.dockerfile.read_text()
    simple.dockerfile.write_text("# a comment moves every line down\n\n" + text)
    second, st = simple.build()
    assert ran(st) == set(), simple.log
    assert second.image.config.to_bytes() == first.image.config.to_bytes()


def test_cli_no_cache_flag(simple: Builder) -> None:
    """``python -m ocibuild --no-cache`` reaches the build: nothing CACHED, then all is."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, XDG_CACHE_HOME=str(simple.tmp / "xdg"))
    cmd = [sys.executable, "-m", "ocibuild", "--progress", "plain", "--isolation",
           simple.isolation, "-f", str(simple.dockerfile), str(simple.ctx)]
    logs = []
    for n, extra in enumerate(([], ["--no-cache"], [])):
        out = ["--output", f"type=oci,dest={simple.tmp / f'out{n}.tar'}"]
        proc = subprocess.run(cmd[:3] + extra + out + cmd[3:], env=env, capture_output=True,
                              text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
        assert proc.returncode == 0, proc.stderr[-3000:]
        logs.append(statuses(proc.stderr))
    assert len(ran(logs[0])) == 5 and not cached(logs[0])
    assert len(ran(logs[1])) == 5 and not cached(logs[1])
    assert ran(logs[2]) == set() and len(cached(logs[2])) == 5


def test_prune_all_removes_snapshots_only_the_sandbox_can_delete(  # type: ignore[no-untyped-def]
        e2e_registry, tmp_path: Path, isolation: str) -> None:
    """With a sub-id map, a RUN's files owned by another id (in a 0700 dir) cannot be deleted
    by the user outside the namespace; ``prune`` falls back to the sandbox's remover."""
    from ocibuild.executor.runtime import sandbox_remover

    b = Builder(tmp_path, e2e_registry.host, isolation, f"""\
FROM {PLACEHOLDER}/busybox:latest
RUN mkdir -p /locked/in && touch /locked/in/f && chown -R 1000:1000 /locked && chmod 700 /locked /locked/in
""")
    b.build()
    with BlobStore(b.store) as store, sandbox_remover() as remover:
        report = prune(store, everything=True, remover=remover)
        assert report.failed == [], report
        snaps = store.root / "snapshots"
        assert snaps.is_dir() and list(snaps.rglob("*")) == []


LENDING = f"""\
FROM {PLACEHOLDER}/busybox:latest AS tools
RUN echo made-by-tools > /made
FROM {PLACEHOLDER}/busybox:latest
COPY --from=tools /made /made
"""


def test_layers_are_cached_uncompressed_and_outputs_compress_them_once(  # type: ignore[no-untyped-def]
        e2e_registry, tmp_path: Path, isolation: str) -> None:
    """As BuildKit: a build keeps the layers it makes uncompressed, in every stage, and an
    output that writes the image compresses the ones it holds. A stage that only lent files
    (COPY --from) and is exported later (--target) reuses its cached layer; exporting the
    same image again reuses the compressed copies (same manifest)."""
    b = Builder(tmp_path, e2e_registry.host, isolation, LENDING)

    def oci(name: str) -> tuple[str, ...]:
        return (f"type=oci,dest={tmp_path / name},tar=false",)

    def exported_layers(name: str) -> list[str]:
        index = json.loads((tmp_path / name / "index.json").read_text())
        digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.loads((tmp_path / name / "blobs" / "sha256" / digest).read_text())
        return [layer["mediaType"] for layer in manifest["layers"]]

    result, _ = b.build(outputs=oci("final"))
    made = result.image.layers[1:]  # after the pulled base layer
    assert made and all(layer.media_type == mt.OCI_LAYER for layer in made)
    assert exported_layers("final") == [mt.OCI_LAYER_GZIP] * len(result.image.layers)
    with BlobStore(b.store) as store:
        plain = {d for d in store.digests() if store.path(d).read_bytes()[:2] != b"\x1f\x8b"
                 and b"made-by-tools" in store.path(d).read_bytes()}
    assert {layer.digest for layer in made} <= plain
    tools, st = b.build(target="tools", outputs=oci("tools"))
    assert ran(st) == set() and cached(st), b.log
    assert tools.image.layers[-1].digest in plain, "the tools stage's RUN layer is a plain tar"
    assert exported_layers("tools") == [mt.OCI_LAYER_GZIP] * len(tools.image.layers)
    again, st = b.build(outputs=oci("again"))
    assert ran(st) == set(), b.log
    assert again.manifest_digest == result.manifest_digest


def test_a_build_kept_in_the_store_compresses_nothing(  # type: ignore[no-untyped-def]
        e2e_registry, tmp_path: Path, isolation: str) -> None:
    """No output that writes or pushes the image (``type=image`` without a push, or none):
    the build's layers stay plain tars and no compressed copy is made of any of them."""
    b = Builder(tmp_path, e2e_registry.host, isolation, LENDING)
    host = e2e_registry.host
    result, _ = b.build(outputs=(f"type=image,name={host}/kept/only:x,push=false",))
    made = result.image.layers[1:]  # after the pulled base layer
    assert made and all(layer.media_type == mt.OCI_LAYER for layer in made)
    pulled = {str(result.image.layers[0].digest)}
    with BlobStore(b.store) as store:
        gzipped = [d for d in store.digests() if str(d) not in pulled
                   and store.path(d).read_bytes()[:2] == b"\x1f\x8b"]
        assert gzipped == []
        assert not (store.root / "variants").exists()
