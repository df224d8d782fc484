"""Layers in an output's compression: builds commit layers uncompressed, outputs compress them.

Builds keep their layers uncompressed, as BuildKit keeps snapshots and makes compressed blobs
only when it exports; an output that writes or pushes an image compresses the layers it needs
here (``compression=``, default the build's ``--compression``: gzip). Each blob streams from the
store through a decompressor and the output's compressor back into the store, several layers
at a time; the diff ids (and so the config) do not change, and the result is remembered
(``store.variants``) so the next output or build that exports the same layer reuses it.

Which layers change follows BuildKit's ``GetRemotes``: without ``force-compression`` only the
layers this build made; with it every layer *in another compression* (``NeedsConversion``: a
layer already in the wanted one is kept as it is, whatever ``compression-level`` says).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Container
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.image import Descriptor, Image, Layer
from ocibuild.store import variants


def recompress_image(image: Image, store: Any, want: str, level: int | None,
                     *, force: bool = False, base: Container[Digest] = ()) -> Image:
    """``image`` with its layers in ``want`` (gzip|zstd|uncompressed) compression: layers
    already in it are kept, and so are ``base`` layers (blobs that came from elsewhere, e.g.
    pulled) unless ``force``."""
    name = "none" if want == "uncompressed" else want
    todo = list(dict.fromkeys(
        layer for layer in image.layers
        if mt.layer_compression(layer.media_type) != name and (force or layer.digest not in base)))
    if not todo:
        return image
    workers = min(len(todo), len(os.sched_getaffinity(0)) or 1)
    with ThreadPoolExecutor(workers, thread_name_prefix="ocibuild-compress") as pool:
        done = dict(zip(todo, pool.map(lambda layer: _recompress(layer, store, name, level),
                                       todo), strict=True))
    return Image(image.config, tuple(done.get(layer, layer) for layer in image.layers))


def _recompress(layer: Layer, store: Any, name: str, level: int | None) -> Layer:
    from ocibuild.fs.compression import open_compressor, open_decompressed

    media = mt.layer_media_type(name, oci=mt.to_oci(layer.media_type) == layer.media_type)
    # Remembered by the uncompressed blob: for a layer this build made, that is the layer.
    source = layer.diff_id
    known = variants.lookup(store, source, name)
    if known is not None:
        return Layer(Descriptor(media, *known), layer.diff_id)
    with store.open(layer.digest) as src, open_decompressed(src) as plain, store.writer() as w:
        comp = open_compressor(w, name, level)
        try:
            shutil.copyfileobj(plain, comp, 1 << 20)
            comp.close()
        except BaseException:
            comp.abort()
            raise
    variants.record(store, source, name, level, w.digest, w.size)
    return Layer(Descriptor(media, w.digest, w.size), layer.diff_id)

