"""The build context: a directory (or a tar from stdin), filtered by ``.dockerignore``.

Ignore files follow Docker's rules (moby/patternmatcher + ignorefile): ``#`` comments, blank
lines skipped, surrounding spaces trimmed, ``filepath.Clean``, a leading ``/`` dropped, ``!``
re-includes, the last matching pattern wins, ``**`` crosses directories, and a path is ignored
when the pattern matches it or one of its parent directories. ``<Dockerfile>.dockerignore`` next
to the Dockerfile wins over the context's ``.dockerignore``. As in BuildKit, the Dockerfile and
the ignore file themselves are excluded when a pattern matches them (the Dockerfile is read
separately, by ``load_dockerfile``).

An ignored directory is still *visible* when a ``!`` pattern re-includes something below it:
it then appears holding only the re-included entries, like BuildKit's transferred context.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

from ocibuild.errors import ContentError, UsageError
from ocibuild.fs.ignore import IgnoreMatcher, read_ignore_file

__all__ = ["BuildContext", "IgnoreMatcher", "load_dockerfile", "open_context", "read_ignore_file"]

@dataclass(frozen=True)
class BuildContext:
    """The context directory and its ignore rules. ``visible(rel)`` says whether a path
    (slash-separated, relative to ``root``) is part of the context as BuildKit sends it."""

    root: Path
    ignore: IgnoreMatcher = field(default_factory=lambda: IgnoreMatcher(()))
    from_stdin: bool = False  # a tar from stdin: ``-f`` names a file inside it (docker CLI)
    # Per-directory pattern results, so a walk matches each path once, not once per parent.
    _dirs: dict[str, tuple[bool, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )

    def _ignored(self, rel: str) -> bool:
        parent = rel.rpartition("/")[0]
        info = self._dir_info(parent) if parent else None
        return self.ignore.matches_child(rel, info)[0]

    def _dir_info(self, rel: str) -> tuple[bool, ...]:
        info = self._dirs.get(rel)
        if info is None:
            parent = rel.rpartition("/")[0]
            info = self.ignore.matches_child(rel, self._dir_info(parent) if parent else None)[1]
            if len(self._dirs) < 100_000:
                self._dirs[rel] = info
        return info

    def visible(self, rel: str) -> bool:
        rel = rel.strip("/")
        if not rel or not self.ignore:
            return True
        if not self._ignored(rel):
            # A parent might be ignored with this path re-included: then it is visible too.
            return True
        if not self.ignore.has_exclusions:
            return False
        path = self.root / rel
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return False
        except OSError:
            return False
        return self._has_visible_below(path, rel)

    def _has_visible_below(self, path: Path, rel: str) -> bool:
        try:
            names = sorted(os.listdir(path))
        except OSError:
            return False
        for name in names:
            if self.visible(f"{rel}/{name}"):
                return True
        return False


def open_context(
    context: str, dockerfile: str | None = None, *, stdin: BinaryIO | None = None
) -> contextlib.AbstractContextManager[BuildContext]:
    """The build context for ``CONTEXT`` as given on the command line, as a context manager.

    ``"-"`` reads a tar (any compression) from ``stdin`` and unpacks it safely into a temporary
    directory removed on exit. ``dockerfile`` is the ``-f`` path (relative to the current
    directory, or to the tar's root for a stdin context, as the docker CLI has it; None for
    ``CONTEXT/Dockerfile``; ``"-"`` for stdin): its ``<name>.dockerignore`` neighbour wins over
    ``CONTEXT/.dockerignore``.
    """
    return _open_context(context, dockerfile, stdin)


@contextlib.contextmanager
def _open_context(
    context: str, dockerfile: str | None, stdin: BinaryIO | None
) -> Iterator[BuildContext]:
    if context == "-":
        tmp = Path(tempfile.mkdtemp(prefix="ocibuild-context-"))
        try:
            _unpack_tar(stdin if stdin is not None else sys.stdin.buffer, tmp)
            inside = None
            if dockerfile not in (None, "-"):
                assert dockerfile is not None
                inside = str(tmp / dockerfile.lstrip("/"))
            yield replace(_with_ignore(tmp, inside), from_stdin=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    root = Path(context)
    if not root.is_dir():
        raise UsageError(f"build context {context!r} is not a directory")
    yield _with_ignore(root.resolve(), dockerfile)


def _with_ignore(root: Path, dockerfile: str | None) -> BuildContext:
    candidates = []
    if dockerfile not in (None, "-"):
        assert dockerfile is not None
        candidates.append(Path(dockerfile + ".dockerignore"))
    else:
        candidates.append(root / "Dockerfile.dockerignore")
    candidates.append(root / ".dockerignore")
    for candidate in candidates:
        try:
            text = candidate.read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            continue
        except OSError as exc:
            raise UsageError(f"read {candidate}: {exc.strerror}") from exc
        return BuildContext(root, IgnoreMatcher(read_ignore_file(text)))
    return BuildContext(root)


def load_dockerfile(
    context: BuildContext, file: str | None = None, *, stdin: BinaryIO | None = None
) -> tuple[str, str]:
    """``(name, text)`` of the Dockerfile: ``file`` as given by ``-f`` (relative to the current
    directory), ``"-"`` for stdin, or ``CONTEXT/Dockerfile`` by default. ``name`` is what error
    locations show (``Dockerfile`` for the default)."""
    if file == "-":
        data = (stdin if stdin is not None else sys.stdin.buffer).read()
        return "Dockerfile", _decode(data, "stdin")
    if file and context.from_stdin:
        path = context.root / file.lstrip("/")
    else:
        path = Path(file) if file else context.root / "Dockerfile"
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise UsageError(
            f"failed to read Dockerfile: open {path}: no such file or directory"
        ) from exc
    except OSError as exc:
        raise UsageError(f"failed to read Dockerfile {path}: {exc.strerror}") from exc
    return (path.name if file else "Dockerfile"), _decode(data, str(path))


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"Dockerfile from {where} is not UTF-8: {exc}") from exc


def _unpack_tar(stream: BinaryIO, dest: Path) -> None:
    """Unpack a context tar (hostile-safe, through the layer unpacker, no whiteouts)."""
    from ocibuild.fs.unpack import unpack_layer

    try:
        unpack_layer(stream, dest, apply_whiteouts=False, chown=False)
    except ContentError as exc:
        raise UsageError(f"build context from stdin: {exc.message}") from exc
