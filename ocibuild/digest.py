"""Content digests (``sha256:<64 hex>``), a hashing writer that computes one while streaming, and
``write_verified``: the one way a blob file is written (temporary file, hashed as written,
checked, renamed into place), shared by the store and the registry's copy spool.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ocibuild.errors import ContentError

_HEX = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


@dataclass(frozen=True, order=True)
class Digest:
    """A validated content digest. ``str(d)`` is the ``algorithm:hex`` form."""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        m = _DIGEST_RE.match(text)
        if not m:
            raise ContentError(f"invalid digest {text!r}: want algorithm:hex")
        algorithm, hexpart = m.groups()
        want = _HEX.get(algorithm)
        if want is None:
            raise ContentError(f"invalid digest {text!r}: unsupported algorithm {algorithm!r}")
        if len(hexpart) != want or not re.fullmatch(r"[0-9a-f]+", hexpart):
            raise ContentError(f"invalid digest {text!r}: want {want} lower-case hex digits")
        return cls(algorithm, hexpart)

    @classmethod
    def of_bytes(cls, data: bytes) -> Digest:
        return cls("sha256", hashlib.sha256(data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    @property
    def encoded(self) -> str:
        return self.hex

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class DigestingWriter:
    """Wraps a binary file: counts and hashes every byte written through it.

    The caller owns ``raw`` and closes it; ``digest`` and ``size`` are final once writing ends.
    With ``limit``, a write that would take the total past it raises ``ContentError`` (a
    registry sending more than the descriptor's size) before any of it is written.
    """

    def __init__(self, raw: BinaryIO, algorithm: str = "sha256", limit: int | None = None):
        self.raw = raw
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self._limit = limit
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        if self._limit is not None and self.size + n > self._limit:
            raise ContentError(f"blob is larger than the expected {self._limit} bytes")
        self._hash.update(data)
        self.size += n
        self.raw.write(data)
        return n

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        self.raw.flush()

    @property
    def digest(self) -> Digest:
        return Digest(self._algorithm, self._hash.hexdigest())


@contextlib.contextmanager
def write_verified(
    tmp_dir: Path,
    commit: Callable[[Path, Digest], None],
    expected: Digest | None = None,
    size: int | None = None,
    *,
    prefix: str = "blob-",
    durable: bool = False,
) -> Iterator[DigestingWriter]:
    """Write a blob through a temporary file in ``tmp_dir``; on clean exit check it against
    ``expected``/``size`` (``ContentError`` on mismatch), fsync it when ``durable``, and hand it
    to ``commit(tmp, digest)``, which renames it into place. On any error, in the block or in
    ``commit``, the temporary file is removed: nothing half-written is ever left behind.
    """
    algorithm = expected.algorithm if expected is not None else "sha256"
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            w = DigestingWriter(f, algorithm, size)
            yield w
            got = w.digest
            if size is not None and w.size != size:
                raise ContentError(f"blob {expected or got}: got {w.size} bytes, want {size}")
            if expected is not None and got != expected:
                raise ContentError(f"blob digest mismatch: got {got}, want {expected}")
            if durable:
                f.flush()
                os.fsync(f.fileno())
        commit(Path(tmp), got)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
