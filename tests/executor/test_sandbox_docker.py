"""The real locked-down check: the sandbox inside a default ``docker run`` container (seccomp
blocks unshare, no CAP_SYS_ADMIN). Root there gets chroot + copy; a non-root user gets a clear
SandboxError and can still build without RUN."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.dockerd, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
IMAGE = "ocibuild-test-hostfs:latest"
SCRIPT = r"""
import sys, tarfile
from pathlib import Path
from ocibuild.digest import Digest
from ocibuild.errors import SandboxError
from ocibuild.executor.runtime import Runtime, RunSpec
from ocibuild.testing.sandbox import write_busybox_layer
work = Path("/tmp/w"); work.mkdir()
write_busybox_layer(work / "base.tar.gz")
rt = Runtime.detect()
print("mode", rt.isolation.mode, rt.snapshotter, rt.can_run)
snap = rt.new_snapshot([rt.unpack_layer(Digest("sha256", "d" * 64), work / "base.tar.gz")])
if rt.can_run:
    out = []
    print("code", rt.run(snap, RunSpec(("/bin/sh", "-c", "echo hi > /made")), out.append))
else:
    try:
        rt.run(snap, RunSpec(("/bin/true",)), print)
    except SandboxError as exc:
        print("refused", exc)
    (work / "x").mkdir(exist_ok=True)
    rt.call(snap, lambda ctx: (ctx.root / "made").write_text("hi\n"))
blob = rt.commit(snap, work / "layer.tar.gz")
with tarfile.open(blob.path) as tar:
    print("layer", sorted(m.name for m in tar.getmembers()))
"""


def _docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def image() -> str:
    if not _docker_ok():
        pytest.skip("no dockerd answers `docker info` here")
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w") as tar:
        for name in ("tmp", "usr", "lib", "lib64", "bin", "opt", "etc", "src"):
            info = tarfile.TarInfo(name)
            host = Path("/") / name
            if host.is_symlink():  # merged /usr: /lib -> usr/lib, as on the host
                info.type, info.linkname = tarfile.SYMTYPE, str(host.readlink())
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
    subprocess.run(["docker", "import", "-", IMAGE], input=empty.getvalue(), check=True,
                   capture_output=True)
    return IMAGE


def _docker_run(image: str, *user: str) -> str:
    mounts = []
    for path in ("/usr", "/lib", "/lib64", "/bin", "/opt", "/etc"):
        if Path(path).exists() and not Path(path).is_symlink():
            mounts += ["-v", f"{path}:{path}:ro"]
    result = subprocess.run(
        ["docker", "run", "--rm", *user, *mounts, "-v", f"{REPO}:/src:ro", "-w", "/src",
         "-e", "PYTHONPATH=/src", image, "/opt/ocibuild-test-venv/bin/python", "-c", SCRIPT],
        capture_output=True, text=True, check=False, timeout=100)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_root_in_default_container_uses_chroot(image: str) -> None:
    out = _docker_run(image)
    assert "mode chroot copy True" in out
    assert "code 0" in out and "layer ['made']" in out


def test_user_in_default_container_cannot_run_but_builds(image: str) -> None:
    out = _docker_run(image, "--user", "1000:1000")
    assert "mode none copy False" in out
    assert "refused cannot run RUN here" in out and "user namespace" in out
    assert "layer ['made']" in out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
