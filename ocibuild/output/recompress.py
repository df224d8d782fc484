"""Layers in another compression for an output (``compression=zstd``, ``force-compression``).

Streams each blob from the store through a decompressor and E's compressor back into the store;
the diff ids (and so the config) do not change. Which layers change follows BuildKit's
``GetRemotes``: without ``force-compression`` only the layers this build made; with it every
layer *in another compression* (``NeedsConversion``: a layer already in the wanted one is kept
as it is, whatever ``compression-level`` says).
"""

from __future__ import annotations

import shutil
from collections.abc import Container
from typing import Any

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.image import Descriptor, Image, Layer


def recompress_image(image: Image, store: Any, want: str, level: int | None,
                     *, force: bool = False, base: Container[Digest] = ()) -> Image:
    """``image`` with its layers in ``want`` (gzip|zstd|uncompressed) compression: layers
    already in it are kept, and so are ``base`` layers (blobs that came from elsewhere, e.g.
    pulled) unless ``force``."""
    from ocibuild.fs.compression import open_compressor, open_decompressed

    name = "none" if want == "uncompressed" else want
    layers: list[Layer] = []
    for layer in image.layers:
        current = mt.layer_compression(layer.media_type)
        if current == name or (layer.digest in base and not force):
            layers.append(layer)
            continue
        with store.open(layer.digest) as src, open_decompressed(src) as plain, \
                store.writer() as w:
            comp = open_compressor(w, name, level)
            try:
                shutil.copyfileobj(plain, comp, 1 << 20)
                comp.close()
            except BaseException:
                comp.abort()
                raise
        media = mt.layer_media_type(name, oci=mt.to_oci(layer.media_type) == layer.media_type)
        layers.append(Layer(Descriptor(media, w.digest, w.size), layer.diff_id))
    return Image(image.config, tuple(layers))
