"""Manifests and indexes: bytes kept as received, every media type, errors, our serialisation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import ContentError
from ocibuild.image import Descriptor, Index, Manifest, Platform, parse_manifest
from ocibuild.image._json import go_json

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def oci_manifest(**extra: object) -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": D1, "size": 10},
        "layers": [
            {"mediaType": mt.OCI_LAYER_GZIP, "digest": D2, "size": 20},
            {"mediaType": mt.OCI_LAYER_ZSTD, "digest": D3, "size": 30, "annotations": {"a": "b"}},
        ],
        **extra,
    }


def test_raw_bytes_are_kept_and_digest_is_of_them() -> None:
    # Odd but valid formatting: a re-serialisation would change the digest.
    raw = b'{ "layers":[ ], "schemaVersion" : 2,\n"config":{"size":10,"digest":"' + D1.encode() + b'","mediaType":"' + mt.DOCKER_CONFIG.encode() + b'"},"mediaType":"' + mt.DOCKER_MANIFEST.encode() + b'"}\n'
    m = parse_manifest(raw)
    assert isinstance(m, Manifest)
    assert m.raw == raw
    assert m.digest == Digest.of_bytes(raw)
    assert m.media_type == mt.DOCKER_MANIFEST
    assert m.config.media_type == mt.DOCKER_CONFIG and m.layers == ()
    assert m.descriptor().size == len(raw)


@pytest.mark.parametrize(
    "obj, content_type, kind, want",
    [
        (oci_manifest(), None, Manifest, mt.OCI_MANIFEST),
        ({**oci_manifest(), "mediaType": mt.DOCKER_MANIFEST}, None, Manifest, mt.DOCKER_MANIFEST),
        ({k: v for k, v in oci_manifest().items() if k != "mediaType"}, None, Manifest, mt.OCI_MANIFEST),
        ({k: v for k, v in oci_manifest().items() if k != "mediaType"}, mt.DOCKER_MANIFEST, Manifest, mt.DOCKER_MANIFEST),
        ({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}, None, Index, mt.OCI_INDEX),
        ({"schemaVersion": 2, "mediaType": mt.DOCKER_MANIFEST_LIST, "manifests": []}, None, Index, mt.DOCKER_MANIFEST_LIST),
        ({"schemaVersion": 2, "manifests": []}, None, Index, mt.OCI_INDEX),
        ({"schemaVersion": 2, "manifests": []}, mt.OCI_INDEX + "; charset=utf-8", Index, mt.OCI_INDEX),
    ],
)
def test_all_four_media_types(obj: dict, content_type: str | None, kind: type, want: str) -> None:
    parsed = parse_manifest(json.dumps(obj).encode(), content_type)
    assert isinstance(parsed, kind)
    assert parsed.media_type == want


def test_descriptor_fields() -> None:
    m = Manifest.parse(json.dumps(oci_manifest(annotations={"k": "v"})).encode())
    assert [d.size for d in m.layers] == [20, 30]
    assert dict(m.layers[1].annotations) == {"a": "b"}
    assert dict(m.annotations) == {"k": "v"}
    assert m.config.digest == Digest.parse(D1)


def test_index_platforms_and_select() -> None:
    entries = [
        {"mediaType": mt.OCI_MANIFEST, "digest": D1, "size": 1, "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": mt.OCI_MANIFEST, "digest": D2, "size": 2, "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
        {"mediaType": mt.OCI_MANIFEST, "digest": D3, "size": 3, "platform": {"architecture": "unknown", "os": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
    ]
    idx = Index.parse(json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}).encode())
    assert [str(p) for p in idx.platforms()] == ["linux/amd64", "linux/arm64/v8", "unknown/unknown"]
    chosen = idx.select(Platform.parse("linux/arm64"))
    assert chosen is not None and chosen.digest == Digest.parse(D2)
    assert idx.select(Platform.parse("linux/s390x")) is None


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"not json", "invalid JSON"),
        (b"[1]", "want a JSON object"),
        (json.dumps({"schemaVersion": 1, "name": "x"}).encode(), "schema 1"),
        (json.dumps({"schemaVersion": 2, "mediaType": "text/plain"}).encode(), "unsupported manifest media type"),
        (json.dumps({**oci_manifest(), "schemaVersion": 3}).encode(), "schemaVersion 3"),
        (json.dumps({**oci_manifest(), "layers": [{"mediaType": mt.OCI_LAYER, "digest": "sha256:xyz", "size": 1}]}).encode(), "layers[0]: invalid digest"),
        (json.dumps({**oci_manifest(), "layers": [{"mediaType": mt.OCI_LAYER, "digest": D1, "size": -1}]}).encode(), "layers[0]: invalid size"),
        (json.dumps({**oci_manifest(), "layers": [{"mediaType": mt.OCI_LAYER, "digest": D1}]}).encode(), "layers[0]: missing field 'size'"),
        (json.dumps({**oci_manifest(), "config": None}).encode(), "config: want an object"),
        (json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": {}}).encode(), "manifests is not a list"),
        (b"{" + b" " * (4 << 20) + b"}", "larger than"),
    ],
)
def test_hostile_manifests_are_refused_clearly(raw: bytes, fragment: str) -> None:
    with pytest.raises(ContentError) as info:
        parse_manifest(raw)
    assert fragment in str(info.value)
    assert str(Digest.of_bytes(raw)) in str(info.value)


def test_manifest_parse_refuses_index_and_vice_versa() -> None:
    with pytest.raises(ContentError, match="is an index"):
        Manifest.parse(json.dumps({"schemaVersion": 2, "manifests": []}).encode())
    with pytest.raises(ContentError, match="is not an index"):
        Index.parse(json.dumps(oci_manifest()).encode())


def test_build_serialises_like_buildkit() -> None:
    config = Descriptor(mt.OCI_CONFIG, Digest.parse(D1), 10)
    layer = Descriptor.of(mt.OCI_LAYER_GZIP, Digest.parse(D2), 20, annotations={"z": "1", "a": "2"})
    m = Manifest.build(config, [layer], annotations={"b": "x", "a": "y"})
    want = (
        '{\n  "schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.manifest.v1+json",\n'
        '  "config": {\n    "mediaType": "application/vnd.oci.image.config.v1+json",\n'
        f'    "digest": "{D1}",\n    "size": 10\n  }},\n'
        '  "layers": [\n    {\n      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",\n'
        f'      "digest": "{D2}",\n      "size": 20,\n'
        '      "annotations": {\n        "a": "2",\n        "z": "1"\n      }\n    }\n  ],\n'
        '  "annotations": {\n    "a": "y",\n    "b": "x"\n  }\n}'
    )
    assert m.raw.decode() == want
    assert Manifest.build(config, [layer], annotations={"a": "y", "b": "x"}).raw == m.raw
    idx = Index.build([m.descriptor(platform=Platform.parse("linux/arm/v7"))])
    assert json.loads(idx.raw)["manifests"][0]["platform"] == {"architecture": "arm", "os": "linux", "variant": "v7"}
    assert Index.build([]).raw == b'{\n  "schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.index.v1+json",\n  "manifests": []\n}'


def test_go_json_escapes_like_go() -> None:
    assert go_json({"a": "<&>\u2028\u2029\x00\x08\x0c\n\r\t\"\\é€\x7f"}) == (
        '{"a":"\\u003c\\u0026\\u003e\\u2028\\u2029\\u0000\\u0008\\u000c\\n\\r\\t\\"\\\\é€\x7f"}'
    ).encode()
    assert go_json({"b": [], "c": {}, "d": None, "e": True, "f": 1.0, "g": 2.5}) == b'{"b":[],"c":{},"d":null,"e":true,"f":1,"g":2.5}'
    assert go_json([1, {"x": []}], indent="  ") == b'[\n  1,\n  {\n    "x": []\n  }\n]'


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(value=json_values)
@settings(max_examples=200, deadline=None)
def test_go_json_is_json(value: object) -> None:
    assert json.loads(go_json(value)) == value
    assert json.loads(go_json(value, indent="  ")) == value


@given(
    ws=st.sampled_from([b"", b" ", b"\n", b"\t  "]),
    annotations=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
    layers=st.integers(0, 4),
    key_order=st.permutations(["schemaVersion", "mediaType", "config", "layers", "annotations"]),
)
@settings(max_examples=100, deadline=None)
def test_manifest_digest_law(ws: bytes, annotations: dict, layers: int, key_order: list[str]) -> None:
    """Parsing any encoding keeps the bytes; the digest is always that of the bytes; parsing
    the raw bytes again gives the same value."""
    full = oci_manifest(annotations=annotations)
    full["layers"] = full["layers"][:1] * layers
    obj = {k: full[k] for k in key_order}
    raw = ws + json.dumps(obj, ensure_ascii=bool(layers % 2)).encode() + ws
    m = Manifest.parse(raw)
    assert m.raw == raw and m.digest == Digest.of_bytes(raw)
    assert Manifest.parse(m.raw) == m
    assert dict(m.annotations) == annotations
    assert len(m.layers) == layers
