"""encode_header's fast path writes the same bytes as its general path, and tar reads them."""

from __future__ import annotations

import io
import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from ocibuild.fs.tarformat import EntryKind, TarEntry, _enc, _encode_general, encode_header

names = st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=60)
paths = st.lists(names, min_size=1, max_size=4).map("/".join)
ids = st.one_of(st.integers(0, 70000), st.integers(0, 1 << 40))


@settings(max_examples=300, deadline=None)
@given(
    name=paths,
    kind=st.sampled_from(list(EntryKind)),
    mode=st.integers(0, 0o7777),
    uid=ids,
    gid=ids,
    size=st.one_of(st.integers(0, 1 << 20), st.integers(0, 1 << 40)),
    mtime=st.one_of(st.integers(0, 2**33), st.integers(-10, 10)),
    link=st.one_of(st.just(""), paths),
    dev=st.integers(0, 4095),
)
def test_fast_path_matches_general_path(
    name: str, kind: EntryKind, mode: int, uid: int, gid: int, size: int, mtime: int, link: str,
    dev: int,
) -> None:
    entry = TarEntry(name=name, kind=kind, mode=mode, uid=uid, gid=gid, size=size, mtime=mtime,
                     linkname=link, devmajor=dev, devminor=dev // 3)
    plain = _enc(name + "/" if kind is EntryKind.DIR else name)
    assert encode_header(entry) == _encode_general(entry, plain, _enc(link))


def test_plain_header_reads_back_with_tarfile() -> None:
    entry = TarEntry(name="usr/bin/tool", kind=EntryKind.FILE, mode=0o4755, uid=1000, gid=50,
                     size=3, mtime=1_700_000_000)
    data = encode_header(entry) + b"abc" + bytes(509) + bytes(1024)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        (member,) = tf.getmembers()
        assert (member.name, member.mode, member.uid, member.gid, member.size, member.mtime) == (
            "usr/bin/tool", 0o4755, 1000, 50, 3, 1_700_000_000)
        assert member.uname == "" and member.gname == ""
        assert tf.extractfile(member).read() == b"abc"  # type: ignore[union-attr]
