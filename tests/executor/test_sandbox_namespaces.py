"""Which namespaces a sandbox gets: a mount namespace of its own every time, uts and ipc ones for
a RUN (whose command gets the pid namespace: ``test_runtime_run``), one user namespace per id
map kept for the whole process (rootless)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ocibuild.errors import SandboxError
from ocibuild.executor import _linux
from ocibuild.executor.runtime import Runtime
from ocibuild.executor.sandbox import Isolation, enter

pytestmark = [pytest.mark.rootless, pytest.mark.chroot]


@pytest.fixture(scope="module")
def iso() -> Isolation:
    """The isolation this process gets (root, rootless or chroot, as the run is)."""
    try:
        runtime = Runtime.detect()
    except SandboxError as exc:
        pytest.skip(f"no sandbox here: {exc}")
    runtime.close()
    return runtime.isolation


def _namespaces() -> dict[str, str]:
    ids = {name: os.readlink(f"/proc/self/ns/{name}")
           for name in ("user", "mnt", "pid", "uts", "ipc")}
    ids["uid"] = str(os.getuid())
    with open("/proc/self/uid_map") as f:
        ids["uid_map"] = " ".join(f.read().split())
    ids["getpid"] = str(os.getpid())
    return ids


def test_the_function_runs_in_stage_1_with_a_mount_namespace_of_its_own(iso: Isolation) -> None:
    if not iso.namespaced:
        pytest.skip(f"{iso.mode} mode has no namespaces")
    own = enter(iso, _namespaces)
    run = enter(iso, _namespaces, command=True)
    host = _namespaces()
    for ids in (own, run):
        assert ids["getpid"] != "1" and ids["pid"] == host["pid"]  # no init: stage 1 itself
        assert ids["uid"] == "0" and ids["mnt"] != host["mnt"]
    assert own["uts"] == host["uts"] and own["ipc"] == host["ipc"]
    assert host["uts"] != run["uts"] and host["ipc"] != run["ipc"]
    # What it mounts is gone with it.
    with tempfile.TemporaryDirectory() as target:
        def mount_tmpfs() -> bool:
            _linux.mount("tmpfs", target, "tmpfs", 0, "size=64k")
            return os.path.ismount(target)

        assert enter(iso, mount_tmpfs)
        assert not os.path.ismount(target)


def _leave_a_process_behind() -> int:
    return subprocess.Popen(["sleep", "60"], start_new_session=True).pid


def test_a_process_a_sandbox_leaves_behind_is_ended(iso: Isolation) -> None:
    """No pid namespace takes a stray of our own code down with the sandbox: stage 1, the
    child subreaper, kills what is left once the function returns."""
    pid = enter(iso, _leave_a_process_behind)
    assert not Path(f"/proc/{pid}").exists(), f"process {pid} left by the sandbox still runs"


@pytest.mark.skipif(os.geteuid() == 0, reason="rootless only: root needs no user namespace")
def test_rootless_sandboxes_share_one_user_namespace(iso: Isolation) -> None:
    assert iso.mode == "rootless" and iso.idmap is not None
    host = _namespaces()

    def slow() -> dict[str, str]:
        ids = _namespaces()
        time.sleep(1)
        return ids

    # Both alive at once: a namespace's number is reused once it is gone, never while it lives.
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(enter, iso, slow)
        time.sleep(0.3)
        second = enter(iso, _namespaces, command=True)
        first = running.result()
    assert first["user"] == second["user"] != host["user"]
    assert first["mnt"] != second["mnt"] and host["mnt"] not in (first["mnt"], second["mnt"])
    assert first["uid"] == second["uid"] == "0"
    expected = " ".join(f"{r.inside} {r.outside} {r.count}" for r in iso.idmap.uids)
    assert first["uid_map"] == second["uid_map"] == expected



def test_a_sandbox_started_while_tempfile_sets_itself_up_does_not_hang(iso: Isolation) -> None:
    """A fork while another thread holds tempfile's set-up lock (the build's first mkdtemp,
    unpacking a stdin context beside the isolation probe) left the lock held in stage 1,
    whose own mkdtemp then waited forever. A fresh process, where tempfile is not set up."""
    script = f"""if True:
        import os, pickle, tempfile, threading, time
        from ocibuild.executor.sandbox import enter
        held = threading.Event()
        def hold():
            with tempfile._once_lock:  # what mkdtemp holds while it finds the temp dir
                held.set()
                time.sleep(1)
        threading.Thread(target=hold).start()
        held.wait()
        made = enter(pickle.loads({pickle.dumps(iso)!r}), tempfile.mkdtemp)
        print(tempfile.tempdir is not None, made.startswith(tempfile.tempdir))
        os.rmdir(made)
    """
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the sandbox waited forever for tempfile's lock")
    assert (done.returncode, done.stdout) == (0, "True True\n"), done.stderr


def _open_files() -> list[str]:
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{name}"))
        except OSError:
            pass  # the listing's own descriptor
    return out


def test_a_sandbox_holds_no_file_its_caller_has_open(iso: Isolation, tmp_path: Path) -> None:
    """A file another thread is writing when a sandbox forks (a RUN's heredoc script) must
    not stay open for writing in that sandbox: executing the script would fail with ETXTBSY
    (seen in CI) for as long as the sandbox ran."""
    script = tmp_path / "script.sh"
    with open(script, "w") as f:
        f.write("#!/bin/sh\n")
        seen = enter(iso, _open_files)
    assert str(script) not in seen
