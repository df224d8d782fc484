"""What a RUN may not write, as in BuildKit: /etc/hosts and /etc/resolv.conf (bound
``nosuid,noexec,nodev,rbind,ro``, ``executor/oci/spec_linux.go``: ``echo ... >> /etc/hosts`` fails
there with EROFS), and containerd's default read-only and masked /proc paths (``/proc/sys``
read-only, ``/proc/kcore`` empty); and no capability beyond BuildKit's default set, in every
mode. The chroot mode has no mounts (copied stubs, writable by root; the host's /proc), so
only the capabilities are checked there."""

from __future__ import annotations

import pytest

from ocibuild.executor.command import DEFAULT_CAPS
from ocibuild.executor.runtime import RunSpec, Runtime, Snapshot

pytestmark = [pytest.mark.rootless, pytest.mark.chroot, pytest.mark.timeout(60)]


@pytest.mark.parametrize("name", ["hosts", "resolv.conf"])
def test_etc_file_is_read_only(sandbox_runtime: Runtime, snap: Snapshot, name: str) -> None:
    if not sandbox_runtime.isolation.namespaced:
        pytest.skip("chroot mode: no mounts, the stand-ins are plain files")
    chunks: list[bytes] = []
    code = sandbox_runtime.run(
        snap, RunSpec(("/bin/sh", "-c", f"echo '10.0.0.1 x' >> /etc/{name}; echo rc=$?; "
                       f"grep -c 10.0.0.1 /etc/{name}")), chunks.append)
    out = b"".join(chunks).decode()
    assert "Read-only file system" in out, out
    assert "rc=1\n0\n" in out, out
    assert code == 1


def test_proc_sys_read_only_and_kcore_masked(sandbox_runtime: Runtime, snap: Snapshot) -> None:
    if not sandbox_runtime.isolation.namespaced:
        pytest.skip("chroot mode: no mounts")
    chunks: list[bytes] = []
    code = sandbox_runtime.run(
        snap, RunSpec(("/bin/sh", "-c", "echo 3 > /proc/sys/vm/drop_caches; echo rc=$?; "
                       "test -e /proc/kcore && wc -c < /proc/kcore; "
                       "grep -c ' /proc/sys ro,' /proc/self/mountinfo")), chunks.append)
    out = b"".join(chunks).decode()
    assert code == 0, out
    assert "Read-only file system" in out and "rc=1\n" in out, out
    assert out.endswith("0\n1\n") or out.endswith("rc=1\n1\n"), out  # kcore empty or absent


@pytest.mark.parametrize(("user", "security"), [("", "sandbox"), ("1000:1000", "sandbox"),
                                                ("", "insecure")])
def test_capabilities_limited_to_buildkit_default(sandbox_runtime: Runtime, snap: Snapshot,
                                                  user: str, security: str) -> None:
    if not sandbox_runtime.isolation.namespaced:
        pytest.skip("chroot mode: no /proc in the test image")
    chunks: list[bytes] = []
    code = sandbox_runtime.run(
        snap, RunSpec(("/bin/sh", "-c", "grep -E '^Cap(Bnd|Eff):' /proc/self/status"),
                      user=user, security=security),  # type: ignore[arg-type]
        chunks.append)
    out = b"".join(chunks).decode()
    assert code == 0, out
    caps = {k: int(v, 16) for k, v in (line.split(":\t") for line in out.splitlines())}
    allowed = sum(1 << c for c in DEFAULT_CAPS)
    if security == "insecure":
        return  # whatever this process has; only checked to run
    assert caps["CapBnd"] & ~allowed == 0, hex(caps["CapBnd"])
    assert caps["CapEff"] == (caps["CapBnd"] if user == "" else 0), out
