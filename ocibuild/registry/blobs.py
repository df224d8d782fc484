"""Blob uploads: HEAD first, cross-repository mount, monolithic or chunked ``PATCH`` uploads
that resume (chunked) or restart with a new session when they fail, bounded. Downloads are in
``ocibuild.registry.download``.
"""

from __future__ import annotations

import io
import os
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Protocol

from ocibuild.digest import Digest
from ocibuild.errors import ContentError, RegistryError
from ocibuild.image.descriptor import Descriptor
from ocibuild.reference import Reference
from ocibuild.registry.auth import pull_scope, push_scope

if TYPE_CHECKING:
    from ocibuild.registry.client import BlobStore, RegistryClient

READ_CHUNK = 1 << 20
#: How often one chunked upload asks where it stands after a failed chunk.
MAX_RESUMES = 6
#: How often one upload restarts with a new upload session.
MAX_UPLOAD_RESTARTS = 3


class _Restart(Exception):
    """Abandon this upload session and start a new one (internal)."""


def _backoff(client: RegistryClient, n: int) -> None:
    client.transport.sleep(client.transport.retry.delay(n))


def has_blob(client: RegistryClient, ref: Reference, digest: Digest, *,
             push: bool = False) -> bool:
    action = f"push {ref}" if push else f"pull {ref}: blob {digest}"
    scopes = [push_scope(ref.repository) if push else pull_scope(ref.repository)]
    resp = client.request(ref, "HEAD", client.url(ref, f"blobs/{digest}"), scopes=scopes,
                          action=action)
    resp.close()
    if resp.status_code == 200:
        return True
    if resp.status_code == 404:
        return False
    if push and resp.status_code in (401, 403):
        # A HEAD has no error body; the upload that follows gets the registry's own words.
        return False
    raise client.fail(resp, action, ref.api_host)


# -- uploads ---------------------------------------------------------------------------------


class BlobSource(Protocol):
    def open(self, offset: int, length: int) -> IO[bytes]: ...


class _Slice:
    """``length`` bytes of a file from ``offset``, read in large blocks; ``len()`` tells
    requests the Content-Length so the body is streamed, never loaded. ``on_read(pos, data)``
    sees every block read (``pos`` its offset in the file) before it is sent."""

    def __init__(self, f: IO[bytes], length: int, offset: int = 0,
                 on_read: Callable[[int, bytes], None] | None = None) -> None:
        self._f = f
        self._length = length
        self._left = length
        self._pos = offset
        self._on_read = on_read

    def __len__(self) -> int:
        return self._length

    def read(self, n: int = -1) -> bytes:
        want = self._left if n is None or n < 0 else min(self._left, max(n, READ_CHUNK))
        data = self._f.read(want) if want else b""
        if self._on_read is not None and data:
            self._on_read(self._pos, data)
        self._pos += len(data)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._f.close()


class StoreSource:
    """A stored blob as an upload body, checked on its way out (the store's files are only
    verified when read through ``store.open``, so the push verifies instead of trusting them).

    The bytes are hashed in file order as the upload reads them, once each (a resumed or
    restarted upload sends bytes again; they are not hashed twice). The read that takes the
    last byte raises :class:`ContentError`, before that byte is sent, when the blob is not what
    its digest says; ``store.verify`` then removes it from the store. Thread-safe.
    """

    def __init__(self, store: BlobStore, digest: Digest) -> None:
        self.store = store
        self.digest = digest
        self._lock = threading.Lock()
        self._hash = digest.hasher()
        self._hashed = 0  # bytes [0, _hashed) of the blob went into _hash

    def open(self, offset: int, length: int) -> IO[bytes]:
        try:
            f = open(self.store.path(self.digest), "rb")  # noqa: SIM115 - closed by requests
        except FileNotFoundError as exc:
            raise ContentError(f"blob {self.digest} is not in the store") from exc
        size = os.fstat(f.fileno()).st_size
        f.seek(offset)
        return _Slice(f, length, offset,  # type: ignore[return-value]
                      lambda pos, data: self._account(pos, data, size))

    def _account(self, pos: int, data: bytes, size: int) -> None:
        with self._lock:
            end = pos + len(data)
            if not pos <= self._hashed < end:
                return  # seen already, or after a gap (a later read fills it)
            self._hash.update(memoryview(data)[self._hashed - pos:])
            self._hashed = end
            if end < size:
                return
            got = Digest(self.digest.algorithm, self._hash.hexdigest())
        if got != self.digest:
            verify = getattr(self.store, "verify", None)
            if verify is not None:
                verify(self.digest)  # ContentError, and the blob leaves the store
            raise ContentError(f"blob {self.digest} in the store is corrupt (read {got})")


@dataclass(frozen=True)
class BytesSource:
    data: bytes

    def open(self, offset: int, length: int) -> IO[bytes]:
        return io.BytesIO(self.data[offset : offset + length])


def push_blob(client: RegistryClient, ref: Reference, desc: Descriptor, source: BlobSource,
              mount_from: Reference | None) -> None:
    """Upload ``desc`` to ``ref``'s repository unless the registry has it.

    Idempotent; a failed upload session is abandoned and a new one started (bounded).
    """
    action = f"push {ref}"
    if has_blob(client, ref, desc.digest, push=True):
        return
    restarts = 0
    while True:
        try:
            location = start_upload(client, ref, action, (desc.digest, mount_from)
                                    if mount_from is not None else None)
            if location is None:
                return  # mounted
            if client.chunk_size and desc.size > client.chunk_size:
                location = _upload_chunks(client, ref, desc, source, location, action)
                body: Callable[[], IO[bytes] | bytes] | bytes = b""
            else:
                body = lambda: source.open(0, desc.size)  # noqa: E731
            resp = client.request(ref, "PUT", location, scopes=[push_scope(ref.repository)],
                                  action=action, params={"digest": str(desc.digest)},
                                  headers={"Content-Type": "application/octet-stream"},
                                  body=body, retry=False)
            if resp.status_code in (201, 204):
                resp.close()
                return
            if resp.status_code >= 500 or resp.status_code in (404, 416, 429):
                resp.close()
                raise _Restart
            raise client.fail(resp, action, ref.api_host)
        except (_Restart, RegistryError) as exc:
            # An upload session that broke (dropped connection, 5xx, lost state): start over.
            if isinstance(exc, RegistryError) and getattr(exc, "status", 0) in (400, 401, 403):
                raise
            restarts += 1
            if restarts > MAX_UPLOAD_RESTARTS:
                if isinstance(exc, RegistryError):
                    raise
                raise RegistryError(f"{action}: blob {desc.digest}: upload failed "
                                    f"{restarts} times") from None
            _backoff(client, restarts)


def start_upload(client: RegistryClient, ref: Reference, action: str,
                 mount: tuple[Digest, Reference] | None = None) -> str | None:
    """POST a new upload session, or a mount of ``mount=(digest, from repository)``; the
    session URL, or None when mounted."""
    scopes = [push_scope(ref.repository)]
    params: dict[str, str] | None = None
    if mount is not None and mount[1].registry == ref.registry \
            and mount[1].repository != ref.repository:
        params = {"mount": str(mount[0]), "from": mount[1].repository}
        scopes.append(pull_scope(mount[1].repository))
    url = client.url(ref, "blobs/uploads/")
    resp = client.request(ref, "POST", url, scopes=scopes, action=action, params=params,
                          headers={"Content-Length": "0"})
    resp.close()
    if resp.status_code == 201 and params is not None:
        return None
    if resp.status_code != 202 or "Location" not in resp.headers:
        raise client.fail(resp, action, ref.api_host)
    return urllib.parse.urljoin(url, resp.headers["Location"])


def _upload_chunks(client: RegistryClient, ref: Reference, desc: Descriptor, source: BlobSource,
                   location: str, action: str) -> str:
    """PATCH the blob in ``client.chunk_size`` pieces with ``Content-Range``; after a failed
    chunk ask the session where it stands (``GET`` -> ``Range``) and go on from there. Returns
    the session URL for the final PUT.

    When a chunk's answer is lost after the registry took the chunk, the session URL we hold
    is the one from before it. Registries that name the session by its id alone answer the
    status query and the upload resumes. The distribution registry (``docker-registry``) signs
    the offset into the URL (``_state``): a stale one fails the query and the registry cancels
    the session, so the upload restarts; nothing better is possible there (the new URL was in
    the lost answer)."""
    assert client.chunk_size
    scopes = [push_scope(ref.repository)]
    offset = 0
    failures = 0
    while offset < desc.size:
        n = min(client.chunk_size, desc.size - offset)
        start = offset
        try:
            resp = client.request(
                ref, "PATCH", location, scopes=scopes, action=action, retry=False,
                headers={"Content-Type": "application/octet-stream",
                         "Content-Range": f"{start}-{start + n - 1}"},
                body=lambda start=start, n=n: source.open(start, n),  # type: ignore[misc]
            )
        except RegistryError:
            resp = None
        if resp is not None and resp.status_code == 202:
            resp.close()
            location = urllib.parse.urljoin(location, resp.headers.get("Location", location))
            offset = start + n
            continue
        if resp is not None:
            resp.close()
        failures += 1
        if failures > MAX_RESUMES:
            raise _Restart
        _backoff(client, failures)
        location, offset = _upload_status(client, ref, location, action)
    return location


def _upload_status(client: RegistryClient, ref: Reference, location: str,
                   action: str) -> tuple[str, int]:
    """Where an upload session stands: (session URL, next offset); _Restart if it is gone."""
    resp = client.request(ref, "GET", location, scopes=[push_scope(ref.repository)],
                          action=action)
    resp.close()
    if resp.status_code != 204:
        raise _Restart
    rng = resp.headers.get("Range", "")
    try:
        end = int(rng.split("-")[1]) if rng else -1
    except (IndexError, ValueError):
        raise _Restart from None
    return urllib.parse.urljoin(location, resp.headers.get("Location", location)), end + 1
