"""``docker load`` accepts our docker archives, and we read what ``docker save`` writes.

Needs a dockerd: set ``ORACLE_DOCKER`` (the docker CLI) and ``DOCKER_HOST`` as
``../shared/tools/buildkit-oracle.sh`` prints them; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from ocibuild.output.layout import DockerArchive, DockerImage, open_layout, write_docker_archive
from ocibuild.reference import Reference
from ocibuild.store import BlobStore
from ocibuild.testing.images import random_image, validate_image

pytestmark = [pytest.mark.dockerd, pytest.mark.timeout(300)]


@pytest.fixture
def docker() -> list[str]:
    cli = os.environ.get("ORACLE_DOCKER")
    if not cli or not os.environ.get("DOCKER_HOST"):
        pytest.skip("no dockerd: run eval \"$(../shared/tools/buildkit-oracle.sh)\"")
    probe = subprocess.run([cli, "version"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"dockerd does not answer: {probe.stderr.decode()[-200:]}")
    return [cli]


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    s = BlobStore(tmp_path / "store")
    yield s
    s.close()


def run(argv: list[str]) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, f"{argv}: {out.stderr}"
    return out.stdout


@pytest.mark.parametrize(
    "compression, uncompressed", [("gzip", False), ("gzip", True), ("zstd", False), ("none", False)]
)
def test_docker_loads_our_archive_and_we_read_its_save(
    docker: list[str], store: BlobStore, tmp_path: Path, compression: str, uncompressed: bool
) -> None:
    image, manifest = random_image(store, seed=50, layers=2, compression=compression, oci=False)
    name = f"ocibuild-test-{uuid.uuid4().hex[:12]}:v1"
    dest = tmp_path / "load.tar"
    write_docker_archive(
        dest, [DockerImage(manifest.descriptor(), (Reference.parse(name),))], store,
        uncompressed=uncompressed,
    )
    try:
        assert f"Loaded image: {name}" in run([*docker, "load", "-i", str(dest)])
        info = json.loads(run([*docker, "image", "inspect", name]))[0]
        assert info["Id"] == str(image.config.digest)
        assert info["RootFS"]["Layers"] == [str(d) for d in image.config.diff_ids]
        assert info["Config"]["Env"] == image.config.env
        saved = tmp_path / "saved.tar"
        run([*docker, "save", "-o", str(saved), name])
    finally:
        subprocess.run([*docker, "rmi", "-f", name], capture_output=True, timeout=120)
    archive = DockerArchive(saved)
    chosen = archive.select(name)
    assert chosen.config_raw == image.config.to_bytes()
    validate_image(archive, chosen.manifest.digest)
    layout = open_layout(saved)  # docker 25+ also writes an OCI layout
    validate_image(layout, layout.resolve().digest)
