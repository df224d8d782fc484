"""Resolving the external images a build names: registry pulls and named build contexts.

``ImageSource`` answers two questions, each at most once per (reference, platform):

- ``config(ref)``: the base image's config, for planning (manifest + config only, no layers);
- ``image(ref)``: the whole image with every layer in the store, for the stage loop and
  ``COPY --from=<image>``.

``--build-context NAME=VALUE`` (BuildKit's named contexts) is consulted first: a FROM or
``COPY --from`` naming ``NAME`` uses ``oci-layout://PATH[:TAG|@DIGEST]`` (an OCI image layout
directory), ``docker-image://REF`` (another reference) or a local directory instead of the
registry. Names match as written or after Docker normalisation (``debian:buster`` is
``docker.io/library/debian:buster``).

Every image pulled from a registry is recorded as a gc root of the store (``pull_root``), so
``ocibuild prune`` keeps its layers and their unpacked snapshots for the next build.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocibuild.digest import Digest
from ocibuild.errors import OcibuildError, UsageError
from ocibuild.image import Image, ImageConfig, Platform
from ocibuild.plan.model import BaseConfig, ImageRef
from ocibuild.reference import Reference


@dataclass(frozen=True)
class NamedContext:
    """One ``--build-context``: ``kind`` is oci-layout | docker-image | local."""

    name: str
    kind: str
    value: str  # layout path (with :tag/@digest kept), image ref, or directory

    @classmethod
    def parse(cls, spec: str, base_dir: Path | None = None) -> NamedContext:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            raise UsageError(f"invalid --build-context {spec!r}: want NAME=VALUE")
        for prefix, kind in (("oci-layout://", "oci-layout"), ("docker-image://", "docker-image")):
            if value.startswith(prefix):
                return cls(name, kind, value[len(prefix):])
        if "://" in value:
            raise UsageError(f"--build-context {name}: unsupported source {value!r} "
                             "(use oci-layout://, docker-image:// or a directory)")
        path = Path(value)
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        if not path.is_dir():
            raise UsageError(f"--build-context {name}: {value} is not a directory")
        return cls(name, "local", str(path))


def _normal(name: str) -> str:
    try:
        return str(Reference.parse(name))
    except OcibuildError:
        return name


def pull_root(ref: str, platform: Platform) -> str:
    """The gc root name a pulled image is kept under: one per reference and platform, so a
    later pull of the same tag replaces it (the old image's content can then go)."""
    return f"pull:{_normal(ref)}@{platform}"


def base_config(config: ImageConfig) -> BaseConfig:
    """What the planner needs from a base image's config."""
    inner = config.to_json().get("config") or {}
    return BaseConfig(
        env=tuple(inner.get("Env") or ()),
        onbuild=tuple(inner.get("OnBuild") or ()),
        workdir=inner.get("WorkingDir") or "",
        shell=tuple(inner.get("Shell") or ()),
    )


class ImageSource:
    """Pulls each external image once per build; thread safe (parallel stages share it).

    ``client_factory`` builds the registry client on first use (builds from ``scratch`` and
    named contexts never touch the network). ``on_pull(ref_text)`` returns a progress vertex
    (or None) shown while an image is pulled.
    """

    def __init__(self, store: Any, client_factory: Callable[[], Any],
                 named: Mapping[str, NamedContext] | None = None,
                 on_pull: Callable[[str], Any] | None = None):
        self.store = store
        self._client_factory = client_factory
        self._client: Any = None
        self.named = {_normal(k): v for k, v in (named or {}).items()}
        self.named.update(named or {})
        self._on_pull = on_pull
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        # Resolved for planning (manifest + config; a layout's layers are already stored):
        # the pull then uses the same manifest, so a tag moving mid-build cannot mix images.
        self._resolved: dict[tuple[str, str], Image] = {}
        self._images: dict[tuple[str, str], Image] = {}
        # The repository each pulled layer came from: a push to the same registry mounts it.
        self._origins: dict[Digest, Reference] = {}

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def pulled_from(self) -> dict[Digest, Reference]:
        """The registry repository every layer pulled so far came from (a push to the same
        registry mounts those layers instead of uploading them)."""
        with self._lock:
            return dict(self._origins)

    def named_context(self, name: str) -> NamedContext | None:
        return self.named.get(name) or self.named.get(_normal(name))

    def local_dir(self, ref: ImageRef) -> Path | None:
        """The directory of a ``--build-context NAME=DIR`` matching ``ref``, if any."""
        nc = self.named_context(ref.ref)
        return Path(nc.value) if nc is not None and nc.kind == "local" else None

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def config(self, ref: ImageRef) -> ImageConfig:
        """The config of ``ref`` for ``ref.platform`` (no layers fetched)."""
        key = (ref.ref, ref.platform)
        with self._key_lock(key):
            if key in self._images:
                return self._images[key].config
            if key not in self._resolved:
                self._resolved[key] = self._resolve(ref)
            return self._resolved[key].config

    def base_config(self, ref: ImageRef) -> BaseConfig:
        nc = self.named_context(ref.ref)
        if nc is not None and nc.kind == "local":
            return BaseConfig()
        return base_config(self.config(ref))

    def image(self, ref: ImageRef) -> Image:
        """The image ``ref`` names, every layer in the store (pulled once)."""
        key = (ref.ref, ref.platform)
        with self._key_lock(key):
            if key not in self._images:
                self._images[key] = self._fetch(ref)
            return self._images[key]

    # -- the sources -----------------------------------------------------------------------

    def _target(self, ref: ImageRef) -> tuple[str, str]:
        """(kind, value) to load ``ref`` from: a named context or the registry."""
        nc = self.named_context(ref.ref)
        if nc is None:
            return "registry", ref.ref
        if nc.kind == "docker-image":
            return "registry", nc.value
        if nc.kind == "local":
            raise UsageError(f"--build-context {nc.name}: a directory cannot be used as an "
                             "image here (only as a COPY --from or RUN --mount source)")
        return nc.kind, nc.value

    def _resolve(self, ref: ImageRef) -> Image:
        """``ref``'s image from its manifest and config (a registry's layers not fetched)."""
        kind, value = self._target(ref)
        platform = Platform.parse(ref.platform)
        if kind == "registry":
            manifest, raw = self.client.resolve_image(Reference.parse(value), platform,
                                                      self._stored)
            return Image.from_manifest(manifest, raw)
        return self._from_layout(value, platform)

    def _stored(self, digest: Digest) -> bytes | None:
        """A small blob the store holds (a base's config pulled before), verified; else None
        (also when it turns out corrupt: the store then drops it)."""
        if not self.store.has(digest):
            return None
        with contextlib.suppress(OcibuildError):
            data: bytes = self.store.get_bytes(digest)
            return data
        return None

    def _fetch(self, ref: ImageRef) -> Image:
        kind, value = self._target(ref)
        platform = Platform.parse(ref.platform)
        resolved = self._resolved.get((ref.ref, ref.platform))
        vertex = self._on_pull(value) if self._on_pull else None
        try:
            if kind == "registry":
                on_progress = None
                if vertex is not None and hasattr(vertex, "status"):
                    def on_progress(digest: Any, done: int, total: int) -> None:
                        vertex.status(str(digest), done, total)
                image: Image
                if resolved is not None:
                    image = resolved
                    self.client.fetch_all(Reference.parse(value),
                                          [layer.descriptor for layer in image.layers],
                                          self.store, on_progress)
                else:
                    image = self.client.pull_image(Reference.parse(value), platform,
                                                   self.store, on_progress)
                from ocibuild.store.images import record_image

                record_image(self.store, pull_root(value, platform), image)
                source = Reference.parse(value)
                with self._lock:
                    for layer in image.layers:
                        self._origins.setdefault(layer.digest, source)
            else:
                image = resolved if resolved is not None else self._from_layout(value, platform)
        except BaseException as exc:
            if vertex is not None:
                vertex.error(str(exc))
            raise
        if vertex is not None:
            vertex.done()
        return image

    def _from_layout(self, spec: str, platform: Platform) -> Image:
        """An image from an OCI layout (directory or tar) ``PATH[:TAG|@DIGEST]``: the entry
        named by tag (or the digest, or the only one), an index resolved for ``platform``,
        blobs copied into the store, verified (C's ``OciLayout`` reads and verifies)."""
        from ocibuild.digest import Digest
        from ocibuild.image import Descriptor, Index
        from ocibuild.output.layout import OciLayout

        path, selector = split_layout_spec(spec)
        lay = OciLayout(Path(path))
        if selector is not None and ":" in selector and selector.startswith("sha"):
            digest = Digest.parse(selector)
            found = [d for d in lay.index.manifests if d.digest == digest]
            desc = found[0] if found else Descriptor("", digest, 0)
        else:
            desc = lay.resolve(selector)
        manifest = lay.read_manifest(desc)
        if isinstance(manifest, Index):
            chosen = manifest.select(platform)
            if chosen is None:
                raise UsageError(f"oci-layout://{spec}: no image for platform {platform}")
            manifest = lay.read_manifest(chosen)
        if isinstance(manifest, Index):
            raise UsageError(f"oci-layout://{spec}: nested index")
        config_raw = lay.get_bytes(manifest.config.digest)
        for layer in manifest.layers:
            if not self.store.has(layer.digest):
                with lay.open(layer.digest) as src:
                    self.store.put_stream(src, expected=layer.digest, size=layer.size)
        return Image.from_manifest(manifest, config_raw)


def split_layout_spec(spec: str) -> tuple[str, str | None]:
    """``/p/layout@sha256:..`` -> (path, "sha256:.."); ``/p/layout:tag`` -> (path, "tag")."""
    if "@" in spec:
        path, _, digest = spec.rpartition("@")
        return path, digest
    head, sep, tail = spec.rpartition(":")
    if sep and "/" not in tail and head:
        return head, tail
    return spec, None
