"""A seccomp filter that makes ownership syscalls succeed without doing anything.

In the single-id rootless mode only one id exists inside the user namespace, so ``chown`` to any
other id, ``setuid``/``setgroups`` and ``mknod`` of device nodes fail with EPERM/EINVAL, and
package managers (dpkg, useradd) abort. Like Charliecloud's ``--seccomp``, the filter returns 0
from those calls instead: the RUN goes on, and the ownership changes it asked for are not kept
(the caller warns). ``mknod``/``mknodat`` are faked only for character and block devices: fifos
and sockets are real and work unprivileged.

The program is classic BPF, built here byte for byte; syscall numbers are per architecture and
calls from any other architecture (e.g. 32-bit binaries) pass through unchanged.
"""

from __future__ import annotations

import platform
import stat
import struct
from dataclasses import dataclass

from ocibuild.executor import _linux

_LD_W_ABS = 0x20
_JEQ_K = 0x15
_AND_K = 0x54
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO_0 = 0x00050000  # SECCOMP_RET_ERRNO with errno 0: the call "succeeds"

_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARGS = 16  # args[i] low word on little-endian machines


@dataclass(frozen=True)
class _Arch:
    audit_arch: int
    fake: tuple[int, ...]
    mknod: tuple[tuple[int, int], ...]  # (syscall number, index of the mode argument)


# Numbers from the kernel's syscall tables (x86_64: syscall_64.tbl; arm64/riscv: asm-generic).
_GENERIC = _Arch(
    audit_arch=0,
    fake=(54, 55, 143, 144, 145, 146, 147, 149, 151, 152, 159),
    mknod=((33, 2),),
)
_ARCHES = {
    "x86_64": _Arch(
        audit_arch=0xC000003E,
        # chown fchown lchown setuid setgid setreuid setregid setgroups setresuid setresgid
        # setfsuid setfsgid fchownat
        fake=(92, 93, 94, 105, 106, 113, 114, 116, 117, 119, 122, 123, 260),
        mknod=((133, 1), (259, 2)),
    ),
    "aarch64": _Arch(0xC00000B7, _GENERIC.fake, _GENERIC.mknod),
    "riscv64": _Arch(0xC00000F3, _GENERIC.fake, _GENERIC.mknod),
}
_UNSHARE = {"x86_64": 272, "aarch64": 97, "riscv64": 97}


def fake_ownership_program(machine: str | None = None) -> bytes:
    """The packed ``struct sock_filter`` program for ``machine`` (default: this one).

    Raises ``KeyError`` for an architecture we have no syscall table for.
    """
    return _program(_ARCHES[machine or platform.machine()])


def deny_unshare_program(errno: int = 1, machine: str | None = None) -> bytes:
    """A program making ``unshare`` fail with ``errno`` (EPERM), as Docker's default profile
    does: lets tests reproduce a locked-down container without one."""
    machine = machine or platform.machine()
    arch = _ARCHES[machine]
    return _program(_Arch(arch.audit_arch, (), ()), deny=(_UNSHARE[machine],), errno=errno)


def _program(arch: _Arch, deny: tuple[int, ...] = (), errno: int = 0) -> bytes:
    """Classic BPF only jumps forward, so the returns come last and every test jumps down to
    them by label."""
    # (code, true label or offset, false label or offset, k); labels are resolved below.
    prog: list[tuple[int, int | str, int | str, int]] = [
        (_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        (_JEQ_K, 0, "allow", arch.audit_arch),
        (_LD_W_ABS, 0, 0, _OFFSET_NR),
    ]
    prog += [(_JEQ_K, "fake", 0, nr) for nr in arch.fake]
    prog += [(_JEQ_K, "deny", 0, nr) for nr in deny]
    prog += [(_JEQ_K, f"mknod{i}", 0, nr) for i, (nr, _) in enumerate(arch.mknod)]
    prog.append((_RET_K, 0, 0, _RET_ALLOW))
    labels: dict[str, int] = {}
    for i, (_, mode_arg) in enumerate(arch.mknod):
        labels[f"mknod{i}"] = len(prog)
        prog += [
            (_LD_W_ABS, 0, 0, _OFFSET_ARGS + 8 * mode_arg),
            (_AND_K, 0, 0, 0o170000),  # S_IFMT
            (_JEQ_K, "fake", 0, stat.S_IFCHR),
            (_JEQ_K, "fake", 0, stat.S_IFBLK),
            (_RET_K, 0, 0, _RET_ALLOW),
        ]
    labels["allow"] = len(prog)
    prog.append((_RET_K, 0, 0, _RET_ALLOW))
    labels["fake"] = len(prog)
    prog.append((_RET_K, 0, 0, _RET_ERRNO_0))
    labels["deny"] = len(prog)
    prog.append((_RET_K, 0, 0, _RET_ERRNO_0 | errno))

    def offset(here: int, target: int | str) -> int:
        if isinstance(target, int):
            return target
        jump = labels[target] - here - 1
        assert 0 <= jump < 256, "seccomp program too long for a classic BPF jump"
        return jump

    return b"".join(
        struct.pack("=HBBI", code, offset(i, jt), offset(i, jf), k)
        for i, (code, jt, jf, k) in enumerate(prog)
    )


def install_fake_ownership() -> None:
    """Install the filter in the calling process (inherited by its children and execs)."""
    _linux.install_seccomp(fake_ownership_program())
