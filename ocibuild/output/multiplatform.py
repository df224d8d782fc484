"""Outputs of a multi-platform build (``--platform linux/amd64,linux/arm64``): one image per
platform, written as BuildKit writes them.

- ``oci``: an image index (``application/vnd.oci.image.index.v1+json``, or a Docker manifest
  list with ``oci-mediatypes=false``) whose entries carry each image's platform; index.json
  names the index.
- ``image``/``registry`` with ``push=true``: every platform's blobs and manifest (by digest),
  then the index under each name.
- ``local``: one directory per platform, ``<dest>/linux_amd64`` etc.; ``tar``: one tar with
  those directories (BuildKit's platform split).
- ``docker``: refused, as buildx refuses it ("does not currently support exporting manifest
  lists").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import OutputError
from ocibuild.image import Descriptor, Image, Index
from ocibuild.image.platform import Platform
from ocibuild.output.annotations import Annotations
from ocibuild.output.export import (
    _is_file,
    _names,
    _recompressed,
    _title,
    _write_oci,
    build_annotations,
    build_ref,
    created_annotation,
    descriptor_json,
    for_export,
    manifest_for,
    reported_names,
    source_date_epoch,
)
from ocibuild.output.spec import OutputSpec


def check_outputs(outputs: Sequence[OutputSpec]) -> None:
    """Refuse, before any build starts, what cannot hold several platforms."""
    for out in outputs:
        if out.type == "docker":
            raise OutputError("docker exporter does not currently support exporting manifest "
                              "lists (several --platform values)",
                              hint="use type=oci or push to a registry")


def _index(images: Sequence[tuple[Platform, Image]], store: Any, out: OutputSpec,
           annotations: Annotations, sources: Any = None) -> tuple[Index, list[tuple[Image, Any]]]:
    """The index of one output: each platform's manifest (``manifest`` annotations of that
    platform) under a descriptor with its platform and ``manifest-descriptor`` annotations;
    the index carries the ``index`` annotations."""
    entries: list[Descriptor] = []
    manifests: list[tuple[Image, Any]] = []
    for platform, image in images:
        img = _recompressed(image, out, store, sources)
        manifest, desc = manifest_for(img, store, oci=out.oci_mediatypes,
                                      annotations=annotations.manifest(platform))
        entries.append(desc.with_platform(platform)
                       .with_annotations(annotations.manifest_descriptor(platform)))
        manifests.append((img, manifest))
    kind = mt.OCI_INDEX if out.oci_mediatypes else mt.DOCKER_MANIFEST_LIST
    index = Index.build(entries, media_type=kind, annotations=annotations.index() or None)
    store.put_bytes(index.raw)
    return index, manifests


def write_index_outputs(outputs: Sequence[OutputSpec], images: Sequence[tuple[Platform, Image]],
                        store: Any, sources: Any, options: Any,
                        progress: Any) -> tuple[list[str], dict[str, Any], Digest]:
    """Write each output for several platforms; returns what was written, buildx-style
    metadata and the index digest (of the first image output, else an OCI index).

    The index's descriptor (index.json, metadata) carries the ``index-descriptor``
    annotations and ``org.opencontainers.image.created``; the metadata has no
    ``containerimage.config.digest`` (an index has no config), as BuildKit reports it.
    """
    from ocibuild.output.rootfs import write_rootfs, write_rootfs_tar

    common = build_annotations(options)
    epoch = source_date_epoch(options)
    created = created_annotation(epoch)
    images = [(p, for_export(i, epoch)) for p, i in images]
    for out in outputs:
        if out.is_image:
            common.merged(out.annotations).check_media_types(oci=out.oci_mediatypes)
    first: Descriptor | None = None  # the index of the first image output: metadata names it
    written: list[str] = []
    names: list[str] = []
    for out in outputs:
        with progress.step(f"exporting to {_title(out)}") as vertex:
            if out.type == "local":
                for platform, image in images:
                    dest = Path(out.dest or ".") / _split_name(platform)
                    write_rootfs(image, store, str(dest), as_tar=False, epoch=epoch)
                    # BuildKit's platform directory: 0755, mtime the epoch (else 0).
                    dest.chmod(0o755)
                    os.utime(dest, (epoch or 0, epoch or 0))
            elif out.type == "tar":
                write_rootfs_tar([(_split_name(p), i) for p, i in images], store,
                                 out.dest or "", epoch=epoch)
            else:
                annotations = common.merged(out.annotations)
                index, manifests = _index(images, store, out, annotations, sources)
                stamp = created if _is_file(out) else {}
                desc = index.descriptor(annotations={**stamp, **annotations.index_descriptor()})
                if first is None:
                    first, names = desc, reported_names(out)
                if out.type == "oci":
                    _write_oci(out, desc, store)
                elif out.push:
                    _push_index(out, index, manifests, store, sources, vertex)
            written.append(out.type + (f" {out.dest}" if out.dest else ""))
    metadata: dict[str, Any] = {"buildx.build.ref": build_ref()}
    if first is None:  # only local outputs: name the OCI index the images make
        index, _ = _index(images, store, OutputSpec("oci"), common)
        return written, metadata, index.digest
    metadata["containerimage.descriptor"] = descriptor_json(first)
    metadata["containerimage.digest"] = str(first.digest)
    if names:
        metadata["image.name"] = ",".join(names)
    return written, metadata, first.digest


def _split_name(platform: Platform) -> str:
    """A platform's directory in a split local/tar output: ``linux_arm_v7`` (BuildKit:
    ``FormatAll`` with "/" replaced by "_")."""
    return str(platform).replace("/", "_")


def _push_index(out: OutputSpec, index: Index, manifests: list[tuple[Image, Any]], store: Any,
                sources: Any, vertex: Any) -> None:
    from ocibuild.output.export import _push

    refs = _names(out)
    if not refs:
        raise OutputError("push: no image name (use -t or name=)")
    for _, manifest in manifests:
        # Blobs and the platform manifest, pushed by digest only (no tag moves to it).
        by_digest = OutputSpec(out.type, push=True, names=tuple(
            str(replace(r, tag=None, digest=manifest.digest)) for r in refs))
        _push(by_digest, None, manifest, store, sources, vertex)  # type: ignore[arg-type]
    client = sources.client
    for r in refs:
        client.push_manifest(r, index.raw, index.media_type)
