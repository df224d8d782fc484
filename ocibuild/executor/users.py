"""User and group resolution inside a stage's root filesystem, the way BuildKit does it.

Two different rule sets exist in BuildKit and both are kept here:

- ``resolve_user`` is for ``USER`` (the process that RUN starts). It follows runc's
  ``GetExecUser``: a name must exist in the root's ``/etc/passwd`` (error otherwise); a number
  needs no entry (gid 0 then, unless the passwd file names that uid); supplementary groups are
  the groups of ``/etc/group`` listing the user, only when no group is given explicitly.
- ``resolve_home`` gives the ``HOME`` runc sets for a RUN whose env lacks one: the passwd
  entry's home of the RUN's numeric uid, ``/`` when there is none.
- ``resolve_chown`` is for ``COPY/ADD --chown``. It follows BuildKit's file-op ``readUser``: a
  number gives ``uid:uid``; a name gives the passwd entry's uid and primary gid; a name that is
  not found (or a missing passwd file) silently gives 0; a group name not found leaves the gid
  as it was.

Both read only the root's own files, resolved with symlinks kept inside the root, never the
host's ``/etc/passwd``. Files larger than 10 MiB are refused, like BuildKit.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ocibuild.errors import ExecutionError
from ocibuild.fs.safepath import safe_join

_MAX_USER_FILE = 10 << 20
_MAX_ID = (1 << 31) - 1


def _read_user_file(root: Path, name: str) -> list[list[str]] | None:
    """Lines of ``/etc/<name>`` inside ``root`` split on ``:``; None when it does not exist."""
    path = safe_join(root, f"/etc/{name}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise ExecutionError(f"read /etc/{name} of the stage: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ExecutionError(f"/etc/{name} of the stage is not a regular file")
        chunks = []
        size = 0
        while size <= _MAX_USER_FILE:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > _MAX_USER_FILE:
        raise ExecutionError(f"/etc/{name} of the stage exceeds {_MAX_USER_FILE} bytes")
    rows = []
    for raw in data.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line:
            continue
        if name == "group" and line.startswith("#"):
            continue
        rows.append(line.split(":"))
    return rows


def _atoi(text: str) -> int:
    """Go's ``strconv.Atoi`` as runc's parsers use it: conversion errors give 0."""
    try:
        return int(text, 10) if text.strip() == text else 0
    except ValueError:
        return 0


def _field(row: list[str], i: int) -> str:
    return row[i] if i < len(row) else ""


def _numeric(text: str) -> int | None:
    """The id when ``text`` is a decimal number (range-checked), else None."""
    if not text or not text.lstrip("+-").isdigit() or not text.isascii():
        return None
    value = int(text, 10)
    if value < 0 or value > _MAX_ID:
        raise ExecutionError(f"uids and gids must be in range 0-{_MAX_ID}: {text}")
    return value


def resolve_user(root: Path, spec: str) -> tuple[int, int, tuple[int, ...]]:
    """Resolve a ``USER`` value (``name``, ``uid``, ``name:group``, ``uid:gid``, ``""``).

    Returns ``(uid, gid, additional_gids)`` where ``additional_gids`` is what the process gets,
    as BuildKit's OCI spec has it: the primary gid first, then the supplementary groups found
    in ``/etc/group`` (only when no group is given). Raises ``ExecutionError`` with runc's
    message (``unable to find user bob: no matching entries in passwd file``).
    """
    is_default = spec == ""
    if is_default:
        spec = "0"
    user, sep, group = spec.partition(":")
    # BuildKit's fast path: both parts numeric (or "root") need no files at all.
    if sep:
        fast_uid = 0 if user == "root" else _numeric(user)
        fast_gid = 0 if group == "root" else _numeric(group)
        if fast_uid is not None and fast_gid is not None:
            return fast_uid, fast_gid, (fast_gid,)
    try:
        uid, gid, sgids = _exec_user(root, user, group)
    except ExecutionError:
        if is_default:
            return 0, 0, (0,)
        raise
    return uid, gid, (gid, *[g for g in sgids if g != gid])


def resolve_home(root: Path, uid: int) -> str:
    """The home directory runc gives a process of ``uid`` whose env has no (or an empty)
    ``HOME``: field 6 of the first ``/etc/passwd`` entry of ``root`` with that uid (matched by
    number, as runc's ``prepareEnv`` does with the spec's numeric uid), ``/`` when no entry
    matches or the file is missing or unreadable (runc only logs that)."""
    try:
        rows = _read_user_file(root, "passwd")
    except ExecutionError:
        return "/"
    for row in rows or ():
        if _atoi(_field(row, 2)) == uid:
            return _field(row, 5)
    return "/"


def _exec_user(root: Path, user: str, group: str) -> tuple[int, int, list[int]]:
    passwd = _read_user_file(root, "passwd")
    groups = _read_user_file(root, "group")
    uid_arg = _numeric(user)
    gid_arg = _numeric(group)
    uid, gid = 0, 0
    sgids: list[int] = []
    matched_name = ""
    entry = None
    for row in passwd or ():
        if (uid_arg is not None and _atoi(_field(row, 2)) == uid_arg) or (
            uid_arg is None and user and row[0] == user
        ):
            entry = row
            break
        if not user and _atoi(_field(row, 2)) == 0:
            entry = row
            break
    if entry is not None:
        matched_name = entry[0]
        uid, gid = _atoi(_field(entry, 2)), _atoi(_field(entry, 3))
    elif user:
        if uid_arg is None:
            raise ExecutionError(f"unable to find user {user}: no matching entries in passwd file")
        uid = uid_arg
    if group or matched_name:
        found: list[int] = []
        for row in groups or ():
            members = _field(row, 3).split(",") if _field(row, 3) else []
            if not group:
                if matched_name in members:
                    found.append(_atoi(_field(row, 2)))
            elif (gid_arg is not None and _atoi(_field(row, 2)) == gid_arg) or (
                gid_arg is None and row[0] == group
            ):
                found.append(_atoi(_field(row, 2)))
        if group:
            if found:
                gid = found[0]
            elif gid_arg is None:
                raise ExecutionError(
                    f"unable to find group {group}: no matching entries in group file"
                )
            else:
                gid = gid_arg
        else:
            sgids = found
    return uid, gid, sgids


def resolve_chown(root: Path, spec: str) -> tuple[int, int]:
    """Resolve a ``--chown`` value against the destination stage's ``root``.

    ``1000`` gives ``(1000, 1000)``; ``bob`` gives bob's uid and primary gid; ``bob:staff`` or
    ``bob:50`` override the gid, ``bob:`` sets gid 0; ``root`` is 0 without lookup. Unknown names resolve to 0
    without an error, exactly as BuildKit does (it reads no file for numbers).
    """
    user, sep, group = spec.partition(":")
    uid = gid = 0
    uid_num = 0 if user == "root" else _parse_uid(user)
    if uid_num is not None:
        uid = gid = uid_num
    elif user:
        for row in _read_user_file(root, "passwd") or ():
            if row[0] == user:
                uid, gid = _atoi(_field(row, 2)), _atoi(_field(row, 3))
                break
    if sep:
        # An empty group (``1000:``, ``app:``) is a by-name UserOpt with no name, which LLB
        # marshals as id 0 (``UserOpt.marshal``): gid 0, not the user's primary group.
        gid_num = 0 if group in ("root", "") else _parse_uid(group)
        if gid_num is not None:
            gid = gid_num
        else:
            for row in _read_user_file(root, "group") or ():
                if row[0] == group:
                    gid = _atoi(_field(row, 2))
                    break
    return _unsigned(uid), _unsigned(gid)


def _unsigned(value: int) -> int:
    """An id as LLB sends it, unsigned 32-bit (-5 from a passwd file: 4294967291); -1 is then
    lchown's "leave as is", so what COPY made keeps its owner, root."""
    value &= 0xFFFFFFFF
    return 0 if value == 0xFFFFFFFF else value


def _parse_uid(text: str) -> int | None:
    """BuildKit's ``parseUID`` for ``--chown``: a signed 32-bit decimal, else a name (a
    negative one is made unsigned by ``resolve_chown``)."""
    try:
        value = int(text, 10)
    except ValueError:
        return None
    if text.strip() != text or "_" in text or not -(1 << 31) <= value < (1 << 31):
        return None
    return value
