"""Writing a build's outputs: OCI layout (tar or dir), docker archive, registry push, the final
filesystem (dir or tar), and ``--metadata-file`` / ``--iidfile``.

Every file output is atomic (C's layout writers and ``atomic_file``/``atomic_dir`` build beside
the destination and rename); a push uploads blobs before the manifest, so a registry never
names an image whose blobs are missing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ocibuild.digest import Digest
from ocibuild.errors import OutputError
from ocibuild.image import Descriptor, Image, Manifest, build_manifest_value
from ocibuild.output.spec import OutputSpec, parse_outputs
from ocibuild.reference import Reference


def plan_outputs(options: Any) -> list[OutputSpec]:
    """Parse and check every ``--output`` (and ``--push``) before the build starts."""
    return parse_outputs(tuple(options.outputs), tuple(options.tags), bool(options.push))


def manifest_for(image: Image, store: Any, *, oci: bool,
                 annotations: Mapping[str, str] | None = None) -> tuple[Manifest, Descriptor]:
    """The manifest of ``image`` in the wanted flavour, its bytes and the config's stored in
    ``store`` (so the store is a blob source for every layout writer), and its descriptor."""
    manifest = build_manifest_value(image, oci=oci, annotations=annotations or None)
    config_raw = image.config.to_bytes()
    store.put_bytes(config_raw)
    store.put_bytes(manifest.raw)
    return manifest, Descriptor(manifest.media_type, manifest.digest, len(manifest.raw))


def write_outputs(outputs: Sequence[OutputSpec], image: Image, store: Any, images: Any,
                  options: Any, progress: Any) -> tuple[list[str], dict[str, Any], Digest]:
    """Write each output; returns what was written, buildx-style metadata and the digest of
    the (first image output's, else the OCI) manifest."""
    written: list[str] = []
    annotations = dict(options.annotations or {})
    default_oci = next((o.oci_mediatypes for o in outputs if o.is_image), True)
    manifest, desc = manifest_for(image, store, oci=default_oci, annotations=annotations)
    metadata: dict[str, Any] = {
        "containerimage.config.digest": str(image.config.digest),
        "containerimage.descriptor": {"mediaType": desc.media_type, "digest": str(desc.digest),
                                      "size": desc.size},
        "containerimage.digest": str(desc.digest),
    }
    names: list[str] = []
    for out in outputs:
        what = f"{out.type}" + (f" {out.dest}" if out.dest else "")
        with progress.step(f"exporting to {_title(out)}") as vertex:
            img = _recompressed(image, out, store)
            m, d = manifest_for(img, store, oci=out.oci_mediatypes,
                                annotations={**annotations, **out.annotations})
            match out.type:
                case "oci":
                    _write_oci(out, d, store)
                case "docker":
                    _write_docker(out, d, store)
                case "image" | "registry":
                    if out.push:
                        _push(out, img, m, store, images, vertex)
                case "local" | "tar":
                    from ocibuild.output.rootfs import write_rootfs

                    write_rootfs(img, store, out.dest or "", as_tar=out.type == "tar")
            written.append(what)
            names.extend(n for n in out.names if n not in names)
    if names:
        metadata["image.name"] = ",".join(dict.fromkeys(names))
    return written, metadata, desc.digest


def _title(out: OutputSpec) -> str:
    return {"oci": "oci image format", "docker": "docker image format", "image": "image",
            "registry": "image", "local": "client directory", "tar": "client tarball"}[out.type]


def _recompressed(image: Image, out: OutputSpec, store: Any) -> Image:
    """Layers in the output's compression when it asks for another one with
    ``force-compression`` (or for zstd): recompressed through the store, streaming."""
    want = out.compression
    if want is None:
        return image
    from ocibuild.output.recompress import recompress_image

    return recompress_image(image, store, want, out.compression_level, force=out.force_compression)


def _names(out: OutputSpec) -> list[Reference]:
    return [Reference.parse(n) for n in out.names]


def _write_oci(out: OutputSpec, desc: Descriptor, store: Any) -> None:
    from ocibuild.output import layout

    entries = [layout.annotate(desc, layout.ref_annotations(r)) for r in _names(out)] or [desc]
    dest = out.dest or ""
    if dest == "-":
        layout.write_oci_archive(sys.stdout.buffer, entries, store)
    elif out.tar:
        layout.write_oci_archive(Path(dest), entries, store)
    else:
        layout.write_oci_layout(Path(dest), entries, store)


def _write_docker(out: OutputSpec, desc: Descriptor, store: Any) -> None:
    from ocibuild.output import layout

    image = layout.DockerImage(desc, tuple(_names(out)))
    dest = out.dest or ""
    target: Any = sys.stdout.buffer if dest == "-" else Path(dest)
    layout.write_docker_archive(target, [image], store)


def _push(out: OutputSpec, image: Image, manifest: Manifest, store: Any, images: Any,
          vertex: Any = None) -> None:
    """Blobs (with a transfer line/bar each on ``vertex``), then the manifest."""
    refs = _names(out)
    client = images.client

    def on_progress(digest: Digest, done: int, total: int) -> None:
        if vertex is not None:
            vertex.status(str(digest), done, total)

    # A layer pulled from a repository of the same registry is mounted from there (no upload;
    # the registry falls back to an upload session when it cannot mount).
    origins = images.pulled_from() if hasattr(images, "pulled_from") else {}
    client.push_manifest_and_blobs(manifest, refs, store, mount_from=origins.get,
                                   on_progress=on_progress)


def write_metadata(options: Any, result: Any) -> None:
    """``--metadata-file`` (buildx's JSON) and ``--iidfile`` (the image id: the config
    digest, as buildx writes it when the exporter reports one)."""
    from ocibuild.output._atomic import atomic_file

    try:
        if options.metadata_file:
            data = dict(result.metadata)
            with atomic_file(Path(options.metadata_file)) as f:
                f.write(json.dumps(data, indent=2, sort_keys=True).encode() + b"\n")
        if options.iidfile:
            value = result.config_digest  # the image id, as buildx writes it
            with atomic_file(Path(options.iidfile)) as f:
                f.write(str(value).encode())
    except OSError as exc:
        raise OutputError(f"write build metadata: {exc.strerror}") from exc
