"""Putting image metadata (config, manifest, index bytes) into the store and reading it back.

Layers are expected to be in the store already (written by the layer writer or a pull).
"""

from __future__ import annotations

from collections.abc import Mapping

from ocibuild.digest import Digest
from ocibuild.errors import ContentError
from ocibuild.image import Image, Index, Manifest, build_manifest_value, parse_manifest
from ocibuild.image.manifest import MAX_MANIFEST_SIZE
from ocibuild.store.blobs import BlobStore


def put_image(
    store: BlobStore,
    image: Image,
    *,
    oci: bool = True,
    annotations: Mapping[str, str] | None = None,
) -> Manifest:
    """Write ``image``'s config and manifest into ``store``; returns the manifest (its
    ``descriptor(platform=image.platform)`` is what an index or layout entry needs).

    Raises ContentError when a layer blob is missing from the store.
    """
    for layer in image.layers:
        if not store.has(layer.digest):
            raise ContentError(f"image layer {layer.digest} is not in the store {store.root}")
    store.put_bytes(image.config.to_bytes())
    manifest = build_manifest_value(image, oci=oci, annotations=annotations)
    store.put_bytes(manifest.raw)
    return manifest


def record_image(store: BlobStore, name: str, image: Image) -> Digest:
    """Keep ``image`` in the store under ``name`` (a pulled reference, a built tag): its
    manifest (as received when it has one, else a new OCI one) and config are stored and the
    manifest becomes a gc root, so ``prune`` keeps its layers and their snapshots. Returns the
    manifest digest. Layers may still be missing (gc keeps whatever of them is present)."""
    store.put_bytes(image.config.to_bytes())
    manifest = image.manifest or build_manifest_value(image, oci=True)
    store.put_bytes(manifest.raw)
    store.add_root(name, manifest.digest)
    return manifest.digest


def read_manifest(store: BlobStore, digest: Digest, media_type: str | None = None) -> Manifest | Index:
    """Parse a stored manifest or index, verified against ``digest``."""
    return parse_manifest(store.get_bytes(digest, MAX_MANIFEST_SIZE), media_type)


def read_image(store: BlobStore, manifest_digest: Digest) -> Image:
    """The ``Image`` of a stored manifest (config parsed from the store; layers not checked)."""
    manifest = read_manifest(store, manifest_digest)
    if not isinstance(manifest, Manifest):
        raise ContentError(f"{manifest_digest} is an index, not an image manifest")
    return Image.from_manifest(manifest, store.get_bytes(manifest.config.digest))
