"""Logical lines -> raw nodes: keyword, flags, argument words, heredocs (BuildKit's AST stage).

A :class:`Node` holds the argument words the way BuildKit's line parsers produce them, before
any per-instruction validation: JSON arrays decoded for the exec-form instructions, quote-aware
words (quotes kept) for ARG/ENV/LABEL, whitespace-split words for FROM/EXPOSE and the shell-form
of COPY/ADD/VOLUME, the whole text for the rest. Errors found at this stage (a JSON array with a
non-string, ENV without a value, an unterminated heredoc) are reported for the whole file before
any instruction-level error, as BuildKit does. How a line splits into words is ``words.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocibuild.dockerfile.expand import expand
from ocibuild.dockerfile.lines import LineReader, LogicalLine
from ocibuild.dockerfile.model import Heredoc
from ocibuild.dockerfile.words import (
    healthcheck_words,
    json_or_text,
    name_value_words,
    parse_json_array,
    parse_words,
    split_command,
    split_whitespace,
)
from ocibuild.errors import DockerfileError, Location

__all__ = ["Node", "read_nodes", "parse_heredoc_word"]

_HEREDOC_WORD = re.compile(r"([0-9]*)<<(-?)[\t\n\f\r ]*([^<]*)\Z")
_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)
_DELIMITER_LIKE = re.compile(r"[A-Za-z_$][A-Za-z0-9_.$-]*\Z")
_MAYBE_JSON = frozenset({"cmd", "entrypoint", "run", "shell"})
_MAYBE_JSON_LIST = frozenset({"add", "copy", "volume"})
_HEREDOC_KEYWORDS = frozenset({"add", "copy", "run"})


@dataclass
class Node:
    """One instruction as BuildKit's parser sees it, before typing.

    ``keyword`` as written; ``flags`` the ``--flag`` words with quotes removed; ``rest`` the
    text after the flags; ``args`` the argument words (see module docstring); ``json`` whether
    ``args`` came from a JSON array; ``child`` ONBUILD's trigger; ``heredocs`` in line order.
    """

    keyword: str
    flags: tuple[str, ...]
    rest: str
    args: list[str]
    json: bool
    original: str
    start: int
    end: int
    child: Node | None = None
    heredocs: tuple[Heredoc, ...] = ()

    @property
    def location(self) -> tuple[int, int]:
        return self.start, self.end


def make_node(line: str, start: int, end: int, escape: str, *, nested: bool = False) -> Node:
    """Split and dispatch one logical line (no heredoc bodies yet); ``nested`` for the
    trigger of an ONBUILD, which is never itself unpacked further (ONBUILD ONBUILD is an
    error reported when typing)."""
    keyword, flags, rest = split_command(line, escape)
    lower = keyword.lower()
    child: Node | None = None
    is_json = False
    args: list[str]
    if lower in _MAYBE_JSON:
        args, is_json = json_or_text(rest)
    elif lower in _MAYBE_JSON_LIST:
        array = parse_json_array(rest)
        is_json = array is not None
        args = array if array is not None else split_whitespace(rest)
    elif lower in ("env", "label"):
        args = name_value_words(rest, lower.upper(), escape)
    elif lower == "arg":
        args = parse_words(rest, escape)
    elif lower in ("from", "expose"):
        args = split_whitespace(rest)
    elif lower == "healthcheck":
        args, is_json = healthcheck_words(rest)
    elif lower in ("maintainer", "stopsignal", "user", "workdir"):
        args = [rest] if rest else []
    elif lower == "onbuild" and nested:
        args = [rest] if rest else []
    elif lower == "onbuild":
        if rest:
            child = make_node(rest, start, end, escape, nested=True)
            args = [child.keyword, *child.args]
        else:
            args = []
    else:
        args = []  # an unknown instruction: reported when typed, after the whole file reads
    return Node(keyword, flags, rest, args, is_json, line, start, end, child)


def _can_have_heredoc(node: Node) -> bool:
    target = node.child if node.keyword.lower() == "onbuild" and node.child else node
    return target.keyword.lower() in _HEREDOC_KEYWORDS and not target.json


@dataclass(frozen=True)
class HeredocWord:
    """A ``<<EOF``-style word: delimiter name, whether the body expands, ``<<-``, fd."""

    name: str
    expand: bool
    chomp: bool
    fd: int


def parse_heredoc_word(word: str) -> HeredocWord | None:
    """The heredoc a word like ``<<EOF``, ``<<-"EOF"``, ``3<<EOF`` starts, else None."""
    match = _HEREDOC_WORD.match(word)
    if match is None or not match.group(3):
        return None
    rest = match.group(3)
    plain = expand(rest, {}, "\\", skip_unset=True).words
    if len(plain) != 1:
        return None
    raw = expand(rest, {}, "\\", skip_unset=True, raw_quotes=True).words
    if len(raw) != 1:
        raise DockerfileError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    quotes = plain[0].count("'") + plain[0].count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"')
    fd = int(match.group(1)) if 0 < len(match.group(1)) < 19 else 0
    return HeredocWord(plain[0], quotes == raw_quotes, match.group(2) == "-", fd)


def heredocs_in_line(line: str) -> list[HeredocWord]:
    """Every heredoc started on an instruction line, in order (BuildKit lexes the whole line
    with ``\\`` as escape, quotes kept; a line it cannot lex has no heredocs)."""
    try:
        words = expand(
            line, {}, "\\", skip_unset=True, raw_quotes=True, raw_escapes=True
        ).words
    except DockerfileError:
        return []
    found = []
    for word in words:
        heredoc = parse_heredoc_word(word)
        if heredoc is not None:
            found.append(heredoc)
    return found


def chomp(content: str) -> str:
    """Strip leading tabs from every line (``<<-``)."""
    return _LEADING_TABS.sub("", content)


def _read_node(reader: LineReader, line: LogicalLine) -> Node:
    try:
        node = make_node(line.text, line.start, line.end, reader.escape)
    except DockerfileError as exc:
        raise DockerfileError(
            exc.message, location=Location(reader.name, line.start, line.end)
        ) from None
    if "<<" not in line.text or not _can_have_heredoc(node):
        return node
    try:
        words = heredocs_in_line(line.text)
    except DockerfileError as exc:
        raise DockerfileError(
            exc.message, location=Location(reader.name, line.start, line.end)
        ) from None
    heredocs = []
    for word in words:
        body = reader.read_heredoc(word.name, word.chomp)
        if body is None:
            hint = f"add a line with just {word.name} to end the heredoc"
            if not _DELIMITER_LIKE.match(word.name):
                # Since BuildKit allows "<< EOF", a spaced shift like $((1 << 2)) starts one.
                hint += (
                    "; if this '<<' is not a heredoc (e.g. a shift in $((...))), "
                    "write it with no space before it"
                )
            raise DockerfileError(
                "unterminated heredoc",
                location=Location(reader.name, line.start, reader.line_number),
                hint=hint,
            )
        content = chomp(body) if word.chomp else body
        raw = body if content != body else None
        heredocs.append(Heredoc(word.name, content, word.expand, word.chomp, word.fd, raw))
    node.heredocs = tuple(heredocs)
    node.end = reader.line_number
    if node.child is not None:
        node.child.end = node.end
    return node


def read_nodes(reader: LineReader) -> list[Node]:
    """Every instruction node of the file; raises DockerfileError (with location) for
    syntax errors anywhere in it, or "file with no instructions"."""
    nodes: list[Node] = []
    while (line := reader.next_line()) is not None:
        nodes.append(_read_node(reader, line))
    if not nodes:
        raise DockerfileError(
            "file with no instructions", location=Location(reader.name, max(reader.line_number, 1))
        )
    return nodes
