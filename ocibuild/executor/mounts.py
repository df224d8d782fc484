"""``RUN --mount``: the plan's ``Mount`` values turned into the sandbox's bind/tmpfs mounts.

- ``bind``: from the context (the context directory), a stage or an image (the source's layers
  flattened once per build into a temp dir); ``rw`` binds get a private copy, so writes are
  discarded as in BuildKit.
- ``cache``: a directory in the store (``store.cache_dir(id)``) kept across builds; created
  with ``mode``/``uid``/``gid`` (the owner is set inside the user namespace when the build is
  rootless with a sub-id map, where ``uid=1000`` is a sub-id on the host; with a single id
  it cannot be, and the wanted owner is only noted in the cache's ``.init`` marker);
  ``sharing=locked`` holds the cache's lock for the whole RUN; ``sharing=private`` gives each
  concurrent user its own directory (the first free of ``id``, ``id#private1``, ...), as
  BuildKit makes a new one when the cache is in use.
- ``tmpfs``: a fresh tmpfs.
- ``secret``: a file bound read only at ``target`` (default ``/run/secrets/<id>``) or an
  environment variable (``env=``); the value is read at RUN time and never reaches a layer,
  the config or the history (the mount target's stub is removed by the sandbox).
- ``ssh``: the agent socket of ``--ssh ID=SOCK`` bound at ``target`` (default
  ``/run/buildkit/ssh_agent.N``) with ``SSH_AUTH_SOCK`` pointing at it.

A shebang heredoc (``RUN <<EOF`` starting with ``#!``) is also mounted here, at ``/dev/pipes``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ocibuild.errors import ExecutionError
from ocibuild.executor.command import RunMount
from ocibuild.fs.safepath import safe_join
from ocibuild.plan.model import ContextRef, ImageRef, Mount, RunStep, Scratch, StageRef


class RunMounts:
    """Prepares the mounts of RUN steps for one build; ``close`` removes its temp dirs."""

    def __init__(self, store: Any, context_dir: Path, images: Any,
                 secrets: Mapping[str, tuple[str, str]], ssh: Mapping[str, str]):
        self.store = store
        self.context_dir = context_dir
        self.images = images
        self.secrets = dict(secrets)
        self.ssh = dict(ssh)
        self._flat: dict[str, Path] = {}
        self._lock = threading.Lock()
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
        env: dict[str, str] = {}
        with contextlib.ExitStack() as stack:
            tmp = Path(tempfile.mkdtemp(prefix="run-", dir=self._work))
            stack.callback(shutil.rmtree, tmp, True)
            ssh_index = 0
            for m in step.mounts:
                match m.type:
                    case "bind":
                        mounts.append(self._bind(runner, m, tmp))
                    case "cache":
                        mounts.append(self._cache(m, stack, runner, snap))
                    case "tmpfs":
                        mounts.append(RunMount(target=m.target, kind="tmpfs", readonly=False))
                    case "secret":
                        mount = self._secret(m, tmp, env, runner, snap)
                        if mount is not None:
                            mounts.append(mount)
                    case "ssh":
                        mount = self._ssh(m, ssh_index, env)
                        ssh_index += 1
                        if mount is not None:
                            mounts.append(mount)
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
            yield mounts, env

    # -- each type -------------------------------------------------------------------------

    def _source_dir(self, runner: Any, source: Any) -> Path:
        match source:
            case ContextRef():
                return self.context_dir
            case Scratch():
                empty = self._work / "scratch"
                empty.mkdir(exist_ok=True)
                return empty
            case StageRef() | ImageRef():
                local = self.images.local_dir(source) if isinstance(source, ImageRef) else None
                if local is not None:
                    return Path(local)
                key = repr(source)
                with self._lock:
                    if key in self._flat:
                        return self._flat[key]
                image = (runner.result(source.index).image if isinstance(source, StageRef)
                         else self.images.image(source))
                dest = Path(tempfile.mkdtemp(prefix="flat-", dir=self._work))
                from ocibuild.output.rootfs import _flatten

                _flatten(image, self.store, dest)
                with self._lock:
                    self._flat[key] = dest
                return dest
        raise AssertionError(source)

    def _bind(self, runner: Any, m: Mount, tmp: Path) -> RunMount:
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
               snap: Any = None) -> RunMount:
        ident = m.id or m.target
        if isinstance(m.source, (StageRef, ImageRef)):
            ident = f"{ident}@{m.source!r}"
        if m.sharing == "private":
            ident = self._private_slot(ident, stack)
        elif m.sharing == "locked":
            stack.enter_context(self.store.cache_lock(ident))
        path = Path(self.store.cache_dir(ident))
        marker = path.parent / (path.name + ".init")
        if not marker.exists():
            # Once per cache, under a lock of its own: a chown to a sub-id is final (the
            # caller can no longer chmod), so two first users must not both set it up.
            with self.store.cache_lock(f"{ident}\0init"):
                if not marker.exists():
                    self._init_cache(path, marker, m, runner, snap)
        return RunMount(target=m.target, source=path, readonly=False)

    def _init_cache(self, path: Path, marker: Path, m: Mount, runner: Any, snap: Any) -> None:
        """Give a new cache dir its mode and owner, then write the marker (``uid:gid``)."""
        uid, gid = m.uid or 0, m.gid or 0
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(m.mode if m.mode is not None else 0o755)
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
        if snap is None or isolation is None or not isolation.owns_files:
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
        path = secrets / ident
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400 if m.mode is None else m.mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if m.uid or m.gid:
            self._chown(path, m.uid or 0, m.gid or 0, runner, snap)
        return RunMount(target=target, source=path, readonly=True)

    def _ssh(self, m: Mount, index: int, env: dict[str, str]) -> RunMount | None:
        ident = m.id or "default"
        sock = self.ssh.get(ident)
        if sock is None:
            if m.required:
                raise ExecutionError(f"no SSH agent {ident!r}: pass --ssh {ident}=SOCKET")
            return None
        target = m.target or f"/run/buildkit/ssh_agent.{index}"
        env["SSH_AUTH_SOCK"] = target
        return RunMount(target=target, source=Path(sock), readonly=False)


def _chown_in_sandbox(ctx: Any, path: str, uid: int, gid: int) -> None:
    """Run by ``Runtime.call`` as root of the user namespace (``ctx`` unused: ``path`` is a
    host path outside the snapshot, visible in the sandbox's mount namespace)."""
    del ctx
    os.chown(path, uid, gid)
