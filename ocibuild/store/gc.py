"""Garbage collection of the content store (``python -m ocibuild prune [--all]``).

What is kept, by default:
  - every *root* recorded with ``BlobStore.add_root`` (pulled and built images) younger than
    ``ROOT_MAX_AGE`` (30 days since last recorded), and everything it reaches: indexes,
    manifests, configs, layers, and the snapshots of its layer chains;
  - anything used or written within ``GRACE`` (24 hours): a build running now may hold blobs
    and snapshots it has not recorded yet, and recently used content is the useful cache
    (``has``, ``open``, writes and ``snapshot()`` refresh mtimes);
  - cache-mount directories (``RUN --mount=type=cache``), as BuildKit keeps them;
  - build-cache entries (``store.buildcache``) used within ``ROOT_MAX_AGE``, with their layer
    blobs and snapshots; older entries are removed;
  - the compressed copy an output made of a live layer (``store.variants``).
Everything else is removed: unreferenced blobs and snapshots, stale temp files, old roots.
A tree that cannot be removed is reported and skipped. Snapshots unpacked by a rootless
sandbox with a sub-id range hold files only that user namespace can delete: the caller may pass
a ``remover`` (the CLI passes the executor runtime's, which deletes as root of the sandbox) that
is tried when a plain removal fails.

``--all`` empties the store completely (blobs, snapshots, cache dirs, roots). It needs the
store's lock exclusively, so it refuses while another ocibuild process has the store open.
Snapshots are renamed aside before deletion, so none is ever seen half-removed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ocibuild.digest import Digest
from ocibuild.errors import OcibuildError, StoreError
from ocibuild.image import ImageConfig, Index, Manifest, chain_ids, parse_manifest
from ocibuild.image.manifest import MAX_MANIFEST_SIZE
from ocibuild.store import areas, buildcache, variants
from ocibuild.store._locks import locked
from ocibuild.store.blobs import BlobStore

GRACE = 24 * 3600.0
ROOT_MAX_AGE = 30 * 24 * 3600.0


@dataclass
class PruneReport:
    blobs: int = 0
    bytes: int = 0
    snapshots: int = 0
    roots: int = 0
    temporary: int = 0
    failed: list[str] = field(default_factory=list)
    remover: Callable[[Path], None] | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        text = (
            f"removed {self.blobs} blobs ({self.bytes / 1e6:.1f} MB), {self.snapshots} snapshots, "
            f"{self.roots} expired roots, {self.temporary} temporary files"
        )
        if self.failed:
            text += f"; could not remove {len(self.failed)}: " + "; ".join(self.failed[:3])
        return text

    def _remove(self, path: Path) -> bool:
        """Remove a tree; a failure is recorded (e.g. files owned by a rootless sandbox's
        sub-ids, which only that namespace can delete) and pruning goes on."""
        try:
            areas.remove_tree(path)
            return True
        except StoreError as exc:
            if self.remover is not None:
                try:
                    self.remover(path)
                    return True
                except OcibuildError as again:
                    self.failed.append(f"{exc.message} ({again.message})")
                    return False
            self.failed.append(exc.message)
            return False


def live_set(store: BlobStore, roots: list[areas.Root]) -> tuple[set[Digest], set[Digest]]:
    """(blobs, snapshot chain ids) reachable from ``roots``; missing or corrupt blobs end the
    walk on that branch (a corrupt one is removed by the verifying read)."""
    blobs: set[Digest] = set()
    chains: set[Digest] = set()
    todo = [r.digest for r in roots]
    while todo:
        digest = todo.pop()
        if digest in blobs:
            continue
        blobs.add(digest)
        if not store.has(digest):
            continue
        try:
            raw = store.get_bytes(digest, MAX_MANIFEST_SIZE)
            parsed = parse_manifest(raw)
        except OcibuildError:
            continue
        if isinstance(parsed, Index):
            todo.extend(d.digest for d in parsed.manifests)
        elif isinstance(parsed, Manifest):
            blobs.add(parsed.config.digest)
            blobs.update(d.digest for d in parsed.layers)
            with contextlib.suppress(OcibuildError):
                config = ImageConfig.parse(store.get_bytes(parsed.config.digest))
                chains.update(chain_ids(config.diff_ids))
    return blobs, chains


def _old(path: Path, cutoff: float) -> bool:
    try:
        return path.lstat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def prune(
    store: BlobStore,
    *,
    everything: bool = False,
    grace: float = GRACE,
    root_max_age: float = ROOT_MAX_AGE,
    remover: Callable[[Path], None] | None = None,
) -> PruneReport:
    """Remove what no live root needs (see the module docstring). Safe to run beside builds.
    ``remover`` deletes a tree a plain removal could not (it raises ``OcibuildError``)."""
    if everything:
        return _prune_all(store, remover)
    now = time.time()
    report = PruneReport(remover=remover)
    roots = []
    for root in areas.roots(store):
        if root.updated < now - root_max_age:
            with contextlib.suppress(FileNotFoundError):
                root.path.unlink()
            report.roots += 1
        else:
            roots.append(root)
    live_blobs, live_chains = live_set(store, roots)
    report.roots += _cache_entries(store, live_blobs, live_chains, now - root_max_age)
    _variants(store, live_blobs)
    cutoff = now - grace
    for digest in list(store.digests()):
        path = store.path(digest)
        if digest not in live_blobs and _old(path, cutoff):
            with contextlib.suppress(FileNotFoundError):
                size = path.stat().st_size
                path.unlink()
                report.blobs += 1
                report.bytes += size
    snap_root = store.root / "snapshots"
    for algo_dir in sorted(p for p in snap_root.iterdir() if p.is_dir()):
        for snap in sorted(algo_dir.iterdir()):
            if snap.name.startswith("."):
                # ".new-*": a fill whose process died (a live one holds a fresh mtime);
                # ".trash-*": a removal that failed half-way.
                if (snap.name.startswith(".trash-") or _old(snap, cutoff)) and report._remove(snap):
                    report.temporary += 1
                continue
            try:
                chain = Digest.parse(f"{algo_dir.name}:{snap.name}")
            except OcibuildError:
                continue
            if chain in live_chains or not _old(snap, cutoff):
                continue
            with locked(areas.snapshot_lock_path(store, chain), blocking=False) as held:
                if not held or not _old(snap, cutoff):
                    continue  # being created, or used since we looked
                trash = algo_dir / f".trash-{snap.name}-{os.getpid()}"
                os.rename(snap, trash)
            if report._remove(trash):
                report.snapshots += 1
    for tmp in sorted((store.root / "tmp").iterdir()):
        if _old(tmp, cutoff):
            if tmp.is_dir() and not tmp.is_symlink():
                if not report._remove(tmp):
                    continue
            else:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            report.temporary += 1
    return report


def _cache_entries(store: BlobStore, blobs: set[Digest], chains: set[Digest],
                   cutoff: float) -> int:
    """Add what live build-cache entries keep to ``blobs``/``chains``; remove entries unused
    since ``cutoff`` (returns how many)."""
    removed = 0
    for entry in buildcache.entries(store):
        if _old(entry.path, cutoff):
            with contextlib.suppress(FileNotFoundError):
                entry.path.unlink()
                removed += 1
            continue
        with contextlib.suppress(OcibuildError, KeyError, TypeError):
            if entry.layer is not None:
                blobs.add(Digest.parse(entry.layer["digest"]))
            if entry.chain is not None:
                chains.add(entry.chain)
    # Remembered context-file digests (executor.cache_files) of contexts not built lately.
    for path in sorted((store.root / buildcache.AREA / "files").glob("*.json")):
        if _old(path, cutoff):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    return removed


def _variants(store: BlobStore, blobs: set[Digest]) -> None:
    """Keep the compressed copies (``store.variants``) of live blobs; forget the others."""
    for source, path, variant in list(variants.records(store)):
        if source in blobs and variant is not None:
            blobs.add(variant)
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()


def _prune_all(store: BlobStore, remover: Callable[[Path], None] | None) -> PruneReport:
    fd = store._lock_fd
    if fd is None:
        raise StoreError(f"content store {store.root} is closed")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise StoreError(
            f"prune --all: the content store {store.root} is in use by another ocibuild process",
            hint="wait for running builds to finish, or run `ocibuild prune` without --all",
        ) from exc
    try:
        report = PruneReport(remover=remover)
        for digest in list(store.digests()):
            with contextlib.suppress(FileNotFoundError):
                report.bytes += store.path(digest).stat().st_size
                store.path(digest).unlink()
                report.blobs += 1
        for sub in ("snapshots", "cache", buildcache.AREA, variants.AREA, "tmp", "roots", "locks"):
            top = store.root / sub
            for child in sorted(top.iterdir()) if top.is_dir() else ():
                if sub == "snapshots" and child.is_dir():
                    report.snapshots += sum(1 for _ in child.iterdir())
                if sub == "roots":
                    report.roots += 1
                if child.is_dir() and not child.is_symlink():
                    report._remove(child)
                else:
                    child.unlink()
        return report
    finally:
        fcntl.flock(fd, fcntl.LOCK_SH)


def run_prune_cli(args: argparse.Namespace,
                  remover: Callable[[Path], None] | None = None) -> int:
    """``python -m ocibuild prune [--all]`` on the default store; prints what was removed."""
    with BlobStore() as store:
        report = prune(store, everything=bool(getattr(args, "all", False)), remover=remover)
    print(f"{store.root}: {report}", file=sys.stdout)
    return 0
