"""Docker's ignore-pattern matcher (moby/patternmatcher and ignorefile rules), pure.

Used for ``.dockerignore`` by the build context, for ``COPY --exclude``, and by the
CopyIgnoredFile build check: ``#`` comments, blank lines skipped, surrounding spaces trimmed,
``filepath.Clean``, a leading ``/`` dropped, ``!`` re-includes, the last matching pattern wins,
``**`` crosses directories, and a path is ignored when the pattern matches it or one of its
parent directories.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ocibuild.errors import UsageError

_ESCAPE = set(".+()|{}$")


@dataclass(frozen=True)
class _Pattern:
    text: str  # cleaned, without the leading "!"
    exclusion: bool
    dirs: int  # number of path components
    regex: re.Pattern[str] | None  # None: exact match
    kind: str  # exact | prefix | suffix | regex

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        assert self.regex is not None
        return self.regex.match(path) is not None


def _compile(text: str, exclusion: bool) -> _Pattern:
    """patternmatcher's pattern -> regex translation (``*``, ``?``, ``**``, classes, ``\\``)."""
    out = "^"
    kind = "exact"
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "*":
            if i + 1 < n and text[i + 1] == "*":
                start = i
                i += 1
                if i + 1 < n and text[i + 1] == "/":
                    i += 1
                if i + 1 >= n:  # "**" at the end matches everything below
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out += ".*"
                        kind = "regex"
                else:
                    out += "(.*/)?"
                    kind = "regex"
                if start == 0:
                    kind = "suffix"
            else:
                out += "[^/]*"
                kind = "regex"
        elif ch == "?":
            out += "[^/]"
            kind = "regex"
        elif ch in _ESCAPE:
            out += "\\" + ch
        elif ch == "\\":
            if i + 1 < n:
                i += 1
                out += re.escape(text[i])
                kind = "regex"
            else:
                out += "\\\\"
        elif ch in "[]":
            out += ch
            kind = "regex"
        else:
            out += ch  # as patternmatcher: "^" and "-" keep their regex meaning
        i += 1
    regex = None
    if kind == "regex":
        try:
            regex = re.compile(out + "$", re.DOTALL)
        except re.error as exc:
            raise UsageError(f"bad ignore/exclude pattern {text!r}: {exc}") from exc
    return _Pattern(text, exclusion, text.count("/") + 1, regex, kind)


def go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` on a slash path."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


@dataclass(frozen=True)
class IgnoreMatcher:
    """Docker's pattern matcher over slash-separated paths relative to the context root.

    ``patterns`` are taken as given (use ``read_ignore_file`` for ``.dockerignore`` text; COPY
    ``--exclude`` patterns are passed directly, as BuildKit does).
    """

    patterns: tuple[str, ...]
    _compiled: tuple[_Pattern, ...] = field(init=False, repr=False, compare=False)

    def __init__(self, patterns: Sequence[str]):
        compiled = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise UsageError('illegal exclusion pattern: "!"')
                text = text[1:]
            compiled.append(_compile(text, exclusion))
        object.__setattr__(self, "patterns", tuple(patterns))
        object.__setattr__(self, "_compiled", tuple(compiled))

    @property
    def has_exclusions(self) -> bool:
        """True when a ``!`` pattern may re-include something below an ignored directory."""
        return any(p.exclusion for p in self._compiled)

    def __bool__(self) -> bool:
        return bool(self._compiled)

    def matches(self, path: str) -> bool:
        """``MatchesOrParentMatches``: is ``path`` (or a parent directory of it) matched?"""
        path = go_clean(path)
        parents = path.split("/")[:-1]
        matched = False
        for pattern in self._compiled:
            if pattern.exclusion != matched:
                continue
            hit = pattern.match(path)
            if not hit:
                hit = any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))
            if hit:
                matched = not pattern.exclusion
        return matched

    def matches_child(
        self, path: str, parent: tuple[bool, ...] | None
    ) -> tuple[bool, tuple[bool, ...]]:
        """``MatchesUsingParentResults`` for walkers: ``parent`` is what the parent directory
        returned (None at the top). Returns ``(matched, info to pass to children)``."""
        if parent is None:
            info = tuple(
                p.match(path) or self._parent_hit(p, path) for p in self._compiled
            )
        else:
            info = tuple(
                parent[i] or p.match(path) for i, p in enumerate(self._compiled)
            )
        matched = False
        for i, pattern in enumerate(self._compiled):
            if info[i] and pattern.exclusion == matched:
                matched = not pattern.exclusion
        return matched, info

    @staticmethod
    def _parent_hit(pattern: _Pattern, path: str) -> bool:
        parents = path.split("/")[:-1]
        return any(pattern.match("/".join(parents[: i + 1])) for i in range(len(parents)))


def read_ignore_file(text: str) -> list[str]:
    """Patterns of a ``.dockerignore`` (ignorefile.ReadAll): BOM stripped, comments and blank
    lines skipped, cleaned, leading ``/`` removed, ``!`` kept in front."""
    out = []
    for number, line in enumerate(text.splitlines()):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        out.append("!" + pattern if invert else pattern)
    return out
