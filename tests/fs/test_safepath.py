"""safe_join: symlinks resolved as if the root were /; tar names cleaned or refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocibuild.errors import ContentError
from ocibuild.fs.safepath import clean_member_name, safe_join


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "usr" / "lib").mkdir(parents=True)
    (r / "etc").mkdir()
    os.symlink("/usr/lib", r / "lib")  # absolute: means root/usr/lib
    os.symlink("../..", r / "etc" / "up")  # climbs: clamped at the root
    os.symlink("/../../../var/tmp", r / "tmp")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    os.symlink("usr/lib/missing/x", r / "dangling")
    return r


@pytest.mark.parametrize(
    "path, want",
    [
        ("", ""),
        ("/", ""),
        ("etc/passwd", "etc/passwd"),
        ("/etc/passwd", "etc/passwd"),
        ("../../etc/passwd", "etc/passwd"),
        ("lib/libc.so", "usr/lib/libc.so"),
        ("lib", "usr/lib"),
        ("etc/up/etc/up/x", "x"),
        ("tmp/file", "var/tmp/file"),
        ("dangling", "usr/lib/missing/x"),
        ("usr/./lib/../lib", "usr/lib"),
    ],
)
def test_safe_join_table(root: Path, path: str, want: str) -> None:
    assert safe_join(root, path) == (root / want if want else root)


def test_last_component_not_followed_when_asked(root: Path) -> None:
    assert safe_join(root, "lib", follow_symlinks=False) == root / "lib"
    assert safe_join(root, "lib/x", follow_symlinks=False) == root / "usr" / "lib" / "x"


def test_hidden_components_are_missing_until_dotdot_climbs_out(root: Path) -> None:
    def visible(rel: str) -> bool:
        return rel != "etc" and not rel.startswith("etc/")

    # etc/up is a link on disk, but below a hidden directory: joined lexically, not followed.
    assert safe_join(root, "etc/up/x", visible=visible) == root / "etc" / "up" / "x"
    assert safe_join(root, "etc/up/x") == root / "x"
    # Climbing out of the hidden (or missing) part resolves links again.
    assert safe_join(root, "etc/../lib", visible=visible) == root / "usr" / "lib"
    assert safe_join(root, "nothere/../lib") == root / "usr" / "lib"


def test_symlink_loops_are_an_error(root: Path) -> None:
    with pytest.raises(ContentError, match="symbolic links"):
        safe_join(root, "loop1/x")


@pytest.mark.parametrize(
    "name, want",
    [("a/b", "a/b"), ("/a//b/", "a/b"), ("./a/./b", "a/b"), ("a/../b", "b"), ("./", ""), ("/", "")],
)
def test_clean_member_name(name: str, want: str) -> None:
    assert clean_member_name(name) == want


@pytest.mark.parametrize("name, want", [("..", ""), ("../a", "a"), ("a/../../b", "b"),
                                        ("/../a", "a"), ("../../x/../y/z", "y/z")])
def test_clean_member_name_keeps_dotdot_at_the_root(name: str, want: str) -> None:
    # As containerd's fs.RootPath and BuildKit's chrooted untar: ``..`` at the root is the root.
    assert clean_member_name(name) == want


def test_clean_member_name_refuses_nul() -> None:
    with pytest.raises(ContentError, match="hostile"):
        clean_member_name("a\x00b")
