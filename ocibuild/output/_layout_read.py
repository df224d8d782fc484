"""Reading OCI image layouts (directory or tar) and ``docker save`` archives as blob sources.

Readers never load blobs into memory: tar members are served by offset from a fresh file handle
per ``open`` (so parallel transfers are safe), and every stream verifies its digest and size as
its last byte is read.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import ContentError, OutputError
from ocibuild.image import Descriptor, Index, Manifest
from ocibuild.image.manifest import MAX_MANIFEST_SIZE

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"


class _Section(io.RawIOBase):
    """``size`` bytes of ``path`` from ``offset``, hashed; ContentError at the end on mismatch."""

    def __init__(self, path: Path, offset: int, size: int, digest: Digest | None, what: str):
        super().__init__()
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._f.seek(offset)
        self._left = size
        self._want = digest
        self._hash = digest.hasher() if digest is not None else None
        self._what = what

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        # Direct, without RawIOBase's bytearray round trip: this is the hot path.
        want = self._left if size is None or size < 0 else min(size, self._left)
        if want <= 0:
            return b""
        data = self._f.read(want)
        self._account(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        n = self._f.readinto(view)
        self._account(view[:n])
        return n

    def _account(self, data: bytes | memoryview) -> None:
        n = len(data)
        if not n:
            raise ContentError(f"{self._what}: truncated ({self._left} bytes missing)")
        self._left -= n
        if self._hash is not None:
            self._hash.update(data)
            if self._left == 0 and self._want is not None:
                got = Digest(self._want.algorithm, self._hash.hexdigest())
                if got != self._want:
                    raise ContentError(f"{self._what}: content is {got}, want {self._want}")

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


@dataclass(frozen=True)
class _Member:
    offset: int
    size: int


def _tar_members(path: Path) -> dict[str, _Member]:
    """Regular files of an uncompressed tar by normalised name (``./a/b`` -> ``a/b``)."""
    try:
        with tarfile.open(path, "r:") as tar:
            out = {}
            for info in tar:
                if info.isreg():
                    name = os.path.normpath(info.name).lstrip("/")
                    out[name] = _Member(info.offset_data, info.size)
            return out
    except tarfile.ReadError as exc:
        raise OutputError(f"read archive {path}: not an uncompressed tar ({exc})") from exc
    except OSError as exc:
        raise OutputError(f"read archive {path}: {exc.strerror or exc}") from exc


class _Files:
    """Files of a directory or of a tar, by relative name."""

    def __init__(self, path: Path):
        self.path = path
        self.is_dir = path.is_dir()
        self._members = {} if self.is_dir else _tar_members(path)

    def size(self, name: str) -> int | None:
        if self.is_dir:
            p = self.path / name
            return p.stat().st_size if p.is_file() else None
        m = self._members.get(name)
        return None if m is None else m.size

    def open(self, name: str, digest: Digest | None = None) -> BinaryIO:
        size = self.size(name)
        if size is None:
            raise OutputError(f"{self.path}: missing {name}")
        if self.is_dir:
            return _Section(self.path / name, 0, size, digest, f"{self.path}/{name}")  # type: ignore[return-value]
        m = self._members[name]
        return _Section(self.path, m.offset, m.size, digest, f"{self.path}:{name}")  # type: ignore[return-value]

    def read_small(self, name: str, limit: int = MAX_MANIFEST_SIZE) -> bytes:
        size = self.size(name)
        if size is None:
            raise OutputError(f"{self.path}: missing {name}")
        if size > limit:
            raise ContentError(f"{self.path}: {name} is larger than {limit} bytes")
        with self.open(name) as f:
            return f.read()


class OciLayout:
    """An OCI image layout, as a directory or an (uncompressed) tar. A blob source: ``open``,
    ``has``, ``get_bytes``."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.exists():
            raise OutputError(f"read OCI layout {self.path}: no such file or directory")
        self._files = _Files(self.path)
        layout = _load_json(self._files.read_small("oci-layout"), f"{self.path}: oci-layout")
        if not isinstance(layout, dict) or "imageLayoutVersion" not in layout:
            raise ContentError(f"{self.path}: oci-layout has no imageLayoutVersion")
        raw = self._files.read_small("index.json")
        self.index = Index.parse(raw, mt.OCI_INDEX)

    def _blob_name(self, digest: Digest) -> str:
        return f"blobs/{digest.algorithm}/{digest.hex}"

    def has(self, digest: Digest) -> bool:
        return self._files.size(self._blob_name(digest)) is not None

    def open(self, digest: Digest, *, verify: bool = True) -> BinaryIO:
        """A verifying stream of a blob; the caller closes it. ``verify=False`` skips hashing
        for callers that verify the bytes themselves (e.g. ``BlobStore.writer(expected)``)."""
        return self._files.open(self._blob_name(digest), digest if verify else None)

    def get_bytes(self, digest: Digest, max_size: int = MAX_MANIFEST_SIZE) -> bytes:
        """A small blob (manifest, config) read whole and verified."""
        name = self._blob_name(digest)
        size = self._files.size(name)
        if size is not None and size > max_size:
            raise ContentError(f"{self.path}: blob {digest} is larger than {max_size} bytes")
        with self._files.open(name, digest) as f:
            return f.read()

    def names(self) -> list[str]:
        """The ``org.opencontainers.image.ref.name`` of every index.json entry that has one."""
        named = (dict(d.annotations) for d in self.index.manifests)
        return [a[REF_NAME] for a in named if REF_NAME in a]

    def resolve(self, name: str | None = None) -> Descriptor:
        """The index.json entry named ``name`` (its ref.name, or its full containerd name);
        without a name, the only entry. OutputError listing the names otherwise."""
        entries = self.index.manifests
        if name is None:
            if len(entries) == 1:
                return entries[0]
            raise OutputError(
                f"{self.path}: {len(entries)} images in index.json, name one of: "
                + (", ".join(self.names()) or "(none are named)")
            )
        for d in entries:
            ann = dict(d.annotations)
            if ann.get(REF_NAME) == name or ann.get(CONTAINERD_NAME) == name:
                return d
        raise OutputError(
            f"{self.path}: no image named {name!r}; names: " + (", ".join(self.names()) or "none")
        )

    def read_manifest(self, descriptor: Descriptor) -> Manifest | Index:
        from ocibuild.image import parse_manifest

        return parse_manifest(self.get_bytes(descriptor.digest), descriptor.media_type or None)


@dataclass(frozen=True)
class DockerArchiveImage:
    """One image of a docker archive: a synthesised Docker v2 manifest (layers as stored, so
    usually uncompressed), its config bytes and the archive's RepoTags."""

    manifest: Manifest
    config_raw: bytes
    repo_tags: tuple[str, ...]


class DockerArchive:
    """A ``docker save`` tarball (legacy ``<id>/layer.tar`` or docker 25+ ``blobs/sha256``).
    A blob source for the configs and layers of the images it lists."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_file():
            raise OutputError(f"read docker archive {self.path}: not a file")
        self._files = _Files(self.path)
        entries = _load_json(self._files.read_small("manifest.json"), f"{self.path}: manifest.json")
        if not isinstance(entries, list) or not entries:
            raise ContentError(f"{self.path}: manifest.json lists no images")
        self._blobs: dict[Digest, str] = {}
        self.images = [self._image(e, i) for i, e in enumerate(entries)]

    def _image(self, entry: Any, i: int) -> DockerArchiveImage:
        where = f"{self.path}: manifest.json[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise ContentError(f"{where}: no Config")
        config_name = os.path.normpath(entry["Config"])
        config_raw = self._files.read_small(config_name, 16 << 20)
        config = Descriptor(mt.DOCKER_CONFIG, Digest.of_bytes(config_raw), len(config_raw))
        self._blobs[config.digest] = config_name
        layers = []
        for name in entry.get("Layers") or []:
            name = os.path.normpath(str(name))
            size = self._files.size(name)
            if size is None:
                raise ContentError(f"{where}: missing layer {name}")
            digest = self._layer_digest(name)
            layers.append(Descriptor(self._layer_type(name), digest, size))
            self._blobs[digest] = name
        manifest = Manifest.build(config, layers, media_type=mt.DOCKER_MANIFEST)
        tags = tuple(str(t) for t in entry.get("RepoTags") or ())
        return DockerArchiveImage(manifest, config_raw, tags)

    def _layer_digest(self, name: str) -> Digest:
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "blobs":
            try:
                return Digest.parse(f"{parts[1]}:{parts[2]}")  # verified when read
            except ContentError:
                pass
        h = Digest("sha256", "0" * 64).hasher()
        with self._files.open(name) as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        return Digest("sha256", h.hexdigest())

    def _layer_type(self, name: str) -> str:
        with self._files.open(name) as f:
            magic = f.read(4)
        if magic[:2] == b"\x1f\x8b":
            return mt.DOCKER_LAYER_GZIP
        if magic == b"\x28\xb5\x2f\xfd":
            return mt.DOCKER_LAYER_ZSTD
        return mt.DOCKER_LAYER

    def select(self, name: str | None = None) -> DockerArchiveImage:
        """The image tagged ``name`` (familiar or full form), or the only image."""
        if name is None:
            if len(self.images) == 1:
                return self.images[0]
            raise OutputError(f"{self.path}: {len(self.images)} images, name one by its tag")
        from ocibuild.reference import Reference

        want = Reference.parse(name)
        for image in self.images:
            for tag in image.repo_tags:
                if Reference.parse(tag) == want:
                    return image
        raise OutputError(f"{self.path}: no image tagged {name!r}")

    def has(self, digest: Digest) -> bool:
        return digest in self._blobs or any(i.manifest.digest == digest for i in self.images)

    def open(self, digest: Digest) -> BinaryIO:
        """A verifying stream of a config or layer (or a synthesised manifest)."""
        for image in self.images:
            if image.manifest.digest == digest:
                return io.BytesIO(image.manifest.raw)
        name = self._blobs.get(digest)
        if name is None:
            raise OutputError(f"{self.path}: no blob {digest}")
        return self._files.open(name, digest)

    def get_bytes(self, digest: Digest, max_size: int = MAX_MANIFEST_SIZE) -> bytes:
        with self.open(digest) as f:
            data = f.read(max_size + 1)
        if len(data) > max_size:
            raise ContentError(f"{self.path}: blob {digest} is larger than {max_size} bytes")
        return data


def _load_json(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ContentError(f"{what}: invalid JSON: {exc}") from exc
