"""Image annotations as ``docker buildx build`` takes them, and where each kind lands.

``--annotation [TYPE[PLATFORM]:]KEY=VALUE`` and the exporter attributes
``annotation[-TYPE][PLATFORM].KEY=VALUE`` (``--output type=oci,annotation-index.k=v``) name one
of four places, as BuildKit's image writer puts them:

    manifest             the image manifest's ``annotations`` (the default type)
    manifest-descriptor  the descriptor pointing at the manifest (index.json, an index entry,
                         the ``containerimage.descriptor`` metadata)
    index                the image index's ``annotations`` (multi-platform only)
    index-descriptor     the descriptor pointing at the index (index.json; multi-platform only)

A ``[os/arch]`` qualifier limits a manifest or manifest-descriptor annotation to that platform's
image; a single-platform build takes only unqualified ones (BuildKit's ``Platform(nil)``), and
refuses index annotations ("index annotations not supported for single platform export").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ocibuild.errors import UsageError
from ocibuild.image.platform import Platform, parse_platform

MANIFEST = "manifest"
MANIFEST_DESCRIPTOR = "manifest-descriptor"
INDEX = "index"
INDEX_DESCRIPTOR = "index-descriptor"
TYPES = (MANIFEST, MANIFEST_DESCRIPTOR, INDEX, INDEX_DESCRIPTOR)

# buildx's --annotation syntax and BuildKit's exporter attribute syntax.
_CLI = re.compile(r"^(?:([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?:)?(\S+)$")
_ATTR = re.compile(r"^annotation(?:-([a-z-]+))?(?:\[([A-Za-z0-9_/-]+)\])?\.(\S+)$")


@dataclass(frozen=True)
class Annotation:
    type: str  # one of TYPES
    platform: str | None  # normalised "os/arch[/variant]", None for every platform
    key: str
    value: str


@dataclass(frozen=True)
class Annotations:
    """Every annotation of a build, later ones winning on the same (type, platform, key)."""

    items: tuple[Annotation, ...] = ()

    def merged(self, other: Annotations) -> Annotations:
        return Annotations(self.items + other.items)

    def _pick(self, kind: str, platform: Platform | None) -> dict[str, str]:
        wanted = {None} | ({_platform_key(str(platform))} if platform is not None else set())
        out: dict[str, str] = {}
        for a in self.items:  # unqualified first, then the platform's own: BuildKit's order
            if a.type == kind and a.platform is None:
                out[a.key] = a.value
        for a in self.items:
            if a.type == kind and a.platform is not None and a.platform in wanted:
                out[a.key] = a.value
        return out

    def manifest(self, platform: Platform | None = None) -> dict[str, str]:
        return self._pick(MANIFEST, platform)

    def manifest_descriptor(self, platform: Platform | None = None) -> dict[str, str]:
        return self._pick(MANIFEST_DESCRIPTOR, platform)

    def index(self) -> dict[str, str]:
        return {a.key: a.value for a in self.items if a.type == INDEX}

    def index_descriptor(self) -> dict[str, str]:
        return {a.key: a.value for a in self.items if a.type == INDEX_DESCRIPTOR}

    def check_single_platform(self, *, oci: bool) -> None:
        """BuildKit's refusals for a one-image export (before anything is written)."""
        if self.index() or self.index_descriptor():
            raise UsageError("index annotations not supported for single platform export",
                             hint="build several --platform values, or use manifest: annotations")
        self.check_media_types(oci=oci)

    def check_media_types(self, *, oci: bool) -> None:
        if not oci and (self.index() or self.index_descriptor() or self.manifest_descriptor()):
            raise UsageError('cannot export annotations with "oci-mediatypes=false"')


def _platform_key(text: str) -> str:
    """The platform normalised as containerd's ``FormatAll(Normalize(Parse(text)))``."""
    try:
        return str(parse_platform(text))
    except ValueError as exc:
        raise UsageError(f"invalid annotation platform {text!r}: {exc}") from exc


def _make(kind: str, platform: str, key: str, value: str, what: str) -> Annotation:
    if kind == "":
        kind = MANIFEST
    if kind not in TYPES:
        raise UsageError(f"unknown annotation type {kind!r} in {what!r}",
                         hint=f"one of {', '.join(TYPES)}")
    if platform and kind in (INDEX, INDEX_DESCRIPTOR):
        platform = ""  # BuildKit ignores a platform on index annotations
    return Annotation(kind, _platform_key(platform) if platform else None, key, value)


def parse_cli(values: Mapping[str, str] | Iterable[str]) -> Annotations:
    """``--annotation`` values: ``KEY=VALUE`` strings, or a mapping of ``KEY`` to value (the
    CLI's parsed form, where KEY still carries its ``TYPE[PLATFORM]:`` prefix)."""
    pairs: list[tuple[str, str]] = []
    if isinstance(values, Mapping):
        pairs = list(values.items())
    else:
        for item in values:
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"invalid annotation {item!r}, expected key=value")
            pairs.append((key, value))
    out = []
    for key, value in pairs:
        m = _CLI.match(key)
        if m is None:
            raise UsageError(f"invalid annotation format, expected <type>:<key>=<value>, "
                             f"got {key}={value}")
        out.append(_make(m.group(1) or "", m.group(2) or "", m.group(3), value, key))
    return Annotations(tuple(out))


def parse_attr(key: str, value: str) -> Annotation | None:
    """An exporter attribute ``annotation[-TYPE][PLATFORM].KEY``; None if ``key`` is not one."""
    m = _ATTR.match(key)
    if m is None:
        return None
    return _make(m.group(1) or "", m.group(2) or "", m.group(3), value, key)
