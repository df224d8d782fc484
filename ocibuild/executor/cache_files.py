"""Remembered content digests of context files, so a rebuild need not read a large context
again to find its COPY steps' keys (BuildKit keeps such checksums with the file metadata too).

``<store>/buildcache/files/<sha256 of the context dir>.json`` maps each file's path to the
stat it had when hashed (inode, device, size, mtime and ctime in ns) and its SHA-256. A
digest is reused only when all of that is unchanged; ctime changes with any write, chmod or
``touch``, even one that sets mtime back. A file changed within the same clock tick as its
hashing could keep its ctime, so files changed in the last ``RACY_NS`` are hashed but not
remembered. The file is rewritten whole (temp + rename) at the end of a build; a missing or
unreadable one only costs reading the files again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ocibuild.store import buildcache

RACY_NS = 2_000_000_000
MAX_ENTRIES = 200_000  # past this the remembered set restarts from what this build used
_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """SHA-256 hex of a file's content, or ``unreadable <errno>`` (a stable stand-in: the
    step that copies the file reports the error)."""
    d = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                d.update(chunk)
    except OSError as exc:
        return f"unreadable {exc.errno}"
    return d.hexdigest()


class FileDigests:
    """The remembered digests of the files under one context dir (thread safe)."""

    def __init__(self, store: Any, root: Path):
        name = hashlib.sha256(os.fsencode(os.path.realpath(root))).hexdigest()
        self._store = store
        self.path = store.root / buildcache.AREA / "files" / f"{name}.json"
        self._lock = threading.Lock()
        self._old: dict[str, list[Any]] = {}
        self._used: dict[str, list[Any]] = {}
        self._changed = False
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text())
            if isinstance(data, dict):
                self._old = data

    def digest(self, path: str | Path, st: os.stat_result) -> str:
        sig = [st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        key = os.fsdecode(path)
        with self._lock:
            known = self._old.get(key)
        if isinstance(known, list) and len(known) == 6 and known[:5] == sig:
            with self._lock:
                self._used[key] = known
            return str(known[5])
        value = file_digest(path)
        if not value.startswith("unreadable") and time.time_ns() - st.st_ctime_ns > RACY_NS:
            with self._lock:
                self._used[key] = [*sig, value]
                self._changed = True
        return value

    def save(self) -> None:
        """Write what this build hashed or reused (merged with the rest, up to a limit)."""
        with self._lock:
            if not self._changed:
                return
            merged = {**self._old, **self._used}
            if len(merged) > MAX_ENTRIES:
                merged = dict(self._used)
            body = json.dumps(merged, separators=(",", ":"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="files-", dir=self._store.root / "tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
            os.rename(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
