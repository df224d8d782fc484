"""Sources for ``copy`` and ``inspect``: skopeo-style transports (``docker://REF``,
``oci:DIR[:TAG]``, ``oci-archive:PATH[:TAG]``, ``docker-archive:PATH[:REF]``) and ``Loaded``,
an image graph read from one of them (root descriptor, every manifest's bytes, a blob source).

A copy is byte for byte: the same manifest (and index) bytes, so the same digest, unless a
conversion is asked for (``ocibuild.registry.convert``). An index is copied whole, every
platform (like ``skopeo copy --all``; ``--all`` is accepted and changes nothing);
``--platform`` copies only that platform's image manifest. ``docker-archive:`` holds one image,
so an index source is narrowed to ``--platform`` or the host's platform. Writing is in
``ocibuild.registry.copying``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import RegistryError, UsageError
from ocibuild.image import Descriptor, Index, Manifest, Platform, parse_manifest
from ocibuild.output import layout
from ocibuild.reference import Reference
from ocibuild.registry.client import RegistryClient

Kind = Literal["docker", "oci", "oci-archive", "docker-archive"]
KINDS: tuple[Kind, ...] = ("docker", "oci", "oci-archive", "docker-archive")


@dataclass(frozen=True)
class Endpoint:
    """A parsed transport argument."""

    kind: Kind
    ref: Reference | None = None  # docker://
    path: Path | None = None  # the file transports
    name: str | None = None  # oci TAG, docker-archive REF

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        kind, sep, rest = text.partition(":")
        if not sep or kind not in KINDS:
            raise UsageError(f"invalid transport {text!r}: want docker://REF, oci:DIR[:TAG], "
                             "oci-archive:PATH[:TAG] or docker-archive:PATH[:REF]")
        if kind == "docker":
            if not rest.startswith("//"):
                raise UsageError(f"invalid transport {text!r}: want docker://REF")
            return cls("docker", ref=Reference.parse(rest[2:]))
        if kind == "docker-archive":
            path, _, name = rest.partition(":")
            return cls(kind, path=Path(path), name=name or None)
        path, _, name = rest.rpartition(":")
        if not path or "/" in name:
            path, name = rest, ""
        if not path:
            raise UsageError(f"invalid transport {text!r}: missing path")
        return cls(kind, path=Path(path), name=name or None)

    def __str__(self) -> str:
        if self.kind == "docker":
            return f"docker://{self.ref}"
        return f"{self.kind}:{self.path}" + (f":{self.name}" if self.name else "")


class Overlay:
    """A blob source serving in-memory manifests before an underlying source."""

    def __init__(self, manifests: dict[Digest, bytes], inner: layout.BlobSource) -> None:
        self.manifests = manifests
        self.inner = inner

    def open(self, digest: Digest) -> BinaryIO:
        if digest in self.manifests:
            return io.BytesIO(self.manifests[digest])
        return self.inner.open(digest)


@dataclass
class Loaded:
    """A source image graph: the root descriptor, every manifest's bytes, and the blobs."""

    root: Descriptor
    manifests: dict[Digest, bytes]
    blobs: layout.BlobSource | None  # None for a registry source (streamed or spooled)
    registry_ref: Reference | None = None
    parsed: dict[Digest, Manifest | Index] = field(default_factory=dict)

    def parse(self, d: Descriptor) -> Manifest | Index:
        if d.digest not in self.parsed:
            self.parsed[d.digest] = parse_manifest(self.manifests[d.digest], d.media_type or None)
        return self.parsed[d.digest]

    def images(self) -> list[Manifest]:
        """Every image manifest under the root (the root itself when it is one)."""
        root = self.parse(self.root)
        if isinstance(root, Manifest):
            return [root]
        out = []
        for child in root.manifests:
            parsed = self.parse(child)
            if isinstance(parsed, Manifest):
                out.append(parsed)
        return out

    def leaf_blobs(self) -> list[Descriptor]:
        """Configs and layers of every image, each once."""
        seen: dict[Digest, Descriptor] = {}
        for m in self.images():
            for d in (m.config, *m.layers):
                seen.setdefault(d.digest, d)
        return list(seen.values())


def load(ep: Endpoint, client: RegistryClient) -> Loaded:
    """Read the source's root manifest and every child manifest (never layers)."""
    if ep.kind == "docker":
        assert ep.ref is not None
        raw, media_type, digest = client.get_manifest(ep.ref)
        loaded = Loaded(Descriptor(media_type, digest, len(raw)), {digest: raw}, None, ep.ref)
        root = loaded.parse(loaded.root)
        if isinstance(root, Index):
            for child in root.manifests:
                if child.media_type in mt.MANIFESTS and child.digest not in loaded.manifests:
                    craw, _, cdig = client.get_manifest(ep.ref.with_digest(child.digest),
                                                        action=f"pull {ep.ref}")
                    loaded.manifests[cdig] = craw
        return loaded
    assert ep.path is not None
    if ep.kind == "docker-archive":
        archive = layout.DockerArchive(ep.path)
        image = archive.select(ep.name)
        d = image.manifest.descriptor()
        return Loaded(d, {d.digest: image.manifest.raw}, archive)
    oci = layout.open_layout(ep.path)
    d = oci.resolve(ep.name)
    loaded = Loaded(d, {d.digest: oci.get_bytes(d.digest)}, oci)
    root = loaded.parse(d)
    if isinstance(root, Index):
        for child in root.manifests:
            if child.media_type in mt.MANIFESTS and oci.has(child.digest):
                loaded.manifests[child.digest] = oci.get_bytes(child.digest)
    return loaded


def narrow(loaded: Loaded, platform: Platform, what: str) -> Loaded:
    """The source narrowed to one platform's image when its root is an index."""
    root = loaded.parse(loaded.root)
    if isinstance(root, Manifest):
        return loaded
    chosen = root.select(platform)
    if chosen is None:
        have = ", ".join(str(p) for p in root.platforms()) or "none"
        raise RegistryError(f"{what}: no image for platform {platform} (the index has: {have})")
    if chosen.digest not in loaded.manifests:
        raise RegistryError(f"{what}: index entry {chosen.digest} is not in the source")
    loaded.root = Descriptor(chosen.media_type, chosen.digest, chosen.size)
    return loaded
