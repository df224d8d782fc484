"""Changing what ``copy`` writes: manifest flavour (``--format``) and layer compression
(``--dest-compress-format``). Everything else about a copy keeps bytes and digests."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from ocibuild import mediatypes as mt
from ocibuild.image import Descriptor, Index, Manifest
from ocibuild.output.layout import BlobSource
from ocibuild.registry.client import RegistryClient
from ocibuild.registry.transports import Loaded

if TYPE_CHECKING:
    from ocibuild.store import BlobStore


def convert(loaded: Loaded, fmt: str) -> Loaded:
    """Rewrite manifests (and the index) to ``fmt`` (``oci`` | ``v2s2``) media types. Blobs
    are untouched (config and layer bytes keep their digests); manifests that already have the
    wanted type keep their bytes."""
    oci = fmt == "oci"
    conv = mt.to_oci if oci else mt.to_docker

    def visit(d: Descriptor) -> Descriptor:
        parsed = loaded.parse(d)
        if isinstance(parsed, Index):
            children = [visit(c) if c.digest in loaded.manifests else c for c in parsed.manifests]
            want = mt.OCI_INDEX if oci else mt.DOCKER_MANIFEST_LIST
            if parsed.media_type == want and children == list(parsed.manifests):
                return d
            new: Manifest | Index = Index.build(children, media_type=want,
                                                annotations=dict(parsed.annotations) if oci else None)
        else:
            want = mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST
            if parsed.media_type == want:
                return d
            cfg = parsed.config
            layers = [Descriptor(conv(x.media_type), x.digest, x.size, None, x.annotations, x.urls)
                      for x in parsed.layers]
            new = Manifest.build(Descriptor(conv(cfg.media_type), cfg.digest, cfg.size), layers,
                                 media_type=want,
                                 annotations=dict(parsed.annotations) if oci else None)
        loaded.manifests[new.digest] = new.raw
        loaded.parsed[new.digest] = new
        return Descriptor(new.media_type, new.digest, new.size, d.platform, d.annotations)

    loaded.root = visit(loaded.root)
    return loaded


def recompress(loaded: Loaded, client: RegistryClient, store: BlobStore,
               want: str) -> Loaded:
    """Every layer in ``want`` compression (gzip | zstd), through ``store`` (a temporary
    ``BlobStore``): blobs are brought into it, recompressed layers written to it, manifests
    (and the index) rebuilt in their own flavour. Configs and diff ids do not change."""
    from ocibuild.image import Image, build_manifest_value
    from ocibuild.output.recompress import recompress_image

    leaves = loaded.leaf_blobs()
    if loaded.blobs is None:
        assert loaded.registry_ref is not None
        client.fetch_all(loaded.registry_ref, leaves, store)
    else:
        for d in leaves:
            if not store.has(d.digest):
                with loaded.blobs.open(d.digest) as f:
                    store.put_stream(f, d.digest, d.size)

    def visit(d: Descriptor) -> Descriptor:
        parsed = loaded.parse(d)
        if isinstance(parsed, Index):
            children = [visit(c) if c.digest in loaded.manifests else c for c in parsed.manifests]
            new: Manifest | Index = Index.build(children, media_type=parsed.media_type,
                                                annotations=dict(parsed.annotations) or None)
        else:
            image = Image.from_manifest(parsed, store.get_bytes(parsed.config.digest))
            new = build_manifest_value(recompress_image(image, store, want, None),
                                       oci=parsed.is_oci)
        if new.digest == d.digest:
            return d
        loaded.manifests[new.digest] = new.raw
        loaded.parsed[new.digest] = new
        return Descriptor(new.media_type, new.digest, new.size, d.platform, d.annotations)

    loaded.root = visit(loaded.root)
    loaded.blobs = cast(BlobSource, store)  # its open() is a verifying binary stream
    loaded.registry_ref = None  # blobs now come from the store
    return loaded
