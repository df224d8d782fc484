"""Writing a loaded image graph (see ``ocibuild.registry.transports``) to its destination.

Registry to registry streams each blob from the source GET into the destination PUT (no disk),
after a HEAD and, on the same registry, a cross-repository mount. Registry to a file downloads
every blob in parallel into a temporary ``Spool`` while the layout writer of
``ocibuild.output.layout`` consumes them in order.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import requests

from ocibuild.digest import Digest
from ocibuild.image import Descriptor, Index, Platform
from ocibuild.output import layout
from ocibuild.reference import Reference
from ocibuild.registry import blobs as blobops
from ocibuild.registry.auth import pull_scope
from ocibuild.registry.client import RegistryClient
from ocibuild.registry.convert import convert, recompress
from ocibuild.registry.spool import Spool
from ocibuild.registry.transports import Endpoint, Loaded, Overlay, load, narrow


class _ResponseSlice:
    """An upload body read from a source registry's GET response (streamed, never stored).
    A failure reading the source surfaces as ``OSError`` so the upload is abandoned and
    restarted by ``push_blob``."""

    def __init__(self, resp: requests.Response, length: int) -> None:
        self._resp = resp
        self._length = length
        self._left = length

    def __len__(self) -> int:
        return self._length

    def read(self, n: int = -1) -> bytes:
        want = self._left if n is None or n < 0 else min(self._left, max(n, blobops.READ_CHUNK))
        if want <= 0:
            return b""
        try:
            data: bytes = self._resp.raw.read(want)
        except Exception as exc:  # noqa: BLE001 - any source failure aborts this upload
            raise OSError(f"source connection failed: {type(exc).__name__}") from exc
        if not data:
            raise OSError("source ended early")
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._resp.close()


@dataclass(frozen=True)
class _RegistryStream:
    """An upload source reading the blob from another registry (ranged GET on restarts)."""

    client: RegistryClient
    ref: Reference
    desc: Descriptor

    def open(self, offset: int, length: int) -> IO[bytes]:
        action = f"pull {self.ref}: blob {self.desc.digest}"
        headers = {"Range": f"bytes={offset}-{offset + length - 1}"} if offset else {}
        resp = self.client.request(self.ref, "GET", self.client.url(self.ref, f"blobs/{self.desc.digest}"),
                                   scopes=[pull_scope(self.ref.repository)], action=action,
                                   headers=headers, stream=True)
        if resp.status_code not in (200, 206):
            raise self.client.fail(resp, action, self.ref.api_host)
        if offset and resp.status_code == 200:
            skip = offset
            while skip:
                skip -= len(resp.raw.read(min(skip, blobops.READ_CHUNK)))
        return _ResponseSlice(resp, length)  # type: ignore[return-value]


@dataclass(frozen=True)
class _SourceStream:
    """An upload source reading from a layout/archive blob source (skips to restart)."""

    blobs: layout.BlobSource
    digest: Digest

    def open(self, offset: int, length: int) -> IO[bytes]:
        f = self.blobs.open(self.digest)
        skip = offset
        while skip:
            got = f.read(min(skip, blobops.READ_CHUNK))
            if not got:
                break
            skip -= len(got)
        return blobops._Slice(f, length)  # type: ignore[return-value]


class _Prefetch:
    """A layout-writer blob source over a registry: every blob is downloaded into the spool
    in parallel (``client.max_workers`` at once, verified, resumable) in the order the writer
    asks for them, and ``open`` waits only for the blob it needs, so writing the file overlaps
    the downloads. ``close`` cancels what has not started and waits for the rest."""

    def __init__(self, client: RegistryClient, ref: Reference, descs: list[Descriptor],
                 spool: Spool) -> None:
        self._spool = spool
        self._pool = ThreadPoolExecutor(max_workers=max(1, client.max_workers))
        self._futures: dict[Digest, Future[None]] = {
            d.digest: self._pool.submit(client.fetch_blob, ref, d, spool) for d in descs
        }

    def open(self, digest: Digest) -> BinaryIO:
        self._futures[digest].result()
        # Verified while it was written; the spool is private to this command.
        return open(self._spool.path(digest), "rb")  # noqa: SIM115 - the writer closes it

    def close(self) -> None:
        for f in self._futures.values():
            f.cancel()
        self._pool.shutdown(wait=True)


def push(loaded: Loaded, dst: Reference, client: RegistryClient) -> Digest:
    """Blobs (parallel), then child manifests by digest, then the root under ``dst``'s tag."""
    src = loaded.registry_ref
    mount = src if src is not None and src.registry == dst.registry else None

    def job(d: Descriptor) -> Callable[[], None]:
        source: blobops.BlobSource
        if src is not None:
            source = _RegistryStream(client, src, d)
        else:
            assert loaded.blobs is not None
            source = _SourceStream(loaded.blobs, d.digest)
        return lambda: blobops.push_blob(client, dst, d, source, mount)

    client.parallel([job(d) for d in loaded.leaf_blobs()])
    root = loaded.parse(loaded.root)
    if isinstance(root, Index):
        for child in root.manifests:
            if child.digest in loaded.manifests:
                by_digest = Reference(dst.registry, dst.repository, None, child.digest)
                client.push_manifest(by_digest, loaded.manifests[child.digest], child.media_type)
    return client.push_manifest(dst, loaded.manifests[loaded.root.digest], loaded.root.media_type)


def write_file(loaded: Loaded, dst: Endpoint, client: RegistryClient, spool: Spool) -> Digest:
    """Write ``loaded`` to an ``oci:``, ``oci-archive:`` or ``docker-archive:`` destination."""
    assert dst.path is not None
    if loaded.blobs is None:
        assert loaded.registry_ref is not None
        prefetch = _Prefetch(client, loaded.registry_ref, loaded.leaf_blobs(), spool)
        try:
            return _write_file(loaded, dst, Overlay(loaded.manifests, prefetch))
        finally:
            prefetch.close()
    return _write_file(loaded, dst, Overlay(loaded.manifests, loaded.blobs))


def _write_file(loaded: Loaded, dst: Endpoint, source: layout.BlobSource) -> Digest:
    assert dst.path is not None
    root = loaded.root
    if dst.kind == "docker-archive":
        tags = (Reference.parse(dst.name),) if dst.name else ()
        layout.write_docker_archive(dst.path, [layout.DockerImage(root, tags)], source)
        return root.digest
    entry = Descriptor(root.media_type, root.digest, root.size,
                       annotations=((layout.REF_NAME, dst.name),) if dst.name else ())
    if dst.kind == "oci":
        layout.write_oci_layout(dst.path, [entry], source)
    else:
        layout.write_oci_archive(dst.path, [entry], source)
    return root.digest


def copy_image(src: Endpoint, dst: Endpoint, client: RegistryClient, *,
               platform: Platform | None = None, fmt: str | None = None,
               compression: str | None = None) -> Digest:
    """Copy an image (or a whole index) from ``src`` to ``dst``; returns the root digest
    written. ``compression`` (gzip | zstd) recompresses layers (new layer digests)."""
    loaded = load(src, client)
    if platform is not None:
        loaded = narrow(loaded, platform, f"copy {src}")
    elif dst.kind == "docker-archive":
        loaded = narrow(loaded, Platform.default(), f"copy {src}")
    parent = dst.path.resolve().parent if dst.path is not None else None
    tmp_parent = parent if parent is not None and parent.is_dir() else None
    with contextlib.ExitStack() as stack:
        if compression is not None:
            from ocibuild.store import BlobStore

            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="ocibuild-copy-",
                                                                  dir=tmp_parent))
            store = stack.enter_context(BlobStore(Path(tmp)))
            loaded = recompress(loaded, client, store, compression)
        if fmt is not None:
            loaded = convert(loaded, fmt)
        if dst.kind == "docker":
            assert dst.ref is not None
            return push(loaded, dst.ref, client)
        spool = stack.enter_context(Spool(tmp_parent))
        return write_file(loaded, dst, client, spool)
    raise AssertionError("unreachable")  # pragma: no cover
