"""``copy``, ``inspect`` and ``login`` through the CLI, checked by skopeo and umoci."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.image import Descriptor, Index, Platform
from ocibuild.reference import Reference
from ocibuild.registry.client import RegistryClient
from ocibuild.testing.registry import RegistryServer, make_tar, push_image

ROOT = Path(__file__).resolve().parents[2]


def ocibuild(*args: str, stdin: str | None = None, env: dict[str, str] | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "ocibuild", *args], input=stdin, text=True,
                          capture_output=True, env=full_env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"ocibuild {' '.join(args)} failed: {proc.stderr}")
    return proc


def skopeo_raw(ref: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", ref],
                          check=True, capture_output=True, timeout=60).stdout


@pytest.fixture(scope="module")
def image(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("img")
    layers = [make_tar(d / "a.tar", {"etc/hello": b"hi\n", "big": os.urandom(300_000)}),
              make_tar(d / "b.tar", {"etc/second": b"two\n"})]
    push_image(registry.host, "copy/src:1", layers, {"config": {"Cmd": ["/bin/sh"]}})
    return f"{registry.host}/copy/src:1"


@pytest.fixture(scope="module")
def index_ref(registry: RegistryServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("idx")
    entries = []
    with RegistryClient() as client:
        for plat in ("linux/amd64", "linux/arm64"):
            t = make_tar(d / f"{plat.replace('/', '-')}.tar", {"arch": plat.encode()})
            digest = push_image(registry.host, f"copy/multi:{plat.replace('/', '-')}", [t],
                                platform=plat)
            raw, media_type, _ = client.get_manifest(
                Reference.parse(f"{registry.host}/copy/multi@{digest}"))
            entries.append(Descriptor(media_type, Digest.parse(digest), len(raw),
                                      platform=Platform.parse(plat)))
        index = Index.build(entries)
        client.push_manifest(Reference.parse(f"{registry.host}/copy/multi:all"), index.raw,
                             index.media_type)
    return f"{registry.host}/copy/multi:all"


def test_registry_to_oci_archive_and_back_keeps_digest(image: str, registry: RegistryServer,
                                                       tmp_path: Path) -> None:
    src_raw = skopeo_raw(f"docker://{image}")
    archive = tmp_path / "img.tar"
    out = ocibuild("copy", f"docker://{image}", f"oci-archive:{archive}:v1").stdout.strip()
    assert out == str(Digest.of_bytes(src_raw))
    ocibuild("copy", f"oci-archive:{archive}:v1", f"docker://{registry.host}/copy/back:v1")
    assert skopeo_raw(f"docker://{registry.host}/copy/back:v1") == src_raw
    # skopeo reads the archive and sees the same manifest
    assert skopeo_raw(f"oci-archive:{archive}:v1") == src_raw


def test_skopeo_and_umoci_accept_our_archive(image: str, tmp_path: Path) -> None:
    archive = tmp_path / "img.tar"
    ocibuild("copy", f"docker://{image}", f"oci-archive:{archive}:v1")
    subprocess.run(["skopeo", "copy", f"oci-archive:{archive}:v1", f"dir:{tmp_path / 'dir'}"],
                   check=True, capture_output=True, timeout=60)
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(archive) as tf:
        tf.extractall(layout, filter="data")
    subprocess.run(["umoci", "unpack", "--rootless", "--image", f"{layout}:v1",
                    str(tmp_path / "bundle")], check=True, capture_output=True, timeout=60)
    assert (tmp_path / "bundle" / "rootfs" / "etc" / "hello").read_bytes() == b"hi\n"
    assert (tmp_path / "bundle" / "rootfs" / "etc" / "second").read_bytes() == b"two\n"


def test_registry_to_registry_and_oci_dir(image: str, registry: RegistryServer,
                                          tmp_path: Path) -> None:
    src_raw = skopeo_raw(f"docker://{image}")
    ocibuild("copy", f"docker://{image}", f"docker://{registry.host}/copy/r2r:x")
    assert skopeo_raw(f"docker://{registry.host}/copy/r2r:x") == src_raw
    ocibuild("copy", f"docker://{image}", f"oci:{tmp_path / 'dir'}:t")
    assert skopeo_raw(f"oci:{tmp_path / 'dir'}:t") == src_raw
    index = json.loads((tmp_path / "dir" / "index.json").read_text())
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "t"


def test_index_copied_whole_or_one_platform(index_ref: str, registry: RegistryServer,
                                            tmp_path: Path) -> None:
    src_raw = skopeo_raw(f"docker://{index_ref}")
    ocibuild("copy", f"docker://{index_ref}", f"docker://{registry.host}/copy/multi2:all")
    assert skopeo_raw(f"docker://{registry.host}/copy/multi2:all") == src_raw
    for entry in json.loads(src_raw)["manifests"]:
        skopeo_raw(f"docker://{registry.host}/copy/multi2@{entry['digest']}")
    archive = tmp_path / "multi.tar"
    ocibuild("copy", f"docker://{index_ref}", f"oci-archive:{archive}")
    assert skopeo_raw(f"oci-archive:{archive}") == src_raw
    one = ocibuild("copy", "--platform", "linux/arm64", f"docker://{index_ref}",
                   f"docker://{registry.host}/copy/arm:1").stdout.strip()
    arm = [e for e in json.loads(src_raw)["manifests"]
           if e["platform"]["architecture"] == "arm64"][0]
    assert one == arm["digest"]
    doc = json.loads(ocibuild("inspect", index_ref).stdout)
    assert doc["platforms"] == ["linux/amd64", "linux/arm64"]
    assert doc["digest"] == str(Digest.of_bytes(src_raw))
    arm_doc = json.loads(ocibuild("inspect", "--platform", "linux/arm64", index_ref).stdout)
    assert arm_doc["digest"] == arm["digest"] and arm_doc["platform"] == "linux/arm64"
    assert ocibuild("inspect", "--raw", index_ref).stdout.encode() == src_raw
    # --format v2s2 turns the index into a Docker manifest list of Docker manifests.
    ocibuild("copy", "--format", "v2s2", f"docker://{index_ref}",
             f"docker://{registry.host}/copy/list:1")
    listed = json.loads(skopeo_raw(f"docker://{registry.host}/copy/list:1"))
    assert listed["mediaType"] == mt.DOCKER_MANIFEST_LIST
    assert {m["mediaType"] for m in listed["manifests"]} == {mt.DOCKER_MANIFEST}
    assert [m["platform"]["architecture"] for m in listed["manifests"]] == ["amd64", "arm64"]
    with RegistryClient() as client:
        manifest, _ = client.resolve_image(Reference.parse(f"{registry.host}/copy/list:1"),
                                           Platform.parse("linux/arm64"))
    assert manifest.media_type == mt.DOCKER_MANIFEST


def test_docker_archive_roundtrip_and_format_conversion(image: str, registry: RegistryServer,
                                                        tmp_path: Path) -> None:
    archive = tmp_path / "d.tar"
    ocibuild("copy", f"docker://{image}", f"docker-archive:{archive}:app:1")
    with tarfile.open(archive) as tf:
        member = tf.extractfile("manifest.json")
        assert member is not None
        assert json.loads(member.read())[0]["RepoTags"] == ["app:1"]
    info = json.loads(subprocess.run(["skopeo", "inspect", f"docker-archive:{archive}:app:1"],
                                     check=True, capture_output=True, timeout=60).stdout)
    assert info["Name"] == "docker.io/library/app"
    ocibuild("copy", f"docker-archive:{archive}", f"docker://{registry.host}/copy/fromdocker:1")
    raw = skopeo_raw(f"docker://{registry.host}/copy/fromdocker:1")
    assert json.loads(raw)["mediaType"] == mt.DOCKER_MANIFEST
    v2 = ocibuild("copy", "--format", "v2s2", f"docker://{image}",
                  f"docker://{registry.host}/copy/v2:1").stdout.strip()
    converted = json.loads(skopeo_raw(f"docker://{registry.host}/copy/v2:1"))
    original = json.loads(skopeo_raw(f"docker://{image}"))
    assert converted["mediaType"] == mt.DOCKER_MANIFEST and v2 != str(
        Digest.of_bytes(skopeo_raw(f"docker://{image}")))
    assert [x["digest"] for x in converted["layers"]] == [x["digest"] for x in original["layers"]]
    assert {x["mediaType"] for x in converted["layers"]} == {mt.DOCKER_LAYER_GZIP}


def test_cli_error_quotes_registry(tls_registry: RegistryServer, tmp_path: Path,
                                   image: str) -> None:
    assert tls_registry.ca_path is not None
    env = {"SSL_CERT_FILE": str(tls_registry.ca_path), "DOCKER_CONFIG": str(tmp_path / "cfg"),
           "REGISTRY_AUTH_FILE": str(tmp_path / "none.json")}
    proc = ocibuild("copy", f"docker://{image}", f"docker://{tls_registry.host}/app:1",
                    env=env, check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        f"error: push {tls_registry.host}/app:1: UNAUTHORIZED: authentication required")


def test_login_writes_docker_config(tls_registry: RegistryServer, tmp_path: Path,
                                    image: str) -> None:
    assert tls_registry.ca_path is not None
    cfg = tmp_path / "cfg"
    env = {"SSL_CERT_FILE": str(tls_registry.ca_path), "DOCKER_CONFIG": str(cfg),
           "REGISTRY_AUTH_FILE": str(tmp_path / "none.json")}
    bad = ocibuild("login", tls_registry.host, "-u", "alice", "--password-stdin",
                   stdin="wrong\n", env=env, check=False)
    assert bad.returncode == 1 and "UNAUTHORIZED" in bad.stderr and "wrong" not in bad.stderr
    assert not (cfg / "config.json").exists()
    ocibuild("login", tls_registry.host, "-u", "alice", "--password-stdin",
             stdin="s3cret-Pa55\n", env=env)
    config = json.loads((cfg / "config.json").read_text())
    assert config["auths"][tls_registry.host]["auth"] == "YWxpY2U6czNjcmV0LVBhNTU="
    assert (cfg / "config.json").stat().st_mode & 0o777 == 0o600
    # and the saved credentials are used
    ocibuild("copy", f"docker://{image}", f"docker://{tls_registry.host}/app:1", env=env)
    raw = ocibuild("inspect", "--raw", f"{tls_registry.host}/app:1", env=env).stdout
    assert Digest.of_bytes(raw.encode()) == Digest.of_bytes(skopeo_raw(f"docker://{image}"))


def test_login_token_registry(token_registry: RegistryServer, tmp_path: Path) -> None:
    env = {"DOCKER_CONFIG": str(tmp_path / "cfg"), "REGISTRY_AUTH_FILE": str(tmp_path / "n.json")}
    bad = ocibuild("login", token_registry.host, "-u", "bob", "--password-stdin",
                   stdin="nope\n", env=env, check=False)
    assert bad.returncode == 1 and "invalid username or password" in bad.stderr
    ocibuild("login", token_registry.host, "-u", "bob", "--password-stdin", stdin="bob-pw\n",
             env=env)
    # Like docker: the token server's refresh token is stored, not the password.
    entry = json.loads((tmp_path / "cfg" / "config.json").read_text())["auths"][
        token_registry.host]
    assert entry["identitytoken"] and "bob-pw" not in json.dumps(entry)
    assert token_registry.tokens is not None
    before = len(token_registry.tokens.requests)
    proc = ocibuild("inspect", f"{token_registry.host}/bob/nothing:1", env=env, check=False)
    assert "MANIFEST_UNKNOWN" in proc.stderr or "NAME_UNKNOWN" in proc.stderr
    assert any(r.grant == "refresh_token" and r.user == "bob"
               for r in token_registry.tokens.requests[before:])


def test_dest_compress_format_zstd(image: str, registry: RegistryServer, tmp_path: Path) -> None:
    import pyzstd

    ocibuild("copy", "--dest-compress-format", "zstd", f"docker://{image}",
             f"docker://{registry.host}/copy/zstd:1")
    original = json.loads(skopeo_raw(f"docker://{image}"))
    converted = json.loads(skopeo_raw(f"docker://{registry.host}/copy/zstd:1"))
    assert converted["config"]["digest"] == original["config"]["digest"]
    assert {x["mediaType"] for x in converted["layers"]} == {mt.OCI_LAYER_ZSTD}
    with RegistryClient() as client:
        ref = Reference.parse(f"{registry.host}/copy/zstd:1")
        manifest, config = client.resolve_image(ref, Platform.parse("linux/amd64"))
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
        for layer, diff_id in zip(manifest.layers, diff_ids, strict=True):
            data = client.fetch_blob_bytes(ref, layer, limit=10 << 20)
            assert str(Digest.of_bytes(pyzstd.decompress(data))) == diff_id
    archive = tmp_path / "z.tar"
    ocibuild("copy", "--dest-compress-format", "gzip", f"docker://{registry.host}/copy/zstd:1",
             f"oci-archive:{archive}")
    regz = json.loads(skopeo_raw(f"oci-archive:{archive}"))
    assert {x["mediaType"] for x in regz["layers"]} == {mt.OCI_LAYER_GZIP}
