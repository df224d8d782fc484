"""A build killed mid-RUN (SIGKILL, Ctrl-C) leaves no process and no mount behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from ocibuild.executor.runtime import Runtime
from ocibuild.testing.sandbox import BaseLayer, mounts_under

pytestmark = [pytest.mark.rootless, pytest.mark.chroot, pytest.mark.timeout(60)]

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import sys
from pathlib import Path
from ocibuild.digest import Digest
from ocibuild.executor.runtime import Runtime, RunSpec
isolation, snapshotter, work, blob, marker = sys.argv[1:]
rt = Runtime.detect(isolation, snapshotter, workdir=Path(work))
snap = rt.new_snapshot([rt.unpack_layer(Digest("sha256", "c" * 64), Path(blob))])
def out(data):
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
script = f"sleep {marker} & sleep {marker} & echo started; wait"
rt.run(snap, RunSpec(("/bin/sh", "-c", script)), out)
"""


def _with_marker(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"sleep") and marker.encode() in argv:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "ctrl-c"])
def test_killed_build_leaves_nothing(sandbox_runtime: Runtime, busybox_layer: BaseLayer,
                                     tmp_path: Path, sig: signal.Signals) -> None:
    isolation = sandbox_runtime.isolation.mode
    work = tmp_path / "work"
    marker = f"{1000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6:06d}"  # a sleep time
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, isolation, sandbox_runtime.snapshotter, str(work),
         str(busybox_layer.blob), marker],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == b"started\n", child.stderr.read() if child.stderr else b""
        deadline = time.monotonic() + 10
        while len(_with_marker(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # the background jobs may not have exec'd sleep yet
        assert len(_with_marker(marker)) == 2  # the sleeps run, visible from the host
        child.send_signal(sig)
        child.wait(timeout=20)
        deadline = time.monotonic() + 10
        while _with_marker(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _with_marker(marker) == []
        assert mounts_under(work) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()
        shutil.rmtree(work, ignore_errors=True)
