"""A streaming tar reader of our own: USTAR, PAX (local and global), GNU long names, base-256.

Why not ``tarfile``: it decodes ``SCHILY.xattr.*`` values as text (binary file capabilities do
not survive), seeks on some paths, accepts unlimited extended headers, and hides sparse and
unknown entry types behind regular files. This reader yields ``TarEntry`` values with xattrs as
raw bytes, refuses what a layer must not contain (sparse files, bad checksums, extended headers
over 1 MiB, truncated archives) with ``ContentError``, and never reads ahead more than a block.

Usage::

    reader = TarReader(stream)
    for entry in reader:
        reader.copy_data_to(fd)   # optional; unread data is skipped on the next iteration
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ocibuild.errors import ContentError
from ocibuild.fs.compression import Readable
from ocibuild.fs.tarformat import BLOCK, MAX_SPECIAL_SIZE, EntryKind, TarEntry

_CHUNK = 1 << 20
_KINDS = {k.value: k for k in EntryKind}
_FILE_FLAGS = (b"0", b"\x00", b"7")  # 7 = contiguous file, a regular file everywhere else


class TarReader:
    """Iterates the members of an uncompressed tar stream. The caller owns ``stream``."""

    def __init__(self, stream: Readable):
        self._stream = stream
        self._remaining = 0  # data bytes of the current entry not yet consumed
        self._padding = 0
        self.offset = 0  # bytes consumed so far, for error messages

    def __iter__(self) -> Iterator[TarEntry]:
        while True:
            self._skip_rest()
            entry = self._next()
            if entry is None:
                return
            yield entry

    # -- data of the current entry -------------------------------------------------------------

    def copy_data_to(self, fd: int) -> int:
        """Write the rest of the current entry's data to ``fd``; returns the bytes written."""
        total = 0
        while self._remaining:
            chunk = self._read_some(min(self._remaining, _CHUNK))
            self._remaining -= len(chunk)
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            total += len(chunk)
        return total

    # -- header parsing ------------------------------------------------------------------------

    def _next(self) -> TarEntry | None:
        local: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            block = self._read_block()
            if block is None:
                return None
            if block.count(0) == BLOCK:
                return None  # end-of-archive marker; whatever follows is padding
            header_at = self.offset - BLOCK
            _verify_checksum(block, header_at)
            flag = block[156:157]
            size = _number(block[124:136], "size", header_at)
            if flag in (b"x", b"g", b"L", b"K"):
                if size > MAX_SPECIAL_SIZE:
                    raise ContentError(
                        f"hostile layer: extended tar header of {size} bytes at offset "
                        f"{header_at} (limit {MAX_SPECIAL_SIZE})"
                    )
                payload = self._read_exact(size, "extended header")
                self._read_exact(-size % BLOCK, "padding")
                if flag == b"x":
                    local.update(_parse_pax(payload, header_at))
                elif flag == b"g":
                    # Parsed for its validity only: Go's reader hands a global header to its
                    # caller as an entry of its own, and moby's untar and containerd's applier
                    # skip it; it sets nothing on the members after it.
                    _parse_pax(payload, header_at)
                elif flag == b"L":
                    long_name = payload.split(b"\x00", 1)[0]
                else:
                    long_link = payload.split(b"\x00", 1)[0]
                continue
            return self._entry(block, flag, size, local, long_name, long_link)

    def _entry(
        self,
        block: bytes,
        flag: bytes,
        size: int,
        pax: dict[str, bytes],
        long_name: bytes | None,
        long_link: bytes | None,
    ) -> TarEntry:
        at = self.offset - BLOCK
        name = _cstr(block[0:100])
        if block[257:263] == b"ustar\x00":  # POSIX ustar: the prefix field extends the name
            prefix = _cstr(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        if long_name is not None:
            name = long_name
        link = long_link if long_link is not None else _cstr(block[157:257])
        name = pax.get("path", name)
        link = pax.get("linkpath", link)
        if any(k.startswith("GNU.sparse.") for k in pax) or flag == b"S":
            raise ContentError(f"unsupported sparse file in tar at offset {at}")
        if flag in _FILE_FLAGS:
            # Go's reader: only the old "\0" type names a directory with a trailing slash.
            kind = EntryKind.DIR if flag == b"\x00" and name.endswith(b"/") else EntryKind.FILE
        elif flag in _KINDS:
            kind = _KINDS[flag]
        else:
            raise ContentError(f"unsupported tar entry type {flag!r} at offset {at}")
        if "size" in pax:
            size = _pax_int(pax["size"], "size", at)
        if size < 0:
            raise ContentError(f"negative size in tar header at offset {at}")
        uid = _pax_int(pax["uid"], "uid", at) if "uid" in pax else _number(block[108:116], "uid", at)
        gid = _pax_int(pax["gid"], "gid", at) if "gid" in pax else _number(block[116:124], "gid", at)
        if "mtime" in pax:
            mtime = _pax_mtime(pax["mtime"], at)
        else:
            mtime = _number(block[136:148], "mtime", at)
        xattrs = tuple(
            sorted((k[len("SCHILY.xattr.") :], v) for k, v in pax.items() if k.startswith("SCHILY.xattr."))
        )
        # As in Go's reader, links, devices, fifos and directories are header-only: a size
        # field on them announces no data.
        self._remaining = size if flag in _FILE_FLAGS and kind is EntryKind.FILE else 0
        self._padding = -self._remaining % BLOCK
        return TarEntry(
            name=os.fsdecode(name.rstrip(b"/")) if name != b"/" else "/",
            kind=kind,
            mode=_number(block[100:108], "mode", at) & 0o7777,
            uid=uid,
            gid=gid,
            size=size if kind is EntryKind.FILE else 0,
            mtime=mtime,
            linkname=os.fsdecode(link),
            devmajor=_number(block[329:337], "devmajor", at) if kind in _DEVS else 0,
            devminor=_number(block[337:345], "devminor", at) if kind in _DEVS else 0,
            xattrs=xattrs,
        )

    # -- raw input -----------------------------------------------------------------------------

    def _skip_rest(self) -> None:
        todo = self._remaining + self._padding
        while todo:
            todo -= len(self._read_some(min(todo, _CHUNK)))
        self._remaining = self._padding = 0

    def _read_block(self) -> bytes | None:
        first = self._stream.read(BLOCK)
        if not first:
            return None  # a stream without end-of-archive blocks: tolerated, like GNU tar
        block = first
        while len(block) < BLOCK:
            more = self._stream.read(BLOCK - len(block))
            if not more:
                raise ContentError(f"truncated tar stream in header at offset {self.offset}")
            block += more
        self.offset += BLOCK
        return block

    def _read_some(self, n: int) -> bytes:
        data = self._stream.read(n)
        if not data and n:
            raise ContentError(f"truncated tar stream at offset {self.offset}")
        self.offset += len(data)
        return data

    def _read_exact(self, n: int, what: str) -> bytes:
        parts = []
        left = n
        while left:
            chunk = self._stream.read(left)
            if not chunk:
                raise ContentError(f"truncated tar stream in {what} at offset {self.offset}")
            parts.append(chunk)
            left -= len(chunk)
            self.offset += len(chunk)
        return b"".join(parts)


_DEVS = (EntryKind.CHAR, EntryKind.BLOCK)


def _cstr(field: bytes) -> bytes:
    return field.split(b"\x00", 1)[0]


def _number(field: bytes, what: str, at: int) -> int:
    if field[:1] and field[0] & 0x80:  # GNU base-256
        if field[0] & 0x40:  # negative: the whole field is two's complement
            return int.from_bytes(field, "big", signed=True)
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise ContentError(f"invalid {what} field {field!r} in tar header at offset {at}") from None


def _verify_checksum(block: bytes, at: int) -> None:
    want = _number(block[148:156], "checksum", at)
    unsigned = sum(block[:148]) + 8 * 0x20 + sum(block[156:])
    if want == unsigned:
        return
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 8 * 0x20
    if want != signed:
        raise ContentError(f"invalid tar header checksum at offset {at}: not a tar stream?")


def _parse_pax(payload: bytes, at: int) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(payload):
        if payload[pos] == 0:
            break  # NUL padding some writers leave
        space = payload.find(b" ", pos)
        try:
            length = int(payload[pos:space])
        except ValueError:
            raise ContentError(f"invalid PAX record in tar at offset {at}") from None
        end = pos + length
        if space < 0 or length <= 0 or end > len(payload) or payload[end - 1 : end] != b"\n":
            raise ContentError(f"invalid PAX record in tar at offset {at}")
        key, eq, value = payload[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise ContentError(f"invalid PAX record in tar at offset {at}")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records


def _pax_int(value: bytes, what: str, at: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise ContentError(f"invalid PAX {what} {value!r} in tar at offset {at}") from None


def _pax_mtime(value: bytes, at: int) -> int:
    whole = value.split(b".", 1)[0]
    try:
        return int(whole) if whole not in (b"", b"-") else 0
    except ValueError:
        raise ContentError(f"invalid PAX mtime {value!r} in tar at offset {at}") from None
