"""Snapshots: the same RUN gives the same image in every snapshotter; call(), ownership, roots."""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from pathlib import Path

import pytest

from ocibuild.executor.runtime import CallContext, RunSpec, Runtime
from ocibuild.testing.sandbox import BaseLayer

pytestmark = [pytest.mark.rootless, pytest.mark.chroot, pytest.mark.timeout(60)]

SCRIPT = """
set -e
echo new > /data/new
echo changed > /data/modify-me
rm /data/delete-me
rm -r /data/old
mkdir /data/old && echo again > /data/old/c
rm -r /data/keep && mkdir /data/keep
ln -s new /data/link
ln /data/new /data/hard
chmod 600 /data/new
mkdir -p /usr/share/x && echo x > /usr/share/x/y
mv /data/mvdir /data/moved
"""


def _image_tree(layers: list[Path], into: Path) -> dict[str, tuple[object, ...]]:
    """Apply the layers the way a registry client would and describe the result by content,
    not by how each snapshotter chose to write the diff."""
    tree: dict[str, tuple[object, ...]] = {}
    for layer in layers:
        with tarfile.open(layer) as tar:
            members = tar.getmembers()
            for m in members:
                base, name = os.path.split(m.name.rstrip("/"))
                if name == ".wh..wh..opq":
                    for key in [k for k in tree if k.startswith(base + "/")]:
                        del tree[key]
            for m in members:
                base, name = os.path.split(m.name.rstrip("/"))
                if name == ".wh..wh..opq":
                    continue
                if name.startswith(".wh."):
                    gone = os.path.join(base, name[4:])
                    for key in [k for k in tree if k == gone or k.startswith(gone + "/")]:
                        del tree[key]
                    continue
                data = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
                tree[m.name.rstrip("/")] = (m.type, m.mode, m.uid, m.gid, m.linkname,
                                            hashlib.sha256(data).hexdigest())
    return tree


def test_same_run_same_result_in_every_snapshotter(busybox_layer: BaseLayer,
                                                   _sandbox_runtimes: object,
                                                   tmp_path: Path) -> None:
    results = {}
    for isolation, kind in [("root", "overlay"), ("root", "fuse-overlayfs"), ("root", "copy"),
                            ("rootless", "overlay"), ("rootless", "fuse-overlayfs"),
                            ("rootless", "copy"), ("chroot", "copy")]:
        runtime = _sandbox_runtimes.get(isolation, kind)  # type: ignore[attr-defined]
        if isinstance(runtime, str):
            continue
        lower = runtime.unpack_layer(busybox_layer.chain_id, busybox_layer.blob)
        snap = runtime.new_snapshot([lower])
        try:
            out: list[bytes] = []
            assert runtime.run(snap, RunSpec(("/bin/sh", "-c", SCRIPT)), out.append) == 0, out
            blob = runtime.commit(snap, tmp_path / f"{isolation}-{kind}.tar.gz")
        finally:
            runtime.remove(snap)
        results[f"{isolation}-{kind}"] = _image_tree([busybox_layer.blob, blob.path], tmp_path)
    if len(results) < 2:
        pytest.skip(f"only {list(results)} usable here")
    first = next(iter(results.values()))
    assert first["data/old/c"][0] == tarfile.REGTYPE and "data/old/a" not in first
    assert "data/keep/b" not in first and "data/delete-me" not in first
    assert "data/moved/x" in first and "data/mvdir" not in first
    for name, tree in results.items():
        assert tree == first, name


def test_unchanged_snapshot_has_an_empty_diff(sandbox_runtime: Runtime,
                                             busybox_layer: BaseLayer, tmp_path: Path) -> None:
    lower = sandbox_runtime.unpack_layer(busybox_layer.chain_id, busybox_layer.blob)
    snap = sandbox_runtime.new_snapshot([lower])
    try:
        blob = sandbox_runtime.commit(snap, tmp_path / "empty.tar.gz")
    finally:
        sandbox_runtime.remove(snap)
    with tarfile.open(blob.path) as tar:
        assert tar.getmembers() == []


def _copy_in(ctx: CallContext, name: str) -> list[str]:
    (ctx.root / name).write_text("copied\n")
    ctx.chown(ctx.root / name, 123, 456)
    (ctx.root / "home/bob/.profile").write_text("# changed\n")
    with open(ctx.root / "data/far", "a") as f:
        f.write("changed\n")
    (ctx.root / "beyond").write_text("")
    ctx.chown(ctx.root / "beyond", 100000, 100001)
    seen = sorted(os.listdir(ctx.roots["src"]))
    try:
        (ctx.roots["src"] / "nope").write_text("x")
        seen.append("writable!")
    except OSError:
        pass
    return seen


def test_call_with_roots_and_chown(sandbox_runtime: Runtime, busybox_layer: BaseLayer,
                                   tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("hello")
    os.chmod(tmp_path, 0o755)
    lower = sandbox_runtime.unpack_layer(busybox_layer.chain_id, busybox_layer.blob)
    snap = sandbox_runtime.new_snapshot([lower])
    try:
        seen = sandbox_runtime.call(snap, _copy_in, "copied.txt", roots={"src": [src]})
        blob = sandbox_runtime.commit(snap, tmp_path / "layer.tar.gz")
    finally:
        sandbox_runtime.remove(snap)
    if sandbox_runtime.isolation.namespaced:
        assert seen == ["file"]  # mounted read-only
    else:
        assert seen[0] == "file"
    with tarfile.open(blob.path) as tar:
        entries = {m.name: m for m in tar.getmembers()}
    assert (entries["copied.txt"].uid, entries["copied.txt"].gid) == (123, 456)
    # An unpacked file keeps the image's owner when changed (recorded in single-id mode).
    profile = entries["home/bob/.profile"]
    assert (profile.uid, profile.gid) == (1000, 1000)
    assert (entries["home/bob"].uid, entries["home/bob"].mode) == (1000, 0o750)
    # Ids no sub-id range holds are recorded and still come out right.
    assert (entries["data/far"].uid, entries["data/far"].gid) == (70000, 70000)
    assert (entries["beyond"].uid, entries["beyond"].gid) == (100000, 100001)


def test_unpacked_layer_keeps_setuid_and_owners(sandbox_runtime: Runtime,
                                               busybox_layer: BaseLayer) -> None:
    lower = sandbox_runtime.unpack_layer(busybox_layer.chain_id, busybox_layer.blob)
    assert lower == sandbox_runtime.unpack_layer(busybox_layer.chain_id, busybox_layer.blob)
    st = os.lstat(lower / "data/suid")
    assert stat.S_IMODE(st.st_mode) & 0o4000
    if not sandbox_runtime.isolation.owns_files:
        from ocibuild.fs.ownership import RECORD_NAME, OwnershipRecord

        owner = OwnershipRecord.load(lower.parent / RECORD_NAME).get("home/bob")
        assert owner is not None and (owner.uid, owner.gid) == (1000, 1000)


def test_whiteouts_of_stacked_layers(sandbox_runtime: Runtime, busybox_layer: BaseLayer,
                                     tmp_path: Path) -> None:
    """An upper layer's whiteout and opaque directory hide the lower layer's files in every
    snapshotter (the store keeps them in overlay's own format)."""
    import io

    from ocibuild.digest import Digest

    top = tmp_path / "top.tar"
    with tarfile.open(top, "w") as tar:
        for name, data in (("data/.wh.modify-me", b""), ("data/keep/.wh..wh..opq", b""),
                           ("data/keep/fresh", b"fresh\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    os.chmod(tmp_path, 0o755)
    lower = sandbox_runtime.unpack_layer(busybox_layer.chain_id, busybox_layer.blob)
    upper = sandbox_runtime.unpack_layer(Digest("sha256", uuid_hex()), top)
    snap = sandbox_runtime.new_snapshot([upper, lower])
    try:
        out: list[bytes] = []
        script = "ls /data/keep; test -e /data/modify-me && echo still-there; ls /data/old"
        code = sandbox_runtime.run(snap, RunSpec(("/bin/sh", "-c", script)), out.append) \
            if sandbox_runtime.can_run else 0
        blob = sandbox_runtime.commit(snap, tmp_path / "empty.tar.gz")
    finally:
        sandbox_runtime.remove(snap)
        sandbox_runtime.remove_tree(upper.parent)
    assert (code, b"".join(out)) == (0, b"fresh\na\n")
    with tarfile.open(blob.path) as tar:
        # Nothing but /etc, whose time the RUN's mount stubs (no /etc/hosts here) changed, as
        # in BuildKit's layers; the copy snapshotter's double walk ignores that time.
        stubs = sandbox_runtime.can_run and snap.kind != "copy"
        assert [m.name for m in tar.getmembers()] == (["etc"] if stubs else [])


def uuid_hex() -> str:
    import uuid

    return uuid.uuid4().hex * 2
