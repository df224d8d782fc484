"""A temporary, verified blob directory for ``copy``: the store protocol the client writes to
(``has``/``path``/``writer``) without the cache's fsyncs and locks (its contents die with the
command, so durability buys nothing).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ocibuild.digest import Digest, DigestingWriter, write_verified


class Spool:
    """Blobs under a temporary directory, removed by ``close()``."""

    def __init__(self, parent: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ocibuild-copy-", dir=parent))

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, digest: Digest) -> Path:
        return self.root / f"{digest.algorithm}-{digest.hex}"

    def has(self, digest: Digest) -> bool:
        return self.path(digest).is_file()

    def writer(
        self, expected: Digest | None = None, size: int | None = None
    ) -> contextlib.AbstractContextManager[DigestingWriter]:
        """Like ``BlobStore.writer`` (verified on clean exit, nothing left on error), without
        the fsyncs."""
        return write_verified(self.root, self._commit, expected, size, prefix=".part-")

    def _commit(self, tmp: Path, digest: Digest) -> None:
        os.rename(tmp, self.path(digest))
