"""Joining untrusted paths onto a root directory without ever leaving it.

``safe_join`` treats ``root`` as if it were ``/`` for the path and for every symlink met on the
way (the semantics of Go's ``securejoin`` and containerd's ``fs.RootPath``): ``..`` stops at the
root, an absolute symlink target restarts at the root, a relative one continues from the link's
directory (BuildKit resolves both sides of a COPY this way, and so do we when unpacking). A
``visible`` predicate hides entries: the build context filtered by ``.dockerignore`` behaves as
if ignored files were absent. The result is always ``root`` or a path below it; components that
do not exist yet are joined lexically. Callers that then open the result must not follow a
symlink at the last component themselves (use ``follow_symlinks=False`` and
``O_NOFOLLOW``/``lstat``), or a link created after the join could still point out.

``clean_member_name`` is the rule for names inside a tar: absolute names are made relative
and a ``..`` that would climb above the root stays at the root, as containerd's applier and
BuildKit's chrooted untar have them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from ocibuild.errors import ContentError

# containerd's fs.RootPath gives up after 255 links (Linux itself after 40): a loop or hostile.
_MAX_SYMLINKS = 255

Visible = Callable[[str], bool]
"""``visible(rel) -> bool``: whether an entry exists in a filtered view of the root (``rel``
slash-separated, relative to the root); a hidden entry and everything below it count as absent."""


def safe_join(
    root: Path | str,
    path: str,
    *,
    follow_symlinks: bool = True,
    visible: Visible | None = None,
) -> Path:
    """``root`` joined with ``path``, resolving symlinks as if ``root`` were ``/``.

    With ``follow_symlinks=False`` a symlink at the last component is returned as is (the link
    itself), which is what writers that replace entries want. With ``visible`` (the build
    context filtered by ``.dockerignore``), a component it hides is treated as missing: joined
    lexically, as is everything below it until ``..`` climbs back out. Raises ``ContentError``
    on a symlink loop.
    """
    root_path = Path(root)
    pending = _split(path)
    pending.reverse()  # a stack: next component last
    resolved: list[str] = []
    links = 0
    # Depth at which a missing (or hidden) component was joined: nothing below it can exist.
    missing_at: int | None = None
    while pending:
        part = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            if missing_at is not None and len(resolved) <= missing_at:
                missing_at = None
            continue
        is_last = not pending
        if missing_at is not None or (is_last and not follow_symlinks):
            resolved.append(part)
            continue
        rel = "/".join([*resolved, part])
        if visible is not None and not visible(rel):
            missing_at = len(resolved)
            resolved.append(part)
            continue
        candidate = os.path.join(root_path, rel)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            # Nothing on disk: the rest is joined lexically (still clamped at the root).
            missing_at = len(resolved)
            resolved.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            resolved.append(part)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise ContentError(f"too many levels of symbolic links resolving {path!r}")
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = []
        more = _split(target)
        more.reverse()
        pending.extend(more)
    return root_path.joinpath(*resolved) if resolved else root_path


def clean_member_name(name: str) -> str:
    """A tar member name normalised to ``a/b/c`` relative form, or ``""`` for the root itself.

    Leading ``/`` and ``./`` are dropped, ``.`` and empty components removed, ``x/..`` folded,
    and a ``..`` at the root stays there: ``../x`` is ``x``, as containerd's applier
    (``fs.RootPath``) and BuildKit's ADD (an untar chrooted at the destination) have it.
    """
    if "\x00" in name:
        raise ContentError(f"hostile layer: NUL byte in entry name {name!r}")
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]
