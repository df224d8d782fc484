"""A streaming tar reader of our own: USTAR, PAX (local and global), GNU long names, base-256.

Why not ``tarfile``: it decodes ``SCHILY.xattr.*`` values as text (binary file capabilities do
not survive), seeks on some paths, accepts unlimited extended headers, and hides unknown entry
types behind regular files. This reader yields ``TarEntry`` values with xattrs as raw bytes,
refuses what a layer must not contain (bad checksums, extended headers over 1 MiB, truncated
archives) with ``ContentError``, and never reads ahead more than a block. Sparse members (old
GNU ``S``, PAX 0.0, 0.1 and 1.0, as Go's reader takes them) are files of their real size whose
data ``copy_data_to`` writes at its offsets, the holes left as holes.

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
        # A sparse entry: its data's (offset, length) runs in the file, and the file's size.
        self._sparse: list[tuple[int, int]] | None = None
        self._real_size = 0
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
        """Write the rest of the current entry's data to ``fd``; returns the bytes written (a
        sparse entry's: at their offsets in ``fd``, which then has the entry's size)."""
        if self._sparse is None:
            return self._copy_run(fd, self._remaining, None)
        runs, self._sparse = self._sparse, None
        total = sum(self._copy_run(fd, length, offset) for offset, length in runs)
        os.ftruncate(fd, self._real_size)
        return total

    def _copy_run(self, fd: int, length: int, offset: int | None) -> int:
        """Copy the next ``length`` data bytes to ``fd``: at ``offset``, or where it is."""
        total = 0
        while total < length:
            chunk = self._read_some(min(length - total, _CHUNK))
            self._remaining -= len(chunk)
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
                view = view[written:]
                if offset is not None:
                    offset += written
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
            if flag == b"S":
                local = {**local, **self._old_gnu_sparse(block, header_at)}
            return self._entry(block, flag, size, local, long_name, long_link)

    def _old_gnu_sparse(self, block: bytes, at: int) -> dict[str, bytes]:
        """An old GNU sparse header's map (4 runs in the header, 21 in each extension block
        read after it) and real size, in the PAX 0.1 keys ``_start_sparse`` reads."""
        runs: list[int] = []

        def take(area: bytes, count: int) -> None:
            for i in range(count):
                offset = _number(area[i * 24 : i * 24 + 12], "sparse offset", at)
                length = _number(area[i * 24 + 12 : i * 24 + 24], "sparse length", at)
                if area[i * 24] and (offset or length):
                    runs.extend((offset, length))

        take(block[386:482], 4)
        extended = block[482]
        while extended:
            more = self._read_block()
            if more is None:
                raise ContentError(f"truncated tar stream in a sparse header at offset {at}")
            take(more[:504], 21)
            extended = more[504]
        return {"GNU.sparse.map": ",".join(map(str, runs)).encode(),
                "GNU.sparse.size": str(_number(block[483:495], "sparse size", at)).encode()}

    def _start_sparse(self, pax: dict[str, bytes], size: int, at: int) -> int:
        """Read a sparse entry's map (from the PAX records, or for format 1.0 from the start of
        its data) and return its real size; ``copy_data_to`` then writes its runs."""
        if pax.get("GNU.sparse.major") == b"1" and pax.get("GNU.sparse.minor") == b"0":
            numbers = self._sparse_map_in_data(at)
            real = pax.get("GNU.sparse.realsize", b"")
        else:
            numbers = [n for n in pax.get("GNU.sparse.map", b"").split(b",") if n]
            real = pax.get("GNU.sparse.size", pax.get("GNU.sparse.realsize", b""))
        values = [_pax_int(n, "sparse map", at) for n in numbers]
        real_size = _pax_int(real, "sparse size", at) if real else size
        if len(values) % 2:
            raise ContentError(f"invalid sparse map in tar at offset {at}")
        runs = list(zip(values[::2], values[1::2], strict=True))
        end = 0
        for offset, length in runs:
            if offset < end or length < 0 or offset + length > real_size:
                raise ContentError(f"invalid sparse map in tar at offset {at}")
            end = offset + length
        if sum(length for _, length in runs) != self._remaining:
            raise ContentError(f"sparse map and data size disagree in tar at offset {at}")
        self._sparse, self._real_size = runs, real_size
        return real_size

    def _sparse_map_in_data(self, at: int) -> list[bytes]:
        """PAX sparse 1.0: the count, then each offset and length, one decimal per line, at the
        start of the data, padded to a block."""
        text = b""
        numbers: list[bytes] = []
        want = None
        while want is None or len(numbers) < 1 + 2 * want:
            if self._remaining < BLOCK:
                raise ContentError(f"truncated sparse map in tar at offset {at}")
            text += self._read_exact(BLOCK, "sparse map")
            self._remaining -= BLOCK
            *lines, text = text.split(b"\n")
            numbers.extend(lines)
            if numbers and want is None:
                want = _pax_int(numbers[0], "sparse map", at)
                if not 0 <= want <= self._remaining:
                    raise ContentError(f"invalid sparse map in tar at offset {at}")
        return numbers[1 : 1 + 2 * want]

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
        self._sparse = None
        sparse = flag == b"S" or any(k.startswith("GNU.sparse.") for k in pax)
        if sparse:
            name = pax.get("GNU.sparse.name", name)
        if flag in _FILE_FLAGS or flag == b"S":
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
        mtime_nsec = 0
        if "mtime" in pax:
            mtime, mtime_nsec = _pax_mtime(pax["mtime"], at)
        else:
            mtime = _number(block[136:148], "mtime", at)
        xattrs = tuple(
            sorted((k[len("SCHILY.xattr.") :], v) for k, v in pax.items() if k.startswith("SCHILY.xattr."))
        )
        # As in Go's reader, links, devices, fifos and directories are header-only: a size
        # field on them announces no data.
        self._remaining = size if (flag in _FILE_FLAGS or sparse) and kind is EntryKind.FILE else 0
        self._padding = -self._remaining % BLOCK
        if sparse and kind is EntryKind.FILE:
            size = self._start_sparse(pax, size, at)
        return TarEntry(
            name=os.fsdecode(name.rstrip(b"/")) if name != b"/" else "/",
            kind=kind,
            mode=_number(block[100:108], "mode", at) & 0o7777,
            uid=uid,
            gid=gid,
            size=size if kind is EntryKind.FILE else 0,
            mtime=mtime,
            mtime_nsec=mtime_nsec,
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
    sparse: list[bytes] = []
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
        name = key.decode("utf-8", "surrogateescape")
        if name in ("GNU.sparse.offset", "GNU.sparse.numbytes"):  # sparse 0.0: repeated, in order
            sparse.append(value)
        else:
            records[name] = value
        pos = end
    if sparse:
        records["GNU.sparse.map"] = b",".join(sparse)
    return records


def _pax_int(value: bytes, what: str, at: int) -> int:
    try:
        return int(value)
    except ValueError:
        raise ContentError(f"invalid PAX {what} {value!r} in tar at offset {at}") from None


def _pax_mtime(value: bytes, at: int) -> tuple[int, int]:
    """A PAX ``mtime`` record as ``(seconds, nanoseconds past them)``: Go's ``parsePAXTime``
    (digits past the ninth dropped; ``-1.5`` is 1.5 s before the epoch)."""
    whole, _, frac = value.partition(b".")
    try:
        seconds = int(whole) if whole not in (b"", b"-") else 0
    except ValueError:
        raise ContentError(f"invalid PAX mtime {value!r} in tar at offset {at}") from None
    if not frac.isdigit():
        if frac:
            raise ContentError(f"invalid PAX mtime {value!r} in tar at offset {at}")
        return seconds, 0
    nsec = int(frac[:9].ljust(9, b"0"))
    if whole.startswith(b"-") and nsec:
        return seconds - 1, 1_000_000_000 - nsec
    return seconds, nsec
