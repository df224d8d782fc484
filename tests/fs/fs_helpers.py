"""Helpers for the fs tests: tree builders, constants, overlay mounting (root only)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (mknod, chown, trusted.* xattrs)")

# Linux file capability "cap_net_bind_service=ep" as a VFS_CAP_REVISION_2 xattr value.
CAP_NET_BIND = bytes.fromhex("0100000200040000000000000000000000000000")


def make_file(path: Path, data: bytes = b"", mode: int = 0o644, mtime: int = 1_600_000_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))
    return path


@dataclass
class Overlay:
    lower: list[Path]
    upper: Path
    work: Path
    merged: Path


def mount_overlay(ov: Overlay) -> None:
    lowers = ":".join(str(p) for p in ov.lower)
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={lowers},upperdir={ov.upper},workdir={ov.work}", str(ov.merged)],
        check=True,
    )


def umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def small_disk(tmp_path: Path, size: str, random_files: int) -> Iterator[tuple[Path, Path]]:
    """``(tree, disk)``: a tree of ``random_files`` random 1 MiB files, and an empty tmpfs of
    ``size`` mounted for the block (root only) to fill up."""
    if not IS_ROOT:
        pytest.skip("mounting a small tmpfs needs root")
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(random_files):
        (tree / f"f{i}").write_bytes(os.urandom(1 << 20))
    disk = tmp_path / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], check=True)
    try:
        yield tree, disk
    finally:
        umount(disk)
