"""Platforms (``linux/arm64/v8``): parsing and normalising them, choosing a manifest from an
index for one, and the automatic platform ARGs BuildKit defines. The one Platform of ocibuild:
the planner and the image/registry code share it.

Normalisation follows containerd's ``platforms`` package (:func:`normalize_arch`): ``x86_64``
is ``amd64``, ``aarch64`` is ``arm64``, ``i386`` (and ``i486``..``i686``) is ``386``,
``armhf``/``armel`` are ``arm/v7``/``arm/v6``; a missing variant means ``v8`` on arm64, ``v7``
on arm and ``v1`` on amd64. A platform can run images of a *lower* variant of its architecture
(``amd64/v3`` runs ``v2`` and ``v1``; ``arm/v7`` runs ``v6`` and ``v5``); choosing prefers the
exact variant, then the highest lower one.

Pure: the only input from the host is the machine name (``uname``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ocibuild.errors import UsageError

_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}
# Every OS containerd's Parse knows (a lone word naming one is an OS, else an architecture).
_KNOWN_OS = frozenset(
    "aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 "
    "solaris wasip1 windows zos".split()
)
_KNOWN_ARCH = frozenset(
    "386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le mips64p32 "
    "mips64p32le ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm".split()
)
_PART = re.compile(r"^[A-Za-z0-9_.-]+$")

T = TypeVar("T")


def normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's ``normalizeArch``: aliases to Go names, default variants dropped (arm keeps
    its ``v7`` written), arm's digits spelled ``vN``. ``i486``..``i686`` are ``386`` as
    ``i386`` is (uname's names on 32-bit x86 hosts)."""
    arch, variant = arch.lower(), variant.lower()
    if arch in ("i386", "i486", "i586", "i686"):
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return arch, variant


@dataclass(frozen=True)
class Platform:
    """An OS/architecture pair with optional variant (and Windows' os.version/os.features).

    Values are kept as written; comparisons go through ``normalised()``.
    """

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``os/arch[/variant]``; a lone ``arch`` means linux, a lone os the host's arch."""
        parts = text.strip().lower().split("/")
        if not all(parts) or len(parts) > 3:
            raise UsageError(f"invalid platform {text!r}: want os/arch[/variant]")
        if len(parts) == 1:
            if parts[0] in _KNOWN_OS:
                return cls(parts[0], cls.default().architecture)
            return cls("linux", parts[0])
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else "")

    @classmethod
    def default(cls) -> Platform:
        """The platform this process runs on (always linux for ocibuild's purposes)."""
        return host_platform()

    def normalised(self) -> Platform:
        """Canonical spelling (containerd's ``Normalize``): ``aarch64`` is ``arm64``, a default
        variant is dropped except on arm where ``v7`` is written."""
        arch, variant = normalize_arch(self.architecture, self.variant)
        return Platform(self.os.lower(), arch, variant, self.os_version, self.os_features)

    def matches(self, other: Platform) -> bool:
        """Same OS, architecture and variant once both are normalised (os.version ignored)."""
        return self._key() == other._key()

    def _key(self) -> tuple[str, str, str]:
        """(os, arch, variant) with the architecture's default variant filled in."""
        n = self.normalised()
        return (n.os, n.architecture, n.variant or _DEFAULT_VARIANT.get(n.architecture, ""))

    def rank(self, candidate: Platform) -> float | None:
        """How well ``candidate`` fits when we want ``self``: 0 is exact, larger is a lower
        variant this platform can still run, None is unusable."""
        want, have = self._key(), candidate._key()
        if want[:2] != have[:2]:
            return None
        if want[2] == have[2]:
            return 0
        w, h = _variant_number(want[2]), _variant_number(have[2])
        if w is None or h is None or h > w:
            return None
        return w - h

    def select(self, candidates: Iterable[tuple[Platform | None, T]]) -> T | None:
        """The best item for this platform among ``(platform, item)`` pairs; first wins ties."""
        best: tuple[float, T] | None = None
        for platform, item in candidates:
            if platform is None:
                continue
            r = self.rank(platform)
            if r is not None and (best is None or r < best[0]):
                best = (r, item)
        return None if best is None else best[1]

    def to_json(self) -> dict[str, Any]:
        """The OCI descriptor ``platform`` object, fields in Go struct order."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Platform:
        return cls(
            os=str(obj.get("os", "")),
            architecture=str(obj.get("architecture", "")),
            variant=str(obj.get("variant", "") or ""),
            os_version=str(obj.get("os.version", "") or ""),
            os_features=tuple(str(f) for f in obj.get("os.features") or ()),
        )

    def __str__(self) -> str:
        out = f"{self.os}/{self.architecture}"
        return f"{out}/{self.variant}" if self.variant else out


def _variant_number(variant: str) -> float | None:
    try:
        return float(variant[1:]) if variant.startswith("v") else None
    except ValueError:
        return None


def host_platform() -> Platform:
    """This machine's platform (``x86_64`` -> ``linux/amd64``, ``aarch64`` -> ``linux/arm64``)."""
    arch, variant = normalize_arch(os.uname().machine or "amd64", "")
    return Platform("linux", arch, variant)


def parse_platform(spec: str, default: Platform | None = None) -> Platform:
    """Parse and normalise ``os``, ``arch``, ``os/arch`` or ``os/arch/variant`` as containerd's
    ``Parse`` + ``Normalize`` do (the planner's ``--platform`` and ``FROM --platform``). A lone
    known OS takes ``default``'s architecture, a lone anything else is an architecture on
    ``default``'s OS (``default``: the host). Raises ValueError with containerd's wording."""
    default = default or host_platform()
    if "*" in spec:
        raise ValueError(f"{spec!r}: wildcards (*) not yet supported: invalid argument")
    parts = spec.split("/")
    for part in parts:
        if not _PART.match(part):
            raise ValueError(f"{spec!r}: invalid path component {part!r}: invalid argument")
    if len(parts) == 1:
        word = parts[0].lower()
        if word in _KNOWN_OS or word == "macos":
            os_name = "darwin" if word == "macos" else word
            return Platform(os_name, default.architecture, default.variant)
        arch, variant = normalize_arch(word, "")
        if arch not in _KNOWN_ARCH:
            raise ValueError(
                f"{spec!r}: unknown operating system or architecture: invalid argument"
            )
        return Platform(default.os, arch, variant)
    if len(parts) > 3:
        raise ValueError(f"{spec!r}: cannot parse platform specifier: invalid argument")
    os_name = parts[0].lower()
    os_name = "darwin" if os_name == "macos" else os_name
    arch, variant = normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
    return Platform(os_name, arch, variant)


def platform_args(target: Platform, build: Platform) -> dict[str, str]:
    """BuildKit's automatic ARGs (``defaultArgs``), in its order: available in the global scope,
    imported into a stage with ``ARG NAME``; ``--build-arg`` may override each of them."""
    return {
        "BUILDPLATFORM": str(build),
        "BUILDOS": build.os,
        "BUILDOSVERSION": "",
        "BUILDARCH": build.architecture,
        "BUILDVARIANT": build.variant,
        "TARGETPLATFORM": str(target),
        "TARGETOS": target.os,
        "TARGETOSVERSION": "",
        "TARGETARCH": target.architecture,
        "TARGETVARIANT": target.variant,
    }
