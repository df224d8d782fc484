"""OCI layouts (dir and tar) and docker archives: written from generated images, checked by
our oracle, by skopeo and umoci, and read back."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocibuild import mediatypes as mt
from ocibuild.errors import ContentError, OcibuildError, OutputError
from ocibuild.image import Platform
from ocibuild.output.layout import (
    REF_NAME,
    DockerArchive,
    DockerImage,
    open_layout,
    ref_annotations,
    write_docker_archive,
    write_oci_archive,
    write_oci_layout,
)
from ocibuild.reference import Reference
from ocibuild.store import BlobStore
from ocibuild.testing.images import random_image, random_index, validate_image

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo not installed")
needs_umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    s = BlobStore(tmp_path / "store")
    yield s
    s.close()


def run(*argv: str) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{argv}: {out.stderr}"
    return out.stdout


def tagged(store: BlobStore, seed: int, tag: str, **kw: object):
    image, manifest = random_image(store, seed=seed, **kw)  # type: ignore[arg-type]
    d = manifest.descriptor(platform=image.platform).with_annotations(ref_annotations(tag))
    return image, manifest, d


def test_ref_annotations_are_buildkits() -> None:
    assert ref_annotations("foo") == {
        "io.containerd.image.name": "docker.io/library/foo:latest",
        REF_NAME: "latest",
    }
    assert ref_annotations(Reference.parse("localhost:5000/a:v1"))[REF_NAME] == "v1"


@needs_skopeo
def test_oci_archive_is_read_by_skopeo_and_by_us(store: BlobStore, tmp_path: Path) -> None:
    image, manifest, d = tagged(store, 1, "app:v1", layers=3)
    dest = tmp_path / "out.tar"
    write_oci_archive(dest, [d], store)
    assert run("skopeo", "inspect", "--raw", f"oci-archive:{dest}:v1").encode() == manifest.raw
    info = json.loads(run("skopeo", "inspect", f"oci-archive:{dest}:v1"))
    assert info["Digest"] == str(manifest.digest)
    assert info["Layers"] == [str(x.digest) for x in image.layers]
    layout = open_layout(dest)
    assert layout.resolve("v1") == d and layout.resolve() == d
    assert layout.resolve("docker.io/library/app:v1") == d
    assert validate_image(layout, d.digest).config == image.config
    with tarfile.open(dest) as tar:
        # containerd's archive exporter order: sorted names, blobs read-only
        assert tar.getnames()[-2:] == ["index.json", "oci-layout"]
        assert tar.getnames() == sorted(tar.getnames())
        assert all(m.mode == 0o444 for m in tar.getmembers() if m.isfile() and m.name.startswith("blobs/"))
    from ocibuild.output._atomic import _umask

    assert dest.stat().st_mode & 0o777 == 0o644 & ~_umask()  # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tar", "store"]  # no temp left


def test_archive_bytes_are_deterministic(store: BlobStore, tmp_path: Path) -> None:
    _, _, d = tagged(store, 2, "x")
    write_oci_archive(tmp_path / "a.tar", [d], store)
    write_oci_archive(tmp_path / "b.tar", [d], store)
    buf = io.BytesIO()
    write_oci_archive(buf, [d], store)  # streamed to an open file (dest=-)
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes() == buf.getvalue()
    with tarfile.open(tmp_path / "a.tar") as tar:
        for info in tar:
            assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")


@needs_skopeo
@needs_umoci
def test_oci_layout_dir_unpacks_with_umoci(store: BlobStore, tmp_path: Path) -> None:
    image, manifest, d = tagged(store, 3, "app:v2", layers=2, files=4)
    dest = tmp_path / "layout"
    write_oci_layout(dest, [d], store)
    assert json.loads((dest / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert run("skopeo", "inspect", "--raw", f"oci:{dest}:v2").encode() == manifest.raw
    bundle = tmp_path / "bundle"
    run("umoci", "unpack", "--image", f"{dest}:v2", str(bundle))
    files = [p for p in (bundle / "rootfs").rglob("*") if p.is_file()]
    assert len(files) == 8
    validate_image(open_layout(dest), manifest.digest)


def test_adding_to_a_layout_moves_tags(store: BlobStore, tmp_path: Path) -> None:
    dest = tmp_path / "layout"
    _, m1, d1 = tagged(store, 4, "a:one")
    _, m2, d2 = tagged(store, 5, "a:two")
    _, m3, d3 = tagged(store, 6, "a:one")
    write_oci_layout(dest, [d1], store)
    write_oci_layout(dest, [d2], store)
    assert open_layout(dest).resolve("one").digest == m1.digest
    write_oci_layout(dest, [d3], store)  # "one" now names another image
    layout = open_layout(dest)
    assert sorted(layout.names()) == ["one", "two"]
    assert layout.resolve("one").digest == m3.digest and layout.resolve("two").digest == m2.digest
    with pytest.raises(OutputError, match="name one of"):
        layout.resolve()
    with pytest.raises(OutputError, match="no image named 'three'"):
        layout.resolve("three")
    for m in (m1, m2, m3):
        validate_image(layout, m.digest)


@needs_skopeo
def test_index_in_an_archive(store: BlobStore, tmp_path: Path) -> None:
    index = random_index(store, [Platform.parse("linux/amd64"), Platform.parse("linux/arm64/v8")], seed=20)
    d = index.descriptor(annotations=ref_annotations("multi:latest"))
    dest = tmp_path / "multi.tar"
    write_oci_archive(dest, [d], store)
    assert run("skopeo", "inspect", "--raw", f"oci-archive:{dest}").encode() == index.raw
    arm = json.loads(run("skopeo", "--override-arch", "arm64", "inspect", f"oci-archive:{dest}"))
    arm_manifest = json.loads(store.get_bytes(index.manifests[1].digest))
    assert arm["Architecture"] == "arm64"
    assert arm["Layers"] == [x["digest"] for x in arm_manifest["layers"]]
    validate_image(open_layout(dest), index.digest)


def test_failed_writes_leave_nothing(store: BlobStore, tmp_path: Path) -> None:
    image, _, d = tagged(store, 7, "x", layers=3)
    out = tmp_path / "out"
    out.mkdir()
    os.chmod(store.path(image.layers[2].digest), 0o644)
    with open(store.path(image.layers[2].digest), "r+b") as f:
        f.seek(5)
        b = f.read(1)
        f.seek(5)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(ContentError, match="corrupt"):
        write_oci_archive(out / "a.tar", [d], store)
    # The corrupt blob was removed from the store: now it is missing, for every writer.
    with pytest.raises(OcibuildError, match="not in the store"):
        write_oci_layout(out / "dir", [d], store)
    with pytest.raises(OcibuildError, match="not in the store"):
        write_docker_archive(out / "d.tar", [DockerImage(d)], store)
    with pytest.raises(OcibuildError, match="not in the store"):
        write_oci_archive(out / "a.tar", [d], store)
    assert os.listdir(out) == []


def test_failed_add_keeps_the_previous_layout(store: BlobStore, tmp_path: Path) -> None:
    dest = tmp_path / "layout"
    _, m1, d1 = tagged(store, 8, "one")
    image, _, d2 = tagged(store, 9, "two")
    write_oci_layout(dest, [d1], store)
    before = (dest / "index.json").read_bytes()
    store.delete(image.layers[-1].digest)
    with pytest.raises(OcibuildError):
        write_oci_layout(dest, [d2], store)
    assert (dest / "index.json").read_bytes() == before
    validate_image(open_layout(dest), m1.digest)
    assert not [p for p in dest.rglob("*.tmp")]


@needs_skopeo
@pytest.mark.parametrize("uncompressed", [False, True])
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_docker_archive_is_loadable(store: BlobStore, tmp_path: Path, uncompressed: bool, compression: str) -> None:
    image, manifest = random_image(store, seed=10, layers=2, compression=compression, oci=False)
    dest = tmp_path / "docker.tar"
    tags = (Reference.parse("app:v1"), Reference.parse("localhost:5000/team/app:v1"))
    write_docker_archive(dest, [DockerImage(manifest.descriptor(), tags)], store, uncompressed=uncompressed)
    with tarfile.open(dest) as tar:
        entries = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        repositories = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
    assert entries[0]["RepoTags"] == ["app:v1", "localhost:5000/team/app:v1"]
    assert set(repositories) == {"app", "localhost:5000/team/app"}
    assert len(entries[0]["Layers"]) == 2
    if compression == "zstd" and not uncompressed:
        return  # skopeo's docker-archive reader does not take zstd layers; docker load does
    info = json.loads(run("skopeo", "inspect", f"docker-archive:{dest}:app:v1"))
    assert info["RepoTags"] == [] or "v1" in info["RepoTags"]
    assert info["Architecture"] == "amd64"
    # Ours: the docker view and the OCI view of the same file.
    archive = DockerArchive(dest)
    chosen = archive.select("docker.io/library/app:v1")
    assert chosen.config_raw == image.config.to_bytes()
    assert [x.media_type for x in chosen.manifest.layers] == (
        [mt.DOCKER_LAYER] * 2 if uncompressed else [mt.DOCKER_LAYER_GZIP if compression == "gzip" else mt.DOCKER_LAYER_ZSTD] * 2
    )
    validate_image(archive, chosen.manifest.digest)
    layout = open_layout(dest)
    validate_image(layout, layout.resolve("v1").digest)


def test_legacy_docker_save_archive_is_read(tmp_path: Path, store: BlobStore) -> None:
    """``docker save`` before 25: ``<id>/layer.tar`` uncompressed layers, ``<hex>.json``."""
    image, manifest = random_image(store, seed=11, layers=2, compression="none", oci=False)
    dest = tmp_path / "legacy.tar"
    config_hex = manifest.config.digest.hex
    with tarfile.open(dest, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        layer_names = []
        for i, layer in enumerate(image.layers):
            name = f"{i:064x}/layer.tar"
            add(name, store.get_bytes(layer.digest))
            layer_names.append(name)
        add(f"{config_hex}.json", image.config.to_bytes())
        add("manifest.json", json.dumps([{"Config": f"{config_hex}.json", "RepoTags": ["old:1"], "Layers": layer_names}]).encode())
    archive = DockerArchive(dest)
    chosen = archive.select()
    assert chosen.repo_tags == ("old:1",)
    assert [x.digest for x in chosen.manifest.layers] == [x.digest for x in image.layers]
    validate_image(archive, chosen.manifest.digest)
    with pytest.raises(OutputError, match="no image tagged"):
        archive.select("other:1")


@needs_skopeo
def test_we_read_what_skopeo_writes(store: BlobStore, tmp_path: Path) -> None:
    _, manifest, d = tagged(store, 12, "x:v1")
    write_oci_layout(tmp_path / "ours", [d], store)
    run("skopeo", "copy", "-q", f"oci:{tmp_path / 'ours'}:v1", f"oci-archive:{tmp_path / 'theirs.tar'}:v9")
    layout = open_layout(tmp_path / "theirs.tar")
    got = layout.resolve("v9")
    assert got.digest == manifest.digest
    validate_image(layout, got.digest)
    run("skopeo", "copy", "-q", f"oci:{tmp_path / 'ours'}:v1", f"docker-archive:{tmp_path / 'd.tar'}:x/y:z")
    archive = DockerArchive(tmp_path / "d.tar")
    validate_image(archive, archive.select("x/y:z").manifest.digest)


def test_docker_archive_refuses_an_index(store: BlobStore, tmp_path: Path) -> None:
    index = random_index(store, [Platform.parse("linux/amd64")])
    with pytest.raises(OutputError, match="want one image manifest"):
        write_docker_archive(tmp_path / "d.tar", [DockerImage(index.descriptor())], store)
    assert not (tmp_path / "d.tar").exists()


def test_reading_hostile_or_broken_layouts(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="no such file"):
        open_layout(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match="missing oci-layout"):
        open_layout(tmp_path / "empty")
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"\x1f\x8b not a tar")
    with pytest.raises(OutputError, match="not an uncompressed tar"):
        open_layout(bad)


def test_load_image_from_a_layout_into_another_store(store: BlobStore, tmp_path: Path) -> None:
    index = random_index(store, [Platform.parse("linux/amd64"), Platform.parse("linux/arm64")], seed=30)
    _, single, d = tagged(store, 31, "solo:1")
    dest = tmp_path / "layout.tar"
    write_oci_archive(dest, [index.descriptor(annotations=ref_annotations("multi:2")), d], store)
    with BlobStore(tmp_path / "other") as other:
        from ocibuild.output.layout import load_image

        arm = load_image(dest, "2", Platform.parse("linux/arm64/v8"), other)
        assert arm.platform.architecture == "arm64"
        assert arm.manifest is not None and arm.manifest.digest == index.manifests[1].digest
        validate_image(other, arm.manifest.digest)
        solo = load_image(dest, "docker.io/library/solo:1", Platform.parse("linux/arm64"), other)
        assert solo.manifest is not None and solo.manifest.digest == single.digest
        by_digest = load_image(dest, str(index.manifests[0].digest), Platform.parse("linux/arm64"), other)
        assert by_digest.platform.architecture == "amd64"
        with pytest.raises(OutputError, match=r"no image for linux/s390x \(platforms: linux/amd64, linux/arm64\)"):
            load_image(dest, "2", Platform.parse("linux/s390x"), other)
        with pytest.raises(OutputError, match="name one of: 2, 1"):
            load_image(dest, None, Platform.parse("linux/amd64"), other)


def test_validate_image_finds_broken_images(store: BlobStore) -> None:
    from ocibuild.image import Image, Manifest, build_manifest

    image, manifest = random_image(store, seed=40, layers=2)
    validate_image(store, manifest.digest)
    # History that does not account for every layer.
    short = image.with_config(image.config.with_history(image.history[:1]))
    raw = build_manifest(short)
    store.put_bytes(short.config.to_bytes())
    with pytest.raises(AssertionError, match="history has 1 entries with a layer"):
        validate_image(store, store.put_bytes(raw))
    # A diff id that is not the layer's.
    wrong = Image(
        image.config.with_diff_ids([image.layers[0].diff_id, image.layers[0].diff_id]),
        (image.layers[0], type(image.layers[1])(image.layers[1].descriptor, image.layers[0].diff_id)),
    )
    store.put_bytes(wrong.config.to_bytes())
    with pytest.raises(AssertionError, match=r"layers\[1\]: diff id"):
        validate_image(store, store.put_bytes(build_manifest(wrong)))
    # A size that lies.
    m = Manifest.parse(manifest.raw)
    bad = json.loads(m.raw)
    bad["layers"][0]["size"] += 1
    with pytest.raises(AssertionError, match=r"layers\[0\]: size"):
        validate_image(store, store.put_bytes(json.dumps(bad).encode()))


def test_layout_tar_made_by_tar_is_read(store: BlobStore, tmp_path: Path) -> None:
    """``tar -C DIR -cf X .`` names entries ``./blobs/...``; the reader normalises them."""
    _, manifest, d = tagged(store, 41, "t:1")
    write_oci_layout(tmp_path / "dir", [d], store)
    subprocess.run(["tar", "-C", str(tmp_path / "dir"), "-cf", str(tmp_path / "x.tar"), "."], check=True)
    layout = open_layout(tmp_path / "x.tar")
    assert layout.resolve("1").digest == manifest.digest
    validate_image(layout, manifest.digest)


@given(
    files=st.dictionaries(
        st.from_regex(r"[a-z]{1,8}(/[a-z0-9]{1,8}){0,2}", fullmatch=True),
        st.binary(max_size=3000),
        max_size=6,
    )
)
@settings(max_examples=60, deadline=None)
def test_archive_writer_round_trip(files: dict[str, bytes]) -> None:
    """What ArchiveWriter writes, tar(1)'s format readers read back, byte for byte."""
    from ocibuild.output._tar import ArchiveWriter

    # A name cannot be both a file and a directory.
    names = sorted(n for n in files if not any(o.startswith(n + "/") for o in files))
    buf = io.BytesIO()
    with ArchiveWriter(buf) as tar:
        for i, name in enumerate(names):
            if i % 2:
                tar.add_bytes(name, files[name])
            else:
                tar.add_stream(name, len(files[name]), io.BytesIO(files[name]))
    assert len(buf.getvalue()) % tarfile.RECORDSIZE == 0
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        got = {m.name: t.extractfile(m).read() for m in t if m.isreg()}  # type: ignore[union-attr]
    assert got == {n: files[n] for n in names}
