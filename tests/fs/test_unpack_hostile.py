"""Hostile layers: nothing they contain may create, change or remove anything outside the root."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from fs_helpers import IS_ROOT

from ocibuild.errors import ContentError
from ocibuild.fs import unpack_layer
from ocibuild.fs.tarformat import BLOCK, EntryKind, TarEntry, encode_header


def tar(*members: TarEntry | tuple[TarEntry, bytes]) -> bytes:
    """A raw tar of the given entries, names written exactly as given (no cleaning)."""
    out = bytearray()
    for m in members:
        entry, data = m if isinstance(m, tuple) else (m, b"")
        if data:
            entry = TarEntry(**{**entry.__dict__, "size": len(data)})
        out += encode_header(entry) + data + bytes(-len(data) % BLOCK)
    return bytes(out + bytes(2 * BLOCK))


def F(name: str, data: bytes = b"evil") -> tuple[TarEntry, bytes]:  # noqa: N802
    return (TarEntry(name, EntryKind.FILE, mode=0o644), data)


def L(name: str, target: str) -> TarEntry:  # noqa: N802
    return TarEntry(name, EntryKind.SYMLINK, mode=0o777, linkname=target)


def H(name: str, target: str) -> TarEntry:  # noqa: N802
    return TarEntry(name, EntryKind.HARDLINK, mode=0o644, linkname=target)


def D(name: str) -> TarEntry:  # noqa: N802
    return TarEntry(name, EntryKind.DIR, mode=0o755)


class Jail:
    """``root`` two levels below ``top``, with a sentinel directory and file outside it."""

    def __init__(self, top: Path):
        self.top = top
        self.root = top / "a" / "b" / "root"
        self.root.mkdir(parents=True)
        self.sentinel = top / "sentinel"
        self.sentinel.mkdir()
        (self.sentinel / "keep").write_text("keep")
        self.before = self.outside()

    def outside(self) -> dict[str, tuple[int, bytes]]:
        seen = {}
        for dirpath, dirnames, filenames in os.walk(self.top):
            if Path(dirpath) == self.root:
                dirnames.clear()
                continue
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                if p == self.root:
                    continue
                st = os.lstat(p)
                data = p.read_bytes() if p.is_file() and not p.is_symlink() else b""
                seen[str(p)] = (st.st_mode, data)
        return seen

    def unpack(self, blob: bytes, **kw: object) -> None:
        try:
            kw.setdefault("chown", IS_ROOT)
            unpack_layer(io.BytesIO(blob), self.root, **kw)  # type: ignore[arg-type]
        finally:
            assert self.outside() == self.before, "a hostile layer changed files outside the root"


@pytest.fixture
def jail(tmp_path: Path) -> Jail:
    return Jail(tmp_path)


@pytest.mark.parametrize("name", ["../evil", "../../evil", "a/../../evil", "./../evil", "x/../../../../evil"])
def test_dotdot_names_stay_inside(jail: Jail, name: str) -> None:
    # Clamped at the root, as containerd's applier and BuildKit's chrooted untar do.
    jail.unpack(tar(F(name, b"x")))
    assert (jail.root / "evil").read_bytes() == b"x"


def test_absolute_names_land_inside_like_containerd(jail: Jail) -> None:
    jail.unpack(tar(F("/abs/file", b"x"), F("//double", b"y"), F("a/../harmless", b"z")))
    assert (jail.root / "abs" / "file").read_bytes() == b"x"
    assert (jail.root / "double").read_bytes() == b"y"
    assert (jail.root / "harmless").read_bytes() == b"z"


@pytest.mark.parametrize(
    "target", ["../../..", "/", "../../../sentinel", "SENTINEL", "/../../..", "loop/../../.."]
)
def test_write_through_symlink_stays_inside(jail: Jail, target: str) -> None:
    target = target.replace("SENTINEL", str(jail.sentinel))
    jail.unpack(tar(L("link", target), F("link/keep", b"overwritten?"), F("link/new")))
    written = [p for p in jail.root.rglob("*") if p.is_file()]
    assert {p.name for p in written} == {"keep", "new"}
    assert (jail.sentinel / "keep").read_text() == "keep"


def test_symlink_chain_escape_stays_inside(jail: Jail) -> None:
    jail.unpack(
        tar(L("a", "b/../.."), D("b"), L("b/c", "../../../.."), L("d", "a/b/c"), F("d/evil"))
    )
    assert (jail.sentinel / "keep").read_text() == "keep"


def test_entry_replaces_an_existing_symlink_instead_of_following_it(jail: Jail) -> None:
    os.symlink(jail.sentinel / "keep", jail.root / "f")
    jail.unpack(tar(F("f", b"new")))
    assert not (jail.root / "f").is_symlink()
    assert (jail.root / "f").read_bytes() == b"new"


@pytest.mark.parametrize("target", ["../../../sentinel/keep", "../outside", "/../../sentinel/keep"])
def test_hard_link_escape_is_refused(jail: Jail, target: str) -> None:
    with pytest.raises(ContentError):
        jail.unpack(tar(H("h", target)))


def test_hard_link_through_symlinked_dir_resolves_inside(jail: Jail) -> None:
    # dir -> the sentinel (absolute) must mean root/<sentinel>, which does not exist.
    with pytest.raises(ContentError, match="not an earlier entry"):
        jail.unpack(tar(L("dir", str(jail.sentinel)), H("h", "dir/keep")))
    with pytest.raises(ContentError):
        jail.unpack(tar(L("etc", "/etc"), H("h", "etc/passwd")))


def test_hard_link_to_a_symlink_links_the_symlink(jail: Jail) -> None:
    jail.unpack(tar(L("s", str(jail.sentinel / "keep")), H("h", "s"), F("h", b"replaced")))
    assert (jail.root / "h").read_bytes() == b"replaced"
    assert os.readlink(jail.root / "s") == str(jail.sentinel / "keep")


def test_rewriting_a_hard_linked_name_does_not_write_through(jail: Jail) -> None:
    jail.unpack(tar(F("f", b"original"), H("g", "f"), F("g", b"new")))
    assert (jail.root / "f").read_bytes() == b"original"
    assert (jail.root / "g").read_bytes() == b"new"


@pytest.mark.parametrize("name", [".wh..", ".wh...", "a/.wh..", ".wh."])
def test_whiteouts_of_dotdot_are_refused(jail: Jail, name: str) -> None:
    with pytest.raises(ContentError):
        jail.unpack(tar(F(name, b"")))


def test_whiteouts_and_opaque_markers_through_symlinks_stay_inside(jail: Jail) -> None:
    jail.unpack(
        tar(
            L("d", str(jail.sentinel)),
            F("d/.wh.keep", b""),
            F("d/.wh..wh..opq", b""),
            L("up", "../../.."),
            F("up/.wh.sentinel", b""),
            F("up/.wh..wh..opq", b""),
        )
    )
    assert (jail.sentinel / "keep").read_text() == "keep"


def test_duplicate_entries_last_wins(jail: Jail) -> None:
    jail.unpack(
        tar(F("f", b"one"), F("f", b"two"), F("d", b"file"), D("d"), F("d/x", b"x"), D("e"), F("e", b"e"))
    )
    assert (jail.root / "f").read_bytes() == b"two"
    assert (jail.root / "d" / "x").read_bytes() == b"x"
    assert (jail.root / "e").read_bytes() == b"e"


def test_huge_pax_header_is_refused(jail: Jail) -> None:
    big = "x" * (1 << 20)
    header = b"%d path=%s\n" % (len(big) + 20, big.encode())
    raw = bytearray(encode_header(TarEntry("PaxHeaders.0/x", EntryKind.FILE, size=len(header))))
    raw[156:157] = b"x"
    raw[148:156] = b" " * 8
    raw[148:155] = b"%06o\x00" % sum(raw)
    blob = bytes(raw) + header + bytes(-len(header) % BLOCK) + bytes(2 * BLOCK)
    with pytest.raises(ContentError, match="extended tar header"):
        jail.unpack(blob)


def test_corrupt_and_truncated_tars_are_refused(jail: Jail) -> None:
    good = tar(F("f", b"data" * 300))
    bad = bytearray(good)
    bad[0:1] = b"g"  # checksum no longer matches
    with pytest.raises(ContentError, match="checksum"):
        jail.unpack(bytes(bad))
    with pytest.raises(ContentError, match="truncated"):
        jail.unpack(good[:700])


def test_a_sparse_member_whose_map_wants_more_data_is_refused(jail: Jail) -> None:
    raw = bytearray(encode_header(TarEntry("s", EntryKind.FILE)))
    raw[156:157] = b"S"  # old GNU sparse: one run of 8 bytes at 0, real size 8, no data
    raw[386:398], raw[398:410], raw[483:495] = b"%011o\x00" % 0, b"%011o\x00" % 8, b"%011o\x00" % 8
    raw[148:156] = b" " * 8
    raw[148:155] = b"%06o\x00" % sum(raw)
    with pytest.raises(ContentError, match="sparse"):
        jail.unpack(bytes(raw) + bytes(1024))
