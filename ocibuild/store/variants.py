"""Compressed copies of uncompressed layers, remembered so an output compresses a layer once.

Builds commit layers uncompressed (as BuildKit keeps snapshots and makes blobs only when it
exports); an output that wants them gzip or zstd compresses them then and records the result
here, keyed by the uncompressed blob (the layer's diff id) and the compression:

    <root>/variants/<alg>/<hex>/<compression>.json   {"digest", "size", "level"}

The level is not part of the key: as in BuildKit, which keeps one blob per compression type,
a layer that has a gzip copy is exported with it whatever ``compression-level`` asks for.

gc keeps a variant's blob while its uncompressed source is live and drops the record with it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ocibuild.digest import Digest
from ocibuild.errors import ContentError
from ocibuild.store import areas

if TYPE_CHECKING:
    from ocibuild.store.blobs import BlobStore

AREA = "variants"


def _dir(store: BlobStore, source: Digest) -> Path:
    return store.root / AREA / source.algorithm / source.hex


def lookup(store: BlobStore, source: Digest, compression: str) -> tuple[Digest, int] | None:
    """(digest, size) of ``source`` compressed so, if recorded and its blob is still there."""
    try:
        obj = json.loads((_dir(store, source) / f"{compression}.json").read_text())
        digest, size = Digest.parse(obj["digest"]), int(obj["size"])
    except (OSError, ValueError, KeyError, TypeError, ContentError):
        return None
    return (digest, size) if store.has(digest) else None


def record(store: BlobStore, source: Digest, compression: str, level: int | None,
           digest: Digest, size: int) -> None:
    """Remember that ``digest`` is ``source`` compressed so (atomically; last writer wins)."""
    where = _dir(store, source)
    where.mkdir(parents=True, exist_ok=True)
    areas.write_small_file(store, where / f"{compression}.json",
                           json.dumps({"digest": str(digest), "size": size, "level": level}))


def records(store: BlobStore) -> Iterator[tuple[Digest, Path, Digest | None]]:
    """Every record as (source, its file, the variant's digest or None when unreadable)."""
    top = store.root / AREA
    for algo in sorted(p for p in top.iterdir() if p.is_dir()) if top.is_dir() else ():
        for src in sorted(algo.iterdir()):
            try:
                source = Digest.parse(f"{algo.name}:{src.name}")
            except ContentError:
                continue
            for path in sorted(src.glob("*.json")):
                variant = None
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError, ContentError):
                    variant = Digest.parse(json.loads(path.read_text())["digest"])
                yield source, path, variant
