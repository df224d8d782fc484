"""Whiteouts in both unpack formats, and diffs (overlay upper dir, tree walk) -> layers."""

from __future__ import annotations

import io
import os
import shutil
import stat
from pathlib import Path

import pytest
from fs_helpers import IS_ROOT, Overlay, make_file, mount_overlay, needs_root, umount
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocibuild.fs import Change, ChangeKind, overlay_changes, tree_changes, unpack_layer, write_layer
from ocibuild.fs.tarformat import BLOCK, EntryKind, TarEntry, encode_header
from ocibuild.fs.treeview import describe_tree


def tar(*entries: tuple[str, EntryKind, bytes]) -> bytes:
    out = bytearray()
    for name, kind, data in entries:
        mode = 0o755 if kind is EntryKind.DIR else 0o644
        out += encode_header(TarEntry(name, kind, mode=mode, size=len(data)))
        out += data + bytes(-len(data) % BLOCK)
    return bytes(out + bytes(2 * BLOCK))


FILE, DIR = EntryKind.FILE, EntryKind.DIR


def lower_tree(root: Path) -> None:
    make_file(root / "keep", b"k")
    make_file(root / "gone", b"g")
    make_file(root / "dir" / "old1", b"1")
    make_file(root / "dir" / "sub" / "old2", b"2")
    make_file(root / "dir2" / "x", b"x")


# The opaque marker comes AFTER an entry of the same layer: it must still only hide lower files.
LAYER = tar(
    ("dir", DIR, b""),
    ("dir/new", FILE, b"n"),
    ("dir/sub", DIR, b""),
    ("dir/sub/new2", FILE, b"n2"),
    ("dir/.wh..wh..opq", FILE, b""),
    (".wh.gone", FILE, b""),
    ("dir2/.wh.x", FILE, b""),
)
EXPECTED = {"keep", "dir", "dir/new", "dir/sub", "dir/sub/new2", "dir2"}


def test_apply_whiteouts_on_lower_copy(tmp_path: Path) -> None:
    lower_tree(tmp_path)
    unpack_layer(io.BytesIO(LAYER), tmp_path, chown=IS_ROOT)  # type: ignore[arg-type]
    assert set(describe_tree(tmp_path)) == EXPECTED


def test_without_whiteouts_they_are_plain_files(tmp_path: Path) -> None:
    unpack_layer(io.BytesIO(LAYER), tmp_path, apply_whiteouts=False, chown=IS_ROOT)  # type: ignore[arg-type]
    assert (tmp_path / "dir" / ".wh..wh..opq").is_file() and (tmp_path / ".wh.gone").is_file()


@needs_root
def test_overlay_format_stacks_to_the_same_view(overlay: Overlay, tmp_path: Path) -> None:
    lower_tree(overlay.lower[0])
    layer_dir = tmp_path / "layer"
    layer_dir.mkdir()
    unpack_layer(io.BytesIO(LAYER), layer_dir, whiteout_format="overlay")  # type: ignore[arg-type]
    st = os.lstat(layer_dir / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(layer_dir / "dir", "trusted.overlay.opaque") == b"y"
    overlay.lower = [layer_dir, *overlay.lower]
    mount_overlay(overlay)
    assert set(describe_tree(overlay.merged)) == EXPECTED


@needs_root
def test_overlay_diff_of_unchanged_snapshot_is_empty(overlay: Overlay) -> None:
    lower_tree(overlay.lower[0])
    mount_overlay(overlay)
    os.listdir(overlay.merged / "dir")  # reading copies nothing up
    (overlay.merged / "keep").read_bytes()
    assert list(overlay_changes(overlay.upper)) == []
    assert list(tree_changes(overlay.lower[0], overlay.merged)) == []


@needs_root
def test_overlay_diff_becomes_a_layer_that_reproduces_the_snapshot(overlay: Overlay, tmp_path: Path) -> None:
    lower_tree(overlay.lower[0])
    mount_overlay(overlay)
    m = overlay.merged
    os.unlink(m / "gone")
    shutil.rmtree(m / "dir")  # removed and recreated: overlay marks it opaque
    make_file(m / "dir" / "fresh", b"f")
    (m / "keep").write_bytes(b"changed")
    os.chmod(m / "dir2" / "x", 0o600)
    make_file(m / "new" / "deep" / "file", b"new", 0o4755)
    changes = list(overlay_changes(overlay.upper))
    kinds = {(c.kind, c.path) for c in changes}
    assert (ChangeKind.DELETE, "gone") in kinds and (ChangeKind.OPAQUE, "dir") in kinds
    want = describe_tree(m)
    umount(m)
    blob = write_layer(changes, tmp_path / "layer.tgz", ordered=True)
    # Applying the layer on a copy of the lower reproduces the merged view.
    applied = tmp_path / "applied"
    shutil.copytree(overlay.lower[0], applied, symlinks=True)
    unpack_layer(blob.path, applied)
    assert describe_tree(applied, mtimes=False) == {k: _no_mtime(v) for k, v in want.items()}


def _no_mtime(node):  # type: ignore[no-untyped-def]
    import dataclasses

    return dataclasses.replace(node, mtime=None)


def test_tree_diff_of_unchanged_copy_is_empty(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    lower_tree(lower)
    os.symlink("keep", lower / "link")
    copy = tmp_path / "copy"
    shutil.copytree(lower, copy, symlinks=True)
    assert list(tree_changes(lower, copy)) == []


def test_tree_diff_finds_every_kind_of_change(tmp_path: Path) -> None:
    lower, new = tmp_path / "lower", tmp_path / "new"
    lower_tree(lower)
    make_file(lower / "same-size", b"aaaa", mtime=1_600_000_000)
    shutil.copytree(lower, new, symlinks=True)
    os.unlink(new / "gone")
    shutil.rmtree(new / "dir" / "sub")
    make_file(new / "dir" / "added", b"+")
    os.chmod(new / "keep", 0o600)
    # Same size, same whole-second mtime (as after a tar unpack): only content tells.
    make_file(new / "same-size", b"bbbb", mtime=1_600_000_000)
    os.setxattr(new / "dir2" / "x", "user.note", b"1")
    got = [(c.kind, c.path) for c in tree_changes(lower, new)]
    assert got == [
        (ChangeKind.ADD, "dir/added"),
        (ChangeKind.DELETE, "dir/sub"),
        (ChangeKind.MODIFY, "dir2/x"),
        (ChangeKind.DELETE, "gone"),
        (ChangeKind.MODIFY, "keep"),
        (ChangeKind.MODIFY, "same-size"),
    ]
    # The layer carries the parent directories of changed files (as containerd's writer does)
    # and applying it to the lower gives the new tree.
    blob = write_layer(tree_changes(lower, new), tmp_path / "l.tar", "none")
    unpack_layer(blob.path, lower)
    if IS_ROOT:  # ownership can only be reproduced on disk as root
        assert describe_tree(lower) == describe_tree(new)
    assert set(describe_tree(lower)) == set(describe_tree(new))


NAMES = ["a", "b", "c"]
PATHS = [f"{x}" for x in NAMES] + [f"{x}/{y}" for x in NAMES for y in NAMES]


def _apply_op(root: Path, op: str, rel: str, n: int) -> None:
    p = root / rel
    if not p.parent.is_dir() or p.parent.is_symlink():
        return
    if op == "delete" and (p.exists() or p.is_symlink()):
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    elif op == "file" and not p.is_dir():
        if p.is_symlink():
            p.unlink()
        make_file(p, b"v%d" % n, 0o600 + n % 64, mtime=1_600_000_000 + n)
    elif op == "dir" and not p.exists() and not p.is_symlink():
        p.mkdir()
    elif op == "link" and not p.exists() and not p.is_symlink():
        os.symlink(f"target{n}", p)
    elif op == "chmod" and p.is_file() and not p.is_symlink():
        os.chmod(p, 0o640 + n % 8)


OPS = st.lists(
    st.tuples(st.sampled_from(["delete", "file", "dir", "link", "chmod"]),
              st.sampled_from(PATHS), st.integers(0, 50)),
    max_size=14,
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(before=OPS, after=OPS)
def test_tree_diff_layer_applied_to_lower_gives_new_tree(tmp_path: Path, before: list, after: list) -> None:  # type: ignore[type-arg]
    work = tmp_path / os.urandom(4).hex()
    lower, new = work / "lower", work / "new"
    lower.mkdir(parents=True)
    try:
        for op, rel, n in before:
            _apply_op(lower, op, rel, n)
        shutil.copytree(lower, new, symlinks=True)
        for op, rel, n in after:
            _apply_op(new, op, rel, n)
        changes = list(tree_changes(lower, new))
        if not after:
            assert changes == []
        # The walk yields layer order: streamed as it comes, and checked.
        blob = write_layer(changes, work / "layer", "gzip", ordered=True)
        unpack_layer(blob.path, lower)
        assert describe_tree(lower, mtimes=False) == describe_tree(new, mtimes=False)
    finally:
        shutil.rmtree(work)


def test_ordered_changes_out_of_order_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    make_file(tmp_path / "t" / "a", b"a")
    make_file(tmp_path / "t" / "b", b"b")
    root = tmp_path / "t"
    shuffled = [Change(ChangeKind.ADD, "b", root), Change(ChangeKind.ADD, "a", root)]
    with pytest.raises(ValueError, match="out of order: 'a'"):
        write_layer(shuffled, tmp_path / "layer", ordered=True)
    assert not (tmp_path / "layer").exists()
    # Unordered input is sorted instead, with the same bytes as the ordered stream.
    sorted_blob = write_layer(shuffled, tmp_path / "sorted")
    ordered_blob = write_layer(reversed(shuffled), tmp_path / "ordered", ordered=True)
    assert sorted_blob.digest == ordered_blob.digest


def test_layer_headers_are_the_headers_write_layer_writes(tmp_path: Path) -> None:
    """``layer_headers`` (the fed commit's check) hashes exactly the headers ``write_layer``
    logs, reading no data; a change of metadata, size or name changes it."""
    import hashlib

    from ocibuild.fs.layer import layer_headers

    root, empty = tmp_path / "tree", tmp_path / "empty"
    empty.mkdir()
    make_file(root / "app" / "a", b"aaa")
    make_file(root / "app" / "sub" / "b", b"b" * 700)
    os.symlink("a", root / "app" / "l")
    os.link(root / "app" / "a", root / "app" / "hard")
    os.chmod(root / "app" / "a", 0o4755)

    def headers() -> bytes:
        return layer_headers(tree_changes(empty, root), None, 1_700_000_000)

    log = hashlib.sha256()
    write_layer(tree_changes(empty, root), tmp_path / "layer.tar", "none",
                source_date_epoch=1_700_000_000, headers=log)
    assert headers() == log.digest()
    b = root / "app" / "sub" / "b"
    os.utime(b, (1_800_000_000, 1_800_000_000))
    before = headers()
    os.utime(b, (1_900_000_000, 1_900_000_000))
    assert headers() == before  # both clamped to the epoch: the same header
    os.utime(b, (1_600_000_000, 1_600_000_000))
    assert headers() != before  # the mtime is in the header
    os.utime(b, (1_800_000_000, 1_800_000_000))
    assert headers() == before
    os.chmod(root / "app" / "a", 0o755)
    assert headers() != before
