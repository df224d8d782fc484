"""Writing a build's outputs: OCI layout (tar or dir), docker archive, registry push, the final
filesystem (dir or tar), and ``--metadata-file`` / ``--iidfile``.

Every file output is atomic (C's layout writers and ``atomic_file``/``atomic_dir`` build beside
the destination and rename); a push uploads blobs before the manifest, so a registry never
names an image whose blobs are missing.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import OutputError, UsageError
from ocibuild.image import (
    Descriptor,
    Image,
    ImageConfig,
    Layer,
    Manifest,
    build_manifest_value,
    fill_history_times,
    format_time,
)
from ocibuild.image._json import go_json
from ocibuild.output.annotations import Annotations, parse_cli
from ocibuild.output.spec import OutputSpec, parse_outputs
from ocibuild.reference import Reference

CREATED = "org.opencontainers.image.created"


def plan_outputs(options: Any) -> list[OutputSpec]:
    """Parse and check every ``--output`` (and ``--push``) before the build starts."""
    outputs = parse_outputs(tuple(options.outputs), tuple(options.tags), bool(options.push))
    # The build's --compression (default gzip) is every output's unless it names its own.
    default = getattr(options, "compression", None) or "gzip"
    level = getattr(options, "compression_level", None)
    outputs = [out if out.compression is not None else
               replace(out, compression=default, compression_level=(
                   level if out.compression_level is None else out.compression_level))
               for out in outputs]
    if getattr(options, "iidfile", None) and any(o.type in ("local", "tar") for o in outputs):
        raise UsageError("local and tar exporters are incompatible with image ID file")
    common = build_annotations(options)  # a malformed --annotation fails before the build
    several = "," in (getattr(options, "platform", None) or "")
    for out in outputs:
        if out.is_image:
            annotations = common.merged(out.annotations)
            if several:
                annotations.check_media_types(oci=out.oci_mediatypes)
            else:
                annotations.check_single_platform(oci=out.oci_mediatypes)
    return outputs


def build_annotations(options: Any) -> Annotations:
    """``--annotation`` values of ``options`` (buildx's ``[TYPE[PLATFORM]:]KEY=VALUE``)."""
    return parse_cli(dict(getattr(options, "annotations", None) or {}))


def layer_epoch(outputs: Sequence[OutputSpec], epoch: int | None,
                rewrite: bool = False) -> int | None:
    """The time new layers' file times are clamped to: ``SOURCE_DATE_EPOCH`` when an image
    output asks for it (``rewrite-timestamp=true``, as BuildKit's exporters), else none: the
    epoch alone sets the config's and history's times (and WORKDIR's directories), not the
    files'. Layers are made once for every output, so one output asking is enough (or
    ``rewrite``, the build's own flag)."""
    return epoch if rewrite or any(out.rewrite_timestamp for out in outputs) else None


def source_date_epoch(options: Any) -> int | None:
    """``SOURCE_DATE_EPOCH`` as buildx passes it: the build arg, else the environment."""
    value = (dict(getattr(options, "build_args", None) or {}).get("SOURCE_DATE_EPOCH")
             or os.environ.get("SOURCE_DATE_EPOCH"))
    if not value:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise UsageError(f"invalid SOURCE_DATE_EPOCH {value!r}: want seconds") from exc


def created_annotation(epoch: int | None) -> dict[str, str]:
    """``org.opencontainers.image.created`` as BuildKit's exporters add it to the manifest's
    descriptor: RFC 3339 in whole seconds, the export time or ``SOURCE_DATE_EPOCH``."""
    when = time.gmtime(epoch if epoch is not None else time.time())
    return {CREATED: time.strftime("%Y-%m-%dT%H:%M:%SZ", when)}


def normalized_name(name: str) -> str:
    """A name as BuildKit reports it (``image.name``): fully qualified, ``:latest`` added
    unless it has a tag or digest (``ParseNormalizedNamed`` + ``TagNameOnly``)."""
    ref = Reference.parse(name)
    return str(ref) if ref.tag or not ref.digest else str(ref).replace(":latest@", "@")


def for_export(image: Image, epoch: int | None) -> Image:
    """The image as BuildKit's exporter completes it before writing: history entries without
    a time get one (``fill_history_times``; the build's time, or ``SOURCE_DATE_EPOCH``), and a
    config without a time takes the last entry's (none when no entry has one: the config of an
    image with no layers and no base has ``"created": null``)."""
    now = image.config.created or format_time(time.time())
    image = fill_history_times(image, layer_time=now,
                               epoch=format_time(epoch) if epoch is not None else None)
    if image.config.created is None:
        times = [h.created for h in image.config.history if h.created]
        data = image.config.to_json()
        data["created"] = times[-1] if times else None  # null as Go writes a nil time
        image = image.with_config(ImageConfig(data))
    return image


def manifest_for(image: Image, store: Any, *, oci: bool,
                 annotations: Mapping[str, str] | None = None) -> tuple[Manifest, Descriptor]:
    """The manifest of ``image`` in the wanted flavour, its bytes and the config's stored in
    ``store`` (so the store is a blob source for every layout writer), and its descriptor."""
    if not oci:
        image = _docker_zstd(image)
    manifest = build_manifest_value(image, oci=oci, annotations=annotations or None)
    config_raw = image.config.to_bytes()
    store.put_bytes(config_raw)
    store.put_bytes(manifest.raw)
    return manifest, Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))


def _docker_zstd(image: Image) -> Image:
    """zstd layers under Docker media types name themselves
    ``application/vnd.docker.image.rootfs.diff.tar.zstd``, as BuildKit's exporter converts them
    (``compression.ConvertAllLayerMediaTypes``; ``ocibuild copy`` keeps the OCI type)."""
    if not any(layer.media_type == mt.OCI_LAYER_ZSTD for layer in image.layers):
        return image
    layers = tuple(Layer(replace(layer.descriptor, media_type=mt.DOCKER_LAYER_ZSTD),
                         layer.diff_id) if layer.media_type == mt.OCI_LAYER_ZSTD else layer
                   for layer in image.layers)
    return Image(image.config, layers)


def exported_descriptor(desc: Descriptor, image: Image, annotations: Annotations,
                        created: Mapping[str, str]) -> Descriptor:
    """The manifest's descriptor as BuildKit's image writer returns it: the image's platform,
    the ``manifest-descriptor`` annotations, and ``created`` unless one of those set it."""
    platform = image.platform
    extra = {**created, **annotations.manifest_descriptor(platform)}
    return desc.with_platform(platform).with_annotations(extra)


def descriptor_json(desc: Descriptor) -> dict[str, Any]:
    """A descriptor as buildx's metadata file holds it (Go's field order)."""
    return desc.to_json()


def image_id(metadata: Mapping[str, Any]) -> str:
    """What buildx prints for ``--quiet`` and writes to ``--iidfile``: the config digest when
    the exporter reports one, else the image digest; empty without an image output."""
    return str(metadata.get("containerimage.config.digest")
               or metadata.get("containerimage.digest") or "")


def build_ref() -> str:
    """``buildx.build.ref`` in buildx's ``BUILDER/NODE/ID`` shape (25 lowercase base-36
    characters); nothing can look it up, it only tells builds apart."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "ocibuild/ocibuild/" + "".join(secrets.choice(alphabet) for _ in range(25))


def write_outputs(outputs: Sequence[OutputSpec], image: Image, store: Any, images: Any,
                  options: Any, progress: Any, streamed: Mapping[Digest, int] | None = None,
                  layer_dir: Callable[[Digest], Path | None] | None = None,
                  ) -> tuple[list[str], dict[str, Any], Digest]:
    """Write each output; returns what was written, buildx-style metadata and the digest of
    the (first image output's, else the OCI) manifest. ``streamed``: the blobs the build
    already uploaded to the first push's repository (``registry.streamed``), with their sizes.
    ``layer_dir``: where the build keeps a layer's unpacked dir (``output.rootfs`` takes the
    filesystem outputs' exact times from them).

    The metadata keys are buildx's: ``buildx.build.ref`` always; ``containerimage.digest``,
    ``containerimage.config.digest``, ``containerimage.descriptor`` and ``image.name`` of the
    first output that carries an image (BuildKit's local and tar exporters report none):
    the oci/docker exporters add ``created`` to the descriptor and normalise the names, the
    image exporter reports them as given.
    """
    written: list[str] = []
    common = build_annotations(options)
    epoch = source_date_epoch(options)
    created = created_annotation(epoch)
    image = for_export(image, epoch)
    for out in outputs:
        if out.is_image:
            common.merged(out.annotations).check_single_platform(oci=out.oci_mediatypes)
    first = next((o for o in outputs if o.is_image), None)
    default_oci = first.oci_mediatypes if first is not None else True
    manifest, desc = manifest_for(image, store, oci=default_oci,
                                  annotations=common.manifest() or None)
    reported: Descriptor | None = None  # the first image output's: what the metadata names
    names: list[str] = []
    for out in outputs:
        what = f"{out.type}" + (f" {out.dest}" if out.dest else "")
        with progress.step(f"exporting to {_title(out)}") as vertex:
            img = _recompressed(image, out, store, images)
            annotations = common.merged(out.annotations)
            m, d = manifest_for(img, store, oci=out.oci_mediatypes,
                                annotations=annotations.manifest())
            d = exported_descriptor(d, img, annotations, created if _is_file(out) else {})
            match out.type:
                case "oci":
                    _write_oci(out, d, store)
                case "docker":
                    _write_docker(out, d, store)
                case "image" | "registry":
                    if out.push:
                        _push(out, img, m, store, images, vertex,
                              streamed if out is _first_push(outputs) else None)
                case "local" | "tar":
                    from ocibuild.output.rootfs import write_rootfs

                    write_rootfs(img, store, out.dest or "", as_tar=out.type == "tar",
                                 epoch=epoch, layer_dir=layer_dir)
            written.append(what)
            if out.is_image and reported is None:
                reported, names = d, reported_names(out)
    metadata: dict[str, Any] = {"buildx.build.ref": build_ref()}
    if reported is not None:
        metadata["containerimage.config.digest"] = str(image.config.digest)
        metadata["containerimage.descriptor"] = descriptor_json(reported)
        metadata["containerimage.digest"] = str(reported.digest)
        if names:
            metadata["image.name"] = ",".join(names)
    return written, metadata, reported.digest if reported is not None else desc.digest


def _is_file(out: OutputSpec) -> bool:
    """The oci and docker exporters (files), which add ``created`` to the descriptor and
    normalise names; the image exporter (a push) does neither."""
    return out.type in ("oci", "docker")


def reported_names(out: OutputSpec) -> list[str]:
    """``image.name`` of an output as its BuildKit exporter reports it."""
    names = list(dict.fromkeys(out.names))
    return [normalized_name(n) for n in names] if _is_file(out) else names


def _title(out: OutputSpec) -> str:
    return {"oci": "oci image format", "docker": "docker image format", "image": "image",
            "registry": "image", "local": "client directory", "tar": "client tarball"}[out.type]


def _recompressed(image: Image, out: OutputSpec, store: Any, images: Any = None) -> Image:
    """Layers in the output's ``compression=`` (see ``recompress_image``: base layers, those
    ``images`` pulled, change only with ``force-compression``), streamed through the store.
    Outputs that carry no blobs keep the layers as the build left them (uncompressed): the
    filesystem ones and an image kept in the store without a push."""
    want = out.compression
    if want is None or not compresses(out):
        return image
    from ocibuild.output.recompress import recompress_image

    base = images.pulled_from() if hasattr(images, "pulled_from") else {}
    return recompress_image(image, store, want, out.compression_level,
                            force=out.force_compression, base=base)


def compresses(out: OutputSpec) -> bool:
    """Whether ``out`` writes or pushes image blobs (and so compresses the build's layers)."""
    return out.type in ("oci", "docker") or (out.type in ("image", "registry") and out.push)


def output_compression(outputs: Sequence[OutputSpec]) -> tuple[str, int | None] | None:
    """The compression and level of the first output that compresses layers, if any."""
    for out in outputs:
        if compresses(out) and out.compression is not None:
            return out.compression, out.compression_level
    return None


def streamed_push_target(outputs: Sequence[OutputSpec]) -> Reference | None:
    """Where the build may upload the image's layers while it commits them
    (``registry.streamed``): the first name of the first push, when that push wants the layers
    in the compression the commits write them in (``output_compression``)."""
    want = output_compression(outputs)
    out = _first_push(outputs)
    if out is None or not out.names or want is None or out.compression != want[0]:
        return None
    return _names(out)[0]


def _first_push(outputs: Sequence[OutputSpec]) -> OutputSpec | None:
    return next((o for o in outputs if o.type in ("image", "registry") and o.push), None)


def _names(out: OutputSpec) -> list[Reference]:
    return [Reference.parse(n) for n in out.names]


def _write_oci(out: OutputSpec, desc: Descriptor, store: Any) -> None:
    from ocibuild.output import layout

    entries = [layout.annotate(desc, layout.ref_annotations(r)) for r in _names(out)]
    dest = out.dest or ""
    if not entries:
        # buildx names an unnamed image in a layout directory "latest" (its ociindex store);
        # containerd's archive exporter leaves it unnamed in a tar.
        entries = [desc if out.tar or dest == "-" else
                   layout.annotate(desc, {layout.REF_NAME: "latest"})]
    if dest == "-":
        layout.write_oci_archive(sys.stdout.buffer, entries, store)
    elif out.tar:
        layout.write_oci_archive(Path(dest), entries, store)
    else:
        # buildx creates a layout directory's missing parents (a tar's must exist).
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        layout.write_oci_layout(Path(dest), entries, store)


def _write_docker(out: OutputSpec, desc: Descriptor, store: Any) -> None:
    from ocibuild.output import layout

    image = layout.DockerImage(desc, tuple(_names(out)))
    dest = out.dest or ""
    target: Any = sys.stdout.buffer if dest == "-" else Path(dest)
    layout.write_docker_archive(target, [image], store, docker_save=False)


def _push(out: OutputSpec, image: Image, manifest: Manifest, store: Any, images: Any,
          vertex: Any = None, streamed: Mapping[Digest, int] | None = None) -> None:
    """Blobs (with a transfer line/bar each on ``vertex``), then the manifest. The layers in
    ``streamed`` went up while the build committed them: shown as sent, not sent again."""
    refs = _names(out)
    client = images.client

    def on_progress(digest: Digest, done: int, total: int) -> None:
        if vertex is not None:
            vertex.status(str(digest), done, total)

    for layer in manifest.layers:
        if streamed and layer.digest in streamed:
            on_progress(layer.digest, layer.size, layer.size)

    # A layer pulled from a repository of the same registry is mounted from there (no upload;
    # the registry falls back to an upload session when it cannot mount).
    origins = images.pulled_from() if hasattr(images, "pulled_from") else {}
    client.push_manifest_and_blobs(manifest, refs, store, mount_from=origins.get,
                                   on_progress=on_progress, present=streamed or ())


def write_metadata(options: Any, result: Any) -> None:
    """``--metadata-file`` (buildx's JSON: keys sorted, as Go writes a map; a descriptor's
    fields in Go's struct order) and ``--iidfile`` (``image_id``: the config digest)."""
    from ocibuild.output._atomic import atomic_file

    try:
        if options.metadata_file:
            data = {k: result.metadata[k] for k in sorted(result.metadata)}
            with atomic_file(Path(options.metadata_file)) as f:
                f.write(go_json(data, indent="  "))  # MarshalIndent: no final newline
        if options.iidfile:
            value = image_id(result.metadata) or str(result.config_digest)
            with atomic_file(Path(options.iidfile)) as f:
                f.write(value.encode())
    except OSError as exc:
        raise OutputError(f"write build metadata: {exc.strerror}") from exc
