"""OCI image layouts (directory and tar) and ``docker load`` archives: writing and reading.

Writers take root descriptors (manifests or indexes) and a *blob source* (anything with
``open(digest) -> verifying binary stream``: ``BlobStore``, ``OciLayout``, ``DockerArchive``)
and copy every blob reachable from the roots, streaming. Writes are atomic: a tar is written
to a temporary sibling and renamed; a new layout directory is built beside its destination and
renamed; adding to an existing layout copies missing blobs (each by temp + rename) and replaces
``index.json`` last, so a failure leaves the previous layout intact (plus, at most, blobs it
does not reference). Tars are deterministic: same roots and blobs, same bytes.

Reading lives in ``ocibuild.output._layout_read`` and is re-exported here.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import ContentError, OutputError
from ocibuild.fs import zstdlib
from ocibuild.image import Descriptor, Index, Manifest, parse_manifest
from ocibuild.image._json import go_json
from ocibuild.image.manifest import MAX_MANIFEST_SIZE
from ocibuild.output._atomic import atomic_dir, atomic_file
from ocibuild.output._layout_load import load_image
from ocibuild.output._layout_read import (
    CONTAINERD_NAME,
    REF_NAME,
    DockerArchive,
    DockerArchiveImage,
    OciLayout,
)
from ocibuild.output._tar import ArchiveWriter
from ocibuild.reference import Reference

__all__ = [
    "CONTAINERD_NAME",
    "REF_NAME",
    "BlobSource",
    "DockerArchive",
    "DockerArchiveImage",
    "DockerImage",
    "OciLayout",
    "annotate",
    "closure",
    "load_image",
    "open_layout",
    "ref_annotations",
    "write_docker_archive",
    "write_oci_archive",
    "write_oci_layout",
]

CHUNK = 1 << 20
OCI_LAYOUT_FILE = go_json({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION})


class BlobSource(Protocol):
    def open(self, digest: Digest) -> BinaryIO:
        """A stream of the blob that verifies its digest at the end; the caller closes it."""
        ...


def open_layout(path: Path | str) -> OciLayout:
    """Read an OCI layout directory or tar (``oci:DIR`` / ``oci-archive:PATH``)."""
    return OciLayout(path)


def ref_annotations(ref: Reference | str) -> dict[str, str]:
    """The index.json annotations BuildKit writes for an image name: the full name for
    containerd, the tag as ``org.opencontainers.image.ref.name`` (what ``oci:DIR:TAG`` looks up;
    containerd's ``ociReferenceName``: a name with a digest and no tag keeps the whole name).
    """
    r = ref if isinstance(ref, Reference) else Reference.parse(ref)
    if r.digest is not None and not r.tag:
        return {CONTAINERD_NAME: str(r), REF_NAME: str(r)}
    return {CONTAINERD_NAME: str(r.without_digest()), REF_NAME: r.tag or "latest"}


def _read_small(blobs: BlobSource, d: Descriptor) -> bytes:
    with blobs.open(d.digest) as f:
        data = f.read(MAX_MANIFEST_SIZE + 1)
        if len(data) > MAX_MANIFEST_SIZE:
            raise ContentError(f"manifest {d.digest} is larger than {MAX_MANIFEST_SIZE} bytes")
        f.read(1)  # reach EOF so verifying streams check the digest
    if Digest.of_bytes(data) != d.digest:
        raise ContentError(f"manifest {d.digest}: content does not match its digest")
    return data


def closure(roots: Sequence[Descriptor], blobs: BlobSource) -> list[Descriptor]:
    """Every blob reachable from ``roots`` (indexes, manifests, configs, layers), each once,
    in discovery order: a manifest before its config and layers."""
    seen: set[Digest] = set()
    out: list[Descriptor] = []

    def visit(d: Descriptor) -> None:
        if d.digest in seen:
            return
        seen.add(d.digest)
        out.append(d)
        if d.media_type not in mt.MANIFESTS:
            return
        parsed = parse_manifest(_read_small(blobs, d), d.media_type)
        if isinstance(parsed, Index):
            for child in parsed.manifests:
                visit(child)
        else:
            visit(parsed.config)
            for layer in parsed.layers:
                visit(layer)

    for root in roots:
        visit(root)
    return out


def _index_json(entries: Sequence[Descriptor]) -> bytes:
    """index.json as containerd's archive exporter (behind BuildKit's and docker's) writes it:
    compact JSON. Not content-addressed, so only tidiness depends on it."""
    obj = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [d.to_json() for d in entries],
    }
    return go_json(obj)


def _copy_blob(blobs: BlobSource, d: Descriptor, dest: BinaryIO) -> None:
    written = 0
    with blobs.open(d.digest) as src:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > d.size:
                raise ContentError(f"blob {d.digest}: longer than its descriptor's {d.size} bytes")
            dest.write(chunk)
    if written != d.size:
        raise ContentError(f"blob {d.digest}: {written} bytes, descriptor says {d.size}")


# -- OCI layout directory --------------------------------------------------------------------
def write_oci_layout(dest: Path | str, entries: Sequence[Descriptor], blobs: BlobSource) -> None:
    """Write (or add to) an OCI layout directory. ``entries`` become index.json's manifests,
    annotations included; an existing entry with the same ref.name and image name is replaced
    (the tag moves).
    """
    dest = Path(dest)
    needed = closure(entries, blobs)
    if not dest.exists():
        with atomic_dir(dest) as tmp:
            _fill_layout_dir(tmp, needed, blobs, entries)
        return
    if not dest.is_dir():
        raise OutputError(f"write OCI layout {dest}: exists and is not a directory")
    old: list[Descriptor] = []
    if (dest / "index.json").exists():
        old = list(OciLayout(dest).index.manifests)
    elif any(dest.iterdir()):
        raise OutputError(f"write OCI layout {dest}: not empty and not an OCI layout")
    # An entry is replaced by one with the same ref.name *and* containerd name (buildx's
    # ociindex ``insertDesc``): docker.io/a:v1 and docker.io/b:v1 both stay as "v1".
    names = {_entry_name(e) for e in entries} - {None}
    kept = [d for d in old if _entry_name(d) not in names]
    kept = [d for d in kept if d not in entries]
    _fill_layout_dir(dest, needed, blobs, [*kept, *entries])


def _entry_name(d: Descriptor) -> tuple[str, str] | None:
    a = dict(d.annotations)
    return (a[REF_NAME], a.get(CONTAINERD_NAME, "")) if REF_NAME in a else None


def _fill_layout_dir(
    root: Path, needed: Sequence[Descriptor], blobs: BlobSource, entries: Sequence[Descriptor]
) -> None:
    for d in needed:
        path = root / "blobs" / d.digest.algorithm / d.digest.hex
        if path.is_file() and path.stat().st_size == d.size:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, 0o444) as f:
            _copy_blob(blobs, d, f)
    with atomic_file(root / "oci-layout") as f:
        f.write(OCI_LAYOUT_FILE)
    with atomic_file(root / "index.json") as f:  # last: the commit point
        f.write(_index_json(entries))


# -- OCI layout tar --------------------------------------------------------------------------
@contextlib.contextmanager
def _output(dest: Path | str | BinaryIO) -> Iterator[BinaryIO]:
    if isinstance(dest, (str, os.PathLike)):
        with atomic_file(Path(dest)) as f:
            yield f
    else:
        yield dest


def write_oci_archive(
    dest: Path | str | BinaryIO, entries: Sequence[Descriptor], blobs: BlobSource
) -> None:
    """Write an OCI layout as a tar to a path (atomically) or to an open binary stream (not
    closed; streamed, e.g. stdout). Entries as containerd's archive exporter (BuildKit's
    ``type=oci``) writes them: sorted by name (``blobs/``, ``index.json``, ``oci-layout``),
    blobs and ``oci-layout`` read-only (0444), ``index.json`` 0644."""
    needed = closure(entries, blobs)
    with _output(dest) as f, ArchiveWriter(f) as tar:
        _tar_blobs(tar, needed, blobs)
        tar.add_bytes("index.json", _index_json(entries))
        tar.add_bytes("oci-layout", OCI_LAYOUT_FILE, mode=0o444)


def _blob_name(d: Descriptor) -> str:
    return f"blobs/{d.digest.algorithm}/{d.digest.hex}"


def _tar_blobs(tar: ArchiveWriter, needed: Sequence[Descriptor], blobs: BlobSource) -> None:
    for d in sorted(needed, key=_blob_name):
        with blobs.open(d.digest) as src:
            tar.add_stream(_blob_name(d), d.size, src, mode=0o444)


# -- docker archive --------------------------------------------------------------------------
@dataclass(frozen=True)
class DockerImage:
    """An image to put into a docker archive: an image manifest descriptor (OCI or Docker) in
    the blob source, and the names ``docker load`` will tag it with."""

    manifest: Descriptor
    tags: tuple[Reference, ...] = ()


def write_docker_archive(
    dest: Path | str | BinaryIO,
    images: Sequence[DockerImage],
    blobs: BlobSource,
    *,
    uncompressed: bool = False,
    tmpdir: Path | None = None,
    docker_save: bool = True,
) -> None:
    """Write a ``docker load`` tarball: an OCI layout (blobs, ``oci-layout``, ``index.json``)
    plus ``manifest.json``, entries sorted by name, blobs and ``oci-layout`` read-only.

    ``docker_save`` (the default) adds what docker 25+'s ``docker save`` adds: a legacy
    ``repositories`` file and a newline after ``manifest.json``; without it the archive is
    containerd's archive exporter's, which BuildKit's ``type=docker`` writes. index.json keeps
    each image descriptor's platform and annotations (names added per tag).

    Layers are stored as they are (docker load accepts gzip and zstd) unless ``uncompressed``,
    which decompresses each through a temporary file in ``tmpdir`` (default: beside ``dest``)
    and writes a Docker v2 manifest naming the uncompressed layers, as ``docker save`` does.
    """
    prepared = [_prepare_docker_image(i, blobs) for i in images]
    spool_dir = tmpdir or (Path(dest).parent if isinstance(dest, (str, os.PathLike)) else None)
    with contextlib.ExitStack() as stack:
        # name -> (size, source of the blob's bytes, or the bytes); written sorted at the end.
        records: dict[str, tuple[Descriptor, BlobSource | bytes]] = {}
        manifest_json: list[dict[str, object]] = []
        repositories: dict[str, dict[str, str]] = {}
        index_entries: list[Descriptor] = []
        for image, manifest in prepared:
            config = manifest.config
            layer_names: list[str] = []
            layers: list[Descriptor] = []
            for layer in manifest.layers:
                source: BlobSource = blobs
                if uncompressed and mt.layer_compression(layer.media_type) != "none":
                    spooled = stack.enter_context(_decompressed(blobs, layer, spool_dir))
                    layer = spooled.descriptor
                    source = spooled
                layers.append(layer)
                layer_names.append(_blob_name(layer))
                records.setdefault(_blob_name(layer), (layer, source))
            descriptor = image.manifest
            if layers != list(manifest.layers):
                manifest = Manifest.build(
                    Descriptor(mt.DOCKER_CONFIG, config.digest, config.size),
                    layers,
                    media_type=mt.DOCKER_MANIFEST,
                )
                descriptor = manifest.descriptor(platform=descriptor.platform)
            records.setdefault(_blob_name(config), (config, blobs))
            records.setdefault(_blob_name(manifest.descriptor()),
                               (manifest.descriptor(), manifest.raw))
            tags = [t.without_digest() for t in image.tags]
            manifest_json.append(
                {
                    "Config": _blob_name(config),
                    "RepoTags": [t.familiar for t in tags] if tags or docker_save else None,
                    "Layers": layer_names,
                }
            )
            for t in tags:
                if layers:
                    repositories.setdefault(t.familiar_name, {})[t.tag or "latest"] = (
                        layers[-1].digest.hex
                    )
            if not tags:
                index_entries.append(descriptor)
            for t in tags:
                index_entries.append(descriptor.with_annotations(ref_annotations(t)))
        with _output(dest) as f, ArchiveWriter(f) as tar:
            for name in sorted(records):
                blob, content = records[name]
                if isinstance(content, bytes):
                    tar.add_bytes(name, content, mode=0o444)
                else:
                    with content.open(blob.digest) as src:
                        tar.add_stream(name, blob.size, src, mode=0o444)
            tar.add_bytes("index.json", _index_json(index_entries))
            tar.add_bytes("manifest.json", go_json(manifest_json) + (b"\n" if docker_save else b""))
            tar.add_bytes("oci-layout", OCI_LAYOUT_FILE, mode=0o444)
            if repositories and docker_save:
                tar.add_bytes("repositories", go_json(repositories) + b"\n")


def _prepare_docker_image(image: DockerImage, blobs: BlobSource) -> tuple[DockerImage, Manifest]:
    d = image.manifest
    if d.media_type not in mt.IMAGE_MANIFESTS:
        raise OutputError(
            f"docker archive: {d.digest} is a {d.media_type or 'blob'}, want one image manifest "
            "(choose a platform of an index first)"
        )
    return image, Manifest.parse(_read_small(blobs, d), d.media_type)


@dataclass
class _Spooled:
    """A decompressed layer in a temporary file, as a one-blob source."""

    path: Path
    descriptor: Descriptor

    def open(self, digest: Digest) -> BinaryIO:
        assert digest == self.descriptor.digest
        return open(self.path, "rb")


@contextlib.contextmanager
def _decompressed(blobs: BlobSource, layer: Descriptor, tmpdir: Path | None) -> Iterator[_Spooled]:
    compression = mt.layer_compression(layer.media_type)
    fd, tmp = tempfile.mkstemp(prefix=".layer-", suffix=".tar", dir=tmpdir)
    try:
        h = Digest("sha256", "0" * 64).hasher()
        size = 0
        with os.fdopen(fd, "wb") as out, blobs.open(layer.digest) as src:
            try:
                stream = _decompressor(compression, src)
                while chunk := stream.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                src.read(1)  # let the source verify the compressed digest at EOF
            except (OSError, EOFError, ValueError, zstdlib.ZstdError) as exc:
                raise ContentError(f"layer {layer.digest}: cannot decompress: {exc}") from exc
        diff = Descriptor(mt.DOCKER_LAYER, Digest("sha256", h.hexdigest()), size)
        yield _Spooled(Path(tmp), diff)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _decompressor(compression: str, src: BinaryIO) -> BinaryIO:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=src, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        return zstdlib.ZstdFile(src, "rb")  # type: ignore[return-value]
    raise ContentError(f"unsupported layer compression {compression!r}")


def annotate(d: Descriptor, annotations: Mapping[str, str]) -> Descriptor:
    """``d`` with ``annotations`` merged in (e.g. ``ref_annotations(ref)`` for index.json)."""
    return d.with_annotations(annotations)
