"""What ``docker buildx build`` flags set for every RUN of a build: ``--network`` (the mode a
RUN without ``--network``, or with ``--network=default``, gets), ``--add-host``, ``--shm-size``
and ``--ulimit``, parsed as buildx parses them."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from ocibuild.errors import UsageError

NETWORKS = ("default", "none", "host")

# Linux's resource numbers, by the names docker's --ulimit takes.
RLIMITS = {"cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6,
           "nofile": 7, "memlock": 8, "as": 9, "locks": 10, "sigpending": 11, "msgqueue": 12,
           "nice": 13, "rtprio": 14, "rttime": 15}

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?", re.IGNORECASE)


@dataclass(frozen=True)
class RunSettings:
    """``extra_hosts``: ``(name, ip)`` lines for /etc/hosts; ``shm_size``: bytes of /dev/shm
    (None: BuildKit's 64 MiB); ``ulimits``: ``(resource, soft, hard)``, -1 for unlimited."""

    network: str = "default"
    extra_hosts: tuple[tuple[str, str], ...] = ()
    shm_size: int | None = None
    ulimits: tuple[tuple[int, int, int], ...] = ()

    @property
    def is_default(self) -> bool:
        return self == RunSettings()


def parse_run_settings(network: str = "default", add_hosts: tuple[str, ...] = (),
                       shm_size: str | None = None,
                       ulimits: tuple[str, ...] = ()) -> RunSettings:
    if network not in NETWORKS:
        raise UsageError(f"--network {network}: want one of {', '.join(NETWORKS)}")
    return RunSettings(network, tuple(_host(h) for h in add_hosts),
                       _size(shm_size) if shm_size else None, tuple(_ulimit(u) for u in ulimits))


def _host(value: str) -> tuple[str, str]:
    """``NAME:IP`` (``NAME=IP`` too, which an IPv6 address needs less quoting for)."""
    sep = "=" if "=" in value else ":"
    name, _, ip = value.partition(sep)
    try:
        ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        raise UsageError(f"--add-host {value}: want NAME:IP with an IP address") from None
    if not name:
        raise UsageError(f"--add-host {value}: want NAME:IP")
    return name, ip.strip("[]")


def _size(value: str) -> int:
    """``64m``, ``1g``, ``2048``: a size in binary units, as docker's flags read it."""
    found = _SIZE.fullmatch(value.strip())
    if not found:
        raise UsageError(f"--shm-size {value}: want a size such as 64m or 1g")
    number, unit = found.groups()
    return int(float(number) * 1024 ** "_kmgtp".index(unit.lower() or "_"))


def _ulimit(value: str) -> tuple[int, int, int]:
    """``NAME=SOFT[:HARD]`` (hard defaults to soft; -1 is unlimited)."""
    name, sep, limits = value.partition("=")
    if not sep or name not in RLIMITS:
        raise UsageError(f"--ulimit {value}: want NAME=SOFT[:HARD] with NAME one of "
                         f"{', '.join(sorted(RLIMITS))}")
    soft, _, hard = limits.partition(":")
    try:
        low, high = int(soft), int(hard or soft)
    except ValueError:
        raise UsageError(f"--ulimit {value}: the limits must be numbers") from None
    if min(low, high) < -1 or high != -1 and (low == -1 or low > high):
        raise UsageError(f"--ulimit {value}: the soft limit must not exceed the hard one")
    return RLIMITS[name], low, high
