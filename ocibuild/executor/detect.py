"""Which isolation mode and snapshotter work here, found by trying them for real.

Order for ``auto``: as root, ``root`` (namespaces) then ``chroot``; as anyone else,
``rootless`` with the full sub-id map, then with a single id. Snapshotters: ``overlay`` if a
test mount (inside the chosen sandbox) works and produces a whiteout, then ``fuse-overlayfs``,
then ``copy``. Each probe is one short-lived sandbox process; nothing is left mounted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ocibuild.errors import OcibuildError, SandboxError
from ocibuild.executor import _linux
from ocibuild.executor import snapshot as snapshots
from ocibuild.executor.sandbox import Isolation, enter
from ocibuild.executor.userns import full_map, single_map

ISOLATIONS = ("auto", "rootless", "root", "chroot")
SNAPSHOTTERS = ("auto", "overlay", "fuse-overlayfs", "copy")


@dataclass(frozen=True)
class Detected:
    isolation: Isolation
    snapshotter: snapshots.Kind
    can_run: bool
    reason: str = ""  # why RUN cannot work, when it cannot


def _probe_namespaces() -> bool:
    # In stage 1: we must be able to mount (a private tmpfs proves CAP_SYS_ADMIN in our ns)
    # and to start a RUN's command in a pid namespace of its own.
    with tempfile.TemporaryDirectory() as tmp:
        _linux.mount("tmpfs", tmp, "tmpfs", 0, "size=64k")
        _linux.umount(tmp)
    _linux.unshare(_linux.CLONE_NEWPID)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - pid 1 of the new namespace
        os._exit(0 if os.getpid() == 1 else 1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _probe_chroot() -> bool:
    os.chroot("/")
    return True


def _try(iso: Isolation) -> str:
    """'' when ``iso`` works here, else one line saying why not."""
    try:
        if not enter(iso, _probe_chroot if iso.mode == "chroot" else _probe_namespaces,
                     command=True):
            return "a new pid namespace did not start at pid 1"
        return ""
    except OSError as exc:
        return exc.strerror or str(exc)
    except OcibuildError as exc:
        return str(exc)


def _pick_isolation(isolation: str) -> tuple[Isolation | None, str]:
    reasons: list[str] = []
    root = os.geteuid() == 0
    wanted = [isolation] if isolation != "auto" else (["root", "chroot"] if root else
                                                      ["rootless"])
    for mode in wanted:
        if mode == "rootless":
            full, why_not_full = full_map()
            candidates = [full] if full is not None else []
            if full is None:
                reasons.append(f"full id map: {why_not_full}")
            candidates.append(single_map())
            for idmap in candidates:
                iso = Isolation("rootless", idmap)
                why = _try(iso)
                if not why:
                    return iso, ""
                kind = "full id map" if idmap.full else "single-id map"
                reasons.append(f"rootless ({kind}): user namespace failed: {why}")
        elif mode == "root":
            if not root:
                reasons.append("root: not running as root")
                continue
            why = _try(Isolation("root"))
            if not why:
                return Isolation("root"), ""
            reasons.append(f"root: namespaces failed: {why} (CAP_SYS_ADMIN missing or seccomp)")
        elif mode == "chroot":
            if not _linux.has_effective_cap(_linux.CAP_SYS_CHROOT):
                reasons.append("chroot: CAP_SYS_CHROOT missing")
                continue
            why = _try(Isolation("chroot"))
            if not why:
                return Isolation("chroot"), ""
            reasons.append(f"chroot: {why}")
        else:
            raise SandboxError(f"unknown isolation {mode!r}: want one of {', '.join(ISOLATIONS)}")
    if not root and isolation == "auto":
        reasons.append("hint: enable unprivileged user namespaces "
                       "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces>0) "
                       "or run in a container that allows unshare(CLONE_NEWUSER)")
    return None, "; ".join(reasons)


def _probe_overlay(base: str, kind: str) -> bool:
    """Inside the sandbox: mount a tiny overlay, delete a lower file, expect a whiteout."""
    lower = Path(base) / "lower"
    (lower / "gone").write_text("x")
    snap = snapshots.Snapshot(Path(base) / "snap", kind, (lower,))  # type: ignore[arg-type]
    keep = snapshots.mount(snap)
    try:
        os.unlink(snap.root / "gone")
        (snap.root / "new").write_text("y")
    finally:
        snapshots.unmount(snap)
        if keep:
            os.waitpid(keep, 0)
    st = os.lstat(snap.upper / "gone")
    return (snap.upper / "new").exists() and st.st_rdev == 0


def _pick_snapshotter(iso: Isolation, snapshotter: str, workdir: Path) -> tuple[str, str]:
    if snapshotter not in SNAPSHOTTERS:
        raise SandboxError(f"unknown snapshotter {snapshotter!r}: want one of "
                           f"{', '.join(SNAPSHOTTERS)}")
    if not iso.namespaced:
        if snapshotter not in ("auto", "copy"):
            return "", f"{snapshotter} needs mount namespaces ({iso.mode} mode has none)"
        return "copy", ""
    wanted = [snapshotter] if snapshotter != "auto" else ["overlay", "fuse-overlayfs", "copy"]
    reasons = []
    for kind in wanted:
        if kind == "copy":
            return "copy", ""
        if kind == "fuse-overlayfs" and (shutil.which("fuse-overlayfs") is None
                                         or not os.path.exists("/dev/fuse")):
            reasons.append("fuse-overlayfs: binary or /dev/fuse missing")
            continue
        base = Path(tempfile.mkdtemp(prefix="probe-", dir=workdir))
        try:
            (base / "lower").mkdir()
            snapshots.layout(base / "snap", "overlay")
            ok = enter(iso, _probe_overlay, str(base), kind)
            if ok:
                return kind, ""
            reasons.append(f"{kind}: deletions did not produce whiteouts")
        except (OSError, OcibuildError) as exc:
            reasons.append(f"{kind}: {getattr(exc, 'strerror', None) or exc}")
        finally:
            if iso.mode == "rootless":
                enter(iso, shutil.rmtree, base, True)
            else:
                shutil.rmtree(base, ignore_errors=True)
    return "", "; ".join(reasons)


def detect(isolation: str, snapshotter: str, workdir: Path) -> Detected:
    """See the module docstring; raises SandboxError only for forced choices that fail."""
    if isolation not in ISOLATIONS:
        raise SandboxError(f"unknown isolation {isolation!r}: want one of {', '.join(ISOLATIONS)}")
    iso, why = _pick_isolation(isolation)
    if iso is None:
        if isolation != "auto":
            raise SandboxError(f"isolation {isolation} does not work here: {why}")
        if snapshotter not in ("auto", "copy"):
            raise SandboxError(f"snapshotter {snapshotter} needs a sandbox: {why}")
        return Detected(Isolation("none"), "copy", False, why)
    kind, why = _pick_snapshotter(iso, snapshotter, workdir)
    if not kind:
        raise SandboxError(f"snapshotter {snapshotter} does not work here: {why}")
    return Detected(iso, kind, True)  # type: ignore[arg-type]
