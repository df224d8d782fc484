"""Physical lines -> logical instruction lines: directives, comments, continuations, heredocs.

This is the first stage of parsing, mirroring BuildKit's line scanner:

* parser directives (``# syntax=``, ``# escape=``, ``# check=``) are recognised only while every
  line so far has been a directive; the first other line (comment, blank, instruction) ends
  them. A repeated directive is an error.
* a line whose last non-blank character is the escape character continues on the next line;
  comment lines and empty lines inside a continuation are skipped (empty ones are reported as
  a warning, as BuildKit does); a continuation at end of file just ends the instruction.
* heredoc bodies are read on request by the caller, which knows whether the instruction can
  have heredocs (:meth:`LineReader.read_heredoc`).

Line numbers are 1-based. Nothing here raises anything but DockerfileError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ocibuild.dockerfile.expand import GO_SPACES
from ocibuild.errors import DockerfileError, Location

__all__ = ["LogicalLine", "LineReader", "MAX_LINE_BYTES", "decode"]

# bufio.Scanner's default buffer: BuildKit cannot read a longer physical line.
MAX_LINE_BYTES = 64 * 1024 - 1
_VALID_DIRECTIVES = frozenset({"syntax", "escape", "check"})
# Go's \s is ASCII [\t\n\f\r ]; Python's would also match \v and Unicode spaces.
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_CONTINUATION = {
    "\\": re.compile(r"(?:([^\\])\\[ \t]*|^\\[ \t]*)\Z"),
    "`": re.compile(r"(?:([^`])`[ \t]*|^`[ \t]*)\Z"),
}


def decode(data: str | bytes) -> str:
    """Dockerfile bytes as text: UTF-8 with a BOM dropped.

    XXX: BuildKit keeps invalid UTF-8 bytes as they are; we substitute U+FFFD (which is what
    BuildKit's own word lexer turns them into) rather than carry undecodable text around.
    """
    if isinstance(data, bytes):
        text = data.decode("utf-8", errors="replace")
    else:
        text = data
    return text[1:] if text.startswith("\ufeff") else text


def _trim_newline(line: str) -> str:
    return line.rstrip("\r\n")


def _trim_left(line: str) -> str:
    return line.lstrip(GO_SPACES)


def _is_comment(line: str) -> bool:
    return _trim_left(line).startswith("#")


@dataclass(frozen=True)
class LogicalLine:
    """One instruction's text with continuations joined; ``start``/``end`` are line numbers."""

    text: str
    start: int
    end: int


class LineReader:
    """A cursor over a Dockerfile's physical lines (BuildKit's ``Parse`` loop, split in two).

    ``directives`` (lower-case keys) and ``escape`` are final once the first instruction line
    has been returned; ``empty_continuations`` lists (line, instruction text) for the
    empty-continuation-line warning.
    """

    def __init__(self, text: str, name: str) -> None:
        self.name = name
        parts = text.split("\n")
        lines = [part + "\n" for part in parts[:-1]]
        if parts[-1]:
            lines.append(parts[-1])
        self._lines = lines
        self._next = 0  # index of the next physical line to read
        self.directives: dict[str, str] = {}
        self.escape = "\\"
        self._continuation = _CONTINUATION["\\"]
        self._directives_done = False
        self.empty_continuations: list[tuple[int, str]] = []

    @property
    def line_number(self) -> int:
        """The number of the last physical line read (0 before any)."""
        return self._next

    def _physical(self) -> str | None:
        if self._next >= len(self._lines):
            return None
        line = self._lines[self._next]
        self._next += 1
        if len(line) > MAX_LINE_BYTES // 4 and len(line.encode("utf-8", "replace")) > MAX_LINE_BYTES + 1:
            raise DockerfileError(
                f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES}",
                location=Location(self.name, self._next),
            )
        return line

    def _directive(self, line: str) -> bool:
        """Record ``line`` as a parser directive if it is one (BuildKit's DirectiveParser)."""
        if self._directives_done:
            return False
        if not line.startswith("#"):
            self._directives_done = True
            return False
        match = _DIRECTIVE.match(_trim_left(line[1:]))
        key = match.group(1).lower() if match else ""
        if key not in _VALID_DIRECTIVES:
            self._directives_done = True
            return False
        assert match is not None
        location = Location(self.name, self._next)
        if key in self.directives:
            raise DockerfileError(f"only one {key} parser directive can be used", location=location)
        value = match.group(2)
        if key == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(
                    f"invalid escape token '{value}' does not match ` or \\", location=location
                )
            self.escape = value
            self._continuation = _CONTINUATION[value]
        self.directives[key] = value
        return True

    def _process(self, raw: str, strip_left: bool) -> str:
        line = _trim_newline(raw)
        if strip_left:
            line = _trim_left(line)
        self._directive(line)
        return "" if _is_comment(line) else line

    def _trim_continuation(self, line: str) -> tuple[str, bool]:
        """``(line without the continuation character, whether the instruction ends here)``."""
        match = self._continuation.search(line)
        if match is None:
            return line, True
        return line[: match.start()] + (match.group(1) or ""), False

    def next_line(self) -> LogicalLine | None:
        """The next instruction line, or None at end of file."""
        while True:
            raw = self._physical()
            if raw is None:
                return None
            line = self._process(raw, strip_left=True)
            start = self._next
            line, ended = self._trim_continuation(line)
            if ended and not line:
                continue
            pieces = [line]
            empty_continuation = False
            while not ended:
                raw = self._physical()
                if raw is None:
                    break
                line = self._process(raw, strip_left=False)
                if _is_comment(raw):
                    continue
                if not _trim_left(_trim_newline(line)):
                    empty_continuation = True
                    continue
                line, ended = self._trim_continuation(line)
                pieces.append(line)
            text = "".join(pieces)
            if empty_continuation:
                self.empty_continuations.append((self._next, text))
            return LogicalLine(text, start, self._next)

    def read_heredoc(self, name: str, chomp: bool) -> str | None:
        """The body of a heredoc ending at a line equal to ``name`` (after stripping leading
        tabs when ``chomp``); None when the file ends first. Lines keep their newlines; the
        terminator line is consumed and not part of the body."""
        body: list[str] = []
        while True:
            raw = self._physical()
            if raw is None:
                return None
            candidate = _trim_newline(raw)
            if chomp:
                candidate = candidate.lstrip("\t")
            if candidate == name:
                return "".join(body)
            body.append(raw)
