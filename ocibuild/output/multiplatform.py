"""Outputs of a multi-platform build (``--platform linux/amd64,linux/arm64``): one image per
platform, written as BuildKit writes them.

- ``oci``: an image index (``application/vnd.oci.image.index.v1+json``, or a Docker manifest
  list with ``oci-mediatypes=false``) whose entries carry each image's platform; index.json
  names the index.
- ``image``/``registry`` with ``push=true``: every platform's blobs and manifest (by digest),
  then the index under each name.
- ``local``: one directory per platform, ``<dest>/linux_amd64`` etc.
- ``docker`` and ``tar``: refused, as BuildKit refuses ``docker`` ("does not currently support
  exporting manifest lists").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ocibuild import mediatypes as mt
from ocibuild.digest import Digest
from ocibuild.errors import OutputError
from ocibuild.image import Descriptor, Image, Index
from ocibuild.image.platform import Platform
from ocibuild.output.export import _names, _recompressed, _title, _write_oci, manifest_for
from ocibuild.output.spec import OutputSpec


def check_outputs(outputs: Sequence[OutputSpec]) -> None:
    """Refuse, before any build starts, what cannot hold several platforms."""
    for out in outputs:
        if out.type == "docker":
            raise OutputError("docker exporter does not currently support exporting manifest "
                              "lists (several --platform values)",
                              hint="use type=oci or push to a registry")
        if out.type == "tar":
            raise OutputError("type=tar with several --platform values is not supported",
                              hint="use type=local (one directory per platform)")


def _index(images: Sequence[tuple[Platform, Image]], store: Any, out: OutputSpec,
           annotations: dict[str, str]) -> tuple[Index, list[tuple[Image, Any]]]:
    entries: list[Descriptor] = []
    manifests: list[tuple[Image, Any]] = []
    for platform, image in images:
        img = _recompressed(image, out, store)
        manifest, desc = manifest_for(img, store, oci=out.oci_mediatypes, annotations=annotations)
        entries.append(desc.with_platform(platform))
        manifests.append((img, manifest))
    kind = mt.OCI_INDEX if out.oci_mediatypes else mt.DOCKER_MANIFEST_LIST
    index = Index.build(entries, media_type=kind)
    store.put_bytes(index.raw)
    return index, manifests


def write_index_outputs(outputs: Sequence[OutputSpec], images: Sequence[tuple[Platform, Image]],
                        store: Any, sources: Any, options: Any,
                        progress: Any) -> tuple[list[str], dict[str, Any], Digest]:
    """Write each output for several platforms; returns what was written, buildx-style
    metadata and the index digest (of the first image output, else an OCI index)."""
    from ocibuild.output.rootfs import write_rootfs

    annotations = dict(options.annotations or {})
    first: Index | None = None  # the index of the first image output: the one metadata names
    written: list[str] = []
    names: list[str] = []
    for out in outputs:
        with progress.step(f"exporting to {_title(out)}") as vertex:
            if out.type == "local":
                for platform, image in images:
                    dest = Path(out.dest or ".") / f"{platform.os}_{platform.architecture}" \
                        f"{'_' + platform.variant if platform.variant else ''}"
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    write_rootfs(image, store, str(dest), as_tar=False)
            else:
                index, manifests = _index(images, store, out,
                                          {**annotations, **out.annotations})
                first = first or index
                desc = index.descriptor()
                if out.type == "oci":
                    _write_oci(out, desc, store)
                elif out.push:
                    _push_index(out, index, manifests, store, sources, vertex)
            written.append(out.type + (f" {out.dest}" if out.dest else ""))
            names.extend(n for n in out.names if n not in names)
    if first is None:  # only local outputs: name the OCI index the images make
        first, _ = _index(images, store, OutputSpec("oci"), annotations)
    metadata: dict[str, Any] = {
        "containerimage.descriptor": {"mediaType": first.media_type,
                                      "digest": str(first.digest), "size": first.size},
        "containerimage.digest": str(first.digest),
    }
    if names:
        metadata["image.name"] = ",".join(names)
    return written, metadata, first.digest


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
