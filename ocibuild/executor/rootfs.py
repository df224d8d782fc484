"""What a RUN sees besides its snapshot: /proc, /dev, /etc/hosts, /etc/resolv.conf, a hostname.

Runs inside the sandbox's init process (see :mod:`ocibuild.executor.sandbox`), with the snapshot
already mounted at ``root``. Nothing set up here may reach the layer: mounts live in the private
mount namespace, and every mount point that had to be created (a *stub*: ``/etc/hosts`` or a
``--mount`` target missing from the image) is removed afterwards as BuildKit's mount-stub
cleaner removes it: its parent keeps the time the stub gave it (:meth:`Stubs.remove`). In
the single-id rootless mode apt is also pointed at a config on the /dev tmpfs
(:func:`keep_apt_as_root`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ocibuild.executor import _linux
from ocibuild.fs.safepath import safe_join

DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEFAULT_HOSTNAME = "buildkitsandbox"


@dataclass
class Stubs:
    """Paths created only to mount on (mutable bookkeeping), removed after the RUN.

    A stub's ``kind``: ``mount`` (a mount point: removed only when empty), ``content`` (a
    file we filled, chroot mode's hosts and resolv.conf: always removed) or ``hidden`` (chroot
    mode's device nodes, where BuildKit mounts a tmpfs: its parent's times are put back as
    they were before it)."""

    created: list[tuple[Path, str]] = field(default_factory=list)
    # parent of hidden stubs -> (atime_ns, mtime_ns before the first, mtime_ns after the last)
    hidden_parents: dict[Path, tuple[int, int, int]] = field(default_factory=dict)

    def ensure(self, path: Path, is_dir: bool) -> None:
        """Make ``path`` exist (file or directory), recording whatever had to be created."""
        if os.path.lexists(path):
            return
        if is_dir:
            self.create(path, lambda: os.mkdir(path, 0o755))
        else:
            self.create(path, lambda: os.close(os.open(path, os.O_WRONLY | os.O_CREAT
                                                       | os.O_EXCL, 0o644)))

    def create(self, path: Path, make: Callable[[], object], kind: str = "mount") -> None:
        """Run ``make`` (which creates ``path``) and remember ``path`` as a stub."""
        self.ensure(path.parent, True)
        before = os.stat(path.parent) if kind == "hidden" else None
        make()
        self.created.append((path, kind))
        if before is not None:
            old = self.hidden_parents.get(path.parent)
            first = old[:2] if old else (before.st_atime_ns, before.st_mtime_ns)
            self.hidden_parents[path.parent] = (*first, os.stat(path.parent).st_mtime_ns)

    def remove(self) -> None:
        """Delete the stubs newest first, as BuildKit's mount-stub cleaner does: a mount point
        only when empty (what a RUN put there is the RUN's), each time putting its parent's
        times back to what they were just before the removal. So the parent keeps the time
        the stub (or the RUN) gave it and is in the layer, as in BuildKit's: a RUN on an image
        without /etc/hosts changes /etc. Hidden stubs' parents get their old times back where
        the RUN did not write to them."""
        untouched = []
        for parent, (atime, mtime, ours) in self.hidden_parents.items():
            with contextlib.suppress(OSError):
                if os.stat(parent).st_mtime_ns == ours:
                    untouched.append((parent, atime, mtime))
        for path, kind in reversed(self.created):
            with contextlib.suppress(OSError):
                st = os.lstat(path)
                is_dir = stat.S_ISDIR(st.st_mode)
                if os.listdir(path) if is_dir else kind == "mount" and st.st_size > 0:
                    continue  # what the RUN put there is the RUN's
                before = os.stat(path.parent)
                if is_dir:
                    os.rmdir(path)
                else:
                    os.unlink(path)
                os.utime(path.parent, ns=(before.st_atime_ns, before.st_mtime_ns),
                         follow_symlinks=False)
        for parent, atime, mtime in untouched:
            with contextlib.suppress(OSError):
                os.utime(parent, ns=(atime, mtime), follow_symlinks=False)


def _mount_point(path: Path) -> None:
    """/proc, /sys and /dev as runc makes them when the image has none: plain 0755
    directories that stay in the image (BuildKit's stub cleaner only knows hosts, resolv.conf
    and RUN --mount targets)."""
    if not os.path.lexists(path):
        os.mkdir(path, 0o755)
        os.chmod(path, 0o755)


def _try_mount(*args: object, **kwargs: object) -> bool:
    try:
        _linux.mount(*args, **kwargs)  # type: ignore[arg-type]
        return True
    except OSError:
        return False


def hosts_text(hostname: str, extra_hosts: tuple[tuple[str, str], ...] = ()) -> str:
    lines = [f"127.0.0.1\tlocalhost {hostname}", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{name}" for name, ip in extra_hosts]
    return "\n".join(lines) + "\n"


def write_etc_files(scratch: Path, hostname: str,
                    extra_hosts: tuple[tuple[str, str], ...] = ()) -> tuple[Path, Path]:
    """Write this RUN's hosts and resolv.conf into ``scratch`` (outside the rootfs)."""
    scratch.mkdir(parents=True, exist_ok=True)
    hosts = scratch / "hosts"
    hosts.write_text(hosts_text(hostname, extra_hosts))
    resolv = scratch / "resolv.conf"
    try:
        resolv.write_bytes(Path("/etc/resolv.conf").read_bytes())
    except OSError:
        resolv.write_text("")
    return hosts, resolv


def setup_namespaced(root: Path, scratch: Path, stubs: Stubs, *, hostname: str,
                     extra_hosts: tuple[tuple[str, str], ...], new_net_ns: bool,
                     shm_size: int | None = None) -> list[Path]:
    """Mount /sys, /dev, hosts and resolv.conf in ``root``; set the hostname; bring lo up.
    /proc is only made a mount point: the command mounts it (:func:`mount_proc`).

    Called as root of the sandbox's namespaces, in stage 1. Returns the mount points,
    innermost last, for :func:`teardown`.
    """
    mounts: list[Path] = []
    hosts, resolv = write_etc_files(scratch, hostname, extra_hosts)
    _mount_point(root / "proc")
    flags = _linux.MS_NOSUID | _linux.MS_NODEV | _linux.MS_NOEXEC

    # /sys read-only as BuildKit has it: a fresh sysfs needs a network namespace of our own
    # (when rootless), else the host's is bound (read-only at the top).
    sys_dir = root / "sys"
    _mount_point(sys_dir)
    if _try_mount("sysfs", sys_dir, "sysfs", flags | _linux.MS_RDONLY):
        mounts.append(sys_dir)
    elif _try_mount("/sys", sys_dir, None, _linux.MS_BIND | _linux.MS_REC):
        mounts.append(sys_dir)
        _try_mount(None, sys_dir, None, _linux.MS_REMOUNT | _linux.MS_BIND | _linux.MS_RDONLY
                   | flags)
    if mounts and mounts[-1] == sys_dir:
        mounts += _mask(sys_dir, SYS_MASKED, flags)

    dev = root / "dev"
    _mount_point(dev)
    _linux.mount("tmpfs", dev, "tmpfs", _linux.MS_NOSUID, "mode=755,size=65536k")
    mounts.append(dev)
    for name in DEVICES:
        node = dev / name
        node.touch(0o666)
        if _try_mount(f"/dev/{name}", node, None, _linux.MS_BIND):
            mounts.append(node)
        else:
            node.unlink()
    for points_to, link in (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"),
                            ("/proc/self/fd/1", "stdout"), ("/proc/self/fd/2", "stderr")):
        os.symlink(points_to, dev / link)
    (dev / "pts").mkdir()
    # gid=5 (tty) as containerd's spec has it, where that group is mapped (not with one id).
    if any(_try_mount("devpts", dev / "pts", "devpts", _linux.MS_NOSUID | _linux.MS_NOEXEC,
                      "newinstance,ptmxmode=0666,mode=0620" + gid)
           for gid in (",gid=5", "")):
        mounts.append(dev / "pts")
        os.symlink("pts/ptmx", dev / "ptmx")
    (dev / "shm").mkdir()
    shm = f"size={shm_size}" if shm_size else "size=65536k"  # --shm-size, else BuildKit's
    if _try_mount("shm", dev / "shm", "tmpfs", flags, f"mode=1777,{shm}"):
        mounts.append(dev / "shm")
    (dev / "mqueue").mkdir()
    if _try_mount("mqueue", dev / "mqueue", "mqueue", flags):
        mounts.append(dev / "mqueue")
    else:
        (dev / "mqueue").rmdir()

    for source, name in ((hosts, "hosts"), (resolv, "resolv.conf")):
        target = root / "etc" / name
        if os.path.islink(target):
            continue  # a symlink (e.g. to /run/systemd/resolve) is the image's choice: keep it
        stubs.ensure(target, False)
        _linux.mount(str(source), target, None, _linux.MS_BIND)
        mounts.append(target)
        # Read-only, as BuildKit binds them (nosuid,noexec,nodev,rbind,ro): a RUN that writes
        # /etc/hosts or /etc/resolv.conf fails there with EROFS, so it must fail here too.
        _linux.mount(None, target, None, _linux.MS_REMOUNT | _linux.MS_BIND | _linux.MS_RDONLY
                     | flags)

    with contextlib.suppress(OSError):
        _linux.sethostname(hostname)
    if new_net_ns:
        _linux.loopback_up()
    return mounts


def mount_proc(root: Path) -> None:
    """Mount the RUN's /proc in ``root``: called by the command itself, pid 1 of its pid
    namespace, in its own mount namespace (nothing to tear down), so that the proc shows that
    namespace. A fresh proc needs a fully visible /proc on the host (not so in a locked-down
    container); then the host's is bound instead, which still shows only what the host lets us
    see."""
    proc = root / "proc"
    flags = _linux.MS_NOSUID | _linux.MS_NODEV | _linux.MS_NOEXEC
    if not _try_mount("proc", proc, "proc", flags):
        _linux.mount("/proc", proc, None, _linux.MS_BIND | _linux.MS_REC)
    _restrict_proc(proc, flags)


# containerd's default spec, which BuildKit's RUN gets: /proc paths read-only, or hidden
# (a file under /dev/null, a directory under an empty read-only tmpfs). Read-only /proc/sys
# matters most: in the root mode a RUN shares the host's network namespace, and a write to
# /proc/sys/net would change the host's.
PROC_READONLY = ("bus", "fs", "irq", "sys", "sysrq-trigger")
PROC_MASKED = ("acpi", "asound", "kcore", "keys", "latency_stats", "timer_list", "timer_stats",
               "sched_debug", "scsi")
SYS_MASKED = ("firmware", "devices/virtual/powercap")


def _restrict_proc(proc: Path, flags: int) -> None:
    """Apply :data:`PROC_READONLY` and :data:`PROC_MASKED` under the RUN's ``proc``, as far
    as the kernel lets us (best effort, like the /sys remount)."""
    _mask(proc, PROC_MASKED, flags)
    for name in PROC_READONLY:
        path = proc / name
        if os.path.exists(path) and _try_mount(str(path), path, None,
                                               _linux.MS_BIND | _linux.MS_REC):
            _try_mount(None, path, None,
                       _linux.MS_REMOUNT | _linux.MS_BIND | _linux.MS_RDONLY | flags)


def _mask(top: Path, names: tuple[str, ...], flags: int) -> list[Path]:
    """Hide ``names`` under ``top``: a directory under an empty read-only tmpfs, a file under
    /dev/null (best effort); returns the mount points."""
    mounts = []
    for name in names:
        path = top / name
        if os.path.isdir(path):
            done = _try_mount("tmpfs", path, "tmpfs", _linux.MS_RDONLY | flags, "size=0")
        else:
            done = os.path.exists(path) and _try_mount("/dev/null", path, None, _linux.MS_BIND)
        if done:
            mounts.append(path)
    return mounts


def setup_chroot(root: Path, scratch: Path, stubs: Stubs, *, hostname: str,
                 extra_hosts: tuple[tuple[str, str], ...]) -> None:
    """The chroot mode's stand-in: no mounts, so hosts/resolv.conf are copied in as stubs (only
    where the image has none) and device nodes are made where CAP_MKNOD allows."""
    hosts, resolv = write_etc_files(scratch, hostname, extra_hosts)
    for source, name in ((hosts, "hosts"), (resolv, "resolv.conf")):
        target = root / "etc" / name
        if not os.path.lexists(target):
            stubs.create(target, functools.partial(shutil.copyfile, source, target), "content")
    # The mount points runc makes stay, as in the namespaced modes (nothing is mounted there).
    for name in ("proc", "sys"):
        _mount_point(root / name)
    dev = root / "dev"
    _mount_point(dev)
    for name in DEVICES:
        node = dev / name
        if os.path.lexists(node):
            continue
        with contextlib.suppress(OSError):
            rdev = os.stat(f"/dev/{name}").st_rdev
            stubs.create(node, functools.partial(_make_device, node, rdev), "hidden")


def _make_device(node: Path, rdev: int) -> None:
    """A character device ``node`` with mode 0666, as on a real /dev: mknod's mode is cut by
    the umask (0644 would keep a non-root RUN user, e.g. apt's _apt, from writing /dev/null).
    Removed again if the chmod fails, so no half-made stub is left unrecorded."""
    os.mknod(node, 0o666 | stat.S_IFCHR, rdev)
    try:
        os.chmod(node, 0o666)
    except OSError:
        os.unlink(node)
        raise


# The single-id rootless mode's apt stand-in. apt drops to _apt (setgroups, setgid, setuid) for
# its download methods and then checks getgid()/getuid(); the seccomp filter fakes the drop but
# the ids stay 0, so apt stops with "Could not switch group". Deviation from BuildKit, in that
# mode only: APT_CONFIG (which apt reads before /etc/apt/apt.conf.d) names a file on the
# sandbox's own /dev tmpfs, never part of the snapshot, that keeps apt's methods running as
# root. The RUN sees APT_CONFIG in its environment; a Dockerfile's own APT_CONFIG is kept (then
# apt fails as before unless that file sets the same), and so is an apt.conf.d file that sets
# APT::Sandbox::User itself.
APT_CONFIG = "/dev/.ocibuild-apt.conf"
APT_CONFIG_TEXT = '// ocibuild single-id sandbox: no real privilege drop possible\n' \
    'APT::Sandbox::User "root";\n'


def keep_apt_as_root(root: Path, env: dict[str, str]) -> None:
    """Single-id mode, after :func:`setup_namespaced`: when the rootfs has /etc/apt and ``env``
    no APT_CONFIG, write :data:`APT_CONFIG` into the /dev tmpfs and point ``env`` at it."""
    if env.get("APT_CONFIG") or not safe_join(root, "etc/apt").is_dir():
        return
    try:
        with open(root / APT_CONFIG.lstrip("/"), "x") as f:
            f.write(APT_CONFIG_TEXT)
    except OSError:
        return  # e.g. a RUN --mount over /dev: apt then fails as before, other commands work
    env["APT_CONFIG"] = APT_CONFIG


def teardown(mounts: list[Path]) -> None:
    """Unmount what :func:`setup_namespaced` mounted (lazily: a RUN may leave files open)."""
    for target in reversed(mounts):
        try:
            _linux.umount(target, _linux.MNT_DETACH)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise
