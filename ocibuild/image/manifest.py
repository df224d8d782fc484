"""Image manifests and indexes (OCI and Docker v2 schema 2), parsed from and kept as bytes.

A manifest's identity is the digest of the exact bytes received: ``Manifest.raw`` is never
re-serialised. New manifests are built with ``Manifest.build``/``Index.build``, which serialise
like BuildKit (Go's ``json.MarshalIndent`` with two spaces, Go struct field order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import ContentError
from ocibuild.image._json import go_json, load_object
from ocibuild.image.descriptor import Descriptor
from ocibuild.image.platform import Platform

#: The distribution spec lets registries refuse larger manifests; we refuse to parse them.
MAX_MANIFEST_SIZE = 4 << 20


@dataclass(frozen=True)
class Manifest:
    """An image manifest: one config and its layers, oldest layer first."""

    raw: bytes
    media_type: str
    digest: Digest
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: tuple[tuple[str, str], ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def is_oci(self) -> bool:
        return self.media_type == mt.OCI_MANIFEST

    def descriptor(
        self, *, platform: Platform | None = None, annotations: Mapping[str, str] | None = None
    ) -> Descriptor:
        """A descriptor pointing at these bytes."""
        return Descriptor.of(
            self.media_type, self.digest, self.size, platform=platform, annotations=annotations
        )

    @classmethod
    def parse(cls, raw: bytes, media_type: str | None = None) -> Manifest:
        """Parse an image manifest; ``media_type`` is the HTTP Content-Type, used only when the
        JSON has no ``mediaType``. ContentError for anything else, including indexes."""
        parsed = parse_manifest(raw, media_type)
        if not isinstance(parsed, Manifest):
            raise ContentError(f"manifest {parsed.digest}: is an index ({parsed.media_type})")
        return parsed

    @classmethod
    def build(
        cls,
        config: Descriptor,
        layers: Sequence[Descriptor],
        *,
        media_type: str = mt.OCI_MANIFEST,
        annotations: Mapping[str, str] | None = None,
        subject: Descriptor | None = None,
        artifact_type: str | None = None,
    ) -> Manifest:
        """Serialise a new manifest deterministically and return it parsed."""
        if media_type not in mt.IMAGE_MANIFESTS:
            raise ValueError(f"not an image manifest media type: {media_type}")
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
        if artifact_type:
            obj["artifactType"] = artifact_type
        obj["config"] = config.to_json()
        obj["layers"] = [d.to_json() for d in layers]
        if subject is not None:
            obj["subject"] = subject.to_json()
        if annotations:
            obj["annotations"] = dict(sorted(annotations.items()))
        return cls.parse(go_json(obj, indent="  "))


@dataclass(frozen=True)
class Index:
    """An OCI image index or Docker manifest list."""

    raw: bytes
    media_type: str
    digest: Digest
    manifests: tuple[Descriptor, ...]
    annotations: tuple[tuple[str, str], ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None

    @property
    def size(self) -> int:
        return len(self.raw)

    def descriptor(self, *, annotations: Mapping[str, str] | None = None) -> Descriptor:
        return Descriptor.of(self.media_type, self.digest, self.size, annotations=annotations)

    def select(self, platform: Platform) -> Descriptor | None:
        """The manifest for ``platform`` (exact variant first, then the best lower one);
        entries without a platform (attestations, unknown) are never chosen."""
        candidates = (
            (d.platform, d)
            for d in self.manifests
            if d.media_type in mt.MANIFESTS or not d.media_type
        )
        return platform.select(candidates)

    def platforms(self) -> list[Platform]:
        """Every platform listed, in index order (attestation entries ``unknown/unknown`` kept)."""
        return [d.platform for d in self.manifests if d.platform is not None]

    @classmethod
    def parse(cls, raw: bytes, media_type: str | None = None) -> Index:
        parsed = parse_manifest(raw, media_type)
        if not isinstance(parsed, Index):
            raise ContentError(f"manifest {parsed.digest}: is not an index ({parsed.media_type})")
        return parsed

    @classmethod
    def build(
        cls,
        manifests: Iterable[Descriptor],
        *,
        media_type: str = mt.OCI_INDEX,
        annotations: Mapping[str, str] | None = None,
    ) -> Index:
        """Serialise a new index deterministically (BuildKit's layout) and return it parsed."""
        if media_type not in mt.INDEXES:
            raise ValueError(f"not an index media type: {media_type}")
        obj: dict[str, Any] = {"schemaVersion": 2, "mediaType": media_type}
        obj["manifests"] = [d.to_json() for d in manifests]
        if annotations:
            obj["annotations"] = dict(sorted(annotations.items()))
        return cls.parse(go_json(obj, indent="  "))


def parse_manifest(raw: bytes, media_type: str | None = None) -> Manifest | Index:
    """Parse manifest or index bytes as received; the digest is that of ``raw`` itself.

    The JSON ``mediaType`` wins over ``media_type`` (a Content-Type header) when both exist;
    without either the shape decides (OCI allows omitting ``mediaType``). Schema 1 and other
    kinds are refused with ContentError.
    """
    digest = Digest.of_bytes(raw)
    what = f"manifest {digest}"
    if len(raw) > MAX_MANIFEST_SIZE:
        raise ContentError(f"{what}: {len(raw)} bytes is larger than {MAX_MANIFEST_SIZE}")
    obj = load_object(raw, what)
    declared = obj.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ContentError(f"{what}: mediaType is not a string")
    kind = declared or (media_type or "").split(";")[0].strip()
    if obj.get("schemaVersion") == 1 or kind in (mt.DOCKER_MANIFEST_V1, mt.DOCKER_MANIFEST_V1_SIGNED):
        raise ContentError(f"{what}: Docker schema 1 manifests are not supported")
    if kind not in mt.MANIFESTS:
        if "manifests" in obj and "config" not in obj:
            kind = mt.OCI_INDEX
        elif "config" in obj:
            kind = mt.OCI_MANIFEST
        else:
            raise ContentError(f"{what}: unsupported manifest media type {kind!r}")
    if obj.get("schemaVersion") != 2:
        raise ContentError(f"{what}: schemaVersion {obj.get('schemaVersion')!r}, want 2")
    annotations = obj.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        raise ContentError(f"{what}: annotations is not an object")
    ann = tuple(sorted((str(k), str(v)) for k, v in annotations.items()))
    subject = (
        Descriptor.from_json(obj["subject"], f"{what} subject") if obj.get("subject") else None
    )
    artifact_type = obj.get("artifactType")
    if kind in mt.INDEXES:
        entries = obj.get("manifests")
        if not isinstance(entries, list):
            raise ContentError(f"{what}: manifests is not a list")
        manifests = tuple(
            Descriptor.from_json(d, f"{what} manifests[{i}]") for i, d in enumerate(entries)
        )
        return Index(raw, kind, digest, manifests, ann, subject, artifact_type)
    layers_json = obj.get("layers")
    if layers_json is None:
        layers_json = []
    if not isinstance(layers_json, list):
        raise ContentError(f"{what}: layers is not a list")
    if "config" not in obj:
        raise ContentError(f"{what}: missing config")
    config = Descriptor.from_json(obj["config"], f"{what} config")
    layers = tuple(Descriptor.from_json(d, f"{what} layers[{i}]") for i, d in enumerate(layers_json))
    return Manifest(raw, kind, digest, config, layers, ann, subject, artifact_type)
