"""``RegistryClient``: the distribution-spec client every other part uses to pull and push.

It is a service: create one per command (``RegistryClient.from_environment(...)``), share it
between threads, ``close()`` it at the end. Blob transfers live in ``ocibuild.registry.blobs``;
this module holds the request plumbing (auth on top of ``Transport``), manifests and the
image-level operations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import IO, Protocol

import requests

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import AuthError, ContentError, RegistryError
from ocibuild.image.descriptor import Descriptor
from ocibuild.image.image import Image, build_manifest_value
from ocibuild.image.manifest import MAX_MANIFEST_SIZE, Index, Manifest, parse_manifest
from ocibuild.image.platform import Platform
from ocibuild.reference import Reference
from ocibuild.registry import blobs, download
from ocibuild.registry.auth import Authenticator, pull_scope, push_scope
from ocibuild.registry.credentials import CredentialStore, DockerCredentials
from ocibuild.registry.transport import (
    DEFAULT_TIMEOUT,
    Body,
    RetryPolicy,
    Transport,
    error_from_response,
)

#: Config blobs are JSON read into memory: refuse absurd ones (hostile registries).
MAX_CONFIG_SIZE = 32 << 20

#: ``on_progress(digest, done, total)``: bytes of one blob moved so far (called from the
#: transfer's thread; ``done == total`` when its last byte went through; a retried transfer
#: starts again from where it resumes).
OnProgress = Callable[[Digest, int, int], None]


class BlobWriter(Protocol):
    def write(self, data: bytes | bytearray | memoryview) -> int: ...


class BlobStore(Protocol):
    """What the client needs from ``ocibuild.store.BlobStore`` (the client never imports the
    store): ``writer`` verifies digest and size on a clean exit and leaves nothing on error."""

    def has(self, digest: Digest) -> bool: ...
    def path(self, digest: Digest) -> Path: ...
    def writer(self, expected: Digest | None = None,
               size: int | None = None) -> AbstractContextManager[BlobWriter]: ...


class RegistryClient:
    """Pull and push manifests and blobs. Thread-safe; blob transfers run ``max_workers`` at
    a time. ``chunk_size`` switches blob uploads to chunked ``PATCH`` uploads of that size."""

    def __init__(
        self,
        credentials: CredentialStore | None = None,
        *,
        insecure_hosts: Iterable[str] = (),
        certs_dir: Path = Path("/etc/docker/certs.d"),
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - a frozen value
        max_workers: int = 4,
        chunk_size: int | None = None,
    ) -> None:
        self.transport = Transport(frozenset(insecure_hosts), certs_dir, timeout, retry)
        self.auth = Authenticator(self.transport, credentials)
        self.max_workers = max_workers
        self.chunk_size = chunk_size

    @classmethod
    def from_environment(cls, *, insecure_hosts: Iterable[str] = (), **kwargs: object) -> RegistryClient:
        """A client reading credentials from the docker/containers config files."""
        return cls(DockerCredentials.from_environment(), insecure_hosts=insecure_hosts, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def url(self, ref: Reference, path: str) -> str:
        return f"{self.transport.base_url(ref.api_host)}/v2/{ref.repository}/{path}"

    def request(
        self,
        ref: Reference,
        method: str,
        url: str,
        *,
        scopes: Sequence[str],
        action: str,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        params: Mapping[str, str] | None = None,
        retry: bool = True,
    ) -> requests.Response:
        """An authenticated request; on 401 the challenge is re-read, the token for these
        scopes dropped and the request sent once more (expired or revoked tokens)."""
        host = ref.api_host
        for attempt in (0, 1):
            hdrs = dict(headers or {})
            hdrs.update(self.auth.header(host, scopes, action))
            resp = self.transport.send(method, url, host=host, headers=hdrs, body=body,
                                       stream=stream, params=params, retry=retry, action=action)
            if resp.status_code == 401 and attempt == 0:
                self.auth.learn(host, resp.headers.get("WWW-Authenticate", ""))
                self.auth.invalidate(host, scopes)
                resp.close()
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def fail(self, resp: requests.Response, action: str, host: str) -> RegistryError:
        err = error_from_response(resp, action)
        if isinstance(err, AuthError) and err.hint is None:
            cred = self.auth.credential(host)
            err.hint = (f"check the credentials for {host} (ocibuild login {host})" if cred
                        else f"log in first: ocibuild login {host} -u USER --password-stdin")
        return err

    # -- manifests -----------------------------------------------------------------------------

    def get_manifest(
        self, ref: Reference, accept: str = mt.MANIFEST_ACCEPT, *, action: str | None = None
    ) -> tuple[bytes, str, Digest]:
        """The manifest or index bytes exactly as served, their media type and digest.

        Verified against ``ref.digest`` (or the registry's ``Docker-Content-Digest``)."""
        parsed = self.fetch_manifest(ref, accept, action=action)
        return parsed.raw, parsed.media_type, parsed.digest

    def fetch_manifest(
        self, ref: Reference, accept: str = mt.MANIFEST_ACCEPT, *, action: str | None = None
    ) -> Manifest | Index:
        """``get_manifest``, parsed (the bytes as served are its ``raw``)."""
        action = action or f"pull {ref}"
        resp = self.request(ref, "GET", self.url(ref, f"manifests/{ref.reference}"),
                            scopes=[pull_scope(ref.repository)], action=action,
                            headers={"Accept": accept}, stream=True)
        if resp.status_code != 200:
            raise self.fail(resp, action, ref.api_host)
        try:
            declared = int(resp.headers.get("Content-Length") or 0)
            if declared > MAX_MANIFEST_SIZE:
                raise ContentError(f"{action}: manifest of {declared} bytes is too large")
            raw = download.read_limited(resp, MAX_MANIFEST_SIZE, action)
        finally:
            resp.close()
        digest = Digest.of_bytes(raw)
        want = ref.digest
        if want is None and resp.headers.get("Docker-Content-Digest"):
            try:
                want = Digest.parse(resp.headers["Docker-Content-Digest"])
            except ContentError:
                want = None
        if want is not None and want.algorithm == "sha256" and want != digest:
            raise ContentError(f"{action}: manifest digest {digest} does not match {want}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return parse_manifest(raw, media_type)

    def head_manifest(self, ref: Reference) -> Descriptor | None:
        """The descriptor of ``ref``'s manifest, or None when it does not exist."""
        action = f"inspect {ref}"
        resp = self.request(ref, "HEAD", self.url(ref, f"manifests/{ref.reference}"),
                            scopes=[pull_scope(ref.repository)], action=action,
                            headers={"Accept": mt.MANIFEST_ACCEPT})
        resp.close()
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self.fail(resp, action, ref.api_host)
        return Descriptor(resp.headers.get("Content-Type", "").split(";")[0],
                          Digest.parse(resp.headers["Docker-Content-Digest"]),
                          int(resp.headers.get("Content-Length", "0")))

    def push_manifest(self, ref: Reference, raw: bytes, media_type: str) -> Digest:
        """PUT the exact bytes under ``ref`` (its tag, or its digest when it has no tag)."""
        digest = Digest.of_bytes(raw)
        target = ref.tag if ref.tag is not None else str(digest)
        action = f"push {ref}"
        resp = self.request(ref, "PUT", self.url(ref, f"manifests/{target}"),
                            scopes=[push_scope(ref.repository)], action=action,
                            headers={"Content-Type": media_type}, body=raw)
        if resp.status_code not in (200, 201, 202):
            raise self.fail(resp, action, ref.api_host)
        resp.close()
        served = resp.headers.get("Docker-Content-Digest")
        if served and served != str(digest):
            raise RegistryError(f"{action}: registry stored the manifest as {served}, "
                                f"want {digest}")
        return digest

    # -- blobs ---------------------------------------------------------------------------------

    def fetch_blob(self, ref: Reference, descriptor: Descriptor, store: BlobStore,
                   on_progress: OnProgress | None = None) -> None:
        """Download a blob into ``store`` unless it is there, verified while streaming."""
        if on_progress is not None:
            store = _CountingStore(store, descriptor, on_progress)
        download.fetch_blob(self, ref, descriptor, store)

    def fetch_blob_bytes(self, ref: Reference, descriptor: Descriptor,
                         limit: int = MAX_CONFIG_SIZE) -> bytes:
        """A small blob (a config) into memory, verified."""
        return download.fetch_small(self, ref, descriptor, limit)

    def has_blob(self, ref: Reference, digest: Digest) -> bool:
        return blobs.has_blob(self, ref, digest)

    def push_blob(self, ref: Reference, descriptor: Descriptor, store: BlobStore,
                  mount_from: Reference | None = None,
                  on_progress: OnProgress | None = None) -> None:
        """Upload one blob from ``store`` (HEAD first; cross-repository mount when
        ``mount_from`` is a repository of the same registry)."""
        source: blobs.BlobSource = blobs.StoreSource(store, descriptor.digest)
        if on_progress is not None:
            source = _CountingSource(source, descriptor, on_progress)
        blobs.push_blob(self, ref, descriptor, source, mount_from)

    def push_blob_bytes(self, ref: Reference, descriptor: Descriptor, data: bytes) -> None:
        blobs.push_blob(self, ref, descriptor, blobs.BytesSource(data), None)

    # -- images --------------------------------------------------------------------------------

    def resolve_image(self, ref: Reference, platform: Platform,
                      stored: Callable[[Digest], bytes | None] | None = None,
                      ) -> tuple[Manifest, bytes]:
        """The image manifest for ``platform`` (following an index) and its config bytes:
        ``stored(digest)`` when it has them (a config pulled before), else fetched."""
        parsed = self.fetch_manifest(ref)
        if isinstance(parsed, Index):
            chosen = parsed.select(platform)
            if chosen is None:
                have = ", ".join(str(p) for p in parsed.platforms()) or "none"
                raise RegistryError(f"pull {ref}: no image for platform {platform} "
                                    f"(the index has: {have})")
            child = ref.with_digest(chosen.digest)
            parsed = self.fetch_manifest(child, action=f"pull {ref}")
            if isinstance(parsed, Index):
                raise ContentError(f"pull {ref}: index entry {chosen.digest} is another index")
        config = stored(parsed.config.digest) if stored is not None else None
        return parsed, config if config is not None else self.fetch_blob_bytes(ref, parsed.config)

    def pull_image(self, ref: Reference, platform: Platform, store: BlobStore,
                   on_progress: OnProgress | None = None) -> Image:
        """Resolve ``ref`` for ``platform`` and download every layer into ``store``."""
        manifest, config = self.resolve_image(ref, platform)
        image = Image.from_manifest(manifest, config)
        self.fetch_all(ref, [layer.descriptor for layer in image.layers], store, on_progress)
        return image

    def fetch_all(self, ref: Reference, descriptors: Sequence[Descriptor], store: BlobStore,
                  on_progress: OnProgress | None = None) -> None:
        """Download blobs in parallel (``max_workers`` at once); the first failure is raised
        after the others finish (each leaves nothing unverified behind)."""
        todo = [d for d in dict.fromkeys(descriptors) if not store.has(d.digest)]
        self.parallel([partial(self.fetch_blob, ref, d, store, on_progress) for d in todo])

    def push_image(self, image: Image, refs: Sequence[Reference], store: BlobStore, *,
                   oci: bool | None = None, mount_from: Reference | None = None,
                   on_progress: OnProgress | None = None) -> Digest:
        """Push layers (from ``store``), config, then the manifest under every ref (same
        repository or not). Returns the manifest digest. ``oci=None`` keeps the manifest the
        image came with, else builds OCI."""
        if oci is None:
            oci = image.manifest is None or image.manifest.is_oci
        manifest = build_manifest_value(image, oci=oci)
        # The config as received while unchanged (its bytes, not a re-serialisation).
        return self.push_manifest_and_blobs(
            manifest, refs, store, config_raw=image.config.to_bytes(),
            mount_from=lambda _digest: mount_from, on_progress=on_progress)

    def push_manifest_and_blobs(
        self, manifest: Manifest, refs: Sequence[Reference], store: BlobStore, *,
        config_raw: bytes | None = None,
        mount_from: Callable[[Digest], Reference | None] | None = None,
        on_progress: OnProgress | None = None,
        present: Collection[Digest] = (),
    ) -> Digest:
        """Push ``manifest``'s blobs, then the manifest under every ref; returns its digest.

        Blobs go once per repository (tags of one repository share them), in parallel; the
        config from ``config_raw`` when given, else from ``store`` like the layers.
        ``mount_from(digest)`` names a repository of the same registry to mount a blob from
        (where it was pulled from); further repositories mount from the first one pushed.
        ``present``: blobs the first repository is known to hold (the registry confirmed
        their upload to this client), neither looked up nor sent there."""
        if not refs:
            raise RegistryError("push: no destination reference")
        blobs_to_send = [*manifest.layers, *([] if config_raw is not None else [manifest.config])]
        first: Reference | None = None
        for name in dict.fromkeys(r.name for r in refs):
            target = next(r for r in refs if r.name == name)
            same = first if first is not None and first.registry == target.registry else None

            def source(d: Descriptor, same: Reference | None = same) -> Reference | None:
                return same or (mount_from(d.digest) if mount_from is not None else None)

            jobs = [partial(self.push_blob, target, d, store, source(d), on_progress)
                    for d in blobs_to_send if first is not None or d.digest not in present]
            if config_raw is not None:
                jobs.append(partial(self.push_blob_bytes, target, manifest.config, config_raw))
            self.parallel(jobs)
            first = first or target
        for r in refs:
            self.push_manifest(r, manifest.raw, manifest.media_type)
        return manifest.digest

    def parallel(self, jobs: Sequence[Callable[[], None]]) -> None:
        """Run ``jobs`` on ``max_workers`` threads; re-raise the first failure once all ended."""
        if len(jobs) <= 1 or self.max_workers <= 1:
            for job in jobs:
                job()
            return
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(jobs))) as pool:
            futures = [pool.submit(job) for job in jobs]
        for f in futures:
            exc = f.exception()
            if exc is not None:
                raise exc


# -- progress accounting (wrappers around a transfer's store or source) ----------------------


class _CountingWriter:
    def __init__(self, inner: BlobWriter, report: Callable[[int], None]) -> None:
        self._inner = inner
        self._report = report
        self._done = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = self._inner.write(data)
        self._done += len(data)
        self._report(self._done)
        return n


class _CountingStore:
    """``store`` whose writer reports the bytes written for one descriptor."""

    def __init__(self, store: BlobStore, desc: Descriptor, on_progress: OnProgress) -> None:
        self._store = store
        self._desc = desc
        self._on_progress = on_progress

    def has(self, digest: Digest) -> bool:
        return self._store.has(digest)

    def path(self, digest: Digest) -> Path:
        return self._store.path(digest)

    @contextlib.contextmanager
    def writer(self, expected: Digest | None = None,
               size: int | None = None) -> Iterator[BlobWriter]:
        desc, report = self._desc, self._on_progress
        with self._store.writer(expected, size) as inner:
            report(desc.digest, 0, desc.size)
            yield _CountingWriter(inner, lambda n: report(desc.digest, n, desc.size))


class _CountingReader:
    """A request body (``length`` bytes from ``start``) that reports how far it was read;
    ``len()`` keeps requests streaming it with a Content-Length."""

    def __init__(self, inner: IO[bytes], start: int, length: int,
                 report: Callable[[int], None]) -> None:
        self._inner = inner
        self._offset = start
        self._length = length
        self._report = report

    def __len__(self) -> int:
        return self._length

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        if data:
            self._offset += len(data)
            self._report(self._offset)
        return data

    def close(self) -> None:
        self._inner.close()


class _CountingSource:
    def __init__(self, inner: blobs.BlobSource, desc: Descriptor,
                 on_progress: OnProgress) -> None:
        self._inner = inner
        self._desc = desc
        self._on_progress = on_progress

    def open(self, offset: int, length: int) -> IO[bytes]:
        desc, report = self._desc, self._on_progress
        report(desc.digest, offset, desc.size)
        return _CountingReader(self._inner.open(offset, length), offset, length,  # type: ignore[return-value]
                               lambda n: report(desc.digest, n, desc.size))
