"""The true ownership of files a sandbox cannot hold on disk (single-id rootless mode).

With only one host id mapped, every file in a snapshot is owned by that id and device nodes
cannot be created. ``unpack_layer`` and COPY then record, per path relative to the snapshot
root, what the image says: uid, gid, mode (permission bits incl. setuid/setgid/sticky), the
device a placeholder stands for, and xattrs that could not be set. ``write_layer`` puts the ids,
devices and xattrs back into the tar; it takes the mode from disk (chmod works on the sandbox's
own files, and a later RUN may have changed it), so ``mode`` here is informational. The record is saved beside the snapshot as JSON lines (one object per
path, later lines win, so appending is a valid update) and is plain data: safe to pickle into a
forked child and back.

Line format: ``{"p": path, "u": uid, "g": gid, "m": mode, "d": [kind, major, minor],
"x": {name: base64}}`` with ``d``/``x`` optional; ``{"p": path, "del": true}`` forgets a path.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ocibuild.errors import ContentError

RECORD_NAME = "ownership.jsonl"


@dataclass(frozen=True)
class Owner:
    """What the image says about one path. ``device`` is ``("char"|"block", major, minor)``
    when the file on disk is an empty placeholder for a node that could not be created."""

    uid: int
    gid: int
    mode: int
    device: tuple[str, int, int] | None = None
    xattrs: tuple[tuple[str, bytes], ...] = ()


@dataclass
class OwnershipRecord:
    """A mutable map from clean relative path (``etc/passwd``) to ``Owner``.

    Not thread-safe; one writer at a time. ``merge`` lets a snapshot's record be stacked on
    its lower layers' records (later wins); paths are never normalised twice, callers pass the
    same clean names ``unpack_layer`` and the diff functions use.
    """

    entries: dict[str, Owner] = field(default_factory=dict)

    def set(self, path: str, owner: Owner) -> None:
        self.entries[path] = owner

    def get(self, path: str) -> Owner | None:
        return self.entries.get(path)

    def forget(self, path: str) -> None:
        """Drop ``path`` and everything below it (a whiteout or a replaced directory)."""
        self.entries.pop(path, None)
        prefix = path + "/" if path else ""
        for key in [k for k in self.entries if k.startswith(prefix)]:
            del self.entries[key]

    def merge(self, upper: OwnershipRecord) -> OwnershipRecord:
        """A new record: this one overlaid with ``upper`` (``upper`` wins)."""
        return OwnershipRecord({**self.entries, **upper.entries})

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[tuple[str, Owner]]:
        return iter(sorted(self.entries.items()))

    def save(self, path: Path) -> None:
        """Write the whole record to ``path`` atomically (temp file, fsync, rename)."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for name, owner in self:
                f.write(_dump(name, owner) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> OwnershipRecord:
        """Read a record; a missing file is an empty record."""
        record = cls()
        try:
            f = open(path, encoding="utf-8")
        except FileNotFoundError:
            return record
        with f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    name = obj["p"]
                    if obj.get("del"):
                        record.forget(name)
                        continue
                    dev = obj.get("d")
                    xattrs = obj.get("x") or {}
                    record.set(
                        name,
                        Owner(
                            uid=int(obj["u"]),
                            gid=int(obj["g"]),
                            mode=int(obj["m"]),
                            device=(str(dev[0]), int(dev[1]), int(dev[2])) if dev else None,
                            xattrs=tuple(sorted((k, base64.b64decode(v)) for k, v in xattrs.items())),
                        ),
                    )
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    raise ContentError(f"{path}:{lineno}: invalid ownership record line") from exc
        return record


def _dump(name: str, owner: Owner) -> str:
    obj: dict[str, object] = {"p": name, "u": owner.uid, "g": owner.gid, "m": owner.mode}
    if owner.device is not None:
        obj["d"] = list(owner.device)
    if owner.xattrs:
        obj["x"] = {k: base64.b64encode(v).decode() for k, v in owner.xattrs}
    # ASCII escapes keep non-UTF-8 file names (surrogateescape) round-tripping.
    return json.dumps(obj, separators=(",", ":"))
