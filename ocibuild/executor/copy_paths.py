"""Path rules of COPY/ADD: destinations, Go ``filepath.Match`` wildcards.

Resolving a path inside a root (containerd's ``fs.RootPath``, optionally through a
``.dockerignore`` view) is ``ocibuild.fs.safepath.safe_join``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from ocibuild.fs.safepath import Visible, safe_join


def clean_abs(path: str) -> str:
    """``filepath.Join("/", path)``: absolute, ``..`` stopped at the root, no trailing slash."""
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    return "/" + "/".join(out)


def join_dest(workdir: str, dest: str) -> str:
    """BuildKit's ``pathRelativeToWorkingDir`` + ``cleanPath``: the absolute destination, with a
    trailing ``/`` kept (it means "a directory"), ``.`` and ``""`` meaning WORKDIR itself."""
    if dest in ("", "."):
        dest = "./"
    joined = dest if dest.startswith("/") else f"{workdir or '/'}/{dest}"
    out = clean_abs(joined)
    if (dest.endswith("/") or dest.endswith("/.")) and out != "/":
        out += "/"
    return out


def contains_wildcards(name: str) -> bool:
    """True when ``name`` has an unescaped ``*``, ``?`` or ``[`` (fsutil's rule)."""
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "*?[":
            return True
        i += 1
    return False


def split_wildcards(path: str) -> tuple[str, str]:
    """Split at the first component holding a wildcard: ``("/a/b", "c*/d")``."""
    parts = clean_abs(path).split("/")[1:]
    for i, part in enumerate(parts):
        if contains_wildcards(part):
            return "/" + "/".join(parts[:i]), "/".join(parts[i:])
    return "/" + "/".join(parts), ""


@lru_cache(maxsize=256)
def _compile_match(pattern: str) -> re.Pattern[str] | None:
    """Go's ``filepath.Match`` pattern as a regex; None for a malformed pattern (no match)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            i += 1
            if i >= n:
                return None
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            i += 1
            negate = i < n and pattern[i] == "^"
            if negate:
                i += 1
            ranges: list[str] = []
            first = True
            while True:
                if i >= n:
                    return None
                if pattern[i] == "]" and not first:
                    break
                first = False
                lo, i = _class_char(pattern, i)
                if lo is None:
                    return None
                hi: str | None = lo
                if i < n and pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                    if hi is None or hi < lo:
                        return None
                assert hi is not None
                ranges.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
            # A class never matches the separator, negated or not.
            out.append(f"(?!/)[{'^' if negate else ''}{''.join(ranges)}]")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _class_char(pattern: str, i: int) -> tuple[str | None, int]:
    if i >= len(pattern) or pattern[i] in "-]":
        return None, i
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            return None, i
    return pattern[i], i + 1


def go_match(pattern: str, name: str) -> bool:
    """``filepath.Match(pattern, name)`` on slash-separated names; malformed -> False."""
    rx = _compile_match(pattern)
    return rx is not None and rx.fullmatch(name) is not None


def resolve_wildcards(
    root: Path, src: str, *, follow: bool = True, visible: Visible | None = None
) -> list[str]:
    """fsutil's ``ResolveWildcards``: the absolute source paths (relative to ``root``) that
    ``src`` names, in lexical walk order. Without a wildcard, ``[src]`` as is."""
    base, pattern = split_wildcards(src)
    if not pattern:
        return [base]
    real_base = safe_join(root, base, follow_symlinks=follow, visible=visible)
    base_rel = os.path.relpath(real_base, root)
    base_rel = "" if base_rel == "." else base_rel
    depth = pattern.count("/") + 1  # "*" never crosses "/", so deeper paths cannot match
    out = []
    for rel in _walk(real_base, base_rel, depth, visible):
        if go_match(pattern, rel[len(base_rel) + 1 :] if base_rel else rel):
            out.append("/" + rel)
    return out


def _walk(real: Path, rel: str, depth: int, visible: Visible | None) -> Iterator[str]:
    """Paths under ``real`` (as ``rel``-prefixed names) down to ``depth`` levels, lexical order,
    a matched directory's contents skipped by the caller's pattern depth."""
    try:
        names = sorted(os.listdir(real))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        child_rel = f"{rel}/{name}" if rel else name
        if visible is not None and not visible(child_rel):
            continue
        yield child_rel
        if depth > 1:
            child = real / name
            if stat.S_ISDIR(os.lstat(child).st_mode):
                yield from _walk(child, child_rel, depth - 1, visible)
