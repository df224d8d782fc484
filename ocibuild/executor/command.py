"""RUN inside the sandbox: the spec, and what stage 1 does to run it (see sandbox.py's tree).

:func:`run_command` is called in the sandbox's stage 1 with the snapshot mounted at ``root``.
It sets up /dev, /sys, hosts and resolv.conf (or their chroot stand-ins), resolves ``USER`` in
the rootfs's own /etc/passwd and /etc/group (and ``HOME`` when the env has none, as runc does),
forks the command (in namespaces: pid 1 of a new pid namespace, as BuildKit's RUN is, with
its own mount namespace, /proc and pivot_root; else chroot), reaps everything until the
command exits, kills what it left behind, and removes every trace of the set-up from the
snapshot.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ocibuild.errors import ExecutionError, SandboxError
from ocibuild.executor import _linux, rootfs
from ocibuild.executor.sandbox import Isolation, end_strays
from ocibuild.executor.seccomp import install_fake_ownership
from ocibuild.executor.users import resolve_home, resolve_user
from ocibuild.fs.safepath import safe_join

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The capabilities a BuildKit RUN gets (containerd's default spec, Docker's default set): CHOWN,
# DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW,
# SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP. Everything else (SYS_ADMIN for mount, SYS_PTRACE,
# LINUX_IMMUTABLE for chattr +i, NET_ADMIN, SYS_TIME, ...) fails there, so it must fail here.
DEFAULT_CAPS = frozenset({0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31})
_PR_CAPBSET_DROP = 24


@dataclass(frozen=True)
class RunMount:
    """A ``RUN --mount``: ``kind`` ``bind`` (``source`` a host path), ``tmpfs``, or ``overlay``:
    the layer dirs ``lowers`` (top-most first) stacked read-only at ``source/merged`` (a
    caller-made dir with ``upper``/``work``/``empty`` beside it; writes, when not ``readonly``,
    go to ``upper`` and never to a lower), of which ``subpath`` is bound at ``target``."""

    target: str
    kind: Literal["bind", "tmpfs", "overlay"] = "bind"
    source: Path | None = None
    readonly: bool = True
    lowers: tuple[Path, ...] = ()
    subpath: str = "/"
    size: int | None = None  # tmpfs: its size= in bytes (else the kernel's, half the RAM)


@dataclass(frozen=True)
class RunSpec:
    """One command to run. ``env`` holds ``KEY=value`` strings like an image config's ``Env``
    (``PATH`` gets BuildKit's default when absent; a missing or empty ``HOME`` becomes the
    user's passwd home, ``/`` without one, as runc sets it); ``user`` is a ``USER`` value (``name``,
    ``uid``, ``name:group``, ...; empty for root); ``network`` ``default`` and ``host`` share the
    host's network, ``none`` gets a new network namespace with only ``lo``; ``extra_hosts`` are
    ``(name, ip)`` lines added to /etc/hosts. ``security`` ``sandbox`` limits the command to
    BuildKit's default capabilities (:data:`DEFAULT_CAPS`); ``insecure`` keeps all we have.
    ``shm_size``: bytes of /dev/shm (None: 64 MiB); ``ulimits``: ``(resource, soft, hard)``
    set before the command starts (-1: unlimited)."""

    argv: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: str = ""
    hostname: str = rootfs.DEFAULT_HOSTNAME
    network: Literal["default", "host", "none"] = "default"
    mounts: tuple[RunMount, ...] = field(default=())
    extra_hosts: tuple[tuple[str, str], ...] = ()
    security: Literal["sandbox", "insecure"] = "sandbox"
    shm_size: int | None = None
    ulimits: tuple[tuple[int, int, int], ...] = ()

    def environ(self) -> dict[str, str]:
        env = {}
        for item in self.env:
            key, _, value = item.partition("=")
            env[key] = value
        env.setdefault("PATH", DEFAULT_PATH)
        return env


def exit_code(status: int) -> int:
    """A wait status as a shell would report it: the exit code, or 128 + signal number."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


@dataclass(frozen=True)
class RunOutcome:
    """``code``: exit code (128+N for signal N); ``created``: working directories made for
    the RUN, meant to be owned by ``uid:gid``."""

    code: int
    created: tuple[str, ...]
    uid: int
    gid: int


def run_command(root: Path, scratch: Path, spec: RunSpec, iso: Isolation, *,
                out_fd: int) -> RunOutcome:
    """Run ``spec`` on the rootfs at ``root`` (see the module docstring).

    ``scratch`` is a private directory outside the rootfs for hosts/resolv.conf.
    """
    if not spec.argv:
        raise SandboxError("RUN has an empty command")
    stubs = rootfs.Stubs()
    mounts: list[Path] = []
    placement = None
    try:
        if iso.namespaced:
            # pivot_root needs the new root to be a mount point (a copy snapshot is a plain dir).
            _linux.mount(str(root), root, None, _linux.MS_BIND | _linux.MS_REC)
            mounts.append(root)
            mounts += rootfs.setup_namespaced(
                root, scratch, stubs, hostname=spec.hostname, extra_hosts=spec.extra_hosts,
                new_net_ns=spec.network == "none", shm_size=spec.shm_size)
            mounts += _run_mounts(root, spec.mounts, stubs)
        else:
            rootfs.setup_chroot(root, scratch, stubs, hostname=spec.hostname,
                                extra_hosts=spec.extra_hosts)
            if spec.mounts:  # no mounts here: placed in the rootfs, taken out afterwards
                from ocibuild.executor import chroot_mounts

                placement = chroot_mounts.new_placement()
                chroot_mounts.place(root, spec.mounts, stubs, placement)
        uid, gid, groups = resolve_user(root, spec.user)
        env = spec.environ()
        if not env.get("HOME"):  # runc: a missing or empty HOME comes from /etc/passwd
            env["HOME"] = resolve_home(root, uid)
        if iso.single_id:
            rootfs.keep_apt_as_root(root, env)
        created = _make_cwd(root, spec.cwd, uid, gid)
        if iso.namespaced:
            # The command is the next child: pid 1 of the new namespace, as in BuildKit ($$ is
            # 1, ps shows the shell). When it exits, the kernel ends the rest of the namespace.
            _linux.unshare(_linux.CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - replaced by execve
            _command_child(root, spec, env, iso, out_fd, uid, gid, groups)
        os.close(out_fd)
        status = _wait_for(pid)
        if not iso.namespaced:
            end_strays()  # in namespaces, the kernel ended them with the command (pid 1)
    finally:
        rootfs.teardown(mounts[1:])
        if placement is not None:
            from ocibuild.executor import chroot_mounts

            chroot_mounts.restore(placement)
        stubs.remove()
        if mounts:
            rootfs.teardown(mounts[:1])
    return RunOutcome(exit_code(status), created, uid, gid)


def _run_mounts(root: Path, mounts: Sequence[RunMount], stubs: rootfs.Stubs) -> list[Path]:
    done: list[Path] = []
    for m in mounts:
        if ".." in Path(m.target).parts:
            raise SandboxError(f"RUN --mount target {m.target}: must not use ..")
        # Resolved inside the rootfs, symlinks and all (the target too), as runc does: joined
        # lexically, a symlink on the way (WORKDIR /link/sub with a relative target) would be
        # resolved by the host, outside the rootfs.
        target = safe_join(root, m.target)
        if m.kind == "tmpfs":
            # BuildKit's tmpfs mount: nosuid and the size asked for; over an existing directory
            # runc adds that directory's mode (a new target has tmpfs's own, 1777).
            options = [f"size={m.size}"] if m.size else []
            try:
                st = os.stat(target)
                if stat.S_ISDIR(st.st_mode):
                    options.insert(0, f"mode={stat.S_IMODE(st.st_mode):04o}")
            except FileNotFoundError:
                pass
            stubs.ensure(target, True)
            _linux.mount("tmpfs", target, "tmpfs", _linux.MS_NOSUID | (
                _linux.MS_RDONLY if m.readonly else 0), ",".join(options) or None)
        else:
            assert m.source is not None
            source = m.source
            if m.kind == "overlay":
                source = _mount_overlay(m, done)
            stubs.ensure(target, source.is_dir())
            _linux.mount(str(source), target, None, _linux.MS_BIND | _linux.MS_REC)
            if m.readonly:
                _linux.mount(None, target, None,
                             _linux.MS_REMOUNT | _linux.MS_BIND | _linux.MS_RDONLY)
        done.append(target)
    return done


def _mount_overlay(m: RunMount, done: list[Path]) -> Path:
    """Stack ``m.lowers`` at ``m.source/merged`` (see :class:`RunMount`); the path of
    ``m.subpath`` in it, resolved as if ``merged`` were ``/``."""
    assert m.source is not None
    merged = m.source / "merged"
    lowers = [os.fspath(p) for p in m.lowers]
    if len(lowers) < 2 and m.readonly:
        lowers.append(os.fspath(m.source / "empty"))  # overlay wants 2 lowers without an upper
    # The option string is limited to a page: lowers named relative to their common parent.
    common = os.path.commonpath(lowers)
    rel = [os.path.relpath(p, common) for p in lowers]
    if any(":" in p or "," in p for p in rel):
        raise SandboxError(f"layer directory names may not contain ':' or ',': {common}")
    opts = f"lowerdir={':'.join(rel)},userxattr"
    if not m.readonly:
        opts += f",upperdir={m.source / 'upper'},workdir={m.source / 'work'}"
    cwd = os.getcwd()
    os.chdir(common)
    try:
        _linux.mount("overlay", merged, "overlay", _linux.MS_RDONLY if m.readonly else 0, opts)
    finally:
        os.chdir(cwd)
    done.append(merged)
    source = safe_join(merged, m.subpath)
    if not os.path.lexists(source):
        raise ExecutionError(f"RUN --mount=type=bind: {m.subpath} not found in the mount source")
    return source


def _wait_for(pid: int) -> int:
    """Reap children (we are a subreaper) until ``pid`` exits; return its status."""
    while True:
        try:
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            raise SandboxError("RUN process vanished") from None
        except InterruptedError:
            continue
        if done == pid:
            return status


def _command_child(root: Path, spec: RunSpec, env: dict[str, str], iso: Isolation, out_fd: int,
                   uid: int, gid: int, groups: Sequence[int]) -> None:
    """Become the command: never returns (exit code 1 when it cannot start, as under runc)."""
    try:
        # stdin: an empty pipe, as BuildKit gives a RUN (``[ -p /dev/stdin ]`` holds, EOF).
        stdin, writer = os.pipe()
        os.close(writer)
        os.dup2(stdin, 0)
        os.close(stdin)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE; a shell expects default
        os.setsid()
        if iso.namespaced:
            # Our own mount namespace, so /proc and pivot_root leave stage 1's view (and the
            # snapshot's upper dir, which stage 1 cleans afterwards) alone.
            _linux.unshare(_linux.CLONE_NEWNS)
            _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_PRIVATE)
            rootfs.mount_proc(root)
            os.chdir(root)
            _linux.pivot_root(".", ".")
            _linux.umount(".", _linux.MNT_DETACH)
        else:
            os.chroot(root)
        os.chdir("/")
        # runc enters the working directory as root, before it becomes the USER, and again
        # afterwards only if root was refused: a WORKDIR the user cannot reach (under a 0700
        # parent) still becomes the command's cwd.
        try:
            os.chdir(spec.cwd)
            again = False
        except PermissionError:
            again = True
        for resource_id, soft, hard in spec.ulimits:  # --ulimit, while we are still root
            resource.setrlimit(resource_id, (soft, hard))
        if spec.security == "sandbox":
            _limit_capabilities()  # while we are still root (CAP_SETPCAP)
        _become(iso, uid, gid, groups)
        if iso.single_id:
            if spec.security == "sandbox":
                _limit_capabilities()  # a nested user namespace starts with a full set again
            install_fake_ownership()
        if again:
            os.chdir(spec.cwd)
        # Die with stage 1 (the credential change cleared what the fork inherited); stage 1
        # also kills us on its way out.
        _linux.set_pdeathsig(signal.SIGKILL)
        program = _look_path(spec.argv[0], env.get("PATH", ""))
        try:
            os.execve(program, list(spec.argv), env)
        except OSError as exc:
            raise _CannotStart(f"exec {program}: {_go_text(exc)}") from None
    except _CannotStart as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"{exc}\n".encode())
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"ocibuild: sandbox setup: {exc.strerror}\n".encode())
    except BaseException as exc:  # noqa: BLE001 - report, never return into the caller's stack
        with contextlib.suppress(OSError):
            os.write(2, f"ocibuild: sandbox setup: {exc}\n".encode())
    os._exit(1)


class _CannotStart(Exception):
    """The command's program cannot be started; the text runc prints for it."""


def _look_path(name: str, search: str) -> str:
    """The program runc starts for ``argv[0]`` (Go's ``exec.LookPath``, in the command's root
    and as its user): a name with a slash as it is, else the first ``search`` (``$PATH``)
    entry holding it executable; an empty entry is the working directory. ``_CannotStart``
    with runc's text otherwise, e.g. ``exec: "sh": executable file not found in $PATH``."""
    if "/" in name:
        why = _not_executable(name)
        if why is not None:
            raise _CannotStart(f'unable to start container process: exec: "{name}": {why}')
        return name
    for entry in search.split(":") if search else ():
        candidate = os.path.join(entry or ".", name)
        if _not_executable(candidate) is None:
            return candidate
    raise _CannotStart(f'unable to start container process: exec: "{name}": executable file '
                       "not found in $PATH")


def _not_executable(path: str) -> str | None:
    """Why Go's ``findExecutable`` refuses ``path``; None for a non-directory with an execute
    bit that this user may run."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"stat {path}: {_go_text(exc)}"
    if stat.S_ISDIR(mode) or not mode & 0o111 or not os.access(path, os.X_OK):
        return "permission denied"
    return None


def _go_text(exc: OSError) -> str:
    """An error's text as Go spells it (``Exec format error``: ``exec format error``)."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def _make_cwd(root: Path, cwd: str, uid: int, gid: int) -> tuple[str, ...]:
    """Create a missing working directory (and parents) owned by the RUN's user, as BuildKit
    does; symlinks on the way resolve inside ``root``. Returns the created paths, relative."""
    created = []
    parts = [p for p in cwd.split("/") if p not in ("", ".")]
    for i in range(1, len(parts) + 1):
        path = safe_join(root, "/".join(parts[:i]))
        if os.path.lexists(path):
            if not os.path.isdir(path):  # BuildKit: "working dir points to invalid target"
                raise ExecutionError(f"working dir {cwd} points to invalid target: "
                                     f"/{'/'.join(parts[:i])} is not a directory")
            continue
        os.mkdir(path, 0o755)
        with contextlib.suppress(OSError):
            os.chown(path, uid, gid)
        created.append(os.path.relpath(path, root))
    return tuple(created)


def _limit_capabilities() -> None:
    """Drop every capability outside :data:`DEFAULT_CAPS` from the bounding set: the command
    exec'd next (as root, or a setuid or file-capability program) gets at most those (plus
    inheritable and ambient ones, normally none). Without CAP_SETPCAP (isolation ``none`` as
    a user) there is nothing to drop that the command could gain."""
    for cap in range(64):
        if cap in DEFAULT_CAPS:
            continue
        try:
            _linux.prctl(_PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EPERM):
                return  # EINVAL: past the kernel's last capability
            raise


def _become(iso: Isolation, uid: int, gid: int, groups: Sequence[int]) -> None:
    if iso.single_id:
        if uid == 0 and gid == 0:
            return
        # Only id 0 exists out there: a nested user namespace maps our one id to the RUN's user,
        # so `id` and file creation show that user.
        _linux.unshare(_linux.CLONE_NEWUSER)
        with contextlib.suppress(OSError):
            Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{uid} 0 1\n")
        Path("/proc/self/gid_map").write_text(f"{gid} 0 1\n")
        return
    os.setgroups(list(groups))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
