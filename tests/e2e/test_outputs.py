"""Build outputs through the real CLI, checked by other tools: ``skopeo inspect`` (OCI tarball,
registry), ``umoci unpack`` (OCI layout directory), the docker archive's ``manifest.json``,
plus local/tar filesystem outputs, ``--metadata-file``, ``--iidfile``, media types,
compression, labels, annotations, and that a failed build leaves no output behind.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from e2e_harness import CASES, PLACEHOLDER

from ocibuild import cli

SEED = CASES / "seed-build-stages"


def _dockerfile(tmp: Path, host: str, text: str | None = None) -> Path:
    path = tmp / "Dockerfile"
    path.write_text((text or (SEED / "Dockerfile").read_text()).replace(PLACEHOLDER, host))
    return path


def _build(argv: list[str], store: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("XDG_CACHE_HOME", str(store.parent / "xdg"))
    return cli.main(argv)


def _skopeo(*args: str) -> dict:
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed")
    out = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture()
def built(e2e_registry, e2e_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    host = e2e_registry.host
    df = _dockerfile(tmp_path, host)
    out = tmp_path / "out"
    out.mkdir()
    argv = [
        "-f", str(df), "--progress", "plain",
        "-t", f"{host}/outputs/app:v1", "-t", f"{host}/outputs/app:v2", "--push",
        "--output", f"type=oci,dest={out / 'image.oci.tar'}",
        "--output", f"type=oci,dest={out / 'layout'},tar=false",
        "--output", f"type=docker,dest={out / 'image.docker.tar'}",
        "--output", f"type=local,dest={out / 'rootfs'}",
        "--output", f"type=tar,dest={out / 'rootfs.tar'}",
        "--metadata-file", str(out / "metadata.json"),
        "--label", "org.example.built-by=ocibuild", "--annotation", "org.example.note=hello",
        str(SEED / "ctx"),
    ]
    monkeypatch.setenv("XDG_CACHE_HOME", str(e2e_store.parent / "xdg-outputs"))
    code = cli.main(argv)
    assert code == 0
    return host, out


def test_oci_tarball_accepted_by_skopeo(built) -> None:  # type: ignore[no-untyped-def]
    _host, out = built
    info = _skopeo("inspect", f"oci-archive:{out / 'image.oci.tar'}:v1")
    assert info["Labels"]["org.example.built-by"] == "ocibuild"
    config = _skopeo("inspect", "--config", f"oci-archive:{out / 'image.oci.tar'}:v1")
    assert config["config"]["Cmd"] == ["/bin/sh", "-c", "cat /opt/stage1 && cat /opt/stage2"]
    meta = json.loads((out / "metadata.json").read_text())
    assert info["Digest"] == meta["containerimage.digest"]


def test_oci_layout_unpacked_by_umoci(built, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed")
    _host, out = built
    index = json.loads((out / "layout" / "index.json").read_text())
    tag = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    bundle = tmp_path / "bundle"
    r = subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{out / 'layout'}:{tag}",
                        str(bundle)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (bundle / "rootfs" / "opt" / "stage2").read_text() == "Stage2\n"
    manifest_digest = index["manifests"][0]["digest"]
    algo, hexpart = manifest_digest.split(":")
    manifest = json.loads((out / "layout" / "blobs" / algo / hexpart).read_text())
    assert manifest["annotations"]["org.example.note"] == "hello"


def test_docker_archive_has_tags(built) -> None:  # type: ignore[no-untyped-def]
    host, out = built
    with tarfile.open(out / "image.docker.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        names = tar.getnames()
    assert sorted(manifest[0]["RepoTags"]) == [f"{host}/outputs/app:v1", f"{host}/outputs/app:v2"]
    assert "repositories" not in names  # containerd's archive exporter writes none
    config_path = manifest[0]["Config"]
    assert config_path in names


def test_push_with_repeated_tags(built) -> None:  # type: ignore[no-untyped-def]
    host, out = built
    meta = json.loads((out / "metadata.json").read_text())
    for tag in ("v1", "v2"):
        info = _skopeo("inspect", "--tls-verify=false", f"docker://{host}/outputs/app:{tag}")
        assert info["Digest"] == meta["containerimage.digest"]
    assert meta["image.name"] == f"{host}/outputs/app:v1,{host}/outputs/app:v2"


def test_local_and_tar_filesystem_outputs(built) -> None:  # type: ignore[no-untyped-def]
    _host, out = built
    assert (out / "rootfs" / "opt" / "stage1").read_text() == "Stage1\n"
    assert os.path.islink(out / "rootfs" / "bin" / "sh")
    with tarfile.open(out / "rootfs.tar") as tar:
        member = tar.getmember("opt/stage2")
        assert tar.extractfile(member).read() == b"Stage2\n"  # type: ignore[union-attr]
        assert tar.getmember("bin/busybox").mode & 0o777 == 0o755


#: Context entries with sub-second mtimes (ns past 2024-01-01T00:00:00Z) and where the
#: Dockerfile below puts them.
_SUBSECOND = {"a": 700_000_000, "b": 200_000_000, "l": 600_000_000, "d": 3_500_000_000,
              "d/x": 2_550_000_000}
_PLACED = {"c/a": "a", "c/b": "b", "c/l": "l", "c/d": "d", "c/d/x": "d/x", "e": "d", "e/x": "d/x"}
_T0 = 1_704_067_200 * 10**9
#: Entries of an archive ADD unpacks, with their PAX mtimes (seconds, nanoseconds).
_ARCHIVED = {"ind": (1_600_000_003, 500_000_000), "ind/in": (1_600_000_000, 700_000_000)}


def _subsecond_context(root: Path) -> Path:
    ctx = root / "ctx"
    (ctx / "d").mkdir(parents=True)
    (ctx / "a").write_text("a\n")
    (ctx / "b").write_text("b\n")
    (ctx / "d" / "x").write_text("x\n")
    os.symlink("a", ctx / "l")
    for name in ("a", "b", "l", "d/x", "d"):  # the directory last: its children change it
        t = _T0 + _SUBSECOND[name]
        os.utime(ctx / name, ns=(t, t), follow_symlinks=False)
    with tarfile.open(ctx / "arch.tar", "w", format=tarfile.PAX_FORMAT) as tar:
        for name, (seconds, nsec) in _ARCHIVED.items():
            info = tarfile.TarInfo(name)
            info.pax_headers = {"mtime": f"{seconds}.{nsec:09d}"}
            if name == "ind":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size = 2
                tar.addfile(info, io.BytesIO(b"x\n"))
    return ctx


@pytest.mark.rootless
@pytest.mark.parametrize("cached", [False, True], ids=["fresh", "cached"])
def test_filesystem_outputs_keep_the_snapshots_times(  # type: ignore[no-untyped-def]
        e2e_registry, e2e_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        cached: bool) -> None:
    """As BuildKit's exporters read the snapshot, not the layer tar (whole seconds):
    ``type=local`` keeps nanoseconds, ``type=tar`` rounds to the nearest second, halfway up
    (Go's tar writer); a ``RUN --mount`` of a stage sees nanoseconds. Both from the layers
    this build committed and, built again, from the store's copies of them. The times are the
    context's, and those of an archive's PAX records for what ADD unpacked from it."""
    ctx = _subsecond_context(tmp_path)
    df = _dockerfile(tmp_path, e2e_registry.host, f"""\
FROM scratch AS files
COPY . /c/
COPY d /e
ADD arch.tar /u/
FROM {PLACEHOLDER}/busybox:latest
RUN --mount=from=files,target=/m cd /m && stat -c '%n %y' c/a c/d c/d/x e/x > /seen
""")
    for attempt in range(2 if cached else 1):
        out = tmp_path / f"out{attempt}"
        code = _build(["-f", str(df), "--progress", "plain",
                       *(["--no-cache"] if attempt == 0 else []),
                       "--target", "files",
                       "--output", f"type=local,dest={out / 'rootfs'}",
                       "--output", f"type=tar,dest={out / 'rootfs.tar'}",
                       str(ctx)], e2e_store, monkeypatch)
        assert code == 0
    with tarfile.open(out / "rootfs.tar") as tar:
        in_tar = {m.name.rstrip("/"): m.mtime for m in tar.getmembers()}
    expected = {**{placed: _T0 + _SUBSECOND[name] for placed, name in _PLACED.items()},
                **{f"u/{name}": sec * 10**9 + nsec for name, (sec, nsec) in _ARCHIVED.items()}}
    for placed, exact in expected.items():
        assert os.lstat(out / "rootfs" / placed).st_mtime_ns == exact, placed
        assert in_tar[placed] == (exact + 500_000_000) // 10**9, placed
    seen = tmp_path / "seen"
    assert _build(["-f", str(df), "--progress", "plain", *([] if cached else ["--no-cache"]),
                   "--output", f"type=local,dest={seen}", str(ctx)], e2e_store, monkeypatch) == 0
    assert (seen / "seen").read_text().splitlines() == [
        "c/a 2024-01-01 00:00:00.700000000 +0000", "c/d 2024-01-01 00:00:03.500000000 +0000",
        "c/d/x 2024-01-01 00:00:02.550000000 +0000", "e/x 2024-01-01 00:00:02.550000000 +0000"]


def test_docker_media_types_and_zstd(e2e_registry, e2e_store: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    df = _dockerfile(tmp_path, e2e_registry.host)
    dest = tmp_path / "layout"
    code = _build(["-f", str(df), "--progress", "quiet", "--compression", "zstd",
                   "--output", f"type=oci,dest={dest},tar=false,oci-mediatypes=false",
                   str(SEED / "ctx")], e2e_store, monkeypatch)
    assert code == 0
    index = json.loads((dest / "index.json").read_text())
    algo, hexpart = index["manifests"][0]["digest"].split(":")
    manifest = json.loads((dest / "blobs" / algo / hexpart).read_text())
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert manifest["config"]["mediaType"] == "application/vnd.docker.container.image.v1+json"
    # The base layer keeps its gzip; the layers this build made are zstd.
    kinds = [layer["mediaType"] for layer in manifest["layers"]]
    assert kinds[0] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    assert all(k.endswith("zstd") for k in kinds[1:]), kinds


def test_failed_build_leaves_no_output(e2e_registry, e2e_store: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    text = f"FROM {PLACEHOLDER}/busybox:latest\nRUN echo partial > /p && exit 3\n"
    df = _dockerfile(tmp_path, e2e_registry.host, text)
    dest = tmp_path / "never.tar"
    code = _build(["-f", str(df), "--progress", "plain", "--output", f"type=oci,dest={dest}",
                   "--metadata-file", str(tmp_path / "meta.json"), str(SEED / "ctx")],
                  e2e_store, monkeypatch)
    assert code == 1
    err = capsys.readouterr().err
    assert "Dockerfile:2: process \"/bin/sh -c echo partial > /p && exit 3\" did not " \
           "complete successfully: exit code: 3" in err
    assert not dest.exists() and not (tmp_path / "meta.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["Dockerfile"]


def test_quiet_prints_only_the_digest(e2e_registry, e2e_store: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    df = _dockerfile(tmp_path, e2e_registry.host)
    code = _build(["-f", str(df), "-q", "--output", f"type=oci,dest={tmp_path / 'x.tar'}",
                   str(SEED / "ctx")], e2e_store, monkeypatch)
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip().startswith("sha256:") and len(captured.out.strip()) == 71
    assert captured.err == ""


def test_quiet_prints_nothing_into_an_archive_on_stdout(e2e_store: Path,
                                                        tmp_path: Path) -> None:
    """buildx -q leaves stdout to an output written there (``dest=-``): the id would be a
    stray line after the archive."""
    (tmp_path / "f").write_text("x\n")
    df = _dockerfile(tmp_path, "", "FROM scratch\nCOPY f /f\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(e2e_store.parent / "xdg"))
    done = subprocess.run([sys.executable, "-m", "ocibuild", "-f", str(df), "-q", "--output",
                           "type=tar,dest=-", str(tmp_path)], capture_output=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) % 512 == 0
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        assert tar.getnames() == ["f"]


@pytest.mark.dockerd
def test_docker_archive_loads_and_runs(built) -> None:  # type: ignore[no-untyped-def]
    docker = os.environ.get("ORACLE_DOCKER")
    if not docker or subprocess.run([docker, "version"], capture_output=True).returncode != 0:
        pytest.skip("no dockerd: run eval \"$(../shared/tools/buildkit-oracle.sh)\"")
    host, out = built
    load = subprocess.run([docker, "load", "-i", str(out / "image.docker.tar")],
                          capture_output=True, text=True, timeout=120)
    assert load.returncode == 0, load.stderr
    tag = f"{host}/outputs/app:v1"
    try:
        run = subprocess.run([docker, "run", "--rm", "--network", "none", tag],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout == "Stage1\nStage2\n"
    finally:
        subprocess.run([docker, "rmi", "-f", tag, f"{host}/outputs/app:v2"], capture_output=True)


def test_source_date_epoch_makes_builds_reproducible(e2e_registry, e2e_store: Path,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    df = _dockerfile(tmp_path, e2e_registry.host)
    digests = []
    for n in range(2):
        code = _build(["-f", str(df), "-q", "--build-arg", "SOURCE_DATE_EPOCH=1700000000",
                       "--output", f"type=oci,dest={tmp_path / f'r{n}.tar'}", str(SEED / "ctx")],
                      e2e_store, monkeypatch)
        assert code == 0
        digests.append(capsys.readouterr().out.strip())
    assert digests[0] == digests[1]
    assert (tmp_path / "r0.tar").read_bytes() == (tmp_path / "r1.tar").read_bytes()
    config = _skopeo("inspect", "--config", f"oci-archive:{tmp_path / 'r0.tar'}")
    assert config["created"] == "2023-11-14T22:13:20Z"


def test_output_force_compression_recompresses_every_layer(e2e_registry, e2e_store: Path,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    df = _dockerfile(tmp_path, e2e_registry.host)
    dest = tmp_path / "layout"
    code = _build(["-f", str(df), "--progress", "quiet", "--output",
                   f"type=oci,dest={dest},tar=false,compression=zstd,force-compression=true",
                   str(SEED / "ctx")], e2e_store, monkeypatch)
    assert code == 0
    from ocibuild.testing.flatten import load_layout

    image = load_layout(dest)
    kinds = {layer["mediaType"] for layer in image.manifest["layers"]}
    assert kinds == {"application/vnd.oci.image.layer.v1.tar+zstd"}
    assert image.tree["/opt/stage2"].size == 7  # the flattener reads zstd layers too


STREAMED = f"""\
FROM {PLACEHOLDER}/busybox:latest
RUN echo one > /one
COPY . /ctx/
"""


@pytest.mark.rootless
@pytest.mark.chroot
@pytest.mark.parametrize("refused", [False, True], ids=["streamed", "refused"])
def test_a_push_uploads_the_layers_while_they_are_committed(  # type: ignore[no-untyped-def]
        e2e_registry, fault_proxy, e2e_store: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, refused: bool) -> None:
    """The layers a build makes are streamed to the push's repository while committed; the
    export then uploads only what the registry lacks (here through another host name, so the
    base layer too, and the config). When the registry refuses the streams, the export uploads
    everything and the image is the same."""
    from ocibuild.reference import Reference
    from ocibuild.registry.blobs import has_blob
    from ocibuild.registry.client import RegistryClient

    if refused:
        from ocibuild.testing.faultproxy import Fault

        fault_proxy.add(Fault("status", method="PATCH", status=500, times=2))
    df = _dockerfile(tmp_path, e2e_registry.host, STREAMED)
    ref = Reference.parse(f"{fault_proxy.host}/streamed/{'refused' if refused else 'app'}:1")
    code = _build(["-f", str(df), "--progress", "quiet", "--no-cache", "--output",
                   f"type=image,name={ref},push=true", str(SEED / "ctx")], e2e_store, monkeypatch)
    assert code == 0
    build_calls = list(fault_proxy.log)
    with RegistryClient() as client:
        manifest = client.fetch_manifest(ref)
        for layer in manifest.layers:
            assert has_blob(client, ref, layer.digest)
    blob_calls = [m for m, p, _s, _r in fault_proxy.log if "/blobs/uploads/" in p]
    layers = len(manifest.layers)
    assert blob_calls.count("PATCH") == 2  # the two layers this build made, streamed
    if refused:
        # Two abandoned sessions, then one upload per blob (layers and config) at export.
        assert blob_calls.count("POST") == 2 + layers + 1
        assert blob_calls.count("DELETE") == 2
    else:
        # One upload session per blob: the export did not upload the streamed layers again,
        # nor look them up (the build's HEADs are the base layer's and the config's).
        assert blob_calls.count("POST") == layers + 1
        assert "DELETE" not in blob_calls
        streamed = {str(d.digest) for d in manifest.layers[-2:]}
        heads = [p for m, p, _s, _r in build_calls if m == "HEAD"]
        assert not [p for p in heads if p.rsplit("/", 1)[-1] in streamed], heads


def _layout_config(layout: Path) -> bytes:
    """The raw config bytes of the one image in an OCI layout directory."""
    def blob(digest: str) -> bytes:
        return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes()

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]))
    return blob(manifest["config"]["digest"])


def test_an_image_without_layers_has_no_time(e2e_registry, e2e_store: Path,  # type: ignore[no-untyped-def]
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # As BuildKit's exporter writes it: no layer, no base, so no time anywhere (Go's nil
    # ``created`` and nil ``diff_ids``), and history entries without ``created``.
    df = _dockerfile(tmp_path, e2e_registry.host, 'FROM scratch\nLABEL a=b\nCMD ["x"]\n')
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    assert _build(["-f", str(df), "-q", "--output", f"type=oci,dest={tmp_path / 'out'},tar=false",
                   str(ctx)], e2e_store, monkeypatch) == 0
    raw = _layout_config(tmp_path / "out")
    assert b'"created":null' in raw and b'"rootfs":{"type":"layers","diff_ids":null}' in raw
    config = json.loads(raw)
    assert [h.get("created") for h in config["history"]] == [None, None]
    assert [h["created_by"] for h in config["history"]] == ["LABEL a=b", 'CMD ["x"]']


def test_a_stage_without_new_layers_takes_its_bases_time(e2e_registry, e2e_store: Path,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # BuildKit gives the history entries a stage adds without a layer, and the config, the
    # base's last time (here SOURCE_DATE_EPOCH's, from the base's own build), not the build's.
    host = e2e_registry.host
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    base = _dockerfile(tmp_path, host, f"FROM {PLACEHOLDER}/busybox:latest\nRUN touch /x\n")
    assert _build(["-f", str(base), "-q", "--build-arg", "SOURCE_DATE_EPOCH=1700000000",
                   "--output", f"type=registry,name={host}/outputs/timed:1", str(ctx)],
                  e2e_store, monkeypatch) == 0
    df = _dockerfile(tmp_path, host, f"FROM {host}/outputs/timed:1 AS b\nENV X=1\nFROM b\n"
                                     "LABEL l=1\n")
    assert _build(["-f", str(df), "-q", "--output", f"type=oci,dest={tmp_path / 'out'},tar=false",
                   str(ctx)], e2e_store, monkeypatch) == 0
    config = json.loads(_layout_config(tmp_path / "out"))
    assert config["created"] == "2023-11-14T22:13:20Z"
    assert [(h["created_by"], h["created"]) for h in config["history"][-2:]] == [
        ("ENV X=1", "2023-11-14T22:13:20Z"), ("LABEL l=1", "2023-11-14T22:13:20Z")]


def _layout_layer_times(layout: Path) -> dict[str, int]:
    """``{path: mtime}`` of every entry of every layer of the one image in an OCI layout."""
    def blob(digest: str) -> Path:
        return layout / "blobs" / "sha256" / digest.split(":", 1)[1]

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_bytes())
    times: dict[str, int] = {}
    for layer in manifest["layers"]:
        with tarfile.open(blob(layer["digest"])) as tar:
            times.update({m.name.rstrip("/"): int(m.mtime) for m in tar})
    return times


def test_source_date_epoch_leaves_file_times_unless_rewrite_timestamp(  # type: ignore[no-untyped-def]
        e2e_registry, e2e_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As BuildKit (checked with the reference): SOURCE_DATE_EPOCH sets the config's and the
    # history's times; a RUN's files keep the times they were made with, a COPY's the
    # context's, unless an image output says rewrite-timestamp=true. WORKDIR's new
    # directories get the epoch (current BuildKit, dockerfile 1.16).
    epoch, start = 1_000_000_000, int(time.time())
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a").write_text("a\n")
    os.utime(ctx / "a", (1_500_000_000, 1_500_000_000))
    df = _dockerfile(tmp_path, e2e_registry.host, f"FROM {PLACEHOLDER}/busybox:latest\n"
                     "RUN echo hi > /x\nCOPY a /a\nWORKDIR /w/v\n")
    times = {}
    for rewrite in ("false", "true"):
        out = tmp_path / f"out-{rewrite}"
        assert _build(["-f", str(df), "-q", "--build-arg", f"SOURCE_DATE_EPOCH={epoch}",
                       "--output", f"type=oci,dest={out},tar=false,rewrite-timestamp={rewrite}",
                       str(ctx)], e2e_store, monkeypatch) == 0
        times[rewrite] = _layout_layer_times(out)
        assert json.loads(_layout_config(out))["created"] == "2001-09-09T01:46:40Z"
    made = times["false"]
    assert made["x"] >= start and made["a"] == 1_500_000_000
    assert made["w"] == made["w/v"] == epoch
    assert {times["true"][p] for p in ("x", "a", "w", "w/v")} == {epoch}
