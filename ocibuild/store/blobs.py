"""The content-addressed blob store: ``<root>/blobs/<algorithm>/<hex>``.

Writes go to a temporary file in ``<root>/tmp`` (same filesystem), are hashed while written,
fsynced and renamed into place: a blob path either holds complete, verified bytes or does not
exist. Two processes writing the same blob both succeed (the second rename replaces identical
bytes). Reads verify the digest as the last byte is read; a corrupt blob is removed and reported.

Every ``BlobStore`` holds a shared flock on ``<root>/lock`` for its lifetime; ``prune --all``
needs it exclusively, so it never empties a store under a running build.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from ocibuild.digest import Digest, DigestingWriter, write_verified
from ocibuild.errors import ContentError, StoreError
from ocibuild.store import areas

CHUNK = 1 << 20


def default_root() -> Path:
    """``$XDG_CACHE_HOME/ocibuild``, else ``~/.cache/ocibuild``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ocibuild"


BlobWriter = DigestingWriter
"""The file-like object ``BlobStore.writer`` yields: ``digest`` and ``size`` are final after the
``with`` block exits cleanly; before that they describe the bytes written so far."""


class VerifyingReader(io.RawIOBase):
    """Reads a stored blob and checks its digest once the last byte has been read.

    On mismatch it raises ContentError and calls ``on_corrupt`` (the store removes the blob).
    The caller closes it (it is a context manager).
    """

    def __init__(self, f: BinaryIO, digest: Digest, on_corrupt: Callable[[], None]):
        super().__init__()
        self._f = f
        self._want = digest
        self._hash = digest.hasher()
        self._left = os.fstat(f.fileno()).st_size
        self._on_corrupt = on_corrupt
        self._checked = False
        self.size = self._left

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        # Direct, without RawIOBase's bytearray round trip: this is the hot path.
        data = self._f.read(-1 if size is None else size)
        self._account(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n: int = self._f.readinto(buffer)  # type: ignore[attr-defined]
        self._account(memoryview(buffer)[:n])
        return n

    def _account(self, data: bytes | memoryview) -> None:
        n = len(data)
        if n:
            self._hash.update(data)
            self._left -= n
        if (not n or self._left <= 0) and not self._checked:
            self._checked = True
            got = Digest(self._want.algorithm, self._hash.hexdigest())
            if got != self._want:
                self._on_corrupt()
                raise ContentError(f"blob {self._want} in the store is corrupt (read {got}); removed")

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


class BlobStore:
    """A content-addressed store rooted at ``root`` (created on first use)."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_root()
        self._lock_fd: int | None = None
        # ``adopt_later``: one background writer, and the blobs it has not published yet.
        self._writer: ThreadPoolExecutor | None = None
        self._pending: dict[Digest, Future[None]] = {}
        self._pending_lock = threading.Lock()
        try:
            for sub in ("blobs/sha256", "tmp", "snapshots", "cache", "roots", "locks"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        except OSError as exc:
            raise StoreError(f"open content store {self.root}: {exc}") from exc

    def close(self) -> None:
        """Finish the background writes (their errors were for ``flush`` to raise) and release
        the store's shared lock. Idempotent; blobs stay readable, but ``prune`` needs the lock,
        so do not prune through a closed store."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # may run at interpreter exit
            self.close()

    # -- paths --------------------------------------------------------------------------------
    def path(self, digest: Digest) -> Path:
        """Where ``digest`` lives (it may not exist; see ``has``). A blob this store is still
        publishing (``adopt_later``) is waited for, and its write error raised."""
        self._settle(digest)
        return self._path(digest)

    def _path(self, digest: Digest) -> Path:
        return self.root / "blobs" / digest.algorithm / digest.hex

    def has(self, digest: Digest) -> bool:
        """Whether the blob is stored. Asking counts as a use (gc's grace period restarts):
        callers ask because they are about to rely on the blob."""
        path = self.path(digest)
        try:
            os.utime(path)
            return True
        except FileNotFoundError:
            return False
        except OSError:  # e.g. a read-only store
            return path.is_file()

    def size(self, digest: Digest) -> int:
        """Size of a stored blob; StoreError when absent."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError as exc:
            raise StoreError(f"blob {digest} is not in the store {self.root}") from exc

    # -- writing ------------------------------------------------------------------------------
    def writer(
        self, expected: Digest | None = None, size: int | None = None
    ) -> contextlib.AbstractContextManager[BlobWriter]:
        """Write a blob. On clean exit the bytes are checked against ``expected``/``size``
        (ContentError on mismatch), fsynced and renamed into place; on any error nothing is
        left behind (no blob, no temporary file)."""
        return write_verified(self.root / "tmp", self._commit, expected, size, durable=True)

    def _commit(self, tmp: Path, digest: Digest) -> None:
        dest = self._path(digest)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp, 0o444)
            os.rename(tmp, dest)  # atomic; replaces an identical blob written concurrently
            _fsync_dir(dest.parent)
        except OSError as exc:
            raise StoreError(f"rename temporary blob into store {dest}: {exc.strerror}") from exc

    def put_stream(self, src: BinaryIO, expected: Digest | None = None, size: int | None = None) -> tuple[Digest, int]:
        """Copy ``src`` (read to EOF, not closed) into the store."""
        with self.writer(expected, size) as w:
            while chunk := src.read(CHUNK):
                w.write(chunk)
        return w.digest, w.size

    def put_file(self, path: Path | str, expected: Digest | None = None) -> tuple[Digest, int]:
        """Copy a file into the store; returns its digest and size."""
        try:
            with open(path, "rb") as f:
                return self.put_stream(f, expected)
        except OSError as exc:
            raise StoreError(f"read {path} into the store: {exc.strerror}") from exc

    def adopt(self, path: Path, digest: Digest, size: int) -> None:
        """Move ``path``, a file the caller has just written and hashed while writing (a
        layer from ``fs.layer.write_layer``), into the store as ``digest`` without reading it
        again. It must be on the store's filesystem (under ``tempdir()``). Its size is checked
        (ContentError), it is fsynced and renamed into place; on error ``path`` stays where it
        is for the caller to remove."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                got = os.fstat(fd).st_size
                if got != size:
                    raise ContentError(f"blob {digest} at {path}: got {got} bytes, want {size}")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StoreError(f"move {path} into the store: {exc.strerror}") from exc
        self._commit(Path(path), digest)

    def adopt_later(self, path: Path, digest: Digest, size: int,
                    cleanup: Callable[[], None]) -> None:
        """``adopt`` in the background, then ``cleanup()`` (also on failure): the fsync, the
        slow part, leaves the caller's path. Until it is done the blob is not in the store for
        other processes; in this one ``path``, ``has``, ``size`` and ``open`` wait for it and
        raise its error. ``flush`` waits for every such blob; ``close`` too."""

        def publish() -> None:
            try:
                self.adopt(path, digest, size)
            finally:
                cleanup()
            with self._pending_lock:
                if self._pending.get(digest) is future:
                    del self._pending[digest]

        with self._pending_lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(1, thread_name_prefix="ocibuild-store")
            future = self._writer.submit(publish)
            self._pending[digest] = future

    def flush(self) -> None:
        """Wait for the blobs ``adopt_later`` is publishing; raise the first one's error."""
        with self._pending_lock:
            futures = list(self._pending.values())
        for future in futures:
            future.result()

    def _settle(self, digest: Digest) -> None:
        future = self._pending.get(digest)
        if future is not None:
            future.result()

    def put_bytes(self, data: bytes, expected: Digest | None = None) -> Digest:
        """Store small content (manifests, configs)."""
        digest = expected or Digest.of_bytes(data)
        if self.has(digest) and expected is None:
            return digest
        with self.writer(expected, len(data)) as w:
            w.write(data)
        return w.digest

    # -- reading ------------------------------------------------------------------------------
    def open(self, digest: Digest) -> VerifyingReader:
        """A verifying reader (raises ContentError after the last byte when corrupt); the
        caller closes it. StoreError when the blob is absent."""
        path = self.path(digest)
        try:
            f = open(path, "rb")  # noqa: SIM115 - handed to the reader, which closes it
        except FileNotFoundError as exc:
            raise StoreError(f"blob {digest} is not in the store {self.root}") from exc
        with contextlib.suppress(OSError):
            os.utime(path)  # gc's grace period counts from the last use
        return VerifyingReader(f, digest, lambda: self._quarantine(digest))

    def get_bytes(self, digest: Digest, max_size: int = 16 << 20) -> bytes:
        """Read a small blob (manifest, config) whole, verified."""
        if self.size(digest) > max_size:
            raise ContentError(f"blob {digest} is larger than {max_size} bytes")
        with self.open(digest) as r:
            return r.read()

    def verify(self, digest: Digest) -> None:
        """Read a blob through and check it (ContentError and removal when corrupt)."""
        with self.open(digest) as r:
            while r.read(CHUNK):
                pass

    def _quarantine(self, digest: Digest) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(digest))

    def delete(self, digest: Digest) -> None:
        """Remove a blob if present (used by gc)."""
        self._quarantine(digest)

    # -- other areas (see ocibuild.store.areas) ------------------------------------------------
    def snapshot(self, chain_id: Digest, fill: Callable[[Path], None]) -> Path:
        """The directory holding the unpacked layer chain ``chain_id``, created once.

        ``fill(tmpdir)`` populates a fresh directory that is then renamed into place, under a
        per-chain flock: concurrent callers wait and reuse the result. If ``fill`` raises,
        nothing is published and the error propagates.
        """
        return areas.snapshot(self, chain_id, fill)

    def has_snapshot(self, chain_id: Digest) -> bool:
        """Whether the snapshot exists (a query only: ``snapshot()`` is what marks a use)."""
        return areas.snapshot_path(self, chain_id).is_dir()

    def snapshot_path(self, chain_id: Digest) -> Path:
        """Where the snapshot of ``chain_id`` lives (it may not exist)."""
        return areas.snapshot_path(self, chain_id)

    def unpacked_layer(self, chain_id: Digest) -> Path | None:
        """The files of the snapshot of ``chain_id`` (its ``fs`` dir, as the executor fills
        it), if the store keeps one (a query only)."""
        path = areas.snapshot_path(self, chain_id) / areas.LAYER_FILES
        return path if path.is_dir() else None

    def cache_dir(self, cache_id: str) -> Path:
        """The persistent directory for ``RUN --mount=type=cache,id=cache_id`` (created)."""
        return areas.cache_dir(self, cache_id)

    def cache_lock(self, cache_id: str) -> contextlib.AbstractContextManager[bool]:
        """An exclusive flock for ``sharing=locked`` cache mounts."""
        return areas.cache_lock(self, cache_id)

    def tempdir(self, prefix: str = "tmp-") -> Path:
        """A new empty directory on the store's filesystem; the caller removes it (gc removes
        leftovers older than its grace period)."""
        return areas.tempdir(self, prefix)

    def add_root(self, name: str, digest: Digest) -> None:
        """Record ``digest`` (a manifest or index in the store) as live under ``name`` (e.g. a
        pulled or built reference); gc keeps it and everything it points to. Recording the
        same name again moves it and restarts its age. See also ``store.images.record_image``.
        """
        areas.add_root(self, name, digest)

    def digests(self) -> Iterator[Digest]:
        """Every stored blob's digest."""
        base = self.root / "blobs"
        for algo_dir in sorted(base.iterdir()) if base.is_dir() else ():
            for p in sorted(algo_dir.iterdir()):
                try:
                    digest = Digest.parse(f"{algo_dir.name}:{p.name}")
                except ContentError:
                    continue  # not ours; gc leaves it alone
                yield digest


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
