"""``RUN --mount``: the plan's ``Mount`` values turned into the sandbox's bind/tmpfs mounts.

- ``bind``: from the context (as BuildKit sends it: files ``.dockerignore`` excludes are absent,
  so with ignore rules a filtered tree is made once per build, of hard links where the file
  system allows), a stage or an image. A stage or image is the chain of its unpacked layer dirs
  in the store (those the snapshotter stacks), mounted as a read-only overlay in the sandbox;
  where the snapshotter is not kernel overlay, its layers are flattened once per source per
  build (under a lock of that source) instead. ``rw`` binds write to a private upper dir (an
  overlay) or a private copy, so writes are discarded as in BuildKit and never reach the source.
- ``cache``: a directory in the store (``store.cache_dir(id)``) kept across builds; created
  with ``mode``/``uid``/``gid`` (the owner is set inside the user namespace when the build is
  rootless with a sub-id map, where ``uid=1000`` is a sub-id on the host; with a single id
  it cannot be, and the wanted owner is only noted in the cache's ``.init`` marker);
  ``sharing=locked`` holds the cache's lock for the whole RUN; ``sharing=private`` gives each
  concurrent user its own directory (the first free of ``id``, ``id#private1``, ...), as
  BuildKit makes a new one when the cache is in use.
- ``tmpfs``: a fresh tmpfs.
- In chroot mode (no mount namespace) the sources are placed in the rootfs by rename or copy
  for the RUN and taken out afterwards (:mod:`ocibuild.executor.chroot_mounts`); a cache is
  then always used under its lock.
- ``secret``: a file bound read only at ``target`` (default ``/run/secrets/<id>``) or an
  environment variable (``env=``); the value is read at RUN time and never reaches a layer,
  the config or the history (the mount target's stub is removed by the sandbox).
- ``ssh``: the agent socket of ``--ssh ID=SOCK`` bound at ``target`` (default
  ``/run/buildkit/ssh_agent.N``); ``SSH_AUTH_SOCK`` names the first ssh mount's target, with an
  agent or not, unless the RUN's environment has it (BuildKit's ``llb.Exec``).

A shebang heredoc (``RUN <<EOF`` starting with ``#!``) is also mounted here, at ``/dev/pipes``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ocibuild.errors import ExecutionError
from ocibuild.executor.command import RunMount
from ocibuild.fs.safepath import safe_join
from ocibuild.plan.model import ContextRef, ImageRef, Mount, RunStep, Scratch, StageRef


class RunMounts:
    """Prepares the mounts of RUN steps for one build; ``close`` removes its temp dirs."""

    def __init__(self, store: Any, context_dir: Path, images: Any,
                 secrets: Mapping[str, tuple[str, str]], ssh: Mapping[str, str],
                 context: Any = None):
        """``context`` (an ``executor.context.BuildContext`` for ``context_dir``) brings the
        ``.dockerignore`` rules a context bind mount honours."""
        self.store = store
        self.context_dir = context_dir
        self.context = context
        self.images = images
        self.secrets = dict(secrets)
        self.ssh = dict(ssh)
        self._flat: dict[str, Path] = {}
        self._lock = threading.Lock()
        self._source_locks: dict[str, threading.Lock] = {}
        self._work = Path(tempfile.mkdtemp(prefix="ocibuild-mounts-"))

    def close(self) -> None:
        shutil.rmtree(self._work, ignore_errors=True)

    @contextlib.contextmanager
    def prepare(self, runner: Any, step: RunStep, script: tuple[str, str] | None,
                snap: Any = None) -> Iterator[tuple[list[RunMount], dict[str, str]]]:
        """Mounts and extra environment for ``step``; temp files and locks live until exit.
        ``snap`` (the RUN's snapshot) lets files be chowned inside the user namespace
        (``runner.s.runtime.call``) when ids other than the caller's must own them."""
        mounts: list[RunMount] = []
        late: list[RunMount] = []  # secrets and ssh: after the others, as BuildKit's ExecOp
        caches: dict[str, Path] = {}  # the RUN's caches by identity: one dir, one lock each
        env: dict[str, str] = {}
        with contextlib.ExitStack() as stack:
            tmp = Path(tempfile.mkdtemp(prefix="run-", dir=self._work))
            stack.callback(_remove_tmp, runner, tmp)
            for m in step.mounts:
                match m.type:
                    case "bind":
                        mounts.append(self._bind(runner, m, tmp))
                    case "cache":
                        mounts.append(self._cache(m, stack, runner, snap, caches))
                    case "tmpfs":
                        mounts.append(RunMount(target=m.target, kind="tmpfs",
                                               readonly=m.readonly, size=m.size))
                    case "secret":
                        mount = self._secret(m, tmp, env, runner, snap)
                        if mount is not None:
                            late.append(mount)
                    case "ssh":
                        mount = self._ssh(m)
                        # BuildKit's LLB: the first ssh mount's target (the plan gave it the
                        # default one), agent or not; the caller keeps one the RUN's env has.
                        env.setdefault("SSH_AUTH_SOCK", m.target)
                        if mount is not None:
                            late.append(mount)
                    case other:
                        raise ExecutionError(f"RUN --mount: unsupported type {other!r}")
            if script is not None:
                pipes = tmp / "pipes"
                pipes.mkdir()
                path = pipes / script[0]
                path.write_text(script[1])
                path.chmod(0o755)
                pipes.chmod(0o755)
                mounts.append(RunMount(target="/dev/pipes", source=pipes, readonly=True))
            # BuildKit's ExecOp sorts its mounts by target (a cache at /c, then a tmpfs at
            # /c/t over it, whatever the Dockerfile's order), secrets and ssh sockets last.
            yield sorted(mounts, key=lambda mount: mount.target) + late, env

    # -- each type -------------------------------------------------------------------------

    def _source_dir(self, runner: Any, source: Any) -> Path:
        """A host directory holding the whole of ``source`` (made at most once per build)."""
        match source:
            case ContextRef():
                if self.context is None or not self.context.ignore:
                    return self.context_dir
                return self._once("context", self._filtered_context)
            case Scratch():
                return self._once("scratch", lambda dest: None)
            case StageRef() | ImageRef():
                local = self.images.local_dir(source) if isinstance(source, ImageRef) else None
                if local is not None:
                    return Path(local)

                def flatten(dest: Path) -> None:
                    from ocibuild.output.rootfs import _flatten

                    image = (runner.result(source.index).image if isinstance(source, StageRef)
                             else self.images.image(source))
                    _flatten(image, self.store, dest, layer_dir=runner.s.layer_dir)

                return self._once(repr(source), flatten)
        raise AssertionError(source)

    def _once(self, key: str, fill: Any) -> Path:
        """The dir ``fill(dest)`` made for ``key``: filled once per build, under a lock of that
        key (stages in threads may want the same source at once; other keys do not wait)."""
        with self._lock:
            lock = self._source_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                known = self._flat.get(key)
            if known is not None:
                return known
            dest = Path(tempfile.mkdtemp(prefix="src-", dir=self._work))
            dest.chmod(0o755)  # a rootfs's root (mkdtemp makes it 0700)
            try:
                fill(dest)
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
                raise
            with self._lock:
                self._flat[key] = dest
            return dest

    def _filtered_context(self, dest: Path) -> None:
        """The context as BuildKit transfers it: only what ``.dockerignore`` lets through."""
        _copy_visible(self.context_dir, dest, self.context.visible)

    def _overlay_lowers(self, runner: Any, source: Any) -> tuple[Path, ...] | None:
        """The unpacked layer dirs of a stage or image source when the sandbox can stack them
        with kernel overlay (the snapshotter does), else None."""
        if not isinstance(source, (StageRef, ImageRef)):
            return None
        runtime = getattr(getattr(runner, "s", None), "runtime", None)
        lowers_of = getattr(runner, "source_lowers", None)
        if (runtime is None or lowers_of is None or runtime.snapshotter != "overlay"
                or not runtime.isolation.namespaced):
            return None
        if isinstance(source, ImageRef) and self.images.local_dir(source) is not None:
            return None  # a named context directory: bound as it is
        lowers = tuple(lowers_of(source))
        return lowers or None

    def _bind(self, runner: Any, m: Mount, tmp: Path) -> RunMount:
        lowers = self._overlay_lowers(runner, m.source)
        if lowers is not None:
            staging = tmp / f"ovl-{len(list(tmp.iterdir()))}"
            for name in ("merged", "upper", "work", "empty"):
                (staging / name).mkdir(parents=True)
            return RunMount(target=m.target, kind="overlay", source=staging,
                            readonly=m.readonly, lowers=lowers, subpath=m.source_path or "/")
        root = self._source_dir(runner, m.source)
        src = safe_join(root, m.source_path or "/")
        if not src.exists():
            raise ExecutionError(f"RUN --mount=type=bind: {m.source_path or '/'} not found in "
                                 "the mount source")
        if not m.readonly:
            copy = tmp / f"rw-{len(list(tmp.iterdir()))}"
            if src.is_dir():
                shutil.copytree(src, copy, symlinks=True)
            else:
                shutil.copy2(src, copy)
            src = copy
        return RunMount(target=m.target, source=src, readonly=m.readonly)

    def _cache(self, m: Mount, stack: contextlib.ExitStack, runner: Any = None,
               snap: Any = None, caches: dict[str, Path] | None = None) -> RunMount:
        ident = m.id or m.target
        if isinstance(m.source, (StageRef, ImageRef)):
            ident = f"{ident}@{m.source!r}"
        elif m.uid is not None or m.gid is not None or m.mode is not None:
            # BuildKit keys a cache by id and its source ref, here the mkdir that gives it
            # uid/gid/mode: other settings, another cache.
            ident = f"{ident}:{m.uid or 0}:{m.gid or 0}:{m.mode if m.mode is not None else -1}"
        if caches is not None and ident in caches:  # the same cache twice in one RUN: one dir
            return RunMount(target=m.target, source=caches[ident], readonly=m.readonly)
        key = ident
        if m.sharing == "private":
            ident = self._private_slot(ident, stack)
        elif m.sharing == "locked" or not _namespaced(runner):
            # In chroot mode the cache dir itself is moved into the rootfs for the RUN
            # (executor.chroot_mounts): no other RUN may use it meanwhile.
            stack.enter_context(self.store.cache_lock(ident))
        path = Path(self.store.cache_dir(ident))
        marker = path.parent / (path.name + ".init")
        if not marker.exists():
            # Once per cache, under a lock of its own: a chown to a sub-id is final (the
            # caller can no longer chmod), so two first users must not both set it up.
            with self.store.cache_lock(f"{ident}\0init"):
                if not marker.exists():
                    self._init_cache(path, marker, m, runner, snap)
        if caches is not None:
            caches[key] = path
        return RunMount(target=m.target, source=path, readonly=m.readonly)

    def _init_cache(self, path: Path, marker: Path, m: Mount, runner: Any, snap: Any) -> None:
        """Give a new cache dir its mode and owner, then write the marker (``uid:gid``).

        With ``from=`` the new cache starts as a copy of ``source`` in that stage or image (its
        root when no ``source``), as BuildKit's cache mount is a mutable ref made from the
        ``from`` state; ``mode``/``uid``/``gid`` then do not apply, except when no ``source``
        is given: BuildKit then makes an empty ``/cache`` dir with them (``setCacheUIDGID``),
        through a mkdir FileOp that keeps only the permission bits (``os.Mkdir(mode & 0777)``:
        no setuid, setgid or sticky) under the daemon's umask 022 (dockerd sets it, and a
        buildkitd in a container has it from runc): ``mode=0777`` gives 0755."""
        uid, gid = m.uid or 0, m.gid or 0
        settings = m.uid is not None or m.gid is not None or m.mode is not None
        seed_path = m.source_path
        if not isinstance(m.source, Scratch) and settings and not seed_path:
            # BuildKit's mkdir of /cache in the from= state does nothing where that state
            # already has one: it then seeds the cache, whatever uid/gid/mode say.
            existing = safe_join(self._source_dir(runner, m.source), "/cache")
            if existing.is_dir() and not existing.is_symlink():
                seed_path = "/cache"
        if not isinstance(m.source, Scratch) and (seed_path or not settings):
            src = safe_join(self._source_dir(runner, m.source), seed_path or "/")
            if not src.is_dir():
                raise ExecutionError(f"RUN --mount=type=cache: {m.source_path or '/'} is not "
                                     "a directory in the mount source")
            _copy_tree_as_is(src, path)
            if not seed_path:
                path.chmod(0o755)  # a rootfs's root (ours is a temp dir, 0700)
            marker.write_text("seeded\n")
            return
        path.mkdir(parents=True, exist_ok=True)
        path.chmod((m.mode if m.mode is not None else 0o755) & 0o755)
        if uid or gid:
            self._chown(path, uid, gid, runner, snap)
        marker.write_text(f"{uid}:{gid}\n")

    def _chown(self, path: Path, uid: int, gid: int, runner: Any, snap: Any) -> bool:
        """Make ``uid:gid`` (image ids) own ``path``, a file of the caller. As host root
        directly; rootless with a sub-id map, as root of the build's user namespace (where
        the ids are mapped). Returns False where it cannot be (a single-id sandbox: only the
        caller's id exists, and the RUN sees every file as owned by root)."""
        if os.geteuid() == 0:
            os.chown(path, uid, gid)
            return True
        runtime = getattr(getattr(runner, "s", None), "runtime", None)
        isolation = getattr(runtime, "isolation", None)
        if snap is None or runtime is None or isolation is None or not isolation.owns_files:
            return False
        runtime.call(snap, _chown_in_sandbox, str(path), uid, gid)
        return True

    def _private_slot(self, ident: str, stack: contextlib.ExitStack) -> str:
        """The first of ``ident``, ``ident#private1``, ... no other RUN holds now (held by
        ``stack`` until the RUN ends)."""
        from ocibuild.store._locks import locked

        locks = Path(self.store.root) / "locks"
        for n in itertools.count():
            slot = ident if n == 0 else f"{ident}#private{n}"
            name = hashlib.sha256(slot.encode()).hexdigest()
            attempt = contextlib.ExitStack()
            if attempt.enter_context(locked(locks / f"private-{name}", blocking=False)):
                stack.enter_context(attempt.pop_all())
                return slot
            attempt.close()
        raise AssertionError("unreachable")

    def _secret(self, m: Mount, tmp: Path, env: dict[str, str], runner: Any = None,
                snap: Any = None) -> RunMount | None:
        ident = m.id or Path(m.target).name
        found = self.secrets.get(ident)
        if found is None:
            if m.required:
                raise ExecutionError(f"secret {ident} not found: pass --secret id={ident},src=...")
            return None
        kind, value = found
        if kind == "file":
            data = Path(value).read_bytes()
        else:
            data = os.environ.get(value, "").encode()
        if m.env:
            env[m.env] = data.decode("utf-8", "replace")
            if not m.target:
                return None
        target = m.target or f"/run/secrets/{ident}"
        secrets = tmp / "secrets"
        secrets.mkdir(exist_ok=True, mode=0o700)
        path = secrets / str(len(list(secrets.iterdir())))  # one file per mount
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as f:
            # The mode exactly (no umask), permission bits only: BuildKit's secret file.
            os.fchmod(f.fileno(), 0o400 if m.mode is None else m.mode & 0o777)
            f.write(data)
        if m.uid or m.gid:
            self._chown(path, m.uid or 0, m.gid or 0, runner, snap)
        return RunMount(target=target, source=path, readonly=True)

    def _ssh(self, m: Mount) -> RunMount | None:
        ident = m.id or "default"
        sock = self.ssh.get(ident)
        if sock is None:
            if m.required:
                raise ExecutionError(f"no SSH agent {ident!r}: pass --ssh {ident}=SOCKET")
            return None
        return RunMount(target=m.target, source=Path(sock), readonly=False)


def _remove_tmp(runner: Any, tmp: Path) -> None:
    """Remove a RUN's mount files. A RUN user other than root may have written files of a
    sub-id into an overlay's upper dir or a ``rw`` copy: those need the sandbox to go."""
    runtime = getattr(getattr(runner, "s", None), "runtime", None)
    if runtime is not None and any(p.name.startswith(("ovl-", "rw-")) for p in tmp.iterdir()):
        with contextlib.suppress(Exception):
            runtime.remove_tree(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def _namespaced(runner: Any) -> bool:
    """Whether RUN mounts are real mounts (else chroot mode places them by rename/copy)."""
    runtime = getattr(getattr(runner, "s", None), "runtime", None)
    isolation = getattr(runtime, "isolation", None)
    return isolation is None or bool(isolation.namespaced)


def _chown_in_sandbox(ctx: Any, path: str, uid: int, gid: int) -> None:
    """Run by ``Runtime.call`` as root of the user namespace (``ctx`` unused: ``path`` is a
    host path outside the snapshot, visible in the sandbox's mount namespace)."""
    del ctx
    os.chown(path, uid, gid)


def _copy_tree_as_is(src: Path, dest: Path) -> None:
    """Copy the tree ``src`` to ``dest`` (may exist, empty) keeping symlinks, modes and, as
    host root, owners: the seed of a ``from=`` cache mount."""
    shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    shutil.copystat(src, dest)
    if os.geteuid() != 0:
        return  # the caller's files; the ids BuildKit would keep need a sub-id map
    for entry in [src, *src.rglob("*")]:
        st = entry.lstat()
        os.lchown(dest / entry.relative_to(src), st.st_uid, st.st_gid)
    os.chmod(dest, stat.S_IMODE(src.lstat().st_mode))


def _copy_visible(src: Path, dest: Path, visible: Callable[[str], bool]) -> None:
    """Copy the tree ``src`` into the existing dir ``dest``, keeping only entries whose
    slash-separated relative path ``visible`` accepts (a hidden directory is skipped whole:
    ``visible`` says yes to one that holds re-included entries). Files are hard links where the
    file system allows (the mount is read only, or copied again for ``rw``), else copies;
    modes, times and (as root) owners are kept."""
    as_root = os.geteuid() == 0
    top_st = os.stat(src)
    if as_root:
        os.chown(dest, top_st.st_uid, top_st.st_gid)
    os.chmod(dest, stat.S_IMODE(top_st.st_mode))
    dirs: list[tuple[str, str]] = [(os.fspath(src), os.fspath(dest))]
    for top, out in dirs:
        rel_top = os.path.relpath(top, src)
        with os.scandir(top) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = entry.name if rel_top == "." else f"{rel_top}/{entry.name}"
            if not visible(rel):
                continue
            target = os.path.join(out, entry.name)
            if entry.is_dir(follow_symlinks=False):
                os.mkdir(target, 0o700)
                dirs.append((entry.path, target))
            elif entry.is_symlink():
                os.symlink(os.readlink(entry.path), target)
            elif entry.is_file(follow_symlinks=False):
                try:
                    os.link(entry.path, target, follow_symlinks=False)
                    continue  # the same inode: its metadata is the file's own
                except OSError:
                    shutil.copy2(entry.path, target, follow_symlinks=False)
            else:
                continue  # sockets, fifos, devices: not part of a context BuildKit sends
            st = entry.stat(follow_symlinks=False)
            if as_root:
                os.lchown(target, st.st_uid, st.st_gid)
            if not entry.is_symlink():
                os.chmod(target, stat.S_IMODE(st.st_mode))
    # Directory times last, deepest first: filling a directory changes its mtime.
    for top, out in reversed(dirs):
        st = os.stat(top)
        os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
