"""Laws of the layer writer and unpacker: unpack(write(tree)) == tree, determinism, epochs."""

from __future__ import annotations

import dataclasses
import gzip
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from fs_helpers import CAP_NET_BIND, IS_ROOT, make_file, needs_root
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocibuild.fs import tree_changes, unpack_layer, write_layer
from ocibuild.fs.tarreader import TarReader
from ocibuild.fs.treeview import describe_tree

NAMES = st.sampled_from(["a", "b", "é", "x" * 120, "sp ace", "\udcff raw", ".hidden", "long" * 40])

node = st.fixed_dictionaries(
    {
        "path": st.lists(NAMES, min_size=1, max_size=4),
        "kind": st.sampled_from(["file", "file", "dir", "symlink", "hardlink", "fifo", "char"]),
        "mode": st.sampled_from([0o644, 0o755, 0o4755, 0o2711, 0o1777, 0o600, 0o400]),
        "uid": st.sampled_from([0, 1, 1000, 65534, 3_000_000]),
        "gid": st.sampled_from([0, 5, 1000, 4_000_000]),
        "mtime": st.sampled_from([0, 1, 1_700_000_000, 9_223_372_036]),
        "data": st.binary(max_size=3000),
        "xattr": st.sampled_from([None, b"", b"\x00\xff binary", b"v" * 300]),
        "cap": st.booleans(),
        "link": st.sampled_from(["target", "/abs/path", "../up", "é" * 60]),
    }
)


def build(root: Path, nodes: list[dict]) -> None:  # type: ignore[type-arg]
    files: list[Path] = []
    for spec in nodes:
        path = root.joinpath(*spec["path"])
        if any(p.exists() and not p.is_dir() or p.is_symlink() for p in path.parents):
            continue
        if os.path.lexists(path):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        kind = spec["kind"]
        if kind == "hardlink":
            if not files:
                continue
            os.link(files[len(spec["data"]) % len(files)], path)
            continue
        if kind == "file":
            path.write_bytes(spec["data"])
            files.append(path)
        elif kind == "dir":
            path.mkdir()
        elif kind == "symlink":
            os.symlink(spec["link"], path)
        elif kind == "fifo":
            os.mkfifo(path)
        elif kind == "char":
            if not IS_ROOT:
                continue
            os.mknod(path, 0o600 | 0o020000, os.makedev(1, len(spec["data"]) % 9))
        if kind != "symlink":
            if IS_ROOT:
                os.chown(path, spec["uid"], spec["gid"])
            if spec["xattr"] is not None and kind in ("file", "dir"):
                os.setxattr(path, "user.test", spec["xattr"])
            if spec["cap"] and IS_ROOT and kind == "file":
                os.setxattr(path, "security.capability", CAP_NET_BIND)
            os.chmod(path, spec["mode"] if kind != "dir" else spec["mode"] | 0o700)
        os.utime(path, (spec["mtime"], spec["mtime"]), follow_symlinks=False)
    # Directories last: creating children changed their mtimes.
    for d in sorted(root.rglob("*"), reverse=True):
        if d.is_dir() and not d.is_symlink():
            os.utime(d, (1_234_567_890, 1_234_567_890))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(nodes=st.lists(node, max_size=12), compression=st.sampled_from(["gzip", "zstd", "none"]))
def test_unpack_of_written_tree_is_the_tree(tmp_path: Path, nodes: list, compression: str) -> None:  # type: ignore[type-arg]
    work = tmp_path / f"w{os.urandom(4).hex()}"
    src, empty, out = work / "src", work / "empty", work / "out"
    for d in (src, empty, out):
        d.mkdir(parents=True)
    try:
        build(src, nodes)
        blob = write_layer(tree_changes(empty, src), work / "layer", compression)
        unpack_layer(blob.path, out, chown=IS_ROOT)
        assert describe_tree(out) == describe_tree(src)
        # Python's tarfile reads the same members (an independent reader).
        opener = gzip.open if compression == "gzip" else open
        if compression != "zstd":
            with opener(blob.path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as tf:  # type: ignore[operator]
                names = [m.name.rstrip("/") for m in tf]
            assert sorted(names) == sorted(describe_tree(src))
    finally:
        shutil.rmtree(work)


def sample_tree(root: Path) -> None:
    make_file(root / "etc" / "passwd", b"root:x:0:0::/root:/bin/sh\n")
    make_file(root / "usr" / "bin" / "tool", b"\x7fELF" + bytes(5000), 0o4755, mtime=2_000_000_000)
    os.link(root / "usr" / "bin" / "tool", root / "usr" / "bin" / "tool2")
    os.symlink("tool", root / "usr" / "bin" / "t")
    make_file(root / ("deep/" * 60 + "f"), b"deep")  # 301 bytes: needs PAX
    make_file(root / ("split/" * 30 + "f"), b"split")  # 181 bytes: USTAR prefix split


def test_writes_are_deterministic_and_hash_in_one_pass(tmp_path: Path) -> None:
    src, empty = tmp_path / "src", tmp_path / "empty"
    src.mkdir()
    empty.mkdir()
    sample_tree(src)
    blobs = [
        write_layer(tree_changes(empty, src), tmp_path / f"l{i}", comp, threads=t)
        for i, (comp, t) in enumerate([("gzip", 1), ("gzip", 2), ("zstd", 2), ("none", 1)])
    ]
    assert blobs[0].path.read_bytes() == blobs[1].path.read_bytes()
    for threads in (1, 3):  # zstd's bytes do not depend on the core count
        z = write_layer(tree_changes(empty, src), tmp_path / f"z{threads}", "zstd", threads=threads)
        assert z.digest == blobs[2].digest
    assert blobs[0].digest == blobs[1].digest
    assert len({b.diff_id for b in blobs}) == 1  # same tar whatever the compression
    assert blobs[3].digest == blobs[3].diff_id
    import hashlib

    for b in blobs:
        assert hashlib.sha256(b.path.read_bytes()).hexdigest() == b.digest.hex
        assert b.size == b.path.stat().st_size
    assert blobs[0].media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert blobs[2].media_type == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert blobs[3].media_type == "application/vnd.oci.image.layer.v1.tar"
    # Order of the changes given does not matter.
    shuffled = list(tree_changes(empty, src))[::-1]
    assert write_layer(shuffled, tmp_path / "rev", "none").digest == blobs[3].digest


def test_a_compressed_copy_is_the_same_layer_written_in_the_same_pass(tmp_path: Path) -> None:
    """``also=``: the uncompressed layer and a compressed copy of it from one walk; the copy
    is byte for byte what compressing the layer alone gives."""
    import hashlib

    src, empty = tmp_path / "src", tmp_path / "empty"
    src.mkdir()
    empty.mkdir()
    sample_tree(src)
    for comp in ("gzip", "zstd"):
        alone = write_layer(tree_changes(empty, src), tmp_path / f"alone-{comp}", comp, 9)
        both = write_layer(tree_changes(empty, src), tmp_path / f"plain-{comp}", "none",
                           also=(tmp_path / f"copy-{comp}", comp, 9))
        assert both.copy is not None
        assert both.digest == both.diff_id == alone.diff_id == both.copy.diff_id
        assert both.copy.path.read_bytes() == alone.path.read_bytes()
        assert (both.copy.digest, both.copy.size, both.copy.media_type) == (
            alone.digest, alone.size, alone.media_type)
        assert hashlib.sha256(both.path.read_bytes()).hexdigest() == both.digest.hex
    # A failure leaves neither file behind.
    broken = tmp_path / "missing-dir" / "copy"
    with pytest.raises(OSError):
        write_layer(tree_changes(empty, src), tmp_path / "plain-x", "none",
                    also=(broken, "gzip", None))
    assert not (tmp_path / "plain-x").exists()


def test_a_plain_layer_of_many_batches_is_hashed_as_written(tmp_path: Path) -> None:
    """Uncompressed, the tar is written by the walk and hashed beside it (another thread):
    over several 1 MiB batches, the digest, diff id and size are still those of the file."""
    import hashlib

    src, empty = tmp_path / "src", tmp_path / "empty"
    src.mkdir()
    empty.mkdir()
    sample_tree(src)
    big = os.urandom(3 * (1 << 20) + 777)
    make_file(src / "big", big)
    make_file(src / "zz", b"after the big one")
    blob = write_layer(tree_changes(empty, src), tmp_path / "l", "none")
    data = blob.path.read_bytes()
    assert blob.digest == blob.diff_id
    assert blob.digest.hex == hashlib.sha256(data).hexdigest()
    assert blob.size == len(data) == blob.path.stat().st_size
    with tarfile.open(blob.path) as tf:
        member = tf.getmember("big")
        assert tf.extractfile(member).read() == big  # type: ignore[union-attr]
        assert tf.extractfile("zz").read() == b"after the big one"  # type: ignore[union-attr]


def test_source_date_epoch_clamps_mtimes(tmp_path: Path) -> None:
    src, empty = tmp_path / "src", tmp_path / "empty"
    src.mkdir()
    empty.mkdir()
    sample_tree(src)
    make_file(src / "old", b"x", mtime=100)
    blob = write_layer(tree_changes(empty, src), tmp_path / "l", "none", source_date_epoch=1000)
    with open(blob.path, "rb") as f:
        mtimes = {e.name: e.mtime for e in TarReader(f)}
    assert mtimes["old"] == 100  # older files keep their time
    assert mtimes["usr/bin/tool"] == 1000
    assert max(mtimes.values()) == 1000


def test_layer_layout_matches_containerd_conventions(tmp_path: Path) -> None:
    src, empty = tmp_path / "src", tmp_path / "empty"
    src.mkdir()
    empty.mkdir()
    sample_tree(src)
    blob = write_layer(tree_changes(empty, src), tmp_path / "l", "none")
    with open(blob.path, "rb") as f:
        raw = f.read()
    with tarfile.open(blob.path) as tf:
        members = tf.getmembers()
    names = [m.name for m in members]
    # Parents before children, siblings sorted; the hard link refers to the first path.
    assert names[0] == "deep" and names == sorted(names, key=lambda n: n.split("/"))
    assert names.index("etc") < names.index("etc/passwd") < names.index("usr") < names.index("usr/bin")
    assert names.index("usr/bin/t") < names.index("usr/bin/tool") < names.index("usr/bin/tool2")
    link = next(m for m in members if m.name == "usr/bin/tool2")
    assert link.islnk() and link.linkname == "usr/bin/tool"
    tool = next(m for m in members if m.name == "usr/bin/tool")
    assert tool.mode == 0o4755 and tool.uname == "" and tool.gname == ""
    # Plain USTAR headers (no PAX) where everything fits; the archive ends with 2 zero blocks.
    assert raw[257:265] == b"ustar\x0000"
    # Only the 300-byte path needed a PAX header (the deep paths).
    with_pax = [m for m in members if m.pax_headers]
    assert with_pax and all(set(m.pax_headers) == {"path"} and len(m.name) > 155 for m in with_pax)
    assert not any(m.name.startswith("split") for m in with_pax)
    assert raw.endswith(bytes(1024)) and len(raw) % 512 == 0


@needs_root
def test_security_capability_survives_byte_for_byte(tmp_path: Path) -> None:
    src, empty, out = tmp_path / "src", tmp_path / "empty", tmp_path / "out"
    for d in (src, empty, out):
        d.mkdir()
    f = make_file(src / "ping", b"\x7fELF", 0o755)
    os.chown(f, 0, 0)
    os.setxattr(f, "security.capability", CAP_NET_BIND)
    blob = write_layer(tree_changes(empty, src), tmp_path / "l", "gzip")
    unpack_layer(blob.path, out)
    assert os.getxattr(out / "ping", "security.capability") == CAP_NET_BIND
    with gzip.open(blob.path) as g:
        reader = TarReader(g)  # type: ignore[arg-type]
        (entry,) = [e for e in reader if e.name == "ping"]
    assert entry.xattrs == (("security.capability", CAP_NET_BIND),)


@needs_root
def test_layer_keeps_only_the_xattrs_it_is_told(tmp_path: Path) -> None:
    """A build's layers carry security.capability alone, as BuildKit's differ writes them:
    user.* and ACLs a RUN or COPY set stay out (``xattr_names``)."""
    src, empty = tmp_path / "src", tmp_path / "empty"
    for d in (src, empty):
        d.mkdir()
    f = make_file(src / "ping", b"\x7fELF", 0o755)
    os.setxattr(f, "security.capability", CAP_NET_BIND)
    os.setxattr(f, "user.origin", b"ctx")
    d = src / "data"
    d.mkdir()
    os.setxattr(d, "user.origin", b"run")

    def xattrs(**kwargs: object) -> dict[str, tuple[tuple[str, bytes], ...]]:
        blob = write_layer(tree_changes(empty, src), tmp_path / "l", "none", **kwargs)  # type: ignore[arg-type]
        with open(blob.path, "rb") as raw:
            found = {e.name: e.xattrs for e in TarReader(raw)}  # type: ignore[arg-type]
        os.unlink(blob.path)
        return found

    everything = xattrs()
    assert dict(everything["ping"]) == {"security.capability": CAP_NET_BIND, "user.origin": b"ctx"}
    assert everything["data"] == (("user.origin", b"run"),)
    only = xattrs(xattr_names=frozenset({"security.capability"}))
    assert only["ping"] == (("security.capability", CAP_NET_BIND),)
    assert only["data"] == ()


@pytest.mark.parametrize("chunk", [1, 7, 512, 100_000])
def test_reader_accepts_any_read_sizes(tmp_path: Path, chunk: int) -> None:
    src, empty = tmp_path / "src", tmp_path / "empty"
    src.mkdir()
    empty.mkdir()
    sample_tree(src)
    blob = write_layer(tree_changes(empty, src), tmp_path / "l", "none")

    class Dribble:
        def __init__(self, data: bytes):
            self.data, self.pos = data, 0

        def read(self, n: int = -1) -> bytes:
            n = min(n if n >= 0 else chunk, chunk)
            out = self.data[self.pos : self.pos + n]
            self.pos += len(out)
            return out

    entries = list(TarReader(Dribble(blob.path.read_bytes())))  # type: ignore[arg-type]
    assert [e.name for e in entries][:2] == ["deep", "deep/deep"]


@pytest.mark.parametrize("fmt", ["gnu", "pax", "ustar"])
def test_reads_what_gnu_tar_writes(tmp_path: Path, fmt: str) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    sample_tree(src)
    if fmt == "ustar":  # ustar cannot hold the 300-byte path
        shutil.rmtree(src / "deep")
    make_file(src / "x" / ("n" * 150), b"long name")
    os.symlink("t" * 150, src / "x" / "longlink")
    os.setxattr(src / "etc" / "passwd", "user.k", b"v\x00\xff")
    if fmt == "ustar":
        shutil.rmtree(src / "x")
    import subprocess

    subprocess.run(
        ["tar", f"--format={fmt}", "--xattrs", "--xattrs-include=*", "--numeric-owner",
         "-C", str(src), "-czf", str(tmp_path / "l.tgz"), "."],
        check=True,
    )
    unpack_layer(tmp_path / "l.tgz", out)
    want = describe_tree(src)
    got = describe_tree(out)
    if fmt != "pax":  # only PAX carries xattrs
        want = {k: dataclasses.replace(v, xattrs=()) for k, v in want.items()}
        got = {k: dataclasses.replace(v, xattrs=()) for k, v in got.items()}
    assert got == want
