"""``Layer`` and ``Image`` values, and deriving new images from old ones.

An ``Image`` is a config plus its layers, oldest first. Its invariant (checked on creation):
one layer per ``rootfs.diff_ids`` entry, in order. History is *not* required to match the
layers (real base images often have short or no history); ``normalize_history`` makes it match
the way BuildKit's exporter does, and ``validate_image`` in the test kit checks it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import ContentError
from ocibuild.image.config import History, ImageConfig
from ocibuild.image.descriptor import Descriptor
from ocibuild.image.manifest import Manifest
from ocibuild.image.platform import Platform


@dataclass(frozen=True)
class Layer:
    """A layer blob's descriptor and the digest of its uncompressed tar (the diff id)."""

    descriptor: Descriptor
    diff_id: Digest

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def size(self) -> int:
        return self.descriptor.size

    @property
    def media_type(self) -> str:
        return self.descriptor.media_type


@dataclass(frozen=True)
class Image:
    """An image: config and layers (oldest first). ``manifest`` is the manifest it was read
    from, kept only while the image is unchanged (``append``/``with_config`` drop it)."""

    config: ImageConfig
    layers: tuple[Layer, ...] = ()
    manifest: Manifest | None = None

    def __post_init__(self) -> None:
        diff_ids = self.config.diff_ids
        if tuple(layer.diff_id for layer in self.layers) != diff_ids:
            raise ContentError(
                f"image: {len(self.layers)} layers do not match the config's "
                f"{len(diff_ids)} rootfs.diff_ids"
            )

    @property
    def history(self) -> tuple[History, ...]:
        return self.config.history

    @property
    def platform(self) -> Platform:
        return self.config.platform

    @classmethod
    def empty(cls, platform: Platform) -> Image:
        """``FROM scratch``."""
        return cls(ImageConfig.empty(platform))

    @classmethod
    def from_manifest(cls, manifest: Manifest, config_raw: bytes) -> Image:
        """The image a manifest describes; ``config_raw`` must be the blob it names."""
        if Digest.of_bytes(config_raw) != manifest.config.digest:
            raise ContentError(
                f"manifest {manifest.digest}: config bytes do not match {manifest.config.digest}"
            )
        config = ImageConfig.parse(config_raw)
        diff_ids = config.diff_ids
        if len(diff_ids) != len(manifest.layers):
            raise ContentError(
                f"manifest {manifest.digest}: {len(manifest.layers)} layers but the config has "
                f"{len(diff_ids)} diff_ids"
            )
        layers = tuple(Layer(d, i) for d, i in zip(manifest.layers, diff_ids, strict=True))
        return cls(config, layers, manifest)

    def with_config(self, config: ImageConfig) -> Image:
        """The same layers under another config (its diff_ids must still match)."""
        return Image(config, self.layers)


def append(image: Image, layer: Layer | None, history: History) -> Image:
    """A new image with ``layer`` on top and ``history`` recorded for it.

    ``layer=None`` records an empty-layer history entry (ENV, CMD, ...): ``empty_layer`` is
    forced on (and off when a layer is given). The entry goes after the existing history, even
    when a base image's history is short: BuildKit fills such gaps only at export time (see
    ``normalize_history``).
    """
    if layer is None:
        history = replace(history, empty_layer=True)
        config = image.config
        layers = image.layers
    else:
        history = replace(history, empty_layer=False)
        layers = (*image.layers, layer)
        config = image.config.with_diff_ids([x.diff_id for x in layers])
    config = config.with_history([*image.config.history, history])
    return Image(config, layers)


#: The comment BuildKit's exporter puts on history entries it adds for unaccounted layers.
EXPORTER_HISTORY_COMMENT = "buildkit.exporter.image.v0"


def normalize_history(image: Image, missing: History | None = None) -> Image:
    """Make the history account for every layer, as BuildKit's exporter does before writing:
    entries claiming more layers than exist are turned into empty-layer entries from the
    bottom (the later ones), and layers without an entry get ``missing`` appended at the end
    (default: no text, comment ``buildkit.exporter.image.v0``). Returns ``image`` unchanged
    when it already matches."""
    history = list(image.config.history)
    with_layer = sum(1 for h in history if not h.empty_layer)
    n = len(image.layers)
    if with_layer == n:
        return image
    if with_layer > n:
        seen, fixed = 0, []
        for h in history:
            if seen >= n and not h.empty_layer:
                h = replace(h, empty_layer=True)
            if not h.empty_layer:
                seen += 1
            fixed.append(h)
        history = fixed
    else:
        pad = missing or History(comment=EXPORTER_HISTORY_COMMENT)
        history.extend(replace(pad, empty_layer=False) for _ in range(n - with_layer))
    return image.with_config(image.config.with_history(history))


def fill_history_times(image: Image, *, layer_time: str, epoch: str | None = None) -> Image:
    """History ``created`` times as BuildKit's image exporter completes them: an entry with a
    layer and no time gets ``layer_time`` (BuildKit: when the layer entered its cache), then
    every entry still without one takes the first new layer's time (or the entry before it);
    with ``SOURCE_DATE_EPOCH`` (``epoch``) the filled times are the epoch, as BuildKit clamps
    every entry that differs from the base image's. Entries that have a time keep it (a
    base image's history is never rewritten). Returns ``image`` itself when nothing is missing.
    """
    history = list(image.config.history)
    if all(h.created for h in history):
        return image
    fill = epoch or layer_time
    history = [replace(h, created=fill) if not h.created and not h.empty_layer else h
               for h in history]
    created: str | None = None
    gap = False
    for h in history:  # the first time after a gap, else the last time
        if h.created:
            created = h.created
            if gap:
                break
        else:
            gap = True
    gap = False
    out = []
    for h in history:
        if h.created:
            if gap:
                created = h.created
        else:
            gap = True
            h = replace(h, created=epoch or created)
        out.append(h)
    return image.with_config(image.config.with_history(out))


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """The OCI chain ids of a layer stack (oldest first): ``chain[0] = diff[0]``,
    ``chain[n] = sha256(chain[n-1] + " " + diff[n])``. Snapshots are keyed by these."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        out.append(diff_id if not out else Digest.of_bytes(f"{out[-1]} {diff_id}".encode()))
    return out


def config_descriptor(image: Image, *, oci: bool = True) -> Descriptor:
    """The descriptor of ``image.config.to_bytes()``."""
    raw = image.config.to_bytes()
    return Descriptor(mt.OCI_CONFIG if oci else mt.DOCKER_CONFIG, Digest.of_bytes(raw), len(raw))


def build_manifest_value(
    image: Image, *, oci: bool = True, annotations: Mapping[str, str] | None = None
) -> Manifest:
    """The manifest for ``image``; layer media types are converted to the chosen flavour.

    When the image is unchanged from a manifest of the requested flavour (and no annotations are
    asked for), that manifest is returned as is, so copying keeps digests.
    """
    want = mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST
    if image.manifest is not None and image.manifest.media_type == want and not annotations:
        return image.manifest
    convert = mt.to_oci if oci else mt.to_docker
    layers: Sequence[Descriptor] = [
        Descriptor(
            convert(layer.media_type),
            layer.digest,
            layer.size,
            None,
            layer.descriptor.annotations,
            layer.descriptor.urls,
        )
        for layer in image.layers
    ]
    return Manifest.build(
        config_descriptor(image, oci=oci), layers, media_type=want, annotations=annotations
    )


def build_manifest(
    image: Image, oci: bool = True, annotations: Mapping[str, str] | None = None
) -> bytes:
    """Manifest bytes for ``image`` (see ``build_manifest_value``)."""
    return build_manifest_value(image, oci=oci, annotations=annotations).raw
