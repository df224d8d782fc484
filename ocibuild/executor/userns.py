"""User-namespace id maps: which host ids the sandbox's ids 0..N stand for.

Two shapes, as rootlesskit and podman use them:
- *full*: container id 0 is the caller's own id and ids 1..N come from the caller's range in
  ``/etc/subuid``/``/etc/subgid``, written by the setuid helpers ``newuidmap``/``newgidmap``;
  every uid/gid an image uses exists on disk, so ownership is exact;
- *single*: only id 0 exists (mapped to the caller's id), written by the child itself through
  ``/proc/<pid>/uid_map`` after denying ``setgroups``; ownership is kept in OwnershipRecords.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ocibuild.errors import SandboxError


@dataclass(frozen=True)
class IdRange:
    """``count`` ids starting at ``inside`` in the namespace are ``outside``.. on the host."""

    inside: int
    outside: int
    count: int


@dataclass(frozen=True)
class IdMap:
    uids: tuple[IdRange, ...]
    gids: tuple[IdRange, ...]

    @property
    def full(self) -> bool:
        """More than one id is mapped: chown to any image id works on disk."""
        return sum(r.count for r in self.uids) > 1

    @property
    def size(self) -> int:
        return sum(r.count for r in self.uids)


def parse_subid(path: Path, user: str, uid: int) -> list[tuple[int, int]]:
    """The ``(start, count)`` ranges ``path`` grants to ``user`` (by name or by number)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise SandboxError(f"read {path}: {exc.strerror}") from exc
    ranges = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if count > 0:
            ranges.append((start, count))
    return ranges


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def single_map(uid: int | None = None, gid: int | None = None) -> IdMap:
    uid = os.geteuid() if uid is None else uid
    gid = os.getegid() if gid is None else gid
    return IdMap((IdRange(0, uid, 1),), (IdRange(0, gid, 1),))


def full_map(etc: Path = Path("/etc")) -> tuple[IdMap | None, str]:
    """The full map for the calling user, or ``(None, why not)``.

    Needs ``newuidmap`` and ``newgidmap`` on PATH and at least one range for the user in both
    ``subuid`` and ``subgid``; the first range of each file is used (1..count inside).
    """
    uid, gid = os.geteuid(), os.getegid()
    name = _user_name(uid)
    missing = [tool for tool in ("newuidmap", "newgidmap") if shutil.which(tool) is None]
    if missing:
        return None, f"{' and '.join(missing)} not installed (Debian package uidmap)"
    subuids = parse_subid(etc / "subuid", name, uid)
    subgids = parse_subid(etc / "subgid", name, uid)
    if not subuids or not subgids:
        return None, f"no range for user {name} in {etc}/subuid and {etc}/subgid"
    (ustart, ucount), (gstart, gcount) = subuids[0], subgids[0]
    return (
        IdMap((IdRange(0, uid, 1), IdRange(1, ustart, ucount)),
              (IdRange(0, gid, 1), IdRange(1, gstart, gcount))),
        "",
    )


def write_maps(pid: int, idmap: IdMap) -> None:
    """Install ``idmap`` for process ``pid``, which has just unshared its user namespace.

    Called by the parent (still in the initial namespace). A full map goes through
    newuidmap/newgidmap; a single map is written directly, after ``setgroups`` is denied as the
    kernel requires of unprivileged writers.
    """
    if idmap.full:
        for tool, ranges in (("newuidmap", idmap.uids), ("newgidmap", idmap.gids)):
            args = [tool, str(pid)]
            for r in ranges:
                args += [str(r.inside), str(r.outside), str(r.count)]
            result = subprocess.run(args, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise SandboxError(f"{tool} failed: {result.stderr.strip() or result.returncode}",
                                   hint="check /etc/subuid and /etc/subgid for this user")
        return
    proc = Path(f"/proc/{pid}")
    try:
        if os.geteuid() != 0:
            (proc / "setgroups").write_text("deny")
        (proc / "uid_map").write_text(_lines(idmap.uids))
        (proc / "gid_map").write_text(_lines(idmap.gids))
    except OSError as exc:
        raise SandboxError(f"write user namespace id map: {exc.strerror}") from exc


def _lines(ranges: tuple[IdRange, ...]) -> str:
    return "".join(f"{r.inside} {r.outside} {r.count}\n" for r in ranges)
