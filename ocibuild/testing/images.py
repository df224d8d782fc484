"""Test kit: random layers and images written into a store, and ``validate_image``, the oracle
every output test checks its result with.

Layers are real gzip (or zstd, or plain) tars of random files, streamed into the store; the
same seed gives the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import random
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, cast

import pyzstd

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.image import (
    Descriptor,
    History,
    Image,
    Index,
    Layer,
    Manifest,
    Platform,
    append,
    parse_manifest,
)
from ocibuild.image.manifest import MAX_MANIFEST_SIZE
from ocibuild.store import BlobStore
from ocibuild.store.images import put_image


class BlobSource(Protocol):
    def open(self, digest: Digest) -> BinaryIO: ...


class _HashingSink:
    """Hashes and counts what is written, forwarding to ``inner`` (not closed)."""

    def __init__(self, inner: object):
        self.inner = inner
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        self.inner.write(data)  # type: ignore[attr-defined]
        return len(data)

    def flush(self) -> None:
        pass


@dataclass(frozen=True)
class LayerSpec:
    """Files of a generated layer: ``(path, content)``; directories are implied."""

    files: tuple[tuple[str, bytes], ...]


def random_files(rng: random.Random, count: int = 3, size: int = 1024) -> LayerSpec:
    """``count`` files of random content, about ``size`` bytes each, under random dirs."""
    files = []
    for i in range(count):
        d = f"d{rng.randrange(4)}"
        files.append((f"{d}/f{i}-{rng.randrange(1 << 30):x}", rng.randbytes(rng.randint(0, size))))
    return LayerSpec(tuple(files))


def write_tar(spec: LayerSpec, out: object) -> None:
    """A deterministic tar of ``spec`` into the writable ``out`` (not closed)."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        dirs: set[str] = set()
        for path, data in sorted(spec.files):
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d + "/")
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))


def put_layer(
    store: BlobStore, spec: LayerSpec, *, compression: str = "gzip", oci: bool = True
) -> Layer:
    """Write ``spec`` as a layer blob into ``store``, hashing diff id and digest in one pass."""
    with store.writer() as w:
        z: Any
        if compression == "gzip":
            z = gzip.GzipFile(fileobj=w, mode="wb", mtime=0, filename="")
        elif compression == "zstd":
            z = pyzstd.ZstdFile(cast(BinaryIO, w), "wb")
        else:
            z = None
        sink = _HashingSink(z if z is not None else w)
        write_tar(spec, sink)
        if z is not None:
            z.close()
    media_type = mt.layer_media_type(compression, oci=oci)
    return Layer(Descriptor(media_type, w.digest, w.size), Digest("sha256", sink.hash.hexdigest()))


def random_image(
    store: BlobStore,
    *,
    seed: int = 0,
    layers: int = 2,
    files: int = 3,
    file_size: int = 1024,
    platform: Platform | None = None,
    compression: str = "gzip",
    oci: bool = True,
    empty_layers: int = 1,
) -> tuple[Image, Manifest]:
    """A random image whose layers, config and manifest are in ``store``.

    History gets one entry per layer plus ``empty_layers`` ENV-like entries without a layer.
    """
    rng = random.Random(seed)
    platform = platform or Platform("linux", "amd64")
    image = Image.empty(platform).with_config(
        Image.empty(platform).config.with_created("2024-01-01T00:00:00Z")
    )
    for i in range(layers):
        layer = put_layer(store, random_files(rng, files, file_size), compression=compression, oci=oci)
        image = append(image, layer, History(created="2024-01-01T00:00:00Z", created_by=f"RUN step {i}"))
    for i in range(empty_layers):
        image = append(image, None, History(created="2024-01-01T00:00:00Z", created_by=f"ENV X{i}=1"))
    image = image.with_config(image.config.with_env_var("PATH", "/usr/bin:/bin"))
    return image, put_image(store, image, oci=oci)


def random_index(
    store: BlobStore, platforms: Sequence[Platform], *, seed: int = 0, oci: bool = True
) -> Index:
    """An index of one random image per platform, all in ``store``."""
    entries = []
    for i, p in enumerate(platforms):
        _, manifest = random_image(store, seed=seed + i, platform=p, oci=oci, layers=1)
        entries.append(manifest.descriptor(platform=p))
    index = Index.build(entries, media_type=mt.OCI_INDEX if oci else mt.DOCKER_MANIFEST_LIST)
    store.put_bytes(index.raw)
    return index


# -- the oracle ------------------------------------------------------------------------------
def _read_all(source: BlobSource, digest: Digest, limit: int | None = None) -> bytes:
    with source.open(digest) as f:
        data = f.read() if limit is None else f.read(limit + 1)
    return data


def _stream_digests(source: BlobSource, d: Descriptor) -> tuple[Digest, int, Digest]:
    """(digest, size, diff id) of a layer blob, streamed."""
    outer = hashlib.sha256()
    inner = hashlib.sha256()
    size = 0
    compression = mt.layer_compression(d.media_type)

    class Tee:
        def __init__(self, f: BinaryIO):
            self.f = f

        def read(self, n: int = -1) -> bytes:
            nonlocal size
            data = self.f.read(n)
            outer.update(data)
            size += len(data)
            return data

        def readable(self) -> bool:
            return True

    with source.open(d.digest) as f:
        tee = Tee(f)
        u: Any
        if compression == "gzip":
            u = gzip.GzipFile(fileobj=cast(BinaryIO, tee), mode="rb")
        elif compression == "zstd":
            u = pyzstd.ZstdFile(cast(BinaryIO, tee), "rb")
        else:
            u = tee
        while chunk := u.read(1 << 20):
            if u is not tee:
                inner.update(chunk)
        while tee.read(1 << 20):
            pass
    diff = Digest("sha256", inner.hexdigest() if compression != "none" else outer.hexdigest())
    return Digest("sha256", outer.hexdigest()), size, diff


def validate_image(source: BlobSource, manifest_digest: Digest, media_type: str | None = None) -> Image:
    """Check an image's invariants in ``source`` (a BlobStore, OciLayout, DockerArchive...):
    manifest and config digests and sizes, every layer's digest, size and diff id (by
    decompressing), one diff_id per layer, history entries without ``empty_layer`` == layers
    (strict: an image without history fails when it has layers), media types of one flavour.
    Indexes are checked child by child. Raises AssertionError listing every problem."""
    raw = _read_all(source, manifest_digest, MAX_MANIFEST_SIZE)
    problems: list[str] = []
    if Digest.of_bytes(raw) != manifest_digest:
        raise AssertionError(f"manifest bytes do not match {manifest_digest}")
    parsed = parse_manifest(raw, media_type)
    if isinstance(parsed, Index):
        images = [validate_image(source, d.digest, d.media_type) for d in parsed.manifests]
        if not images:
            raise AssertionError(f"index {manifest_digest} lists no manifests")
        return images[0]
    m = parsed
    config_raw = _read_all(source, m.config.digest)
    if Digest.of_bytes(config_raw) != m.config.digest:
        problems.append(f"config digest: want {m.config.digest}, got {Digest.of_bytes(config_raw)}")
    if len(config_raw) != m.config.size:
        problems.append(f"config size: want {m.config.size}, got {len(config_raw)}")
    oci = m.media_type == mt.OCI_MANIFEST
    want_config = mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG
    if m.config.media_type != want_config:
        problems.append(f"config media type {m.config.media_type} in a {m.media_type}")
    image = Image.from_manifest(m, config_raw)  # raises when diff_ids do not match the layers
    cfg = image.config
    with_layer = sum(1 for h in cfg.history if not h.empty_layer)
    if with_layer != len(image.layers):
        problems.append(
            f"history has {with_layer} entries with a layer (of {len(cfg.history)}), "
            f"want {len(image.layers)}"
        )
    if not cfg.platform.os or not cfg.platform.architecture:
        problems.append("config lacks os or architecture")
    if cfg.get("rootfs", {}).get("type") != "layers":
        problems.append("config rootfs.type is not 'layers'")
    for i, layer in enumerate(image.layers):
        d = layer.descriptor
        if not mt.is_layer(d.media_type):
            problems.append(f"layers[{i}]: media type {d.media_type!r} is not a layer type")
            continue
        if (mt.to_oci(d.media_type) == d.media_type) != oci and d.media_type != mt.OCI_LAYER_ZSTD:
            problems.append(f"layers[{i}]: media type {d.media_type} in a {m.media_type}")
        digest, size, diff_id = _stream_digests(source, d)
        if digest != d.digest:
            problems.append(f"layers[{i}]: digest {digest}, descriptor says {d.digest}")
        if size != d.size:
            problems.append(f"layers[{i}]: size {size}, descriptor says {d.size}")
        if diff_id != layer.diff_id:
            problems.append(f"layers[{i}]: diff id {diff_id}, config says {layer.diff_id}")
    if problems:
        raise AssertionError(f"image {manifest_digest}:\n  " + "\n  ".join(problems))
    return image
