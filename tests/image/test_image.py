"""Image values: append, empty-layer history, invariants, manifests in both flavours."""

from __future__ import annotations

import hashlib
import json

import pytest

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import ContentError
from ocibuild.image import (
    Descriptor,
    History,
    Image,
    Layer,
    Manifest,
    Platform,
    append,
    build_manifest,
    chain_ids,
    config_descriptor,
    normalize_history,
)


def layer(n: int, media_type: str = mt.OCI_LAYER_GZIP) -> Layer:
    return Layer(
        Descriptor(media_type, Digest.of_bytes(b"blob%d" % n), 100 + n),
        Digest.of_bytes(b"tar%d" % n),
    )


def test_append_derives_and_keeps_invariants() -> None:
    base = Image.empty(Platform.parse("linux/amd64"))
    one = append(base, layer(1), History(created_by="COPY a /"))
    two = append(one, None, History(created_by="ENV A=1", empty_layer=False))
    three = append(two, layer(2), History(created_by="RUN x", empty_layer=True))
    assert base.layers == () and one.layers == (layer(1),)  # nothing mutated
    assert three.layers == (layer(1), layer(2))
    assert three.config.diff_ids == (layer(1).diff_id, layer(2).diff_id)
    assert [h.empty_layer for h in three.history] == [False, True, False]  # forced by layer=None
    assert [h.created_by for h in three.history] == ["COPY a /", "ENV A=1", "RUN x"]


def test_short_history_is_normalised_like_buildkits_exporter() -> None:
    base = Image.empty(Platform.parse("linux/amd64"))
    cfg = base.config.with_diff_ids([layer(1).diff_id, layer(2).diff_id])
    no_history = Image(cfg, (layer(1), layer(2)))  # real base images may lack history
    out = append(no_history, None, History(created_by="CMD x"))
    assert [h.created_by for h in out.history] == ["CMD x"]
    fixed = normalize_history(out)
    assert [(h.created_by, h.comment, h.empty_layer) for h in fixed.history] == [
        ("CMD x", None, True),
        (None, "buildkit.exporter.image.v0", False),
        (None, "buildkit.exporter.image.v0", False),
    ]
    assert normalize_history(fixed) is fixed


def test_long_history_is_normalised_from_the_bottom() -> None:
    one = append(Image.empty(Platform.parse("linux/amd64")), layer(1), History(created_by="a"))
    too_many = one.with_config(one.config.with_history([History(created_by="a"), History(created_by="b"), History(created_by="c", empty_layer=True)]))
    fixed = normalize_history(too_many)
    assert [(h.created_by, h.empty_layer) for h in fixed.history] == [("a", False), ("b", True), ("c", True)]


def test_diff_ids_must_match_layers() -> None:
    base = Image.empty(Platform.parse("linux/amd64"))
    with pytest.raises(ContentError, match="do not match"):
        Image(base.config, (layer(1),))


def test_manifest_flavours() -> None:
    img = append(Image.empty(Platform.parse("linux/amd64")), layer(1), History(created_by="x"))
    img = append(img, layer(2, mt.OCI_LAYER_ZSTD), History(created_by="y"))
    oci = Manifest.parse(build_manifest(img))
    docker = Manifest.parse(build_manifest(img, oci=False))
    assert oci.media_type == mt.OCI_MANIFEST and docker.media_type == mt.DOCKER_MANIFEST
    assert oci.config == config_descriptor(img)
    assert docker.config.media_type == mt.DOCKER_CONFIG
    assert [d.media_type for d in oci.layers] == [mt.OCI_LAYER_GZIP, mt.OCI_LAYER_ZSTD]
    assert [d.media_type for d in docker.layers] == [mt.DOCKER_LAYER_GZIP, mt.OCI_LAYER_ZSTD]
    assert oci.config.digest == Digest.of_bytes(img.config.to_bytes())
    assert build_manifest(img) == build_manifest(img)  # deterministic
    ann = json.loads(build_manifest(img, annotations={"k": "v"}))["annotations"]
    assert ann == {"k": "v"}


def test_from_manifest_round_trip_keeps_manifest() -> None:
    img = append(Image.empty(Platform.parse("linux/arm64")), layer(1), History(created_by="x"))
    m = Manifest.parse(build_manifest(img, oci=False))
    back = Image.from_manifest(m, img.config.to_bytes())
    assert back.layers[0].diff_id == layer(1).diff_id
    assert back.layers[0].media_type == mt.DOCKER_LAYER_GZIP
    assert build_manifest(back, oci=False) == m.raw  # unchanged image: same manifest bytes
    assert back.manifest is m
    assert append(back, None, History()).manifest is None
    with pytest.raises(ContentError, match="config bytes do not match"):
        Image.from_manifest(m, b"{}")


def test_chain_ids() -> None:
    a, b, c = (Digest.of_bytes(x) for x in (b"a", b"b", b"c"))
    ab = hashlib.sha256(f"{a} {b}".encode()).hexdigest()
    abc = hashlib.sha256(f"sha256:{ab} {c}".encode()).hexdigest()
    assert chain_ids([a, b, c]) == [a, Digest("sha256", ab), Digest("sha256", abc)]
    assert chain_ids([]) == []
