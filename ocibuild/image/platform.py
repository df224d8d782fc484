"""Platforms (``linux/arm64/v8``) and choosing a manifest from an index for one.

Normalisation follows containerd's ``platforms`` package: ``x86_64`` is ``amd64``, ``aarch64`` is
``arm64``, a missing variant means ``v8`` on arm64, ``v7`` on arm and ``v1`` on amd64. A
platform can run images of a *lower* variant of its architecture (``amd64/v3`` runs ``v2`` and
``v1``; ``arm/v7`` runs ``v6`` and ``v5``); choosing prefers the exact variant, then the highest
lower one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from ocibuild.errors import UsageError

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "i386": ("386", ""),
    "i486": ("386", ""),
    "i586": ("386", ""),
    "i686": ("386", ""),
}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}
_KNOWN_OS = {"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos"}

T = TypeVar("T")


def _normalise_variant(arch: str, variant: str) -> str:
    """containerd's spelling: ``8`` is ``v8``; the default of arm64 (v8) and amd64 (v1) is
    written as no variant, arm's (v7) explicitly."""
    v = variant.lower()
    if v and v[0].isdigit():
        v = "v" + v
    v = {"v8.0": "v8", "v9.0": "v9"}.get(v, v)
    if arch == "arm":
        return v or "v7"
    if v == _DEFAULT_VARIANT.get(arch):
        return ""
    return v


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
        return cls("linux", os.uname().machine).normalised()

    def normalised(self) -> Platform:
        """Canonical spelling (containerd's ``Normalize``): ``aarch64`` is ``arm64``, a default
        variant is dropped except on arm where ``v7`` is written."""
        arch, variant = self.architecture.lower(), self.variant
        if arch in _ARCH_ALIASES:
            arch, alias_variant = _ARCH_ALIASES[arch]
            variant = variant or alias_variant
        return Platform(
            self.os.lower(), arch, _normalise_variant(arch, variant), self.os_version, self.os_features
        )

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
