"""The sandbox: run a Python function, or a RUN command, inside fresh namespaces.

Process tree of one sandboxed operation (:func:`enter`)::

    caller (ocibuild)            reads output + result pipes; maps ids for stage 1
    └── stage 1                  fork; unshare(user) -> wait for the id map (or join the kept
        │                        user ns) -> unshare(mount[, uts, ipc, net]); child subreaper;
        │                        mounts the snapshot, runs the function, writes its result
        └── command              (RUN only) pid 1 of a new pid namespace, as BuildKit's RUN
                                 is: own mount ns, /proc, pivot_root, user, seccomp, execve

Everything mounted lives in stage 1's private mount namespace and vanishes with it. Stage 1
gets SIGTERM through PDEATHSIG when the caller dies (Ctrl-C, SIGKILL) and kills its children
first: the command, and with it (the kernel ends a pid namespace with its pid 1) whatever the
command started; as the child subreaper, orphans of its own code come back to it, and it ends
what is left of them when the function returns. In ``chroot`` mode there are no namespaces:
the command is a plain child, and stage 1 kills whatever it left.

The user namespace (rootless) is made once per id map and process: the first sandbox unshares
it and waits for its map (newuidmap and newgidmap for a full one, two programs run per
sandbox otherwise, about 5 ms); the caller keeps a descriptor of it, and every later sandbox
joins it with ``setns`` right after its fork. It holds nothing but the map: each sandbox still
gets its own mount (uts, ipc, net, pid) namespaces.

A RUN (``command=True``) gets uts and ipc namespaces of its own, and its command a pid
namespace (``run_command`` unshares it just before forking the command). What else runs in a
sandbox is our own code (a COPY, a commit, an unpack), which needs the mount namespace alone.

Modes (:class:`Isolation`): ``rootless`` (user namespace, full or single id map), ``root``
(namespaces, real ids), ``chroot`` (no namespaces, chroot only), ``none`` (no isolation at all:
used for ``call``/``commit`` where nothing can RUN; never runs a command).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import pickle
import selectors
import signal
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ocibuild.errors import OcibuildError, SandboxError
from ocibuild.executor import _linux
from ocibuild.executor.userns import IdMap, write_maps

Mode = Literal["rootless", "root", "chroot", "none"]


@dataclass(frozen=True)
class Isolation:
    """How the sandbox isolates: the mode and, for ``rootless``, the id map."""

    mode: Mode
    idmap: IdMap | None = None

    @property
    def namespaced(self) -> bool:
        return self.mode in ("rootless", "root")

    @property
    def single_id(self) -> bool:
        """Only one id exists inside: ownership changes can't be stored on disk."""
        return self.mode == "rootless" and (self.idmap is None or not self.idmap.full)

    @property
    def keeps_records(self) -> bool:
        """Whether snapshots carry OwnershipRecords: true ids the disk cannot hold (all ids
        with one mapped id, ids beyond the sub-id range with a full map)."""
        return self.mode in ("rootless", "none")

    @property
    def owns_files(self) -> bool:
        """Whether the sandbox's root can chown files to any image id on disk."""
        return self.mode in ("root", "chroot") or (self.mode == "rootless" and not self.single_id)


class _PipeTable:
    """The pipes of every sandbox this process is talking to (stages may run in threads).

    A forked child inherits all of them; each child closes those that are not its own
    (``_close_parent_files``), or a sandbox's caller would only see EOF once every other
    sandbox forked meanwhile has exited. ``lock`` is held from their making to the fork.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def pipe(self) -> tuple[int, int]:
        """A new close-on-exec pipe (call with ``lock`` held, around the fork)."""
        return os.pipe2(os.O_CLOEXEC)

    def close(self, *fds: int) -> None:
        with self.lock:
            self.close_locked(*fds)

    def close_locked(self, *fds: int) -> None:
        for fd in fds:
            if fd >= 0:
                os.close(fd)


_PIPES = _PipeTable()


class _UserNamespaces:
    """The user namespace kept for each id map (see the module docstring): a descriptor of
    ``/proc/PID/ns/user``, taken while the first sandbox with that map waits for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fds: dict[IdMap, int] = {}

    def get(self, idmap: IdMap) -> int:
        """The kept namespace's descriptor, or -1 (none yet: unshare and map one)."""
        with self._lock:
            return self._fds.get(idmap, -1)

    def keep(self, idmap: IdMap, pid: int) -> None:
        """Keep the user namespace of ``pid`` (just mapped with ``idmap``) for later sandboxes;
        where another thread kept one first, that one stays."""
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        with self._lock:
            if idmap not in self._fds:
                self._fds[idmap] = fd
                return
        os.close(fd)


_USERNS = _UserNamespaces()


@functools.cache
def _settle_tempfile() -> None:
    """Stage 1 makes temporary directories. On first use tempfile looks for its directory
    and seeds its name generator under a module lock: a fork while another thread holds that
    lock (a build's first ``mkdtemp``, unpacking a context from stdin) leaves it held forever
    in the child. One round trip before our first fork waits for such a thread and settles
    both; the lock is never taken again."""
    os.rmdir(tempfile.mkdtemp(prefix="ocibuild-settle-"))


@dataclass(frozen=True)
class _Failure:
    exc: BaseException
    trace: str


def enter(iso: Isolation, fn: Callable[..., Any], *args: Any, new_net: bool = False,
          output: Callable[[bytes], None] | None = None, command: bool = False,
          keep_fds: tuple[int, ...] = ()) -> Any:
    """Call ``fn(*args)`` (plus ``out_fd=`` when ``output`` is given) in stage 1 and return its
    result, which must be picklable. ``command``: ``fn`` runs a RUN (uts and ipc namespaces;
    see the module docstring).

    ``fn`` runs as root of the sandbox's namespaces (with capabilities there). Bytes written to
    ``out_fd`` by stage 1 or its children are passed to ``output`` as they arrive. An exception in
    ``fn`` is raised here again (its remote traceback added as a note); a sandbox that dies
    without an answer raises :class:`SandboxError`. Nothing is left running when this returns or
    raises, including on KeyboardInterrupt. ``keep_fds``: the caller's descriptors ``fn`` uses
    (every other one the caller opened is closed in the sandbox).
    """
    userns = _USERNS.get(iso.idmap) if iso.mode == "rootless" and iso.idmap else -1
    _settle_tempfile()
    with _PIPES.lock:
        result_r, result_w = _PIPES.pipe()
        up_r, up_w = _PIPES.pipe()  # stage 1 -> caller: "unshared, map me"
        down_r, down_w = _PIPES.pipe()  # caller -> stage 1: "mapped"
        out_r, out_w = _PIPES.pipe() if output else (-1, -1)
        caller = os.getpid()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid:  # before another thread can fork a child that would inherit the child's ends
            _PIPES.close_locked(result_w, up_w, down_r, out_w)
    if pid == 0:  # pragma: no cover - runs in the child, reported through the pipe
        code = 70
        try:
            # Pipes of sandboxes other threads are running are not ours to hold open (their
            # readers would wait for our exit to see EOF); nor are our parent's ends; nor the
            # store locks other threads hold (we would hold them as long as we run); nor any
            # other file of the caller's.
            _close_parent_files(result_w, up_w, down_r, out_w, userns, *keep_fds)
            code = _stage1(iso, fn, args, new_net, command, userns, caller, result_w, up_w,
                           down_r, out_w)
        except BaseException as exc:  # noqa: BLE001 - everything must reach the caller
            _send(result_w, _Failure(exc, traceback.format_exc()))
        finally:
            os._exit(code)
    status = None
    try:
        if iso.mode == "rootless" and userns < 0:
            if os.read(up_r, 1) == b"u":
                assert iso.idmap is not None
                write_maps(pid, iso.idmap)
                _USERNS.keep(iso.idmap, pid)
                os.write(down_w, b"m")
        _PIPES.close(down_w)
        down_w = -1
        data = _pump(result_r, out_r, output)
        status = os.waitpid(pid, 0)[1]
    finally:
        if status is None:
            _stop(pid)
        _PIPES.close(result_r, up_r, down_w, out_r)
    if not data:
        raise SandboxError(f"sandbox process died without an answer ({describe_status(status)})")
    answer = pickle.loads(data)
    if isinstance(answer, _Failure):
        error = answer.exc
        if not isinstance(error, OcibuildError):
            error.add_note("in the sandbox:\n" + answer.trace)
        raise error
    return answer


def _close_parent_files(*keep: int) -> None:
    """In a freshly forked child: close what the caller's threads had open (everything
    Python opens is close-on-exec, and stage 1 does not exec). A file another thread was
    writing at the fork, e.g. a RUN's heredoc script, would otherwise stay open for writing
    as long as this sandbox runs, and executing it would fail with ETXTBSY."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):  # (the listing's own descriptor, now closed)
                if fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC:
                    os.close(fd)


def _send(fd: int, value: Any) -> None:
    try:
        data = pickle.dumps(value)
    except Exception as exc:  # noqa: BLE001 - an unpicklable result or exception
        if isinstance(value, _Failure):
            data = pickle.dumps(_Failure(SandboxError(f"{value.exc!r}"), value.trace))
        else:
            data = pickle.dumps(_Failure(SandboxError(f"sandbox result not picklable: {exc}"),
                                         ""))
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _pump(result_r: int, out_r: int, output: Callable[[bytes], None] | None) -> bytes:
    """Read output (to ``output``) and the result until both pipes are closed."""
    chunks: list[bytes] = []
    with selectors.DefaultSelector() as sel:
        sel.register(result_r, selectors.EVENT_READ, "result")
        if out_r >= 0:
            sel.register(out_r, selectors.EVENT_READ, "output")
        while sel.get_map():
            for key, _ in sel.select():
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                elif key.data == "result":
                    chunks.append(chunk)
                elif output is not None:
                    output(chunk)
    return b"".join(chunks)


def _stage1(iso: Isolation, fn: Callable[..., Any], args: tuple[Any, ...], new_net: bool,
            command: bool, userns: int, caller: int, result_w: int, up_w: int, down_r: int,
            out_w: int) -> int:
    _linux.set_pdeathsig(signal.SIGKILL)
    if os.getppid() != caller:
        return 70  # the caller died before we could ask to die with it
    # BuildKit's umask (dockerd's, and runc's default for a container process), whatever the
    # caller's: files a RUN makes (mkdir, >, tar -x) and those our code makes in a rootfs have
    # the same modes however ocibuild was started.
    os.umask(0o022)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if iso.mode == "rootless":
        if userns >= 0:
            _linux.setns(userns, _linux.CLONE_NEWUSER)
        else:
            _linux.unshare(_linux.CLONE_NEWUSER)
            os.write(up_w, b"u")
            if os.read(down_r, 1) != b"m":
                return 70  # the caller failed to map us; it reports why
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    os.close(up_w)
    os.close(down_r)
    if iso.namespaced:
        flags = _linux.CLONE_NEWNS
        if command:
            flags |= _linux.CLONE_NEWUTS | _linux.CLONE_NEWIPC
        if new_net:
            flags |= _linux.CLONE_NEWNET
        _linux.unshare(flags)
        _linux.mount(None, "/", None, _linux.MS_REC | _linux.MS_PRIVATE)
    # The child subreaper: orphans come back to us, and when the caller dies (or stops us) we
    # kill them all first (a RUN's command, pid 1 of its namespace, takes its own with it).
    _linux.prctl(_linux.PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGTERM, _die_with_children)
    _linux.set_pdeathsig(signal.SIGTERM)  # after the credential change, which clears it
    if os.getppid() != caller:
        _die_with_children()
    kwargs = {"out_fd": out_w} if out_w >= 0 else {}
    try:
        _send(result_w, fn(*args, **kwargs))
    finally:
        end_strays()
    return 0


def end_strays() -> None:
    """Kill what is left of this process's children (a function's or a chroot-mode command's
    orphans come to stage 1, the child subreaper); usually nothing, which ``waitpid`` tells
    without reading /proc."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass  # reaped one that had ended
    except ChildProcessError:
        return  # no child at all
    kill_strays()


def _die_with_children(*_: object) -> None:
    kill_strays()
    os._exit(128 + signal.SIGTERM)


def _stop(pid: int) -> None:
    """Stop the sandbox ``pid``: SIGTERM first (lets it kill its children),
    SIGKILL if it is still there after a moment."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            return
        time.sleep(0.01)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def describe_status(status: int | None) -> str:
    if status is None:
        return "unknown status"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` according to /proc, which must belong to our pid namespace
    (racy by nature: callers loop)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def kill_strays() -> None:
    """SIGKILL and reap every child of this process (orphans come to us, the child subreaper)
    until none is left. Needs /proc of our pid namespace (stage 1's is the caller's); without
    it, nothing is killed."""
    me = os.getpid()
    try:
        if os.readlink("/proc/self") != str(me):
            return
    except OSError:
        return
    for _ in range(1000):
        strays = children_of(me)
        for p in strays:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        for p in strays:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p, 0)
        if not strays:
            return
