"""Pieces of the sandbox on their own: the seccomp program, sub-id parsing, the fork protocol."""

from __future__ import annotations

import os
import stat
import struct
import threading
import time
from pathlib import Path

import pytest

from ocibuild.errors import ExecutionError, SandboxError
from ocibuild.executor import seccomp
from ocibuild.executor.sandbox import Isolation, enter
from ocibuild.executor.userns import parse_subid
from ocibuild.store._locks import locked

pytestmark = [pytest.mark.rootless, pytest.mark.chroot]


def _in_child(fn: object) -> tuple[int, bytes]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            os.write(w, repr(fn()).encode())  # type: ignore[operator]
            os._exit(0)
        except BaseException as exc:  # noqa: BLE001
            os.write(w, repr(exc).encode())
            os._exit(1)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), data


def test_seccomp_program_shape() -> None:
    prog = seccomp.fake_ownership_program("x86_64")
    assert len(prog) % 8 == 0
    insns = [struct.unpack("=HBBI", prog[i:i + 8]) for i in range(0, len(prog), 8)]
    assert insns[0] == (0x20, 0, 0, 4)  # load the arch
    assert insns[-2] == (0x06, 0, 0, 0x00050000)  # fake: errno 0
    # Every jump lands inside the program.
    for i, (code, jt, jf, _) in enumerate(insns):
        if code == 0x15:
            assert i + 1 + max(jt, jf) < len(insns)
    assert seccomp.fake_ownership_program("aarch64") != prog


def test_seccomp_fakes_ownership_calls_only(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("")

    def child() -> tuple[object, ...]:
        seccomp.install_fake_ownership()
        os.chown(tmp_path / "missing", 5, 5)  # ENOENT for real; faked: success
        os.setgroups([1, 2, 3])
        os.mknod(tmp_path / "dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        os.mkfifo(tmp_path / "fifo")  # fifos stay real
        try:
            os.open(tmp_path / "missing", os.O_RDONLY)
        except FileNotFoundError:
            other = "enoent"  # other calls untouched
        return (os.path.exists(tmp_path / "dev"), stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode),
                other)

    code, out = _in_child(child)
    assert (code, out) == (0, b"(False, True, 'enoent')")


def test_parse_subid(tmp_path: Path) -> None:
    path = tmp_path / "subuid"
    path.write_text("alice:100000:65536\n# x\nbob:1:x\n1001:300000:10\nalice:500000:0\n")
    assert parse_subid(path, "alice", 1000) == [(100000, 65536)]
    assert parse_subid(path, "carol", 1001) == [(300000, 10)]
    assert parse_subid(path, "bob", 7) == []
    assert parse_subid(tmp_path / "missing", "alice", 1) == []


def _boom() -> None:
    raise ExecutionError("from inside", hint="a hint")


def _crash() -> None:
    os._exit(3)


def test_enter_passes_results_and_errors_back() -> None:
    iso = Isolation("chroot" if os.geteuid() == 0 else "none")
    assert enter(iso, pow, 2, 10) == 1024
    with pytest.raises(ExecutionError, match="from inside") as info:
        enter(iso, _boom)
    assert info.value.hint == "a hint"
    with pytest.raises(SandboxError, match="exit status 3"):
        enter(iso, _crash)
    chunks: list[bytes] = []
    assert enter(iso, lambda out_fd: os.write(out_fd, b"streamed"), output=chunks.append) == 8
    assert b"".join(chunks) == b"streamed"



def test_a_sandbox_does_not_keep_a_lock_another_thread_held_when_it_forked(
        tmp_path: Path) -> None:
    """A flock belongs to the open file, which a forked child shares: a sandbox forked by one
    stage's thread while another thread held a store lock kept that lock for as long as it
    ran (a RUN waiting for another stage then waited on itself). It closes them first."""
    iso = Isolation("chroot" if os.geteuid() == 0 else "none")
    lock = tmp_path / "lock"
    holding, release = threading.Event(), threading.Event()

    def holder() -> None:
        with locked(lock):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(10)
    sandbox = threading.Thread(target=enter, args=(iso, time.sleep, 3))
    sandbox.start()  # forks while ``holder`` holds the lock
    time.sleep(0.5)
    release.set()
    thread.join()
    try:
        with locked(lock, blocking=False) as held:
            assert held, "the sandbox still holds the lock"
    finally:
        sandbox.join()


LOCKED_DOWN = """
import sys
from ocibuild.executor import _linux, seccomp
from ocibuild.errors import SandboxError
from ocibuild.executor.runtime import Runtime
_linux.install_seccomp(seccomp.deny_unshare_program())
rt = Runtime.detect()
print(rt.isolation.mode, rt.snapshotter, rt.can_run)
try:
    Runtime.detect(need_run=True).close()
except SandboxError as exc:
    print("error:", exc)
import tarfile, tempfile
from pathlib import Path
from ocibuild.digest import Digest
from ocibuild.testing.sandbox import write_busybox_layer
work = Path(tempfile.mkdtemp())
write_busybox_layer(work / "base.tar.gz")
snap = rt.new_snapshot([rt.unpack_layer(Digest("sha256", "f" * 64), work / "base.tar.gz")])
def copy(ctx):
    (ctx.root / "copied").write_text("x")
    ctx.chown(ctx.root / "copied", 5, 6)
rt.call(snap, copy)
blob = rt.commit(snap, work / "layer.tar.gz")
with tarfile.open(blob.path) as tar:
    print([(m.name, m.uid, m.gid) for m in tar.getmembers()])
rt.remove(snap)
rt.close()
"""


def test_detect_in_a_container_that_blocks_unshare() -> None:
    """What Docker's default seccomp profile does to us: root falls back to chroot, anyone
    else gets a clear error naming the user namespace, only when RUN is needed."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", LOCKED_DOWN], cwd=repo, capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(repo)}, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "[('copied', 5, 6)]"  # builds without RUN still work
    if os.geteuid() == 0:
        assert lines[:-1] == ["chroot copy True"]
    else:
        first, second = lines[:-1]
        assert first == "none copy False"
        assert second.startswith("error: cannot run RUN here: ")
        assert "user namespace failed: unshare: Operation not permitted" in second
