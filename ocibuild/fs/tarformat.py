"""Tar entries and their header bytes, written the way Go's ``archive/tar`` writes them.

BuildKit's layers come from containerd's diff writer, which sets ``Format = PAX`` on every
header, truncates mtimes to seconds, drops atime/ctime, and leaves the choice of USTAR or PAX to
Go's writer. Go emits a plain USTAR header whenever every field fits (long names split into the
155-byte prefix), and otherwise a ``x`` extended header named ``<dir>/PaxHeaders.0/<base>``
with its records sorted by key, followed by a USTAR header whose fields hold an ASCII-only,
truncated best effort. We follow those rules byte for byte, so the only differences from a
BuildKit layer of the same tree are the ones that come from the tree. ``uname``/``gname`` are
left empty: ids are numeric, the image's own ``/etc/passwd`` names them.

Names are ``str`` holding the file system's bytes through ``os.fsdecode`` (surrogateescape), so
any Linux file name round-trips.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

BLOCK = 512
# Go's limit on extended-header payloads; we refuse larger ones when reading, too.
MAX_SPECIAL_SIZE = 1 << 20


class EntryKind(enum.Enum):
    """The tar type flag of an entry (regular files are ``0``, never the old ``\\0``)."""

    FILE = b"0"
    HARDLINK = b"1"
    SYMLINK = b"2"
    CHAR = b"3"
    BLOCK = b"4"
    DIR = b"5"
    FIFO = b"6"


@dataclass(frozen=True)
class TarEntry:
    """One tar member's metadata. ``name`` is clean and relative, without a trailing ``/``.

    ``mode`` holds permission bits plus setuid/setgid/sticky (no file-type bits). ``xattrs``
    are sorted ``(name, raw value)`` pairs, written as ``SCHILY.xattr.<name>`` PAX records.
    ``mtime_nsec``: the nanoseconds past ``mtime`` a PAX ``mtime`` record gave (the reader
    sets it, the writer writes whole seconds).
    """

    name: str
    kind: EntryKind
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime: int = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = field(default=())
    mtime_nsec: int = 0


_NAME, _PREFIX = 100, 155
_OCTAL_MAX = {8: 0o7777777, 12: 0o77777777777}


def encode_header(entry: TarEntry) -> bytes:
    """The header block(s) for ``entry``: one USTAR block, or a PAX header + payload + block."""
    name = _enc(entry.name + "/" if entry.kind is EntryKind.DIR else entry.name)
    link = _enc(entry.linkname)
    if (
        # The common case, written without the general path's bookkeeping (a layer of 20,000
        # files spends a noticeable share of its CPU time here): every field fits USTAR.
        len(name) <= _NAME
        and len(link) <= _NAME
        and name.isascii()
        and link.isascii()
        and not entry.xattrs
        and 0 <= entry.uid <= 0o7777777
        and 0 <= entry.gid <= 0o7777777
        and 0 <= entry.size <= 0o77777777777
        and 0 <= entry.mtime <= 0o77777777777
        and 0 <= entry.devmajor <= 0o7777777
        and 0 <= entry.devminor <= 0o7777777
        and 0 <= entry.mode <= 0o7777777
    ):
        size = entry.size if entry.kind is EntryKind.FILE else 0
        block = _USTAR_FAST.pack(
            name,
            b"%07o\x00%07o\x00%07o\x00%011o\x00%011o\x00        "
            % (entry.mode, entry.uid, entry.gid, size, entry.mtime),
            entry.kind.value,
            link,
            b"ustar\x0000",
            b"%07o\x00%07o\x00" % (entry.devmajor, entry.devminor),
        )
        return block[:148] + b"%06o\x00 " % sum(block) + block[156:]
    return _encode_general(entry, name, link)


def _encode_general(entry: TarEntry, name: bytes, link: bytes) -> bytes:
    pax: dict[str, bytes] = {}
    prefix = b""
    if len(link) > _NAME or not link.isascii():
        pax["linkpath"] = link
    for key, value, width in (
        ("uid", entry.uid, 8),
        ("gid", entry.gid, 8),
        ("size", entry.size, 12),
        ("mtime", entry.mtime, 12),
    ):
        if value < 0 or value > _OCTAL_MAX[width]:
            pax[key] = str(value).encode()
    for xname, xvalue in entry.xattrs:
        pax["SCHILY.xattr." + xname] = xvalue
    if len(name) > _NAME or not name.isascii():
        # Go splits a long name into prefix/name only when the header can stay plain USTAR.
        split = _split_ustar(name) if name.isascii() and not pax else None
        if split is not None:
            prefix, name = split
        else:
            pax["path"] = name
    out = bytearray()
    if pax:
        payload = _pax_payload(pax)
        if len(payload) > MAX_SPECIAL_SIZE:
            raise ValueError(f"PAX header of {entry.name!r} is larger than 1 MiB")
        base_dir, _, base = entry.name.rpartition("/")
        pax_name = "/".join(p for p in (base_dir, "PaxHeaders.0", base) if p)
        out += _ustar(_enc(pax_name), b"", b"x", 0, 0, 0, len(payload), 0, b"", 0, 0)
        out += payload
        out += bytes(-len(payload) % BLOCK)
        name, prefix = _ascii(name), b""
        link = _ascii(link)
    out += _ustar(
        name,
        prefix,
        entry.kind.value,
        entry.mode,
        entry.uid,
        entry.gid,
        entry.size if entry.kind is EntryKind.FILE else 0,
        entry.mtime,
        link,
        entry.devmajor,
        entry.devminor,
    )
    return bytes(out)


def _enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _ascii(raw: bytes) -> bytes:
    # Go's toASCII: the USTAR fields of a PAX entry keep only the ASCII bytes, truncated.
    return bytes(b for b in raw if b < 0x80)


def _split_ustar(name: bytes) -> tuple[bytes, bytes] | None:
    """Go's ``splitUSTARPath``: prefix and name, or None when the name cannot be split."""
    length = len(name)
    if length <= _NAME:
        return None
    if length > _PREFIX + 1:
        length = _PREFIX + 1
    elif name[length - 1 : length] == b"/":
        length -= 1
    i = name.rfind(b"/", 0, length)
    nlen, plen = len(name) - i - 1, i
    if i <= 0 or nlen > _NAME or nlen == 0 or plen > _PREFIX:
        return None
    return name[:i], name[i + 1 :]


def _pax_payload(records: dict[str, bytes]) -> bytes:
    out = bytearray()
    for key in sorted(records):
        body = b" " + key.encode("utf-8", "surrogateescape") + b"=" + records[key] + b"\n"
        # The length prefix counts itself: grow it until it is consistent.
        size = len(body) + 1
        while len(str(size)) + len(body) != size:
            size = len(str(size)) + len(body)
        out += str(size).encode() + body
    return bytes(out)


def _octal(value: int, width: int) -> bytes:
    if width == 8:
        if 0 <= value <= 0o7777777:
            return b"%07o\x00" % value
    elif 0 <= value <= _OCTAL_MAX.get(width, 8 ** (width - 1) - 1):
        return b"%0*o\x00" % (width - 1, value)
    return b"%0*o\x00" % (width - 1, 0)  # Go's last resort when the value went to a PAX record


# name mode uid gid size mtime chksum typeflag linkname magic version uname gname devmajor
# devminor prefix, padded to 512: "s" fields are NUL-padded and truncated, as USTAR wants.
_USTAR = struct.Struct("100s8s8s8s12s12s8s1s100s6s2s32s32s8s8s155s12x")
# The same block with mode..checksum as one field, magic+version, empty uname and gname,
# devmajor+devminor, empty prefix.
_USTAR_FAST = struct.Struct("100s56s1s100s8s64x16s167x")


def _ustar(
    name: bytes,
    prefix: bytes,
    typeflag: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    link: bytes,
    devmajor: int,
    devminor: int,
) -> bytes:
    block = _USTAR.pack(
        name,
        _octal(mode, 8),
        _octal(uid, 8),
        _octal(gid, 8),
        _octal(size, 12),
        _octal(mtime, 12),
        b" " * 8,  # checksum placeholder, counted as spaces
        typeflag,
        link,
        b"ustar\x00",
        b"00",
        b"",  # uname
        b"",  # gname
        _octal(devmajor, 8),
        _octal(devminor, 8),
        prefix,
    )
    return block[:148] + b"%06o\x00 " % sum(block) + block[156:]
