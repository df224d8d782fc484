"""``--platform a,b``: one image per platform behind an index, as buildx writes it (the
cross-compilation shape: a ``--platform=$BUILDPLATFORM`` stage feeding per-platform stages)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocibuild import cli
from ocibuild.errors import OcibuildError
from ocibuild.executor.build import BuildOptions, build
from ocibuild.reference import Reference
from ocibuild.registry.client import RegistryClient

pytestmark = [pytest.mark.rootless, pytest.mark.chroot]

CROSS = """\
FROM --platform=$BUILDPLATFORM scratch AS build
ARG TARGETARCH
COPY app.txt /out/app-$TARGETARCH
FROM scratch
ARG TARGETARCH
COPY --from=build /out/app-$TARGETARCH /app
LABEL arch=$TARGETARCH
"""


@pytest.fixture
def cross(tmp_path: Path) -> Path:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "app.txt").write_text("binary\n")
    (tmp_path / "Dockerfile").write_text(CROSS)
    return tmp_path


def _build(tmp: Path, isolation: str, *outputs: str, **extra: object) -> object:
    return build(BuildOptions(context=str(tmp / "ctx"), dockerfile=str(tmp / "Dockerfile"),
                              platform="linux/amd64,linux/arm64/v8", outputs=outputs,
                              progress="quiet", store_root=tmp / "store", isolation=isolation,
                              **extra))  # type: ignore[arg-type]


def _blob(layout: Path, digest: str) -> dict:  # type: ignore[type-arg]
    return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())


def test_oci_output_is_an_index_of_one_image_per_platform(cross: Path, isolation: str) -> None:
    out = cross / "layout"
    result = _build(cross, isolation, f"type=oci,dest={out},tar=false",
                    metadata_file=str(cross / "meta.json"))
    (entry,) = json.loads((out / "index.json").read_text())["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.index.v1+json"
    index = _blob(out, entry["digest"])
    platforms = [m["platform"] for m in index["manifests"]]
    assert platforms == [{"architecture": "amd64", "os": "linux"},
                         {"architecture": "arm64", "os": "linux"}]  # v8 is arm64's default
    for m, arch in zip(index["manifests"], ("amd64", "arm64"), strict=True):
        manifest = _blob(out, m["digest"])
        config = _blob(out, manifest["config"]["digest"])
        assert config["architecture"] == arch and config["os"] == "linux"
        assert config["config"]["Labels"] == {"arch": arch}
        assert len(manifest["layers"]) == 1
    meta = json.loads((cross / "meta.json").read_text())
    assert meta["containerimage.digest"] == entry["digest"] == str(result.manifest_digest)  # type: ignore[attr-defined]


def test_push_puts_the_index_under_the_tag(cross: Path, isolation: str, registry) -> None:  # type: ignore[no-untyped-def]
    ref = f"{registry.host}/multi/app:1"
    _build(cross, isolation, f"type=image,name={ref},push=true")
    with RegistryClient(insecure_hosts=[registry.host]) as client:
        index = client.fetch_manifest(Reference.parse(ref))
        assert index.media_type == "application/vnd.oci.image.index.v1+json"
        archs = []
        for d in index.manifests:  # type: ignore[union-attr]
            child = client.fetch_manifest(Reference.parse(ref).with_digest(d.digest))
            assert child.digest == d.digest
            archs.append(d.platform.architecture)  # type: ignore[union-attr]
        assert archs == ["amd64", "arm64"]


def test_local_output_has_a_directory_per_platform(cross: Path, isolation: str) -> None:
    out = cross / "fs"
    _build(cross, isolation, f"type=local,dest={out}")
    assert sorted(p.name for p in out.iterdir()) == ["linux_amd64", "linux_arm64"]
    assert (out / "linux_arm64" / "app").read_text() == "binary\n"


def test_docker_output_is_refused_before_building(cross: Path, isolation: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(OcibuildError, match="does not currently support exporting manifest"):
        _build(cross, isolation, f"type=docker,dest={cross / 'img.tar'}")
    assert not (cross / "img.tar").exists() and not (cross / "store").exists()
    code = cli.main(["-f", str(cross / "Dockerfile"), "--platform", "linux/amd64,linux/arm64",
                     "--output", f"type=docker,dest={cross / 'img.tar'}", str(cross / "ctx")])
    assert code != 0 and "manifest lists" in capsys.readouterr().err


@pytest.mark.parametrize(("dockerfile", "platform", "arch", "variant"), [
    ("FROM {reg}/busybox:latest\nENV A=1\n", "linux/amd64/v2", "amd64", "v2"),
    ("FROM --platform=linux/amd64 {reg}/busybox:latest\nENV A=1\n", "linux/arm64", "arm64", None),
    ("FROM --platform=linux/arm64 scratch\nENV A=1\n", None, "", None),
])
def test_the_image_has_the_target_platform_whatever_its_base_says(
        e2e_registry, tmp_path: Path, isolation: str, dockerfile: str,  # type: ignore[no-untyped-def]
        platform: str | None, arch: str, variant: str | None) -> None:
    """BuildKit stamps the target platform (--platform, else the host's) on the image: over
    a base whose config names another, with the variant the target names."""
    from ocibuild.image.platform import host_platform

    (tmp_path / "ctx").mkdir()
    (tmp_path / "Dockerfile").write_text(dockerfile.format(reg=e2e_registry.host))
    out = tmp_path / "layout"
    build(BuildOptions(context=str(tmp_path / "ctx"), dockerfile=str(tmp_path / "Dockerfile"),
                       platform=platform, outputs=(f"type=oci,dest={out},tar=false",),
                       progress="quiet", store_root=tmp_path / "store", isolation=isolation,
                       insecure_registries=(e2e_registry.host,)))
    (entry,) = json.loads((out / "index.json").read_text())["manifests"]
    config = _blob(out, _blob(out, entry["digest"])["config"]["digest"])
    assert (config["os"], config["architecture"], config.get("variant")) == (
        "linux", arch or host_platform().architecture, variant)
    assert entry["platform"].get("variant") == variant
