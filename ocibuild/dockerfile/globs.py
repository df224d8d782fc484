"""Shell glob patterns for ``${v#p} ${v%p} ${v/p/r}``, with Go's regexp semantics.

BuildKit turns a glob (``*``, ``?``, ``\\`` escapes; no bracket expressions) into a Go regular
expression; these helpers do the same with Python's ``re`` and reproduce the two places where
the engines differ: how ``ReplaceAllString`` treats empty matches and ``$`` in the replacement.
"""

from __future__ import annotations

import re

__all__ = ["PatternError", "pattern_regex", "replace_all", "trim_prefix", "trim_suffix"]


class PatternError(ValueError):
    """A glob BuildKit rejects (an escape of anything but ``* ? \\``)."""


def pattern_regex(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """A shell glob (``*``, ``?``, ``\\`` escapes; no brackets) as a regular expression."""
    out: list[str] = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i, n = 0, len(pattern)
    while i < n:
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
        elif tok == "?":
            out.append(".")
        elif tok == "\\":
            following = pattern[i] if i < n else ""
            if following in ("}", "/"):
                continue  # the escape protected the ${} syntax, it is not part of the glob
            i += 1
            if following not in ("*", "?", "\\"):
                raise PatternError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape "
                    f"'\\{following or chr(0xFFFD)}'"
                )
            out.append(re.escape(following))
        else:
            out.append(re.escape(tok))
    return re.compile("".join(out))


def trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = pattern_regex(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end() :] if match else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a glob keeping ``\\x`` escape pairs in order (``a\\*c`` -> ``c\\*a``)."""
    pieces: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern[i] == "\\" and i != n - 1:
            pieces.append(pattern[i : i + 2])
            i += 2
        else:
            pieces.append(pattern[i])
            i += 1
    return "".join(reversed(pieces))


def trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # A regex finds the leftmost match, so the shortest/longest suffix is found by reversing
    # both the pattern and the value.
    return trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


_TEMPLATE_REF = re.compile(r"\$(?:\$|\{(\w+)\}|(\w+))")


def _go_template(replacement: str, match: re.Match[str]) -> str:
    """Go's ``Regexp.Expand`` as used by ``ReplaceAllString``: ``$$`` is ``$``, ``$0``/``${0}``
    the match, any other group reference empty (our globs have no groups)."""

    def one(ref: re.Match[str]) -> str:
        if ref.group(0) == "$$":
            return "$"
        name = ref.group(1) or ref.group(2)
        return match.group(0) if name == "0" or (name.isdecimal() and int(name) == 0) else ""

    return _TEMPLATE_REF.sub(one, replacement)


def replace_all(regex: re.Pattern[str], value: str, replacement: str) -> str:
    """``ReplaceAllString`` with Go's rule for empty matches: an empty match right after a
    previous match is not replaced (Python's ``re.sub`` replaces it)."""
    out: list[str] = []
    last_end = 0
    search = 0
    while search <= len(value):
        match = regex.search(value, search)
        if match is None:
            break
        start, end = match.span()
        out.append(value[last_end:start])
        if end > last_end or start == 0:
            out.append(_go_template(replacement, match))
        last_end = end
        search = search + 1 if search + 1 > end else end
    out.append(value[last_end:])
    return "".join(out)
