"""Pytest kit for the sandbox, snapshotters and Runtime (registered in tests/conftest.py).

``sandbox_runtime`` is parametrised over every isolation x snapshotter pair; a pair the current
process cannot use is skipped with the reason, so the same tests run as root, as a user with and
without /etc/subuid ranges, and as root without CAP_SYS_ADMIN (tests/run-rootless.sh).
``busybox_layer`` is a small base image layer built from busybox-static.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocibuild.digest import Digest
from ocibuild.errors import SandboxError

MODES = [
    ("root", "overlay"), ("root", "fuse-overlayfs"), ("root", "copy"),
    ("rootless", "overlay"), ("rootless", "fuse-overlayfs"), ("rootless", "copy"),
    ("chroot", "copy"),
]
BUSYBOX = "/usr/bin/busybox"
PASSWD = "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n"
GROUP = "root:x:0:\nwheel:x:10:bob\nbob:x:1000:\n"


@dataclass(frozen=True)
class BaseLayer:
    blob: Path  # gzip tar
    chain_id: Digest


def _add(tar: tarfile.TarFile, name: str, *, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
         mode: int = 0o644, uid: int = 0, gid: int = 0, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, 1_600_000_000
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write_busybox_layer(dest: Path) -> None:
    """A base layer: busybox with its applets in /bin, /etc/passwd + group (root, bob:1000 in
    wheel), /home/bob owned by 1000, and a few files the tests change or delete. Empty /proc,
    /dev and /sys as real images have them (a RUN leaves the ones it lacks, as runc does), but
    no /etc/hosts or resolv.conf: the sandbox has to make (and clean) their mount stubs."""
    applets = ["sh", "ls", "id", "echo", "cat", "mkdir", "chown", "mknod", "hostname", "sleep",
               "rm", "touch", "ln", "chmod", "pwd", "env", "kill", "printf", "mkfifo", "true",
               "false", "grep", "wc", "stat", "find", "sort", "sed", "head", "test"]
    with tarfile.open(dest, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "dev", "etc", "home", "data", "data/old", "data/keep", "data/mvdir",
                  "proc", "sys", "tmp"):
            _add(tar, d, kind=tarfile.DIRTYPE, mode=0o1777 if d == "tmp" else 0o755)
        with open(BUSYBOX, "rb") as f:
            _add(tar, "bin/busybox", data=f.read(), mode=0o755)
        for applet in applets:
            _add(tar, f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox")
        _add(tar, "etc/passwd", data=PASSWD.encode())
        _add(tar, "etc/group", data=GROUP.encode())
        _add(tar, "home/bob", kind=tarfile.DIRTYPE, mode=0o750, uid=1000, gid=1000)
        _add(tar, "home/bob/.profile", data=b"# bob\n", uid=1000, gid=1000)
        _add(tar, "data/modify-me", data=b"old\n")
        _add(tar, "data/delete-me", data=b"bye\n")
        _add(tar, "data/old/a", data=b"a\n")
        _add(tar, "data/keep/b", data=b"b\n")
        _add(tar, "data/mvdir/x", data=b"x\n")
        _add(tar, "data/suid", data=b"#!/bin/sh\n", mode=0o4755)
        _add(tar, "data/far", data=b"far\n", uid=70000, gid=70000)  # beyond a sub-id range


@pytest.fixture(scope="session")
def busybox_layer(tmp_path_factory: pytest.TempPathFactory) -> BaseLayer:
    if not os.path.exists(BUSYBOX):
        pytest.skip("busybox-static is not installed")
    path = tmp_path_factory.mktemp("busybox") / "layer.tar.gz"
    write_busybox_layer(path)
    return BaseLayer(path, Digest("sha256", "b" * 64))


class _Runtimes:
    def __init__(self) -> None:
        self.made: dict[tuple[str, str], object] = {}
        self.dirs: list[str] = []

    def get(self, isolation: str, snapshotter: str) -> object:
        from ocibuild.executor.runtime import Runtime

        key = (isolation, snapshotter)
        if key not in self.made:
            try:
                self.made[key] = Runtime.detect(isolation, snapshotter)
            except SandboxError as exc:
                self.made[key] = str(exc)
        return self.made[key]

    def close(self) -> None:
        for runtime in self.made.values():
            if not isinstance(runtime, str):
                runtime.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def _sandbox_runtimes() -> Iterator[_Runtimes]:
    runtimes = _Runtimes()
    yield runtimes
    runtimes.close()


@pytest.fixture(params=MODES, ids=[f"{i}-{s}" for i, s in MODES])
def sandbox_runtime(request: pytest.FixtureRequest, _sandbox_runtimes: _Runtimes) -> object:
    """A Runtime for one isolation x snapshotter pair, shared by the session; skipped when this
    process cannot use the pair."""
    isolation, snapshotter = request.param
    runtime = _sandbox_runtimes.get(isolation, snapshotter)
    if isinstance(runtime, str):
        pytest.skip(f"{isolation}+{snapshotter} unavailable here: {runtime}")
    return runtime


def mounts_under(path: Path) -> list[str]:
    """Mount points below ``path`` in this process's mount namespace."""
    prefix = os.fspath(path)
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(prefix)]


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
