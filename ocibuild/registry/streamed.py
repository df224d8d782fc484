"""Uploading a layer while it is being written, for a build that will push its image.

``docker push`` uploads a layer while it compresses it, in one streamed ``PATCH``. A build of
ours that will push writes each of the image's layers compressed while it commits the step
(``write_layer(also=...)``, possibly in a sandbox process). A :class:`GrowingUpload` sends that
copy to the push's repository as the file grows: the upload overlaps the commit and the
steps after it instead of waiting for the export.

It is an optimisation, never the push itself. Every failure (the registry refuses a streamed
``PATCH``, a connection drops, the commit fails) abandons the stream quietly. The export runs
only after every stream has ended (:meth:`StreamedUploads.settle`) and pushes as it always
does, except that a blob a stream completed is neither looked up nor sent again; anything
else is uploaded then. The registry checks the digest given on the final ``PUT`` against the bytes
it received, so a stream can only complete with the blob the commit hashed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ocibuild.digest import Digest
from ocibuild.reference import Reference
from ocibuild.registry.auth import push_scope
from ocibuild.registry.blobs import start_upload

if TYPE_CHECKING:
    from ocibuild.registry.client import RegistryClient

_CHUNK = 1 << 20
#: How long the sender sleeps when it has caught up with the writer (another process, so
#: there is nothing to wait on but time).
POLL = 0.002


class _Abandoned(Exception):
    """The stream stops here (internal: cancelled, or the file is not what was announced)."""


class GrowingUpload:
    """One blob uploaded from ``path`` while another thread or process writes it.

    The writer only appends to ``path`` and the file is complete when :meth:`finish` is called
    with its digest and size; after that the file may be moved away (it is read through a
    descriptor opened before). :meth:`cancel` abandons the stream; :meth:`wait` returns
    whether the registry has the blob.
    """

    def __init__(self, client: RegistryClient, ref: Reference, path: Path):
        self._client = client
        self._ref = ref
        self._path = path
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._ended = False  # the sender thread is done (it closed the file)
        self._final: tuple[Digest, int] | None = None
        self._finished = threading.Event()
        self._cancelled = threading.Event()
        self._ok = False
        self._thread = threading.Thread(target=self._run, name="ocibuild-stream", daemon=True)
        self._thread.start()

    def finish(self, digest: Digest, size: int) -> None:
        """The file is complete: ``size`` bytes hashing to ``digest`` (call before moving it)."""
        self._open()
        with self._lock:
            self._final = (digest, size)
        self._finished.set()

    def cancel(self) -> None:
        self._cancelled.set()

    def wait(self) -> bool:
        """Whether the blob reached the registry (False for a stream cut short)."""
        self._thread.join()
        return self._ok

    @property
    def blob(self) -> tuple[Digest, int] | None:
        """``(digest, size)`` as given to :meth:`finish`, if it was called."""
        with self._lock:
            return self._final

    def _open(self) -> bool:
        """Open the file if it exists (and the stream has not ended: nothing would close it)."""
        with self._lock:
            if self._fd is None and not self._ended:
                with contextlib.suppress(FileNotFoundError):
                    self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            return self._fd is not None

    def _run(self) -> None:
        client, ref = self._client, self._ref
        action = f"push {ref}"
        scopes = [push_scope(ref.repository)]
        location = None
        try:
            location = start_upload(client, ref, action)  # a session: no mount asked
            assert location is not None
            while not self._open():
                if self._cancelled.is_set() or self._finished.is_set():
                    return
                self._finished.wait(POLL)
            resp = client.request(ref, "PATCH", location, scopes=scopes, action=action,
                                  headers={"Content-Type": "application/octet-stream"},
                                  body=self._chunks, retry=False)
            resp.close()
            if resp.status_code != 202:
                return
            location = urllib.parse.urljoin(location, resp.headers.get("Location", location))
            assert self._final is not None  # _chunks ended normally: finish() was called
            resp = client.request(ref, "PUT", location, scopes=scopes, action=action,
                                  params={"digest": str(self._final[0])},
                                  headers={"Content-Type": "application/octet-stream",
                                           "Content-Length": "0"}, retry=False)
            resp.close()
            if resp.status_code in (201, 204):
                self._ok, location = True, None
        except Exception:  # noqa: BLE001 - best effort: the export pushes what is missing
            self._ok = False
        finally:
            with self._lock:
                self._ended = True
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
            if location is not None:
                self._abandon(location, scopes, action)

    def _chunks(self) -> Iterator[bytes]:
        """The file's bytes as the writer appends them, until :meth:`finish` says it is whole."""
        fd = self._fd
        assert fd is not None
        offset = 0
        while True:
            finished = self._finished.is_set()  # before the read: then an empty read is EOF
            data = os.pread(fd, _CHUNK, offset)
            if data:
                offset += len(data)
                yield data
                _forget(fd, offset)
                continue
            if finished:
                assert self._final is not None
                if offset != self._final[1]:
                    raise _Abandoned(f"{self._path}: {offset} bytes, announced {self._final[1]}")
                return
            if self._cancelled.is_set():
                raise _Abandoned("cancelled")
            self._finished.wait(POLL)

    def _abandon(self, location: str, scopes: list[str], action: str) -> None:
        """Ask the registry to drop an unfinished session (it would expire anyway)."""
        with contextlib.suppress(Exception):
            self._client.request(self._ref, "DELETE", location, scopes=scopes, action=action,
                                 retry=False).close()


def _forget(fd: int, end: int) -> None:
    """Let the kernel drop the cached pages of the first ``end`` bytes, already sent: nothing
    in the build reads a pushed layer's compressed copy again, and a push would otherwise
    leave the whole copy in the page cache (60 MB for the benchmark's multistage case). Pages
    still dirty stay; the call starts their writeback (the store fsyncs the blob anyway), so a
    later call drops them. Freed pages are reused by the writes that follow, where fresh ones
    can cost the hypervisor a fault each on a VM (4x the time per page measured here)."""
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, 0, end, os.POSIX_FADV_DONTNEED)


class StreamedUploads:
    """The streamed uploads of one build, all to ``ref``'s repository (the first push target).

    ``client()`` gives the build's registry client (created on first use).
    """

    def __init__(self, client: Callable[[], RegistryClient], ref: Reference):
        self._client = client
        self._ref = ref
        self._lock = threading.Lock()
        self._uploads: list[GrowingUpload] = []

    def start(self, path: Path) -> GrowingUpload | None:
        """Start uploading the file a commit is about to write at ``path``."""
        try:
            upload = GrowingUpload(self._client(), self._ref, path)
        except Exception:  # noqa: BLE001 - no client (bad registry config): the export says why
            return None
        with self._lock:
            self._uploads.append(upload)
        return upload

    def settle(self) -> dict[Digest, int]:
        """Wait for every stream to end (before the export pushes); the blobs that reached the
        registry, with their sizes."""
        with self._lock:
            uploads, self._uploads = self._uploads, []
        return {upload.blob[0]: upload.blob[1] for upload in uploads
                if upload.wait() and upload.blob is not None}

    def close(self) -> None:
        """Abandon the streams still running and wait for them (a build that failed)."""
        with self._lock:
            uploads = list(self._uploads)
        for upload in uploads:
            upload.cancel()
        self.settle()
