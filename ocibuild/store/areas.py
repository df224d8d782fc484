"""The store's non-blob areas: unpacked-layer snapshots, cache-mount dirs, temp space, roots.

    <root>/snapshots/<alg>/<hex>/    unpacked layer chains, published by rename, never changed
    <root>/cache/<sha256(id)>/       RUN --mount=type=cache directories (kept by gc)
    <root>/tmp/                      temporary files and dirs on the same filesystem
    <root>/roots/<sha256(name)>.json {"name", "digest", "updated"}: what gc keeps alive
    <root>/locks/                    flock files
    <root>/buildcache/<hex>.json     build-step cache entries (``store.buildcache``)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ocibuild.digest import Digest
from ocibuild.errors import ContentError, StoreError
from ocibuild.store._locks import locked

if TYPE_CHECKING:
    from ocibuild.store.blobs import BlobStore


#: The directory of a layer snapshot (``snapshot_path``) that holds the layer's files.
LAYER_FILES = "fs"


def snapshot_path(store: BlobStore, chain_id: Digest) -> Path:
    return store.root / "snapshots" / chain_id.algorithm / chain_id.hex


def snapshot_lock_path(store: BlobStore, chain_id: Digest) -> Path:
    return store.root / "locks" / f"snapshot-{chain_id.algorithm}-{chain_id.hex}"


def snapshot(store: BlobStore, chain_id: Digest, fill: Callable[[Path], None]) -> Path:
    final = snapshot_path(store, chain_id)
    lock = snapshot_lock_path(store, chain_id)
    # Fast path under a shared lock: gc takes it exclusively and re-checks the age before
    # removing, so a snapshot we touch and return here is not renamed away by a prune.
    with locked(lock, shared=True):
        _touch(final)
        if final.is_dir():
            return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with locked(lock):
        if final.is_dir():  # another build made it while we waited
            _touch(final)
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".new-{chain_id.hex[:12]}-", dir=final.parent))
        try:
            fill(tmp)
            # XXX: the tree is not fsynced file by file (too slow for big layers); after a
            # crash a snapshot could be incomplete. Deleting the store dir recovers.
            os.rename(tmp, final)
        except BaseException:
            # Best effort: the fill's own error matters more; gc removes what is left.
            with contextlib.suppress(StoreError):
                remove_tree(tmp)
            raise
    return final


def cache_dir(store: BlobStore, cache_id: str) -> Path:
    path = store.root / "cache" / hashlib.sha256(cache_id.encode()).hexdigest()
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_lock(store: BlobStore, cache_id: str) -> contextlib.AbstractContextManager[bool]:
    name = hashlib.sha256(cache_id.encode()).hexdigest()
    return locked(store.root / "locks" / f"cache-{name}")


def tempdir(store: BlobStore, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir=store.root / "tmp"))


@dataclass(frozen=True)
class Root:
    """A gc root: ``digest`` (manifest or index) is live under ``name`` since ``updated``."""

    name: str
    digest: Digest
    updated: float
    path: Path


def _root_file(store: BlobStore, name: str) -> Path:
    return store.root / "roots" / (hashlib.sha256(name.encode()).hexdigest() + ".json")


def write_small_file(store: BlobStore, dest: Path, body: str) -> None:
    """Write a small text file (a root, a cache entry) atomically: a temp file in the store's
    ``tmp`` (same file system), then a rename over ``dest``."""
    fd, tmp = tempfile.mkstemp(prefix=f"{dest.stem[:8]}-", dir=store.root / "tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(body)
        os.rename(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def add_root(store: BlobStore, name: str, digest: Digest) -> None:
    body = json.dumps({"name": name, "digest": str(digest), "updated": time.time()})
    write_small_file(store, _root_file(store, name), body)


def roots(store: BlobStore) -> Iterator[Root]:
    """Every recorded root; unreadable entries are skipped (gc removes them)."""
    for p in sorted((store.root / "roots").glob("*.json")):
        try:
            obj = json.loads(p.read_text())
            yield Root(str(obj["name"]), Digest.parse(obj["digest"]), float(obj["updated"]), p)
        except (OSError, ValueError, KeyError, TypeError, ContentError):
            continue


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def remove_tree(path: Path) -> None:
    """Remove a directory tree we own, making read-only dirs writable first.

    StoreError when something cannot be removed (e.g. files owned by sub-ids of a rootless
    sandbox: those must be removed from inside its user namespace).
    """
    if not path.exists() and not path.is_symlink():
        return

    def onexc(func: Callable[..., object], p: str, exc: BaseException) -> None:
        if isinstance(exc, PermissionError):
            with contextlib.suppress(OSError):
                os.chmod(os.path.dirname(p), 0o700)
                if os.path.isdir(p) and not os.path.islink(p):
                    os.chmod(p, 0o700)
                func(p)
                return
        if not isinstance(exc, FileNotFoundError):
            raise StoreError(f"remove {p}: {exc}") from exc

    try:
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=onexc)
        else:
            shutil.rmtree(path, onerror=lambda f, p, e: onexc(f, p, e[1]))
    except OSError as exc:
        raise StoreError(f"remove {path}: {exc}") from exc
