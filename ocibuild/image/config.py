"""The image configuration (``application/vnd.oci.image.config.v1+json``) as a value.

``ImageConfig`` wraps the whole JSON object, so fields we do not model (and future ones)
survive every update. Parsed configs keep their bytes: ``to_bytes()`` returns them unchanged
until a ``with_*`` update derives a new config, which is then serialised like BuildKit does
(Go's compact ``json.Marshal``: top-level keys sorted, the ``config`` object in Go struct order).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ocibuild.digest import Digest
from ocibuild.errors import ContentError
from ocibuild.image._json import go_json, load_object
from ocibuild.image.platform import Platform

#: Field order of the ``config`` object in BuildKit's (Go) image config struct.
CONFIG_FIELDS = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
)
HISTORY_FIELDS = ("created", "created_by", "author", "comment", "empty_layer")


def format_time(when: datetime | int | float) -> str:
    """RFC 3339 in UTC as Go writes ``time.Time`` (fraction trimmed of trailing zeros)."""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, UTC)
    when = when.astimezone(UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    if when.microsecond:
        text += f".{when.microsecond:06d}".rstrip("0")
    return text + "Z"


@dataclass(frozen=True)
class History:
    """One entry of the config's ``history``; ``empty_layer`` marks entries without a layer."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in HISTORY_FIELDS:
            value = getattr(self, name)
            if value:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, obj: Any) -> History:
        if not isinstance(obj, Mapping):
            raise ContentError("image config: history entry is not an object")
        return cls(
            created=obj.get("created"),
            created_by=obj.get("created_by"),
            author=obj.get("author"),
            comment=obj.get("comment"),
            empty_layer=bool(obj.get("empty_layer", False)),
        )


class ImageConfig:
    """An immutable image config. Accessors return copies; updates return new configs."""

    __slots__ = ("_data", "_raw")

    def __init__(self, data: Mapping[str, Any], raw: bytes | None = None):
        self._data: dict[str, Any] = copy.deepcopy(dict(data))
        self._raw = raw

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def parse(cls, raw: bytes) -> ImageConfig:
        """Parse config bytes as received; ``to_bytes()`` returns exactly ``raw`` until updated."""
        obj = load_object(raw, f"image config {Digest.of_bytes(raw)}")
        rootfs = obj.get("rootfs")
        if rootfs is not None and not isinstance(rootfs, Mapping):
            raise ContentError("image config: rootfs is not an object")
        for d in (rootfs or {}).get("diff_ids") or []:
            Digest.parse(str(d))
        for h in obj.get("history") or []:
            History.from_json(h)
        return cls(obj, raw)

    @classmethod
    def empty(cls, platform: Platform) -> ImageConfig:
        """The config of ``FROM scratch``: platform, empty rootfs, no history."""
        data: dict[str, Any] = {"architecture": platform.architecture, "os": platform.os}
        if platform.variant:
            data["variant"] = platform.variant
        data["config"] = {}
        data["rootfs"] = {"type": "layers", "diff_ids": []}
        return cls(data)

    # -- whole-object access ------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """A deep copy of the whole JSON object."""
        return copy.deepcopy(self._data)

    def to_bytes(self) -> bytes:
        """The bytes as received when unchanged, else the canonical serialisation."""
        if self._raw is not None:
            return self._raw
        return canonical_config_bytes(self._data)

    @property
    def digest(self) -> Digest:
        return Digest.of_bytes(self.to_bytes())

    @property
    def raw(self) -> bytes | None:
        """The bytes this config was parsed from, or None for a derived config."""
        return self._raw

    def get(self, name: str, default: Any = None) -> Any:
        """A deep copy of a top-level field."""
        return copy.deepcopy(self._data.get(name, default))

    def get_config(self, name: str, default: Any = None) -> Any:
        """A deep copy of a field of the ``config`` object (``Env``, ``Cmd``, ...)."""
        return copy.deepcopy((self._data.get("config") or {}).get(name, default))

    # -- typed accessors ----------------------------------------------------------------------
    @property
    def created(self) -> str | None:
        return self._data.get("created")

    @property
    def author(self) -> str | None:
        return self._data.get("author")

    @property
    def platform(self) -> Platform:
        d = self._data
        return Platform(
            str(d.get("os", "")),
            str(d.get("architecture", "")),
            str(d.get("variant", "") or ""),
            str(d.get("os.version", "") or ""),
            tuple(d.get("os.features") or ()),
        )

    @property
    def env(self) -> list[str]:
        return list(self.get_config("Env") or [])

    def env_value(self, name: str) -> str | None:
        """The value of ``name`` in ``Env`` (the last definition wins, as Docker does)."""
        found = None
        for item in self.env:
            key, _, value = item.partition("=")
            if key == name:
                found = value
        return found

    @property
    def user(self) -> str:
        return str(self.get_config("User") or "")

    @property
    def working_dir(self) -> str:
        return str(self.get_config("WorkingDir") or "")

    @property
    def entrypoint(self) -> list[str] | None:
        value = self.get_config("Entrypoint")
        return None if value is None else [str(x) for x in value]

    @property
    def cmd(self) -> list[str] | None:
        value = self.get_config("Cmd")
        return None if value is None else [str(x) for x in value]

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.get_config("Labels") or {})

    @property
    def shell(self) -> list[str] | None:
        value = self.get_config("Shell")
        return None if value is None else [str(x) for x in value]

    @property
    def diff_ids(self) -> tuple[Digest, ...]:
        rootfs = self._data.get("rootfs") or {}
        return tuple(Digest.parse(str(d)) for d in rootfs.get("diff_ids") or [])

    @property
    def history(self) -> tuple[History, ...]:
        return tuple(History.from_json(h) for h in self._data.get("history") or [])

    # -- functional updates -------------------------------------------------------------------
    def with_field(self, name: str, value: Any) -> ImageConfig:
        """A copy with top-level ``name`` set to ``value`` (None removes it)."""
        data = copy.deepcopy(self._data)
        if value is None:
            data.pop(name, None)
        else:
            data[name] = copy.deepcopy(value)
        return ImageConfig._derived(data)

    def with_config(self, name: str, value: Any) -> ImageConfig:
        """A copy with ``config.<name>`` set to ``value`` (None removes it)."""
        data = copy.deepcopy(self._data)
        inner = dict(data.get("config") or {})
        if value is None:
            inner.pop(name, None)
        else:
            inner[name] = copy.deepcopy(value)
        data["config"] = inner
        return ImageConfig._derived(data)

    def with_env(self, env: Sequence[str]) -> ImageConfig:
        return self.with_config("Env", list(env))

    def with_env_var(self, name: str, value: str) -> ImageConfig:
        """Set one variable: replaces it in place when present, else appends (Docker's order)."""
        env, done = [], False
        for item in self.env:
            if item.partition("=")[0] == name:
                if not done:
                    env.append(f"{name}={value}")
                    done = True
            else:
                env.append(item)
        if not done:
            env.append(f"{name}={value}")
        return self.with_env(env)

    def with_created(self, when: datetime | int | float | str | None) -> ImageConfig:
        text = when if isinstance(when, str) or when is None else format_time(when)
        return self.with_field("created", text)

    def with_platform(self, platform: Platform) -> ImageConfig:
        data = copy.deepcopy(self._data)
        data["architecture"], data["os"] = platform.architecture, platform.os
        for key, value in (("variant", platform.variant), ("os.version", platform.os_version)):
            if value:
                data[key] = value
            else:
                data.pop(key, None)
        return ImageConfig._derived(data)

    def with_diff_ids(self, diff_ids: Sequence[Digest]) -> ImageConfig:
        rootfs = dict(self._data.get("rootfs") or {})
        rootfs["type"] = rootfs.get("type", "layers")
        rootfs["diff_ids"] = [str(d) for d in diff_ids]
        return self.with_field("rootfs", rootfs)

    def with_history(self, history: Sequence[History]) -> ImageConfig:
        return self.with_field("history", [h.to_json() for h in history])

    @classmethod
    def _derived(cls, data: dict[str, Any]) -> ImageConfig:
        out = cls.__new__(cls)
        out._data = data
        out._raw = None
        return out

    # -- value semantics ----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageConfig) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        return f"ImageConfig({json.dumps(self._data, sort_keys=True)[:200]})"


def canonical_config_bytes(data: Mapping[str, Any]) -> bytes:
    """Serialise a config as BuildKit does: compact, top-level keys sorted, ``config`` fields
    in Go struct order (unknown ones after, sorted), ``rootfs`` as type then diff_ids, history
    entries in struct order. An image without layers has Go's nil ``"diff_ids": null``."""
    out: dict[str, Any] = {}
    for key in sorted(data):
        value = data[key]
        if key == "config" and isinstance(value, Mapping):
            ordered = {k: value[k] for k in CONFIG_FIELDS if k in value}
            ordered.update({k: value[k] for k in sorted(value) if k not in ordered})
            for k in ("ExposedPorts", "Volumes", "Labels"):
                if isinstance(ordered.get(k), Mapping):
                    ordered[k] = dict(sorted(ordered[k].items()))
            value = ordered
        elif key == "rootfs" and isinstance(value, Mapping):
            value = {"type": value.get("type", "layers"), "diff_ids": value.get("diff_ids") or None}
        elif key == "history" and isinstance(value, list):
            value = [
                {k: h[k] for k in (*HISTORY_FIELDS, *sorted(h)) if k in h}
                if isinstance(h, Mapping)
                else h
                for h in value
            ]
        out[key] = value
    return go_json(out)
