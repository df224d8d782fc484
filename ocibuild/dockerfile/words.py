"""One instruction line -> keyword, flags and argument words, the ways BuildKit's line parsers
split them: ``--flag`` words (quotes removed), quote-aware words (quotes kept, for ARG/ENV/LABEL),
JSON arrays (exec form), ``name=value`` pairs and whitespace-split words. ``nodes.make_node``
picks the form per keyword.
"""

from __future__ import annotations

import json
import math
import re

from ocibuild.dockerfile.expand import GO_SPACES, is_space
from ocibuild.errors import DockerfileError

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_ASCII_WORD = re.compile(r"[^\t\n\v\f\r ]+")
_GO_SPACES = re.compile(
    "[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+"
)
NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"


def _trim_space(text: str) -> str:
    """Go's ``strings.TrimSpace``."""
    return text.strip(GO_SPACES)


def split_command(line: str, escape: str) -> tuple[str, tuple[str, ...], str]:
    """``(keyword, flag words, rest)`` of one instruction line."""
    parts = _WHITESPACE.split(_trim_space(line), maxsplit=1)
    if len(parts) < 2:
        return parts[0], (), ""
    rest, flags = _extract_flags(parts[1], escape)
    return parts[0], tuple(flags), _trim_space(rest)


def _extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading ``--flag`` words (quotes and escapes removed) and the text after them; a bare
    ``--`` ends the flags."""
    # Fast path for the common case: plain ASCII flag words, nothing to unquote.
    fast: list[str] = []
    for match in _ASCII_WORD.finditer(line):
        word = match.group()
        if not word.isascii():
            break  # may hold a Unicode space, which separates words too
        if not word.startswith("--"):
            return line[match.start() :], fast
        if word == "--":
            return line[match.end() :], fast
        if "'" in word or '"' in word or escape in word:
            break
        fast.append(word)
    else:
        return "", fast
    return _extract_flags_slow(line, escape)


def _extract_flags_slow(line: str, escape: str) -> tuple[str, list[str]]:
    words: list[str] = []
    buf: list[str] = []
    n = len(line)
    pos = 0
    in_word = False
    quote = ""
    blank_ok = False
    while True:
        if not in_word and not quote:
            while pos < n and is_space(line[pos]):
                pos += 1
            if pos == n:
                return "", words
            if not line.startswith("--", pos):
                return line[pos:], words
            in_word = True
        if pos == n:
            word = "".join(buf)
            if word != "--" and (blank_ok or word):
                words.append(word)
            return "", words
        ch = line[pos]
        if quote:
            pos += 1
            if ch == quote:
                quote = ""
                continue
            if ch == escape:
                if pos == n:
                    quote = ""
                    continue
                ch = line[pos]
                pos += 1
            buf.append(ch)
            continue
        if is_space(ch):
            word = "".join(buf)
            if word == "--":
                return line[pos:], words
            if blank_ok or word:
                words.append(word)
            buf.clear()
            blank_ok = False
            in_word = False
            continue
        pos += 1
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
            continue
        if ch == escape:
            if pos == n:
                continue
            ch = line[pos]
            pos += 1
        buf.append(ch)


def parse_words(rest: str, escape: str) -> list[str]:
    """Quote-aware words, quotes and escapes kept (for ARG/ENV/LABEL; the expander removes
    them later)."""
    if "'" not in rest and '"' not in rest and escape not in rest:
        return [word for word in _GO_SPACES.split(rest) if word]
    words: list[str] = []
    buf: list[str] = []
    n = len(rest)
    pos = 0
    quote = ""
    in_word = False
    blank_ok = False
    while pos < n:
        ch = rest[pos]
        if not in_word:
            if is_space(ch):
                pos += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if pos + 1 == n:
                    quote = ""
                    pos += 1
                    continue
                buf.append(ch)
                pos += 1
                ch = rest[pos]
            buf.append(ch)
            pos += 1
            continue
        if is_space(ch):
            if blank_ok or buf:
                words.append("".join(buf))
            buf.clear()
            blank_ok = False
            in_word = False
            pos += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
        elif ch == escape:
            if pos + 1 == n:
                pos += 1
                continue
            buf.append(ch)
            pos += 1
            ch = rest[pos]
        buf.append(ch)
        pos += 1
    if in_word and (blank_ok or buf):
        words.append("".join(buf))
    return words


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")  # Go's decoder rejects it: not JSON
    return value


def _no_constant(text: str) -> None:
    raise ValueError(f"not JSON: {text}")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json_array(rest: str) -> list[str] | None:
    """The strings of a JSON array, or None when ``rest`` is not one (then it is shell form).

    Raises DockerfileError for a valid array holding a non-string, as BuildKit does.
    """
    start = 0
    while start < len(rest) and is_space(rest[start]):
        start += 1
    text = rest[start:]
    if not text.startswith("["):
        return None
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_float=_finite, parse_int=_finite
        )
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise DockerfileError(NOT_STRING_ARRAY)
    # Go decodes an unpaired surrogate escape to U+FFFD; Python would keep a lone surrogate.
    return [_LONE_SURROGATE.sub("\ufffd", item) for item in value]


def name_value_words(rest: str, key: str, escape: str) -> list[str]:
    """ENV/LABEL: ``k=v ...`` into [k, v, "=", ...]; legacy ``k v`` into [k, v, ""]."""
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(f"{key} must have two arguments")
        return [parts[0], parts[1], ""]
    args: list[str] = []
    for word in words:
        if "=" not in word:
            raise DockerfileError(
                f"Syntax error - can't find = in {json.dumps(word, ensure_ascii=False)}. "
                "Must be of the form: name=value"
            )
        name, value = word.split("=", 1)
        args += [name, value, "="]
    return args


def json_or_text(rest: str) -> tuple[list[str], bool]:
    """CMD/ENTRYPOINT/RUN/SHELL: the JSON array's strings (and True), else the whole text."""
    if not rest:
        return [], False
    array = parse_json_array(rest)
    if array is not None:
        return array, True
    return [rest], False


def split_whitespace(rest: str) -> list[str]:
    """FROM/EXPOSE and shell-form COPY/ADD/VOLUME: words between ASCII whitespace."""
    if not rest:
        return []
    return _WHITESPACE.split(rest)


def healthcheck_words(rest: str) -> tuple[list[str], bool]:
    """HEALTHCHECK: the type word (``CMD``/``NONE``), then its command as ``json_or_text``."""
    sep = 0
    while sep < len(rest) and not is_space(rest[sep]):
        sep += 1
    if sep == 0:
        return [], False
    after = sep
    while after < len(rest) and is_space(rest[after]):
        after += 1
    args, is_json = json_or_text(rest[after:])
    return [rest[:sep], *args], is_json


