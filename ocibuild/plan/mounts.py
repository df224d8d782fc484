"""``RUN --mount=...`` specs parsed, expanded and validated as BuildKit does it
(``instructions/commands_runmount.go`` for the syntax, ``dockerfile2llb`` for the defaults).

Two entry points, matching BuildKit's two passes: :func:`mount_from` reads ``from=`` without
expanding anything (the stage graph is built before any stage is planned, and ``from=`` does
not support variables), :func:`parse_mount` does the full parse once the stage's ARG/ENV state
is known. Both raise ``ValueError`` with BuildKit's wording; the planner adds the location.
"""

from __future__ import annotations

import csv
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from ocibuild.dockerfile.flags import with_suggestion
from ocibuild.plan.model import ContextRef, Mount, Scratch

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
SHARING_MODES = ("shared", "private", "locked")
_ALL_KEYS = (
    "type", "from", "source", "target", "readonly", "id", "sharing", "required", "size", "mode",
    "uid", "gid", "src", "dst", "destination", "ro", "rw", "readwrite", "env",
)
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_RAM_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_RAM = re.compile(r"^(\d+(?:\.\d+)?)\s*([kKmMgGtTpPbB]?)(?:[iI]?[bB])?$")


@dataclass(frozen=True)
class MountSpec:
    """A parsed mount whose ``from=`` (``""`` when absent) the planner still has to resolve
    to a stage or an image; ``mount.source`` is ContextRef (bind) or Scratch (cache, tmpfs).
    ``mount.source_path`` is absolute (``/go/pkg``), ``""`` for the source's root."""

    mount: Mount
    from_: str


def _fields(spec: str) -> list[str]:
    try:
        rows = list(csv.reader([spec], skipinitialspace=False, strict=True))
    except csv.Error as exc:
        raise ValueError(f"failed to parse csv mounts: {exc}") from exc
    return rows[0] if rows else []


def mount_from(spec: str) -> str:
    """The ``from=`` value of a mount spec, unexpanded; ``""`` when there is none."""
    found = ""
    for field in _fields(spec):
        key, sep, value = field.partition("=")
        if sep and key.lower() == "from":
            if "$" in value[:-1]:
                raise ValueError(
                    "'from' doesn't support variable expansion, define alias stage instead"
                )
            found = value
    return found


def _parse_bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"invalid value for {key}: {value}")


def _parse_uint(key: str, value: str, base: int) -> int:
    try:
        number = int(value, base)
    except ValueError:
        raise ValueError(f"invalid value {value} for {key}") from None
    if number < 0 or number >= 1 << 32 or value.startswith(("+", "-")):
        raise ValueError(f"invalid value {value} for {key}")
    return number


def _ram_in_bytes(value: str) -> int:
    """go-units ``RAMInBytes``: ``64m``, ``1g``, ``512kb``, ``1.5GiB``; binary multiples."""
    match = _RAM.match(value.strip())
    if not match:
        raise ValueError(f"invalid value for size: {value}")
    return int(float(match.group(1)) * _RAM_UNITS[match.group(2).lower()])


def parse_mount(
    spec: str, expand: Callable[[str], str], workdir: str, ssh_index: int = 0
) -> MountSpec:
    """Parse one ``--mount`` value, expanding every ``key=value`` value with ``expand``.

    ``workdir`` resolves relative targets of bind/cache/tmpfs mounts; ``ssh_index`` numbers the
    default socket path of ssh mounts (``/run/buildkit/ssh_agent.N``, N counting ssh mounts of
    this RUN from 0). Option values that do not apply keep Mount's defaults; ``mode``, ``uid``
    and ``gid`` stay None when not given (the executor applies the type's default: 0755 for a
    cache dir, 0400 for a secret, 0600 for an ssh socket, owner 0:0).
    """
    mount_type = "bind"
    from_ = source = target = cache_id = sharing = ""
    readonly: bool | None = None
    required = False
    size: int | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    env: str | None = None
    for field in _fields(spec):
        key, sep, value = field.partition("=")
        key = key.lower()
        if not sep:
            if key in ("readonly", "ro"):
                readonly = True
            elif key in ("readwrite", "rw"):
                readonly = False
            elif key == "required":
                if mount_type not in ("secret", "ssh"):
                    raise ValueError(f"unexpected key '{key}' for mount type '{mount_type}'")
                required = True
            else:
                raise ValueError(f"invalid field '{field}' must be a key=value pair")
            continue
        value = expand(value)
        if key == "type":
            if value.lower() not in MOUNT_TYPES:
                raise ValueError(
                    with_suggestion(f'unsupported mount type "{value}"', value, MOUNT_TYPES, True)
                )
            mount_type = value.lower()
        elif key == "from":
            from_ = value
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "dst", "destination"):
            target = value
        elif key in ("readonly", "ro"):
            readonly = _parse_bool(key, value)
        elif key in ("readwrite", "rw"):
            readonly = not _parse_bool(key, value)
        elif key == "required":
            if mount_type not in ("secret", "ssh"):
                raise ValueError(f"unexpected key '{key}' for mount type '{mount_type}'")
            required = _parse_bool(key, value)
        elif key == "size":
            if mount_type != "tmpfs":
                raise ValueError(f"unexpected key '{key}' for mount type '{mount_type}'")
            size = _ram_in_bytes(value)
        elif key == "id":
            cache_id = value
        elif key == "sharing":
            if value.lower() not in SHARING_MODES:
                raise ValueError(
                    with_suggestion(
                        f'unsupported sharing value "{value}"', value, SHARING_MODES, True
                    )
                )
            sharing = value.lower()
        elif key == "mode":
            mode = _parse_uint("mode", value, 8)
        elif key == "uid":
            uid = _parse_uint("uid", value, 10)
        elif key == "gid":
            gid = _parse_uint("gid", value, 10)
        elif key == "env":
            env = value
        else:
            raise ValueError(
                with_suggestion(f"unexpected key '{key}' in '{field}'", key, _ALL_KEYS, True)
            )

    if mount_type not in ("secret", "ssh", "cache"):
        for name, given in (("mode", mode), ("uid", uid), ("gid", gid)):
            if given is not None:
                raise ValueError(f'{name} not allowed for "{mount_type}" type mounts')
    if readonly is None:
        readonly = mount_type not in ("cache", "tmpfs")
    if mount_type == "secret":
        if from_:
            raise ValueError("secret mount should not have a from")
        if sharing:
            raise ValueError("secret mount should not define sharing")
        if not source and not target and not cache_id:
            raise ValueError("invalid secret mount. one of source, target required")
        if source and cache_id:
            raise ValueError("both source and id can't be set")
    if sharing and mount_type != "cache":
        raise ValueError(f"invalid cache sharing set for {mount_type} mount")

    base = Mount(
        type=mount_type, readonly=readonly, mode=mode, uid=uid, gid=gid, required=required
    )
    if mount_type == "secret":
        secret_id = source or cache_id or posixpath.basename(target)
        dest = target
        if env is None and not dest:
            dest = "/run/secrets/" + posixpath.basename(secret_id)
        elif dest and not dest.startswith("/"):  # runc places it under the RUN's directory
            dest = posixpath.normpath(posixpath.join("/", workdir or "/", dest))
        return MountSpec(replace(base, id=secret_id, target=dest, env=env), "")
    if mount_type == "ssh":
        if source:
            raise ValueError("ssh does not support source")
        dest = target or f"/run/buildkit/ssh_agent.{ssh_index}"
        return MountSpec(replace(base, id=cache_id or "default", target=dest), "")

    if mount_type == "cache":
        cache_id = cache_id or posixpath.normpath(target or ".")
    absolute = target
    if not posixpath.isabs(posixpath.normpath(target or ".")):
        absolute = posixpath.join("/", workdir or "/", target)
    absolute = posixpath.normpath(absolute)
    if absolute.startswith("//"):
        absolute = "/" + absolute.lstrip("/")
    if absolute == "/":
        raise ValueError(f'invalid mount target "{absolute}"')
    source_path = posixpath.normpath(posixpath.join("/", source))
    source_path = "" if source_path in ("/", "//") else "/" + source_path.lstrip("/")
    origin = Scratch() if mount_type in ("cache", "tmpfs") else ContextRef()
    return MountSpec(
        replace(
            base,
            target=absolute,
            source=origin,
            source_path=source_path,
            id=cache_id if mount_type == "cache" else "",
            sharing=sharing or "shared",
            size=size,
        ),
        from_,
    )
