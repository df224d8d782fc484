"""Content digests (``sha256:<64 hex>``), and a hashing writer that computes one while streaming."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
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
    """

    def __init__(self, raw: BinaryIO, algorithm: str = "sha256"):
        self.raw = raw
        self._hash = hashlib.new(algorithm)
        self._algorithm = algorithm
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._hash.update(data)
        self.size += len(data)
        self.raw.write(data)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()

    @property
    def digest(self) -> Digest:
        return Digest(self._algorithm, self._hash.hexdigest())


def sha256_file(path: str, bufsize: int = 1 << 20) -> Digest:
    """The sha256 digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return Digest("sha256", h.hexdigest())
