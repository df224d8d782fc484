"""USER and --chown resolution in a stage's own /etc/passwd and /etc/group.

Expectations follow runc's GetExecUser (USER, as BuildKit's executor uses it) and BuildKit's
file-op readUser (--chown); the --chown cases were checked against the reference BuildKit.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocibuild.errors import ExecutionError
from ocibuild.executor.users import resolve_chown, resolve_home, resolve_user

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bob:x:1001:1002::/home/bob:/bin/sh
num:x:1500:1600::/:/bin/sh
nohome:x:1700:1700::
bob2:x:1001:1001::/home/second:/bin/sh
"""
GROUP = """root:x:0:
# a comment line
daemon:x:1:
staff:x:50:bob,alice
bobg:x:1002:
audio:x:29:bob
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(PASSWD)
    (tmp_path / "etc/group").write_text(GROUP)
    return tmp_path


@pytest.mark.parametrize(("spec", "want"), [
    ("", (0, 0, (0,))),
    ("root", (0, 0, (0,))),
    ("0", (0, 0, (0,))),
    ("bob", (1001, 1002, (1002, 50, 29))),  # supplementary groups listing bob
    ("1001", (1001, 1002, (1002, 50, 29))),  # a number found in passwd gets its entry
    ("bob:staff", (1001, 50, (50,))),  # explicit group: no supplementary groups
    ("bob:7", (1001, 7, (7,))),
    ("4242", (4242, 0, (0,))),  # a number without entry: gid 0
    ("4242:4343", (4242, 4343, (4343,))),
    ("root:root", (0, 0, (0,))),
    ("1500", (1500, 1600, (1600,))),
    (":staff", (0, 50, (50,))),
])
def test_resolve_user(root: Path, spec: str, want: tuple[int, int, tuple[int, ...]]) -> None:
    assert resolve_user(root, spec) == want


@pytest.mark.parametrize(("spec", "message"), [
    ("nosuch", "unable to find user nosuch: no matching entries in passwd file"),
    ("bob:nogroup", "unable to find group nogroup: no matching entries in group file"),
    ("99999999999", "must be in range"),
])
def test_resolve_user_errors(root: Path, spec: str, message: str) -> None:
    with pytest.raises(ExecutionError, match=message):
        resolve_user(root, spec)


def test_resolve_user_without_files(tmp_path: Path) -> None:
    assert resolve_user(tmp_path, "") == (0, 0, (0,))
    assert resolve_user(tmp_path, "123") == (123, 0, (0,))
    with pytest.raises(ExecutionError, match="unable to find user bob"):
        resolve_user(tmp_path, "bob")


@pytest.mark.parametrize(("spec", "want"), [
    ("1000", (1000, 1000)),
    ("1000:1000", (1000, 1000)),
    ("bob", (1001, 1002)),
    ("bob:staff", (1001, 50)),
    ("bob:99", (1001, 99)),
    ("nosuch", (0, 0)),  # BuildKit: unknown names are root, silently
    ("bob:nosuchg", (1001, 1002)),  # unknown group keeps the user's gid
    ("root:1", (0, 1)),
    ("5:staff", (5, 50)),
    (":staff", (0, 50)),
    # An empty group is LLB's by-name UserOpt with no name, marshalled as id 0 (BuildKit
    # recorded: COPY --chown=1000: and --chown=app: give gid 0).
    ("1000:", (1000, 0)),
    ("bob:", (1001, 0)),
    (":", (0, 0)),
])
def test_resolve_chown(root: Path, spec: str, want: tuple[int, int]) -> None:
    assert resolve_chown(root, spec) == want


def test_lookups_stay_inside_the_root(tmp_path: Path) -> None:
    """/etc/passwd as a symlink to an absolute path resolves inside the root, not the host."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real/passwd").write_text("ghost:x:77:88::/:/bin/sh\n")
    (tmp_path / "etc").mkdir()
    os.symlink("/real/passwd", tmp_path / "etc/passwd")
    assert resolve_chown(tmp_path, "ghost") == (77, 88)
    assert resolve_chown(tmp_path, "root") == (0, 0)
    # The host's root user exists on the host but not in this root.
    (tmp_path / "etc/passwd").unlink()
    os.symlink("../../../../../../../etc/hostname", tmp_path / "etc/passwd")
    with pytest.raises(ExecutionError, match="unable to find user daemon"):
        resolve_user(tmp_path, "daemon")


def test_passwd_must_be_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "etc/passwd").mkdir(parents=True)
    with pytest.raises(ExecutionError, match="not a regular file"):
        resolve_user(tmp_path, "bob")


@pytest.mark.parametrize(("uid", "home"), [
    (0, "/root"), (1, "/usr/sbin"), (1001, "/home/bob"),  # the first entry of a shared uid
    (1700, ""),  # an entry with an empty home gives an empty HOME, as runc
    (4242, "/"),  # no entry: runc's default
])
def test_resolve_home(root: Path, uid: int, home: str) -> None:
    assert resolve_home(root, uid) == home


def test_resolve_home_without_a_usable_passwd(tmp_path: Path) -> None:
    assert resolve_home(tmp_path, 0) == "/"  # no /etc/passwd at all
    (tmp_path / "etc/passwd").mkdir(parents=True)
    assert resolve_home(tmp_path, 0) == "/"  # runc only logs a read error
