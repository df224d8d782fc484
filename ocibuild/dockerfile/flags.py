"""Instruction flags (``--name=value``), Go durations, and "did you mean" suggestions.

Flag rules follow BuildKit's ``BFlags``: a flag must be declared for its instruction; a bool
flag is ``--link``, ``--link=true`` or ``--link=false`` (case-insensitive), never ``--link=``;
a string flag needs ``=``; a repeatable flag (``--mount``, ``--exclude``) collects its values;
any other flag given twice is an error; a bare ``--`` ends the flags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from ocibuild.dockerfile.expand import go_quote
from ocibuild.dockerfile.model import Flag
from ocibuild.errors import DockerfileError

__all__ = ["Kind", "ParsedFlags", "parse_flags", "parse_go_duration", "suggest", "with_suggestion"]


class Kind(Enum):
    BOOL = "bool"
    STRING = "string"
    STRINGS = "strings"


@dataclass(frozen=True)
class ParsedFlags:
    """Flag values by name: ``bools`` (only flags given), ``strings`` (last value of a string
    flag given), ``lists`` (every value of a repeatable flag, in order); ``written`` the flags
    as written, in order."""

    bools: Mapping[str, bool]
    strings: Mapping[str, str]
    lists: Mapping[str, tuple[str, ...]]
    written: tuple[Flag, ...]


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def suggest(value: str, options: Iterable[str], case_sensitive: bool) -> str | None:
    """The closest option within edit distance 2 (BuildKit's ``suggest.Search``), in the
    case style of ``value`` when not case-sensitive; None for an exact match or none close."""
    probe = value if case_sensitive else value.lower()
    best: str | None = None
    best_distance = 3
    for option in sorted(options):
        candidate = option if case_sensitive else option.lower()
        if candidate == probe:
            return None
        distance = levenshtein(probe, candidate)
        if distance < best_distance:
            best, best_distance = candidate, distance
    if best is None or case_sensitive:
        return best
    if value == value.lower():
        return best.lower()
    if value == value.upper():
        return best.upper()
    return best


def with_suggestion(message: str, value: str, options: Iterable[str], case_sensitive: bool) -> str:
    match = suggest(value, options, case_sensitive)
    return f"{message} (did you mean {match}?)" if match else message


def parse_flags(words: Iterable[str], spec: Mapping[str, Kind]) -> ParsedFlags:
    """Check and collect ``words`` (``--name[=value]``) against ``spec``."""
    bools: dict[str, bool] = {}
    strings: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    written: list[Flag] = []
    for word in words:
        if word == "--":
            break
        if not word.startswith("--"):
            raise DockerfileError(f"arg should start with -- : {word}")
        flag_name, has_value, value = word.partition("=")
        name = flag_name[2:]
        kind = spec.get(name)
        if kind is None:
            raise DockerfileError(
                with_suggestion(f"unknown flag: {flag_name}", name, spec, True)
            )
        seen = name in bools or name in strings or name in lists
        if seen and kind is not Kind.STRINGS:
            raise DockerfileError(f"duplicate flag specified: {flag_name}")
        written.append(Flag(name, value if has_value else None))
        if kind is Kind.BOOL:
            if has_value and value == "":
                raise DockerfileError(f"missing a value on flag: {flag_name}")
            lowered = value.lower()
            if lowered not in ("true", "false", ""):
                raise DockerfileError(
                    f"expecting boolean value for flag {flag_name}, not: {value}"
                )
            bools[name] = lowered != "false"
        elif not has_value:
            raise DockerfileError(f"missing a value on flag: {flag_name}")
        elif kind is Kind.STRING:
            strings[name] = value
        else:
            lists.setdefault(name, []).append(value)
    return ParsedFlags(
        bools, strings, {k: tuple(v) for k, v in lists.items()}, tuple(written)
    )


_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_MAX_DURATION = (1 << 63) - 1


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds (``1h30m``, ``1.5s``, ``300ms``, ``-2s``).

    Raises DockerfileError with Go's message for a bad duration.
    """
    invalid = DockerfileError(f"time: invalid duration {go_quote(text)}")
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise invalid
    total = 0
    while rest:
        match = _DURATION_PART.match(rest)
        assert match is not None  # the pattern can match the empty string
        whole, frac, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not frac:
            raise invalid  # no digits, e.g. ".s" or "s"
        if not unit:
            raise DockerfileError(f"time: missing unit in duration {go_quote(text)}")
        factor = _UNITS.get(unit)
        if factor is None:
            raise DockerfileError(
                f"time: unknown unit {go_quote(unit)} in duration {go_quote(text)}"
            )
        consumed = len(whole) + (len(frac) + 1 if frac is not None else 0) + len(unit)
        rest = rest[consumed:]
        value = int(whole or "0") * factor
        if frac:
            value += int(frac) * factor // 10 ** len(frac)
        total += value
        if total > _MAX_DURATION + (1 if negative else 0):
            raise invalid
    return -total if negative else total
