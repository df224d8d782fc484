"""Loading one image from an OCI layout into the store (``FROM`` / named contexts on layouts)."""

from __future__ import annotations

from pathlib import Path

from ocibuild.digest import Digest
from ocibuild.errors import ContentError, OcibuildError, OutputError
from ocibuild.image import Descriptor, Image, Index, Manifest, Platform, parse_manifest
from ocibuild.image.manifest import MAX_MANIFEST_SIZE
from ocibuild.output._layout_read import OciLayout
from ocibuild.store.blobs import BlobStore


def _pick(layout: OciLayout, selector: str | None) -> Descriptor:
    if selector is not None and selector.startswith(("sha256:", "sha512:")):
        digest = Digest.parse(selector)
        for d in layout.index.manifests:
            if d.digest == digest:
                return d
        if not layout.has(digest):
            raise OutputError(f"{layout.path}: no manifest {digest}")
        raw = layout.get_bytes(digest)
        parsed = parse_manifest(raw)
        return Descriptor(parsed.media_type, digest, len(raw))
    return layout.resolve(selector)


def load_image(
    path: Path | str, selector: str | None, platform: Platform, store: BlobStore
) -> Image:
    """The image at ``path`` (an OCI layout dir or tar) named by ``selector`` — a ref.name tag,
    a full image name, a manifest digest ``sha256:...``, or None for the only entry — for
    ``platform`` when it is an index. Its manifest, config and layers are copied into ``store``
    (verified); the returned image keeps its manifest, so its digest is unchanged.
    """
    layout = OciLayout(path)
    descriptor = _pick(layout, selector)
    try:
        raw = layout.get_bytes(descriptor.digest, MAX_MANIFEST_SIZE)
        parsed: Manifest | Index = parse_manifest(raw, descriptor.media_type or None)
        seen = {descriptor.digest}
        while isinstance(parsed, Index):
            child = parsed.select(platform)
            if child is None:
                have = ", ".join(str(p) for p in parsed.platforms()) or "none"
                raise OutputError(f"{layout.path}: no image for {platform} (platforms: {have})")
            if child.digest in seen:
                raise ContentError(f"{layout.path}: index cycle at {child.digest}")
            seen.add(child.digest)
            raw = layout.get_bytes(child.digest, MAX_MANIFEST_SIZE)
            parsed = parse_manifest(raw, child.media_type or None)
        manifest = parsed
        for blob in (manifest.config, *manifest.layers):
            if not store.has(blob.digest):
                # The store's writer verifies digest and size: no need to hash twice.
                with layout.open(blob.digest, verify=False) as src:
                    store.put_stream(src, blob.digest, blob.size)
        store.put_bytes(manifest.raw)
        return Image.from_manifest(manifest, store.get_bytes(manifest.config.digest))
    except OcibuildError as exc:
        if str(layout.path) in exc.message:
            raise
        raise type(exc)(f"load image from {layout.path}: {exc.message}", hint=exc.hint) from exc
