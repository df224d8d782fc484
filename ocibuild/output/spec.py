"""``--output`` specs as ``docker buildx build`` spells them, parsed into values.

    type=oci,dest=FILE|DIR[,tar=false]     OCI image layout (tar, or a directory)
    type=docker,dest=FILE                   a ``docker load`` archive, tags included
    type=image,name=REF[,push=true]         push to a registry (``type=registry`` implies push)
    type=local,dest=DIR                     the final filesystem as a directory
    type=tar,dest=FILE                      the final filesystem as a tar

Common attributes: ``name=`` (comma-separated in CSV quoting; ``-t`` names win, as in buildx),
``oci-mediatypes=true|false``, ``compression=gzip|zstd|uncompressed``, ``compression-level=N``,
``force-compression=true``, ``annotation[-TYPE][PLATFORM].KEY=V`` (TYPE: manifest,
manifest-descriptor, index, index-descriptor; see ``ocibuild.output.annotations``). ``--push``
adds ``type=registry``; a bare ``--output DIR`` means ``type=local,dest=DIR``.
``registry.insecure=true`` lets a push use plain HTTP. Other attributes are ignored with a
warning, as BuildKit ignores them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from ocibuild.errors import UsageError
from ocibuild.output.annotations import Annotation, Annotations, parse_attr

TYPES = ("oci", "docker", "image", "registry", "local", "tar")


@dataclass(frozen=True)
class OutputSpec:
    type: str
    dest: str | None = None
    names: tuple[str, ...] = ()
    push: bool = False
    tar: bool = True
    oci_mediatypes: bool = True
    compression: str | None = None
    compression_level: int | None = None
    force_compression: bool = False
    annotations: Annotations = Annotations()
    insecure: bool = False  # registry.insecure=true: push over plain HTTP (or unverified TLS)
    # rewrite-timestamp=true: layer file times clamped to SOURCE_DATE_EPOCH (BuildKit's image
    # exporters leave them as made otherwise).
    rewrite_timestamp: bool = False
    ignored: tuple[str, ...] = ()  # attributes BuildKit would take that we do not use

    @property
    def is_image(self) -> bool:
        """Outputs that carry an image (manifest + config), not a bare filesystem."""
        return self.type in ("oci", "docker", "image", "registry")


def _bool(key: str, value: str) -> bool:
    if value.lower() in ("true", "1", ""):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise UsageError(f"--output: {key}={value!r} is not a boolean")


def parse_output(spec: str, tags: tuple[str, ...] = ()) -> OutputSpec:
    """One ``--output`` value; ``tags`` (from ``-t``) name the image when ``name=`` is absent."""
    if "=" not in spec and "," not in spec:
        return OutputSpec("local", dest=spec) if spec != "-" else OutputSpec("tar", dest="-")
    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration) as exc:
        raise UsageError(f"invalid --output {spec!r}: {exc}") from exc
    attrs: dict[str, str] = {}
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"invalid --output {spec!r}: {item!r} is not KEY=VALUE")
        attrs[key.strip().lower() if not key.startswith("annotation") else key.strip()] = value
    kind = attrs.pop("type", "")
    if kind not in TYPES:
        raise UsageError(f"invalid --output {spec!r}: type must be one of {', '.join(TYPES)}")
    dest = attrs.pop("dest", None)
    # buildx puts -t's names in name= (of image, oci and docker outputs), over what it had.
    named = tuple(n for n in attrs.pop("name", "").split(",") if n)
    names = tags or named
    insecure = _bool("registry.insecure", attrs.pop("registry.insecure", "false"))
    push = kind == "registry" or _bool("push", attrs.pop("push", "false"))
    tar = _bool("tar", attrs.pop("tar", "true"))
    # OCI media types by default for every exporter, docker included: current BuildKit
    # (compatibility version 31, moby/buildkit 6147354ae); 0.13 wrote Docker types there.
    oci = _bool("oci-mediatypes", attrs.pop("oci-mediatypes", "true"))
    compression = attrs.pop("compression", None)
    if compression is not None and compression not in ("gzip", "zstd", "uncompressed"):
        raise UsageError(f"--output: compression={compression!r}: want gzip, zstd or uncompressed")
    level = attrs.pop("compression-level", None)
    force = _bool("force-compression", attrs.pop("force-compression", "false"))
    rewrite = _bool("rewrite-timestamp", attrs.pop("rewrite-timestamp", "false"))
    found: list[Annotation] = []
    for key in [k for k in attrs if k.startswith("annotation")]:
        parsed = parse_attr(key, attrs[key])
        if parsed is None:
            raise UsageError(f"--output: unsupported annotation key {key!r}")
        found.append(parsed)
        del attrs[key]
    for ignored in ("unpack", "store", "name-canonical", "dangling-name-prefix", "buildinfo"):
        attrs.pop(ignored, None)
    # BuildKit's exporters keep attributes they do not know as metadata and go on: so do we,
    # with a warning (``ignored``), rather than fail a command line that works with buildx.
    if kind in ("oci", "docker", "local", "tar") and not dest:
        raise UsageError(f"--output type={kind} needs dest=")
    if kind in ("image", "registry") and push and not names:
        raise UsageError(f"--output type={kind}: pushing needs name= or -t")
    try:
        level_int = int(level) if level is not None else None
    except ValueError as exc:
        raise UsageError(f"--output: compression-level={level!r} is not a number") from exc
    return OutputSpec(kind, dest, names, push, tar, oci, compression, level_int, force,
                      Annotations(tuple(found)), insecure, rewrite and kind not in ("local", "tar"),
                      tuple(sorted(attrs)))


def parse_outputs(specs: tuple[str, ...], tags: tuple[str, ...], push: bool) -> list[OutputSpec]:
    """Every output of a build; ``--push`` adds a registry output for ``-t`` names."""
    out = [parse_output(s, tags) for s in specs]
    if push:
        if not tags:
            raise UsageError("--push needs at least one -t NAME")
        if not any(o.push for o in out):
            out.append(OutputSpec("registry", names=tags, push=True))
    return out
