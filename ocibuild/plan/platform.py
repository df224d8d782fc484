"""Platform specifiers (``linux/arm64``, ``arm/v7``, ``amd64``) parsed and normalised the way
containerd's ``platforms`` package does it, and the automatic platform ARGs BuildKit defines.

Pure functions; the only input from the host is :func:`host_platform`, which reads the machine
name through :mod:`platform` (no I/O beyond ``uname``).
"""

from __future__ import annotations

import platform as _host
import re
from dataclasses import dataclass

_KNOWN_OS = frozenset(
    "aix android darwin dragonfly freebsd hurd illumos ios js linux nacl netbsd openbsd plan9 "
    "solaris wasip1 windows zos".split()
)
_KNOWN_ARCH = frozenset(
    "386 amd64 amd64p32 arm armbe arm64 arm64be loong64 mips mipsle mips64 mips64le mips64p32 "
    "mips64p32le ppc ppc64 ppc64le riscv riscv64 s390 s390x sparc sparc64 wasm".split()
)
_PART = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Platform:
    """A normalised platform; ``str()`` is the ``os/arch[/variant]`` form used everywhere."""

    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        out = f"{self.os}/{self.architecture}"
        return f"{out}/{self.variant}" if self.variant else out


def normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """containerd's ``normalizeArch``: aliases to Go names, default/implied variants dropped."""
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
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


def host_platform() -> Platform:
    """This machine's platform (``x86_64`` -> ``linux/amd64``, ``aarch64`` -> ``linux/arm64``)."""
    arch, variant = normalize_arch(_host.machine() or "amd64", "")
    return Platform("linux", arch, variant)


def parse_platform(spec: str, default: Platform | None = None) -> Platform:
    """Parse ``os``, ``arch``, ``os/arch`` or ``os/arch/variant`` (containerd ``Parse`` +
    ``Normalize``). A lone known OS takes the default architecture, a lone anything else is an
    architecture on the default OS. Raises ValueError with containerd's wording."""
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
