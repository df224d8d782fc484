"""What leaves ocibuild looks like what ``docker buildx build`` writes for the same build.

Each expectation below was read off BuildKit's own outputs (BuildKit 0.13 behind a dockerd with
the containerd image store, which runs BuildKit's oci/docker/image exporters) and checked
against moby/buildkit's current exporter code where the two differ (current wins):

- index.json entries: the manifest descriptor with ``platform`` and
  ``org.opencontainers.image.created`` (export time or ``SOURCE_DATE_EPOCH``, whole seconds),
  ``io.containerd.image.name`` (full name) and ``org.opencontainers.image.ref.name`` (the tag)
  per name; an unnamed layout directory is tagged ``latest``, an unnamed tar is not.
- tars as containerd's archive exporter writes them: names sorted, blobs and ``oci-layout``
  0444, ``index.json``/``manifest.json`` 0644, no ``repositories``, ``manifest.json`` without a
  final newline; ``type=docker`` uses OCI media types (compatibility version 31).
- ``--annotation [TYPE[PLATFORM]:]KEY=VALUE``: manifest / manifest-descriptor on a single
  platform image, platform-qualified ones ignored there, index ones refused.
- ``--metadata-file``: ``buildx.build.ref`` always, ``containerimage.*`` and a normalised
  ``image.name`` only with an image output; ``--iidfile`` refused next to local/tar outputs.
- history entries without a time get one (``SOURCE_DATE_EPOCH`` when set).
- ``type=local``: files owned by the user running the build, the directory 0700, merged into.
- ``compression=``: without ``force-compression`` only this build's layers change.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest
from e2e_harness import PLACEHOLDER

from ocibuild import cli
from ocibuild.testing.oracle import reference_docker

DOCKERFILE = f"""\
FROM {PLACEHOLDER}/busybox:latest
LABEL org.example.df=yes
WORKDIR /app
COPY a.txt ./
RUN echo built > /app/built && chmod 640 /app/built && mkdir /owned && chown 1000:1000 /owned
CMD ["cat", "/app/built"]
"""
EPOCH = 1_700_000_000
EPOCH_TEXT = "2023-11-14T22:13:20Z"
CREATED = "org.opencontainers.image.created"
IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"


@pytest.fixture()
def context(e2e_registry, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("hello\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE.replace(PLACEHOLDER, e2e_registry.host))
    return ctx


def _build(args: list[str], ctx: Path, store: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("XDG_CACHE_HOME", str(store.parent / "xdg-parity"))
    return cli.main(["--progress", "quiet", *args, str(ctx)])


def _blob(layout: Path, digest: str) -> dict:
    algo, hexpart = digest.split(":")
    return json.loads((layout / "blobs" / algo / hexpart).read_text())


def test_oci_outputs_index_and_tar_format(context: Path, e2e_store: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()  # a tar's directory must exist (buildx: "failed to open"), a layout's need not
    code = _build(["-t", "parity/app:v1", "-t", "other/x",
                   "--output", f"type=oci,dest={out / 'oci.tar'}",
                   "--output", f"type=oci,dest={out / 'dir'},tar=false",
                   "--output", f"type=docker,dest={out / 'docker.tar'}",
                   "--metadata-file", str(out / "meta.json")], context, e2e_store, monkeypatch)
    assert code == 0
    index = json.loads((out / "dir" / "index.json").read_text())
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    names = [(m["annotations"][IMAGE_NAME], m["annotations"][REF_NAME]) for m in index["manifests"]]
    assert names == [("docker.io/parity/app:v1", "v1"), ("docker.io/other/x:latest", "latest")]
    entry = index["manifests"][0]
    assert list(entry) == ["mediaType", "digest", "size", "annotations", "platform"]
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"} or entry["platform"]["os"]
    created = entry["annotations"][CREATED]
    assert len(created) == 20 and created.endswith("Z")  # RFC 3339, whole seconds
    meta = json.loads((out / "meta.json").read_text())
    assert meta["containerimage.descriptor"] == {k: v for k, v in entry.items()
                                                if k != "annotations"} | {
        "annotations": {CREATED: created}}
    assert meta["image.name"] == "docker.io/parity/app:v1,docker.io/other/x:latest"
    assert not (out / "meta.json").read_bytes().endswith(b"\n")  # Go's MarshalIndent

    for archive in ("oci.tar", "docker.tar"):
        with tarfile.open(out / archive) as tar:
            members = tar.getmembers()
            names_in_tar = [m.name for m in members]
            assert names_in_tar == sorted(names_in_tar), archive
            modes = {m.name: m.mode for m in members}
            assert all(modes[n] == 0o444 for n in names_in_tar
                       if n.startswith("blobs/sha256/") and n != "blobs/sha256"), archive
            assert modes["oci-layout"] == 0o444 and modes["index.json"] == 0o644
            assert "repositories" not in names_in_tar
            tar_index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
            assert tar_index["manifests"][0]["annotations"][CREATED] == created
            if archive == "docker.tar":
                raw = tar.extractfile("manifest.json").read()  # type: ignore[union-attr]
                assert not raw.endswith(b"\n")
                assert json.loads(raw)[0]["RepoTags"] == ["parity/app:v1", "other/x:latest"]
                mtype = tar_index["manifests"][0]["mediaType"]
                assert mtype == "application/vnd.oci.image.manifest.v1+json"


def test_unnamed_outputs(context: Path, e2e_store: Path, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    code = _build(["--output", f"type=oci,dest={tmp_path / 'dir'},tar=false",
                   "--output", f"type=oci,dest={tmp_path / 'x.tar'}",
                   "--output", f"type=docker,dest={tmp_path / 'd.tar'}"],
                  context, e2e_store, monkeypatch)
    assert code == 0
    entry = json.loads((tmp_path / "dir" / "index.json").read_text())["manifests"][0]
    assert set(entry["annotations"]) == {CREATED, REF_NAME}
    assert entry["annotations"][REF_NAME] == "latest"
    with tarfile.open(tmp_path / "x.tar") as tar:
        entry = json.load(tar.extractfile("index.json"))["manifests"][0]  # type: ignore[arg-type]
    assert set(entry["annotations"]) == {CREATED}
    with tarfile.open(tmp_path / "d.tar") as tar:
        manifest_json = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest_json[0]["RepoTags"] is None


def test_annotation_kinds(context: Path, e2e_store: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "dir"
    code = _build(["--annotation", "a1=plain", "--annotation", "manifest:a2=m",
                   "--annotation", "manifest-descriptor:a4=md",
                   "--annotation", "manifest[linux/s390x]:a6=other-platform",
                   "--output", f"type=oci,dest={dest},tar=false,annotation-manifest.a7=attr",
                   "--metadata-file", str(tmp_path / "meta.json")],
                  context, e2e_store, monkeypatch)
    assert code == 0
    entry = json.loads((dest / "index.json").read_text())["manifests"][0]
    assert entry["annotations"]["a4"] == "md"
    manifest = _blob(dest, entry["digest"])
    assert manifest["annotations"] == {"a1": "plain", "a2": "m", "a7": "attr"}
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["containerimage.descriptor"]["annotations"]["a4"] == "md"


@pytest.mark.parametrize(("args", "message"), [
    (["--annotation", "index:k=v"], "index annotations not supported for single platform export"),
    (["--annotation", "bogus:k=v"], "unknown annotation type"),
    (["--annotation", "manifest-descriptor:k=v", "--output", "type=oci,dest=X,oci-mediatypes=false"],
     'cannot export annotations with "oci-mediatypes=false"'),
    (["--iidfile", "IID", "--output", "type=local,dest=X"],
     "local and tar exporters are incompatible with image ID file"),
])
def test_refusals(args: list[str], message: str, context: Path, e2e_store: Path, tmp_path: Path,
                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.replace("dest=X", f"dest={tmp_path / 'x'}").replace("IID", str(tmp_path / "iid"))
            for a in args]
    if "--output" not in args:
        args += ["--output", f"type=oci,dest={tmp_path / 'x.tar'}"]
    assert _build(args, context, e2e_store, monkeypatch) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.tar").exists()


@pytest.mark.parametrize("via", ["build-arg", "env"])
def test_source_date_epoch_times(via: str, context: Path, e2e_store: Path, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "dir"
    args = ["--output", f"type=oci,dest={dest},tar=false"]
    if via == "env":
        monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    else:
        args += ["--build-arg", f"SOURCE_DATE_EPOCH={EPOCH}"]
    assert _build(args, context, e2e_store, monkeypatch) == 0
    entry = json.loads((dest / "index.json").read_text())["manifests"][0]
    assert entry["annotations"][CREATED] == EPOCH_TEXT
    config = _blob(dest, _blob(dest, entry["digest"])["config"]["digest"])
    assert config["created"] == EPOCH_TEXT
    # The busybox base's entry has no time: BuildKit's exporter gives it the epoch too.
    assert [h.get("created") for h in config["history"]] == [EPOCH_TEXT] * len(config["history"])


def test_history_times_filled_without_epoch(context: Path, e2e_store: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "dir"
    assert _build(["--output", f"type=oci,dest={dest},tar=false"], context, e2e_store,
                  monkeypatch) == 0
    entry = json.loads((dest / "index.json").read_text())["manifests"][0]
    config = _blob(dest, _blob(dest, entry["digest"])["config"]["digest"])
    assert all(h.get("created") for h in config["history"])


def test_metadata_without_image_output(context: Path, e2e_store: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = _build(["--output", f"type=local,dest={tmp_path / 'rootfs'}",
                   "--metadata-file", str(tmp_path / "meta.json")], context, e2e_store, monkeypatch)
    assert code == 0
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert list(meta) == ["buildx.build.ref"]
    builder, node, ref = meta["buildx.build.ref"].split("/")
    assert len(ref) == 25 and ref.isalnum() and ref.islower()


def test_quiet_and_iidfile_name_the_config(context: Path, e2e_store: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    code = _build(["--output", f"type=oci,dest={tmp_path / 'x.tar'}",
                   "--iidfile", str(tmp_path / "iid"),
                   "--metadata-file", str(tmp_path / "meta.json")], context, e2e_store, monkeypatch)
    assert code == 0
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert (tmp_path / "iid").read_text() == meta["containerimage.config.digest"]


def test_local_output_owner_mode_and_merge(context: Path, e2e_store: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "rootfs"
    dest.mkdir()
    (dest / "keep").write_text("mine\n")
    (dest / "app").mkdir()
    (dest / "app" / "a.txt").write_text("old\n")
    code = _build(["--output", f"type=local,dest={dest}",
                   "--output", f"type=tar,dest={tmp_path / 'fs.tar'}"],
                  context, e2e_store, monkeypatch)
    assert code == 0
    assert (dest / "keep").read_text() == "mine\n"  # merged, like buildx's receiver
    assert (dest / "app" / "a.txt").read_text() == "hello\n"
    owned = os.lstat(dest / "owned")
    assert (owned.st_uid, owned.st_gid) == (os.getuid(), os.getgid())  # not the image's 1000
    assert stat.S_IMODE(os.lstat(dest / "app" / "built").st_mode) == 0o640
    with tarfile.open(tmp_path / "fs.tar") as tar:  # the tar keeps the image's ids
        member = tar.getmember("owned")
        assert (member.uid, member.gid) == (1000, 1000)
    fresh = tmp_path / "fresh"
    assert _build(["--output", f"type=local,dest={fresh}"], context, e2e_store, monkeypatch) == 0
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o700


def _layer_kinds(layout: Path) -> list[tuple[str, str]]:
    entry = json.loads((layout / "index.json").read_text())["manifests"][0]
    return [(layer["mediaType"].rsplit(".", 1)[-1].split("+")[-1], layer["digest"])
            for layer in _blob(layout, entry["digest"])["layers"]]


def test_output_compression_and_force(context: Path, e2e_store: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    outs = {name: tmp_path / name for name in ("plain", "zstd", "forced", "gzip-forced")}
    code = _build(["--output", f"type=oci,dest={outs['plain']},tar=false",
                   "--output", f"type=oci,dest={outs['zstd']},tar=false,compression=zstd",
                   "--output", f"type=oci,dest={outs['forced']},tar=false,compression=zstd,"
                               "force-compression=true",
                   "--output", f"type=oci,dest={outs['gzip-forced']},tar=false,compression=gzip,"
                               "compression-level=9,force-compression=true"],
                  context, e2e_store, monkeypatch)
    assert code == 0
    plain = _layer_kinds(outs["plain"])
    zstd = _layer_kinds(outs["zstd"])
    forced = _layer_kinds(outs["forced"])
    assert zstd[0] == plain[0] and zstd[0][0] == "gzip"  # the pulled base layer is kept
    assert all(kind == "zstd" for kind, _ in zstd[1:])
    assert all(kind == "zstd" for kind, _ in forced)
    # force-compression converts only layers in another compression (NeedsConversion).
    assert _layer_kinds(outs["gzip-forced"]) == plain



def test_docker_media_types_with_zstd(context: Path, e2e_store: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Under Docker media types zstd layers are ``...rootfs.diff.tar.zstd`` (BuildKit's
    ConvertAllLayerMediaTypes), not the OCI zstd type."""
    dest = tmp_path / "dir"
    code = _build(["--output", f"type=oci,dest={dest},tar=false,oci-mediatypes=false,"
                               "compression=zstd,force-compression=true"],
                  context, e2e_store, monkeypatch)
    assert code == 0
    entry = json.loads((dest / "index.json").read_text())["manifests"][0]
    manifest = _blob(dest, entry["digest"])
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.docker.image.rootfs.diff.tar.zstd"}


@pytest.mark.oracle
@pytest.mark.parametrize("epoch", [None, 1_600_000_000])
def test_filesystem_outputs_match_buildkit(epoch: int | None, context: Path, e2e_store: Path,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``type=local`` and ``type=tar`` of the same build by the reference BuildKit (the docker
    driver runs both): same entries, types, modes, sizes and owners; with SOURCE_DATE_EPOCH
    the same mtimes too (every entry gets the epoch), else the same mtimes for what the builds
    did not make (the base's files, and ``a.txt`` with the context's nanoseconds: kept in the
    directory, rounded in the tar)."""
    docker = reference_docker()
    started = time.time_ns()
    sub = 1_704_067_200 * 10**9 + 700_000_000
    os.utime(context / "a.txt", ns=(sub, sub))
    # Not cached: what the builds make is newer than ``started`` on both sides.
    args = ["--no-cache", *(["--build-arg", f"SOURCE_DATE_EPOCH={epoch}"] if epoch is not None
                            else [])]
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"  # created by the local outputs
    for kind in ("local", "tar"):
        dest = theirs / ("fs.tar" if kind == "tar" else "rootfs")
        proc = subprocess.run([docker, "buildx", "build", "--network", "none", *args, "--output",
                               f"type={kind},dest={dest}", str(context)],
                              capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert _build([*args, "--output", f"type=local,dest={ours / 'rootfs'}",
                   "--output", f"type=tar,dest={ours / 'fs.tar'}"], context, e2e_store,
                  monkeypatch) == 0
    times = epoch is not None
    before = None if times else started
    tree = _tree(ours / "rootfs", times, before)
    assert tree == _tree(theirs / "rootfs", times, before)
    assert stat.S_IMODE(os.stat(ours / "rootfs").st_mode) == \
        stat.S_IMODE(os.stat(theirs / "rootfs").st_mode)
    listing = _tar_listing(ours / "fs.tar", times, before)
    assert listing == _tar_listing(theirs / "fs.tar", times, before)
    if not times:
        assert tree["app/a.txt"][-1] == sub
        assert listing["app/a.txt"][-1] == 1_704_067_201


def _tree(root: Path, times: bool = False,
          before: int | None = None) -> dict[str, tuple[object, ...]]:
    """Each entry's mode, owner, size, link and mtime (ns): every mtime with ``times``, else
    those before ``before`` (ns), else none."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
            size = st.st_size if stat.S_ISREG(st.st_mode) else 0
            kept = times or (before is not None and st.st_mtime_ns < before)
            out[os.path.relpath(path, root)] = (stat.filemode(st.st_mode), st.st_uid, st.st_gid,
                                                size, link, st.st_mtime_ns if kept else 0)
    return out


def _tar_listing(path: Path, times: bool = False,
                 before: int | None = None) -> dict[str, tuple[object, ...]]:
    """As ``_tree`` (``before`` in ns; a tar's mtimes are seconds, maybe rounded up, so a
    second earlier)."""
    def mtime(m: tarfile.TarInfo) -> int:
        kept = times or (before is not None and (m.mtime + 1) * 10**9 < before)
        return int(m.mtime) if kept else 0

    with tarfile.open(path) as tar:
        return {m.name.rstrip("/"): (m.type, m.mode, m.uid, m.gid, m.size, m.linkname,
                                     m.uname, m.gname, mtime(m))
                for m in tar.getmembers()}


def test_push_metadata_and_registry_manifest(e2e_registry, context: Path, e2e_store: Path,  # type: ignore[no-untyped-def]
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import requests

    host = e2e_registry.host
    name = f"{host}/parity/push:v1"
    code = _build(["--insecure-registry", host, "-t", name, "--push",
                   "--metadata-file", str(tmp_path / "meta.json")], context, e2e_store, monkeypatch)
    assert code == 0
    meta = json.loads((tmp_path / "meta.json").read_text())
    # The image exporter reports the names as given and no created annotation.
    assert meta["image.name"] == name
    assert "annotations" not in meta["containerimage.descriptor"]
    assert set(meta["containerimage.descriptor"]) == {"mediaType", "digest", "size", "platform"}
    got = requests.get(f"http://{host}/v2/parity/push/manifests/v1", timeout=30, headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert got.headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
    assert got.headers["Docker-Content-Digest"] == meta["containerimage.digest"]
    manifest = got.json()
    assert manifest["config"]["digest"] == meta["containerimage.config.digest"]
    assert "annotations" not in manifest


def test_layout_directory_accumulates_names(context: Path, e2e_store: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "layout"
    for name in ("a/app:v1", "b/app:v1", "a/app:v1"):
        assert _build(["-t", name, "--output", f"type=oci,dest={dest},tar=false"],
                      context, e2e_store, monkeypatch) == 0
    entries = json.loads((dest / "index.json").read_text())["manifests"]
    # Same tag, another image name: both stay; the same name again moves to the end.
    assert [(e["annotations"][IMAGE_NAME], e["annotations"][REF_NAME]) for e in entries] == [
        ("docker.io/b/app:v1", "v1"), ("docker.io/a/app:v1", "v1")]


def _shape(value: object) -> object:
    """``value`` with what differs between two runs of one build (digests, sizes, times)
    replaced by placeholders, so two builds' JSON can be compared field by field."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("digest", "size") or k in (CREATED, "created"):
                out[k] = f"<{k}>"
            elif k == "diff_ids":
                out[k] = len(v)
            else:
                out[k] = _shape(v)
        return out
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if isinstance(value, str) and value.startswith(("sha256:", "blobs/sha256/")):
        return "<digest>"
    return value


def _archive_shape(path: Path) -> dict[str, object]:
    """Members (names with digests folded), modes, and the shapes of every JSON in a tar."""
    with tarfile.open(path) as tar:
        members = [(m.name if not m.name.startswith("blobs/sha256/") or m.isdir()
                    else "blobs/sha256/<hex>", m.mode, m.type, m.uid, m.gid, m.mtime)
                   for m in tar.getmembers()]
        docs: dict[str, object] = {}
        for m in tar.getmembers():
            if m.isfile() and m.size < 65536:
                raw = tar.extractfile(m).read()  # type: ignore[union-attr]
                try:
                    doc = json.loads(raw)
                except ValueError:
                    continue  # a layer
                key = m.name if not m.name.startswith("blobs/") else \
                    str(doc.get("mediaType") or ("config" if "rootfs" in doc else m.name))
                docs[key] = _shape(doc)
    return {"members": members, "docs": docs}


@pytest.mark.oracle
def test_image_archives_match_buildkit(context: Path, e2e_store: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """``type=oci`` and ``type=docker`` tars and the metadata file, against BuildKit's own
    exporters. The shared reference dockerd (docker driver, no containerd image store)
    refuses both, so this needs a second dockerd *with* the containerd image store, whose
    socket is in ``ORACLE_CONTAINERD_DOCKER_HOST``, e.g.::

        echo '{"features":{"containerd-snapshotter":true}}' > D/daemon.json
        R=/tmp/buildkit-oracle/root; PATH=$R/usr/bin:$R/usr/sbin:$PATH $R/usr/sbin/dockerd \\
          --config-file D/daemon.json --data-root D/data --exec-root D/exec \\
          --pidfile D/pid -H unix://D/docker.sock --iptables=false --bridge=none &

    BuildKit 0.13's docker exporter still wrote Docker media types (current BuildKit: OCI),
    so both builds ask for ``oci-mediatypes=false`` there.
    """
    docker = os.environ.get("ORACLE_DOCKER")
    host = os.environ.get("ORACLE_CONTAINERD_DOCKER_HOST")
    if not docker or not host:
        pytest.skip("no BuildKit with its own image exporters: set ORACLE_DOCKER and "
                    "ORACLE_CONTAINERD_DOCKER_HOST (a dockerd with the containerd image store)")
    env = dict(os.environ, DOCKER_HOST=host)
    if subprocess.run([docker, "version"], capture_output=True, env=env).returncode != 0:
        pytest.skip("the containerd-store dockerd does not answer")
    outputs = ["--output", "type=oci,dest={d}/oci.tar",
               "--output", "type=docker,dest={d}/docker.tar,oci-mediatypes=false"]
    results = {}
    for who in ("theirs", "ours"):
        d = tmp_path / who
        d.mkdir()
        for i in range(0, len(outputs), 2):  # buildx 0.13 takes one output per build
            args = ["-t", "parity/app:v1", outputs[i], outputs[i + 1].format(d=d),
                    "--metadata-file", str(d / f"meta{i}.json")]
            if who == "theirs":
                proc = subprocess.run([docker, "buildx", "build", "--network", "none",
                                       "--provenance=false", *args, str(context)],
                                      capture_output=True, env=env, timeout=300)
                assert proc.returncode == 0, proc.stderr.decode()[-2000:]
            else:
                assert _build(args, context, e2e_store, monkeypatch) == 0
        meta = [json.loads((d / f"meta{i}.json").read_text()) for i in (0, 2)]
        results[who] = {
            "oci": _archive_shape(d / "oci.tar"),
            "docker": _archive_shape(d / "docker.tar"),
            "meta": [_shape({k: v for k, v in m.items() if k != "buildx.build.ref"}) for m in meta],
            "ref": [m["buildx.build.ref"].count("/") for m in meta],
        }
    assert results["ours"] == results["theirs"]


def test_quiet_prints_the_image_id(context: Path, e2e_store: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """buildx -q prints the config digest (the image id), an empty line for local outputs."""
    code = _build(["-q", "--output", f"type=oci,dest={tmp_path / 'x.tar'}",
                   "--metadata-file", str(tmp_path / "meta.json")], context, e2e_store, monkeypatch)
    assert code == 0
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert capsys.readouterr().out == meta["containerimage.config.digest"] + "\n"
    code = _build(["-q", "--output", f"type=local,dest={tmp_path / 'fs'}"], context, e2e_store,
                  monkeypatch)
    assert code == 0 and capsys.readouterr().out == "\n"


def test_source_date_epoch_sets_filesystem_output_times(context: Path, e2e_store: Path,
                                                        tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """BuildKit's local and tar exporters *set* every mtime to the epoch (older ones too)."""
    epoch = 1_600_000_000  # before the busybox base's own file times
    code = _build(["--build-arg", f"SOURCE_DATE_EPOCH={epoch}",
                   "--output", f"type=local,dest={tmp_path / 'rootfs'}",
                   "--output", f"type=tar,dest={tmp_path / 'fs.tar'}"], context, e2e_store,
                  monkeypatch)
    assert code == 0
    assert {int(st[5] // 10**9) for st in _tree(tmp_path / "rootfs", True).values()} == {epoch}
    assert {t[-1] for t in _tar_listing(tmp_path / "fs.tar", True).values()} == {epoch}


def test_multi_platform_filesystem_outputs(e2e_store: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Several platforms: one directory per platform (``linux_arm64``), in the local output
    and inside one tar, 0755 with the epoch as mtime (BuildKit's platform split)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /\n")
    (ctx / "a.txt").write_text("hi\n")
    code = _build(["--platform", "linux/amd64,linux/arm64", "--build-arg",
                   f"SOURCE_DATE_EPOCH={EPOCH}",
                   "--output", f"type=local,dest={tmp_path / 'out'}",
                   "--output", f"type=tar,dest={tmp_path / 'out.tar'}"], ctx, e2e_store,
                  monkeypatch)
    assert code == 0
    assert stat.S_IMODE(os.stat(tmp_path / "out").st_mode) == 0o700
    for name in ("linux_amd64", "linux_arm64"):
        st = os.stat(tmp_path / "out" / name)
        assert (stat.S_IMODE(st.st_mode), int(st.st_mtime)) == (0o755, EPOCH)
        assert (tmp_path / "out" / name / "a.txt").read_text() == "hi\n"
    listing = _tar_listing(tmp_path / "out.tar", True)
    assert sorted(listing) == ["linux_amd64", "linux_amd64/a.txt", "linux_arm64",
                               "linux_arm64/a.txt"]
    assert listing["linux_arm64"][1:4] == (0o755, 0, 0) and listing["linux_arm64"][-1] == EPOCH
