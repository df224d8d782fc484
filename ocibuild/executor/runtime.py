"""The Runtime: the sandbox and a snapshotter joined, as the stage loop uses them.

    runtime = Runtime.detect(isolation="auto", snapshotter="auto", store=store)
    lower = runtime.unpack_layer(chain_id, blob_path)        # once per chain id, in the store
    snap = runtime.new_snapshot([lower_top, ..., lower_bottom])
    code = runtime.run(snap, RunSpec(("/bin/sh", "-c", "make")), output=sys.stdout.buffer.write)
    runtime.call(snap, copy_into, step, roots={"context": [context_dir]})
    layer = runtime.commit(snap, dest, "gzip")
    runtime.remove(snap); runtime.close()

Every operation that touches a snapshot runs in a fresh sandbox process (see sandbox.py), so
mounts exist only while it runs and files owned by sub-ids are handled as root of the user
namespace. ``can_run`` is False where no isolation mode works; then unpack, call and commit
still work in a plain process (copy snapshots, ownership records) and :meth:`run` raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ocibuild.digest import Digest
from ocibuild.errors import SandboxError
from ocibuild.executor import _linux
from ocibuild.executor import snapshot as snapshots
from ocibuild.executor.command import RunMount, RunSpec, run_command
from ocibuild.executor.copy_feed import Feed, FeedBroken, FeedWriter
from ocibuild.executor.detect import Detected, detect
from ocibuild.executor.sandbox import Isolation, enter
from ocibuild.executor.snapshot import Snapshot
from ocibuild.fs.layer import LayerBlob, layer_headers, write_layer
from ocibuild.fs.ownership import RECORD_NAME, Owner, OwnershipRecord
from ocibuild.fs.unpack import unpack_layer
from ocibuild.store.areas import LAYER_FILES

__all__ = ["CallContext", "RunMount", "RunSpec", "Runtime", "Snapshot"]

SINGLE_ID_WARNING = (
    "rootless sandbox with a single id (no /etc/subuid and /etc/subgid range or no "
    "newuidmap): ownership changes made by RUN (chown, mknod, setuid) are not kept, and apt "
    "runs its downloads as root instead of _apt (APT_CONFIG with APT::Sandbox::User root)")

# The only xattr BuildKit puts in a layer it diffs (containerd's archive ChangeWriter; moby's
# graphdriver tar too): user.*, trusted.* and POSIX ACLs (system.posix_acl_*) that a RUN or
# COPY sets stay in the snapshot but never reach the image.
LAYER_XATTRS = frozenset({"security.capability"})


class SnapshotStore(Protocol):
    def snapshot(self, chain_id: Digest, fill: Callable[[Path], None]) -> Path: ...


@dataclass
class CallContext:
    """What :meth:`Runtime.call`'s function gets: the snapshot's tree at ``root`` (writable),
    read-only trees at ``roots[name]``, and :meth:`chown`."""

    root: Path
    roots: dict[str, Path]
    owns_files: bool
    record: OwnershipRecord | None = None
    changed: bool = field(default=False)
    feed: FeedWriter | None = None  # where a COPY reports its entries (``copy_feed``)

    def chown(self, path: Path | str, uid: int, gid: int,
              device: tuple[str, int, int] | None = None) -> None:
        """Give ``path`` (under ``root``, not followed if a symlink) the owner ``uid:gid``: on
        disk when the sandbox can, else in the snapshot's OwnershipRecord; ``device``: the
        device node the file is a placeholder for (ADD of an archive in a user namespace)."""
        full = Path(path) if os.path.isabs(path) else self.root / path
        if self.owns_files:
            try:
                os.lchown(full, uid, gid)
            except OSError as exc:  # an id beyond the sub-id range: recorded instead
                if self.record is None or exc.errno not in (errno.EINVAL, errno.EPERM):
                    raise
        if self.record is None:
            return
        # Recorded even when the disk holds it: a lower layer's record may name the path.
        rel = os.path.relpath(full, self.root)
        st = os.lstat(full)
        old = self.record.get(rel)
        self.record.set(rel, Owner(uid, gid, stat.S_IMODE(st.st_mode),
                                   device or (old.device if old else None),
                                   old.xattrs if old else ()))
        self.changed = True


class Runtime:
    """See the module docstring. Each operation is its own sandbox process, so stages may use
    one Runtime from several threads (on different snapshots)."""

    def __init__(self, found: Detected, store: SnapshotStore | None, work: Path,
                 owns_work: bool, warn: Callable[[str], None] | None):
        self.isolation: Isolation = found.isolation
        self.snapshotter: snapshots.Kind = found.snapshotter
        self.can_run: bool = found.can_run
        self.reason: str = found.reason
        self.warnings: list[str] = []
        self._store = store
        self._work = work
        self._owns_work = owns_work
        self._warn = warn or self.warnings.append
        self._warned = False

    @classmethod
    def detect(cls, isolation: str = "auto", snapshotter: str = "auto",
               store: SnapshotStore | None = None, *, workdir: Path | None = None,
               need_run: bool = False, warn: Callable[[str], None] | None = None) -> Runtime:
        """Pick the isolation mode and snapshotter that work here (probing real namespaces and
        mounts), or check the forced ones.

        ``isolation``: auto | rootless | root | chroot; ``snapshotter``: auto | overlay |
        fuse-overlayfs | copy. Raises :class:`SandboxError` naming what is missing when a forced
        choice does not work, or when ``need_run`` and no mode can run RUN. ``workdir`` holds
        snapshots (default: a new dir in the store's temp area, else in $TMPDIR).
        """
        owns = workdir is None
        if workdir is None:
            tempdir = getattr(store, "tempdir", None)
            workdir = tempdir("run-") if tempdir else Path(tempfile.mkdtemp(prefix="ocibuild-"))
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            found = detect(isolation, snapshotter, workdir)
            runtime = cls(found, store, workdir, owns, warn)
            if need_run:
                runtime.require_run()
        except BaseException:
            if owns:
                shutil.rmtree(workdir, ignore_errors=True)
            raise
        return runtime

    def require_run(self) -> None:
        """Raise the early, clear :class:`SandboxError` when RUN cannot work here."""
        if not self.can_run:
            raise SandboxError(f"cannot run RUN here: {self.reason}",
                               hint="see --isolation; builds without RUN still work")

    def _enter(self, fn: Callable[..., Any], *args: Any, keep_fds: tuple[int, ...] = ()) -> Any:
        if self.isolation.mode == "none":
            return fn(*args)
        return enter(self.isolation, fn, *args, keep_fds=keep_fds)

    # -- layers --------------------------------------------------------------------------------

    def unpack_layer(self, chain_id: Digest, blob_path: Path) -> Path:
        """The directory of the layer ``blob_path`` (whose chain id is ``chain_id``), unpacked
        once into the store in overlay's whiteout format; its ownership record beside it."""
        iso, fmt = self.isolation, self._whiteout_format()

        def fill(tmp: Path) -> None:
            (tmp / LAYER_FILES).mkdir()
            os.chmod(tmp / LAYER_FILES, 0o755)  # the layer's root, unless it has a ./ entry
            try:
                self._enter(_unpack, blob_path, tmp, iso, fmt)
            except BaseException:
                self.remove_tree(tmp / LAYER_FILES)
                raise

        if self._store is not None:
            return self._store.snapshot(chain_id, fill) / LAYER_FILES
        final = self._work / "layers" / chain_id.hex
        if not final.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=final.parent))
            fill(tmp)
            os.rename(tmp, final)
        return final / LAYER_FILES

    def _whiteout_format(self) -> str:
        # One format for every mode, so a store filled as root also serves a rootless build:
        # user.overlay.* xattrs, which overlay mounted with userxattr (also outside a user
        # namespace), fuse-overlayfs and the copy snapshotter all read.
        return "userxattr"

    # -- snapshots -----------------------------------------------------------------------------

    def new_snapshot(self, lowers: Sequence[Path]) -> Snapshot:
        """A writable snapshot over ``lowers`` (layer dirs from :meth:`unpack_layer`, top-most
        first; empty for ``FROM scratch``)."""
        path = self._work / "snapshots" / uuid.uuid4().hex
        snap = Snapshot(path, self.snapshotter, tuple(lowers))
        snapshots.layout(path, snap.kind)
        if snap.kind == "copy":
            try:
                self._enter(snapshots.fill_copy, snap)
            except BaseException:
                self.remove(snap)
                raise
        return snap

    def run(self, snap: Snapshot, spec: RunSpec, output: Callable[[bytes], None]) -> int:
        """Run ``spec`` in ``snap``; ``output`` gets stdout and stderr as they come. Returns
        the exit code (128 + N when killed by signal N, as BuildKit reports it)."""
        self.require_run()
        if spec.network == "none" and not self.isolation.namespaced:
            raise SandboxError("RUN --network=none needs a network namespace, "
                               f"unavailable in {self.isolation.mode} mode")
        if self.isolation.single_id and not self._warned:
            self._warned = True
            self._warn(SINGLE_ID_WARNING)
        return int(enter(self.isolation, _run, snap, spec, self.isolation,
                         new_net=spec.network == "none", output=output, command=True))

    def call(self, snap: Snapshot, fn: Callable[..., Any], *args: Any,
             roots: Mapping[str, Sequence[Path]] | None = None, feed: int | None = None) -> Any:
        """Return ``fn(ctx, *args)`` run as root inside the sandbox with ``snap`` mounted
        writable at ``ctx.root`` and each ``roots[name]`` (layer dirs top-most first, or one
        plain directory) read-only at ``ctx.roots[name]``. The result must be picklable.
        ``feed``: the write end of a ``copy_feed`` pipe, given to ``fn`` as ``ctx.feed``; its
        end is reported once ``fn`` has returned."""
        roots = dict(roots or {})
        for name in roots:
            (snap.path / "roots" / _safe_name(name)).mkdir(parents=True, exist_ok=True)
        return self._enter(_call, snap, fn, args, roots, self.isolation, feed,
                           keep_fds=() if feed is None else (feed,))

    def source_record(self, lowers: Sequence[Path]) -> OwnershipRecord | None:
        """The true owners the layer dirs ``lowers`` (top-most first) could not hold on disk,
        for a COPY --from of them (None where snapshots keep no records)."""
        if not self.isolation.keeps_records:
            return None
        record = snapshots.lowers_record(lowers)
        return _beyond_disk(record, self.isolation) if self.isolation.owns_files else record

    def commit(self, snap: Snapshot, dest: Path, compression: str = "gzip",
               level: int | None = None, source_date_epoch: int | None = None,
               also: tuple[Path, str, int | None] | None = None,
               feed: int | None = None) -> LayerBlob:
        """Write the snapshot's changes as a layer blob at ``dest`` (inside the sandbox, where
        every file is readable; ``dest`` ends up owned by the caller); ``also``: a copy in
        another compression in the same pass (``write_layer``).

        ``feed``: the read end of a ``copy_feed`` pipe whose copy into ``snap`` is running:
        the layer is written from its reports as they come, then checked against the
        snapshot's changes once the copy has ended (``_commit_fed``), and written again from
        the snapshot when they differ. The result is the same layer either way; when it was
        written again, its compressed copy is at ``also``'s path plus ``.2`` (the first one
        may still be read by an upload), and ``LayerBlob.streamed`` is False.

        XXX: a fuse-overlayfs snapshot's upper dir is rewritten to the kernel's format here, so
        it should not be run in again after its commit (opaque directories would lose opacity).
        """
        if feed is not None:
            fed: LayerBlob = self._enter(_commit_fed, snap, dest, compression, level,
                                         source_date_epoch, self.isolation, also, feed,
                                         keep_fds=(feed,))
            return fed
        blob: LayerBlob = self._enter(_commit, snap, dest, compression, level,
                                      source_date_epoch, self.isolation, also)
        return blob

    def remove(self, snap: Snapshot) -> None:
        """Delete the snapshot's directories (inside the sandbox: they may hold sub-id files)."""
        self.remove_tree(snap.path)

    def remove_tree(self, path: Path) -> None:
        """Remove a directory tree made by this runtime (snapshots, unpacked layers) as root of
        its sandbox: with a full id map it holds files of sub-ids the caller cannot delete."""
        if not os.path.lexists(path):
            return
        # Most of it (often all: a committed overlay snapshot is left with its empty work dir)
        # is ours; a sandbox process is only worth starting for what is left.
        _rmtree(path)
        if os.path.lexists(path) and self.isolation.mode in ("rootless", "root"):
            self._enter(_rmtree, path)

    def close(self) -> None:
        """Remove the runtime's work area (snapshots not removed yet go with it)."""
        if self._owns_work:
            self.remove_tree(self._work)

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def sandbox_remover() -> Iterator[Callable[[Path], None]]:
    """A remover for ``store.gc.prune``: deletes a tree as root of this user's sandbox, for
    snapshots whose files belong to sub-ids (a full id map) that the user cannot delete. The
    sandbox is only set up on the first call; raises ``SandboxError`` when the tree stays."""
    runtime: Runtime | None = None

    def remove(path: Path) -> None:
        nonlocal runtime
        try:
            if runtime is None:
                runtime = Runtime.detect()
            runtime.remove_tree(path)
        except OSError as exc:
            raise SandboxError(f"remove {path} in the sandbox: {exc.strerror or exc}") from exc
        if os.path.lexists(path):
            raise SandboxError(f"remove {path} in the sandbox: some files remain")

    try:
        yield remove
    finally:
        if runtime is not None:
            runtime.close()


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "_"


# -- functions run inside the sandbox (module level: forked, not pickled) ----------------------

def _unpack(blob: Path, tmp: Path, iso: Isolation, fmt: str) -> None:
    record = OwnershipRecord() if iso.keeps_records else None
    unpack_layer(blob, tmp / LAYER_FILES, ownership=record, chown=iso.owns_files, whiteout_format=fmt)
    if record:
        record.save(tmp / RECORD_NAME)


def _run(snap: Snapshot, spec: RunSpec, iso: Isolation, *, out_fd: int) -> int:
    keep = snapshots.mount(snap)
    started = time.time_ns()
    try:
        outcome = run_command(snap.root, snap.scratch, spec, iso, out_fd=out_fd)
    finally:
        snapshots.unmount(snap)
        if keep:
            with contextlib.suppress(OSError):
                os.waitpid(keep, 0)
    if not iso.owns_files and (outcome.uid, outcome.gid) != (0, 0):
        # One id on disk: what the RUN's user created (and the working directory BuildKit
        # chowns to it) would come out as root's. Record the user as their owner instead;
        # files that existed below keep the owner they had.
        record = snapshots.load_record(snap.path)
        for rel, mode in (*((c, 0o755) for c in outcome.created),
                          *snapshots.created_since(snap, started)):
            if record.get(rel) is None:
                record.set(rel, Owner(outcome.uid, outcome.gid, mode))
        record.save(snap.record_path)
    return outcome.code


def _call(snap: Snapshot, fn: Callable[..., Any], args: tuple[Any, ...],
          roots: dict[str, Sequence[Path]], iso: Isolation, feed: int | None = None) -> Any:
    keep = snapshots.mount(snap)
    mounted: list[Path] = []
    try:
        views = {name: _mount_root(snap, name, list(paths), iso, mounted)
                 for name, paths in roots.items()}
        record = snapshots.load_record(snap.path) if iso.keeps_records else None
        ctx = CallContext(snap.root, views, iso.owns_files, record)
        if feed is not None:
            ctx.feed = FeedWriter(feed, snap.root)
        result = fn(ctx, *args)
        if record is not None and ctx.changed:
            record.save(snap.record_path)
        if ctx.feed is not None:
            ctx.feed.end()
        return result
    finally:
        for target in reversed(mounted):
            with contextlib.suppress(OSError):
                _linux.umount(target, _linux.MNT_DETACH)
        snapshots.unmount(snap)
        if keep:
            with contextlib.suppress(OSError):
                os.waitpid(keep, 0)


def _mount_root(snap: Snapshot, name: str, paths: list[Path], iso: Isolation,
                mounted: list[Path]) -> Path:
    if len(paths) == 1 and not iso.namespaced:
        return paths[0]
    target = snap.path / "roots" / _safe_name(name)
    lx = _linux
    if len(paths) == 1:
        lx.mount(os.fspath(paths[0]), target, None, lx.MS_BIND | lx.MS_REC)
        mounted.append(target)
        lx.mount(None, target, None, lx.MS_REMOUNT | lx.MS_BIND | lx.MS_RDONLY)
        return target
    if iso.namespaced and snap.kind == "overlay":
        common = os.path.commonpath([os.fspath(p) for p in paths])
        os.chdir(common)
        lowers = ":".join(os.path.relpath(p, common) for p in paths)
        opts = f"lowerdir={lowers},userxattr"
        lx.mount("overlay", target, "overlay", lx.MS_RDONLY, opts)
        mounted.append(target)
        return target
    for lower in reversed(paths):  # no overlay: a merged copy (XXX: slow for big stages)
        snapshots.merge_layer(lower, target)
    return target


def _commit(snap: Snapshot, dest: Path, compression: str, level: int | None,
            epoch: int | None, iso: Isolation,
            also: tuple[Path, str, int | None] | None = None) -> LayerBlob:
    snapshots.normalize_fuse_upper(snap)
    record, lower_record = _records(snap, iso)
    changes = snapshots.changes(snap, record, lower_record)
    return write_layer(changes, dest, compression, level, ownership=record,
                       source_date_epoch=epoch, ordered=True, xattr_names=LAYER_XATTRS,
                       also=also)


def _records(snap: Snapshot, iso: Isolation) -> tuple[OwnershipRecord | None,
                                                      OwnershipRecord | None]:
    """The ownership records a commit of ``snap`` writes its layer with: the snapshot's
    (merged over its lowers') and its lowers'; None where snapshots keep none."""
    if not iso.keeps_records:
        return None, None
    lower_record = snapshots.lowers_record(snap.lowers)
    record = lower_record.merge(snapshots.load_record(snap.path))
    if iso.owns_files:
        # A full id map: the disk is right for every owner it can hold, and a RUN may
        # have changed it since a lower layer's record was written (``chown -R app /app``
        # after a COPY recorded 0:0); records only keep what the disk cannot hold.
        lower_record, record = _beyond_disk(lower_record, iso), _beyond_disk(record, iso)
    return record, lower_record


def _commit_fed(snap: Snapshot, dest: Path, compression: str, level: int | None,
                epoch: int | None, iso: Isolation, also: tuple[Path, str, int | None] | None,
                feed_fd: int) -> LayerBlob:
    """``Runtime.commit`` with a feed: the layer from the copy's reports while it runs; once
    it has ended, kept if a walk of the snapshot gives the same headers, else written again
    from that walk. A copy that fails raises ``FeedBroken`` here (its caller discards the
    snapshot)."""
    # The copy is the step's critical path, one thread: the layer (and, for a push, its
    # compression) takes the CPU time the copy leaves instead of slowing it down. On the
    # bench's context (2 cores) a push then adds 0.7 s to the build instead of 1.0 s. (Only
    # in a sandbox process: without one this is the caller's thread, which would keep it.)
    if iso.mode != "none":
        os.nice(10)
    feed = Feed(feed_fd)
    record, _ = _records(snap, iso)  # the lowers' and any earlier step's: the copy adds later
    log = hashlib.sha256()
    blob: LayerBlob | None = None
    try:
        blob = write_layer(feed.changes(snap.upper), dest, compression, level, ownership=record,
                           source_date_epoch=epoch, ordered=True, xattr_names=LAYER_XATTRS,
                           also=also, headers=log)
    except FeedBroken:
        raise
    except Exception:  # noqa: BLE001 - not promised, out of order, or a real error: again below
        blob = None
    feed.drain()
    record, lower_record = _records(snap, iso)
    if blob is not None:
        walked = layer_headers(snapshots.changes(snap, record, lower_record), record, epoch,
                               xattr_names=LAYER_XATTRS)
        if walked == log.digest():
            return dataclasses.replace(blob, streamed=True)
        for path in (dest, *((also[0],) if also is not None else ())):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    if also is not None:
        also = (also[0].with_name(also[0].name + ".2"), *also[1:])
    return write_layer(snapshots.changes(snap, record, lower_record), dest, compression, level,
                       ownership=record, source_date_epoch=epoch, ordered=True,
                       xattr_names=LAYER_XATTRS, also=also)


def _beyond_disk(record: OwnershipRecord, iso: Isolation) -> OwnershipRecord:
    """The entries of ``record`` a full-map sandbox cannot hold on disk: ids outside the
    map, device placeholders, xattrs that could not be set."""
    idmap = iso.idmap

    def mapped(value: int, ranges: Sequence[Any]) -> bool:
        return any(r.inside <= value < r.inside + r.count for r in ranges)

    def held(owner: Owner) -> bool:
        return (idmap is not None and owner.device is None and not owner.xattrs
                and mapped(owner.uid, idmap.uids) and mapped(owner.gid, idmap.gids))

    return OwnershipRecord({p: o for p, o in record.entries.items() if not held(o)})


def _rmtree(path: Path) -> None:
    """Remove what can be removed of ``path``, opening up directories we own but may not
    read or write (overlay's ``work/work`` is mode 000); the rest stays (see remove_tree)."""

    def onexc(func: Callable[..., object], p: str, exc: BaseException) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
                shutil.rmtree(p, ignore_errors=True)
            else:
                os.unlink(p)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=onexc)
    else:
        shutil.rmtree(path, onerror=lambda f, p, e: onexc(f, p, e[1]))
