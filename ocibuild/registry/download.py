"""Blob downloads: a resumable, verifying stream of a registry blob, and fetching into a store.

``BlobReader`` reads a blob as it arrives; after a dropped connection or a short body it asks
again with ``Range: bytes=N-`` (bounded) and goes on from byte N; when its last byte is read it
checks size and digest (ContentError). ``fetch_blob`` copies it through
``store.writer(expected, size)``, which renames only verified bytes into place: whatever fails
(dropped connections beyond the bound, truncated or corrupt bodies, size overruns) leaves
nothing in the store. A blob whose digest is wrong is downloaded once more from zero.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import requests
import urllib3

from ocibuild.digest import Digest
from ocibuild.errors import ContentError, RegistryError
from ocibuild.image.descriptor import Descriptor
from ocibuild.reference import Reference
from ocibuild.registry.auth import pull_scope

if TYPE_CHECKING:
    from ocibuild.registry.client import BlobStore, RegistryClient

READ_CHUNK = 1 << 20
#: How often one download may resume after a dropped or short connection.
MAX_RESUMES = 6
#: How often a blob with a wrong digest is downloaded again from zero.
MAX_REFETCH = 1

DROPPED = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    requests.exceptions.Timeout,
    urllib3.exceptions.HTTPError,
)


def read_limited(resp: requests.Response, limit: int, action: str) -> bytes:
    """The whole body, refusing more than ``limit`` bytes (hostile or broken servers)."""
    out = bytearray()
    for chunk in resp.iter_content(READ_CHUNK):
        out += chunk
        if len(out) > limit:
            raise ContentError(f"{action}: body larger than {limit} bytes")
    return bytes(out)


class BlobReader(io.RawIOBase):
    """A registry blob as a stream. Resumes after drops; verifies at the last byte unless
    ``verify=False`` (when the consumer hashes anyway). The caller closes it."""

    def __init__(self, client: RegistryClient, ref: Reference, desc: Descriptor, *,
                 verify: bool = True) -> None:
        super().__init__()
        self._client = client
        self._ref = ref
        self._desc = desc
        self._hash = desc.digest.hasher() if verify else None
        self._offset = 0
        self._resumes = 0
        self._resp: requests.Response | None = None
        self.action = f"pull {ref}: blob {desc.digest}"

    def readable(self) -> bool:
        return True

    def _open(self) -> requests.Response:
        c, ref = self._client, self._ref
        headers = {"Range": f"bytes={self._offset}-"} if self._offset else {}
        resp = c.request(ref, "GET", c.url(ref, f"blobs/{self._desc.digest}"),
                         scopes=[pull_scope(ref.repository)], action=self.action,
                         headers=headers, stream=True)
        if resp.status_code not in (200, 206):
            raise c.fail(resp, self.action, ref.api_host)
        if self._offset and not _resumed_at(resp, self._offset):
            # The server ignored our Range: skip what we already have.
            skip = self._offset
            while skip:
                got = resp.raw.read(min(skip, READ_CHUNK))
                if not got:
                    raise ContentError(f"{self.action}: body ended at a resume")
                skip -= len(got)
        return resp

    def _dropped(self, exc: BaseException | None) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        self._resumes += 1
        if self._resumes > MAX_RESUMES:
            why = "connection dropped" if exc is not None else "body ended early"
            raise RegistryError(f"{self.action}: {why} {self._resumes} times, giving up at "
                                f"byte {self._offset} of {self._desc.size}") from exc
        self._client.transport.sleep(self._client.transport.retry.delay(self._resumes))

    def _read1(self, n: int) -> bytes:
        assert self._resp is not None
        raw = self._resp.raw
        # read1 hands over every byte received before a drop; read(n) would drop a partly
        # filled buffer (harmless, the resume starts at our offset, but slower).
        data: bytes = raw.read1(n) if hasattr(raw, "read1") else raw.read(min(n, 64 << 10))
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        size = self._desc.size
        if self._offset >= size:
            return 0
        while True:
            try:
                if self._resp is None:
                    self._resp = self._open()
                data = self._read1(min(len(buffer), READ_CHUNK))
            except DROPPED as exc:
                self._dropped(exc)
                continue
            if not data:
                self._dropped(None)  # a short body: ask for the rest
                continue
            break
        n = len(data)
        if self._offset + n > size:
            raise ContentError(f"{self.action}: registry sent more than the {size} bytes "
                               "the descriptor says")
        buffer[:n] = data
        self._offset += n
        if self._hash is not None:
            self._hash.update(data)
            if self._offset == size:
                got = Digest(self._desc.digest.algorithm, self._hash.hexdigest())
                if got != self._desc.digest:
                    raise ContentError(f"{self.action}: digest mismatch: got {got}")
        return n

    def read(self, size: int | None = -1) -> bytes:
        """Exactly ``size`` bytes unless the blob ends first (``tarfile`` relies on it)."""
        if size is None or size < 0:
            return self.readall()
        out = bytearray()
        buf = bytearray(min(size, READ_CHUNK))
        while len(out) < size:
            n = self.readinto(memoryview(buf)[: size - len(out)])
            if not n:
                break
            out += memoryview(buf)[:n]
        return bytes(out)

    def close(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._resp = None
        super().close()


def _resumed_at(resp: requests.Response, offset: int) -> bool:
    if resp.status_code != 206:
        return False
    # "bytes START-END/TOTAL"
    try:
        start = int(resp.headers.get("Content-Range", "").split()[1].split("-")[0])
    except (IndexError, ValueError):
        return False
    return start == offset


def fetch_blob(client: RegistryClient, ref: Reference, desc: Descriptor, store: BlobStore) -> None:
    """Download ``desc`` into ``store`` unless it is there (see the module doc)."""
    if store.has(desc.digest):
        return
    for attempt in range(MAX_REFETCH + 1):
        try:
            with store.writer(desc.digest, desc.size) as out, \
                    BlobReader(client, ref, desc, verify=False) as reader:
                while chunk := reader.read(READ_CHUNK):
                    out.write(chunk)
            return
        except ContentError:
            if attempt == MAX_REFETCH:
                raise


def fetch_small(client: RegistryClient, ref: Reference, desc: Descriptor, limit: int) -> bytes:
    """A small blob (a config) into memory: size limited, verified, fetched again once when
    the bytes are wrong."""
    action = f"pull {ref}: blob {desc.digest}"
    if desc.size > limit:
        raise ContentError(f"{action}: {desc.size} bytes is larger than {limit}")
    for attempt in range(MAX_REFETCH + 1):
        try:
            with BlobReader(client, ref, desc) as reader:
                return reader.read()
        except ContentError:
            if attempt == MAX_REFETCH:
                raise
    raise AssertionError("unreachable")  # pragma: no cover
