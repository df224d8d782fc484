"""The store's build-cache entries: what a build step produced, by the step's cache key.

    <root>/buildcache/<hex of the key>.json
        {"key": "sha256:..", "layer": {"mediaType", "digest", "size", "diffId"} | null,
         "chain": "sha256:.." | null, "history": {...}, "created": <unix time>}

An entry is written to a temp file and renamed into place, so readers (other builds, gc) see a
whole entry or none; two builds writing the same key race harmlessly (the last rename wins and
both entries are valid). An entry is *not* the layer: the blob lives in ``blobs/`` and may be
gone (pruned, deleted by hand), which makes the entry a miss, never an error.

Age policy (``gc.prune``): an entry is a gc root for its layer blob and the unpacked snapshot
of its chain until it has not been used (written or hit: the file's mtime) for
``gc.ROOT_MAX_AGE``; ``prune --all`` removes every entry.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocibuild.digest import Digest
from ocibuild.errors import OcibuildError
from ocibuild.store.areas import write_small_file

if TYPE_CHECKING:
    from ocibuild.store.blobs import BlobStore

AREA = "buildcache"


@dataclass(frozen=True)
class RawEntry:
    """An entry as stored: ``layer`` is the descriptor JSON plus ``diffId`` (None for a step
    that made no layer), ``chain`` the chain id of the stack the layer tops."""

    key: str
    layer: dict[str, Any] | None
    chain: Digest | None
    history: dict[str, Any]
    path: Path


def _area(store: BlobStore) -> Path:
    return store.root / AREA


def entry_path(store: BlobStore, key: str) -> Path:
    algorithm, _, hexpart = key.partition(":")
    if algorithm != "sha256" or len(hexpart) != 64 or not all(
            c in "0123456789abcdef" for c in hexpart):
        raise ValueError(f"build cache key {key!r} is not a sha256 digest")
    return _area(store) / f"{hexpart}.json"


def write_entry(store: BlobStore, key: str, layer: dict[str, Any] | None, chain: Digest | None,
                history: dict[str, Any]) -> None:
    """Record an entry atomically (temp file in the store's tmp, then rename)."""
    dest = entry_path(store, key)
    dest.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"key": key, "layer": layer, "chain": str(chain) if chain else None,
                       "history": history}, sort_keys=True)
    write_small_file(store, dest, body)


def _parse(path: Path) -> RawEntry | None:
    try:
        obj = json.loads(path.read_text())
        layer = obj["layer"]
        if layer is not None and not isinstance(layer, dict):
            return None
        history = obj["history"]
        if not isinstance(history, dict):
            return None
        chain = Digest.parse(obj["chain"]) if obj.get("chain") else None
        return RawEntry(str(obj["key"]), layer, chain, history, path)
    except (OSError, ValueError, KeyError, TypeError, OcibuildError):
        return None


def read_entry(store: BlobStore, key: str) -> RawEntry | None:
    """The entry for ``key`` (its mtime refreshed: a use keeps it alive), or None when there is
    none or it is unreadable (a torn or foreign file is a miss; the next write replaces it)."""
    path = entry_path(store, key)
    entry = _parse(path)
    if entry is None or entry.key != key:
        return None
    with contextlib.suppress(OSError):
        os.utime(path)
    return entry


def entries(store: BlobStore) -> Iterator[RawEntry]:
    """Every readable entry (for gc)."""
    area = _area(store)
    if not area.is_dir():
        return
    for path in sorted(area.glob("*.json")):
        entry = _parse(path)
        if entry is not None:
            yield entry
