"""Shell-word expansion as BuildKit's Dockerfile lexer does it (no I/O, no subshells).

``$v ${v}``, the modifiers ``${v:-w} ${v-w} ${v:+w} ${v+w} ${v:?msg} ${v?msg}``, the glob trims
``${v#p} ${v##p} ${v%p} ${v%%p}`` and replacements ``${v/p/r} ${v//p/r}``; single quotes (all
literal), double quotes (``$`` expands; the escape character escapes ``" $`` and itself), the
escape character (``\\`` or a backtick, per ``# escape=``) outside quotes, quote removal, and
word splitting on unquoted whitespace for :func:`expand_words`.

Semantics follow BuildKit's ``shell.Lex`` including its quirks, which users' Dockerfiles rely
on: positional and special parameters (``$1 $@ $#``...) are names that are never set, an unset
variable expands to nothing, ``${}`` is a bad substitution, an escape character at the end of a
word is dropped, ``""`` yields no word when splitting.

Public API:

* :func:`expand_word` - one string, quotes removed (ENV values, WORKDIR, COPY paths...).
* :func:`expand_words` - split into words after expansion (EXPOSE, parser internals).
* :func:`expand` - the full :class:`Expansion` result: value, words, and which variable names
  the word referenced that were set (``matched``) or unset (``unmatched``); the linter's
  UndefinedVar check uses ``unmatched``.
* :func:`expand_word_with_refs` - ``(value, referenced names)`` shorthand.

Errors raise :class:`~ocibuild.errors.DockerfileError` without a location (the caller knows the
instruction's location and re-raises with it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ocibuild.dockerfile.globs import (
    PatternError,
    pattern_regex,
    trim_prefix,
    trim_suffix,
)
from ocibuild.dockerfile.globs import replace_all as _replace_all
from ocibuild.errors import DockerfileError

__all__ = [
    "GO_SPACES",
    "Expansion",
    "expand",
    "expand_word",
    "expand_word_with_refs",
    "expand_words",
    "is_space",
]

# Go's unicode.IsSpace: Latin-1 spaces plus the Unicode White_Space property. Python's
# str.isspace also counts U+001C..U+001F, which Go does not.
GO_SPACES = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_SPACES = frozenset(GO_SPACES)
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
_EOF = ""


def is_space(ch: str) -> bool:
    """Whether ``ch`` is whitespace by Go's ``unicode.IsSpace`` (BuildKit's word separator)."""
    return ch in _SPACES


@dataclass(frozen=True)
class Expansion:
    """The result of expanding one word.

    ``value`` is the word with quotes removed and variables substituted (``ProcessWord``);
    ``words`` the same split on unquoted whitespace (``ProcessWords``); ``matched`` the names
    looked up and found in the environment, ``unmatched`` those looked up and not found.
    """

    value: str
    words: tuple[str, ...]
    matched: frozenset[str]
    unmatched: frozenset[str]


class _ExpandError(Exception):
    """Internal: a lexer error message, wrapped into a DockerfileError at the API boundary."""


class _Words:
    """Word splitting state of one nesting level.

    XXX: since mid-2024 BuildKit shares one buffer between nesting levels, so a nested
    ``${v:-...}`` drops the text before it from the split word (``1${X:-2}3`` -> ``23``).
    The reference BuildKit we test against (0.13) gives ``123``, as a shell does; we do too.
    """

    __slots__ = ("buf", "words", "in_word")

    def __init__(self) -> None:
        self.buf: list[str] = []
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in _SPACES:
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf.clear()
                self.in_word = False
        else:
            self.buf.append(ch)
            self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def add_raw(self, text: str) -> None:
        if text:  # an empty quoted string adds nothing: ``a "" b`` splits into two words
            self.buf.append(text)
        self.in_word = True

    def finish(self) -> list[str]:
        if self.buf:
            self.words.append("".join(self.buf))
            self.buf.clear()
            self.in_word = False
        return self.words


class _Lexer:
    """One expansion of one word: a cursor over its characters plus options."""

    def __init__(
        self,
        text: str,
        env: Mapping[str, str],
        escape: str,
        *,
        skip_unset: bool,
        raw_quotes: bool,
        raw_escapes: bool,
    ) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.skip_unset = skip_unset
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        if self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            return ch
        return _EOF

    def lookup(self, name: str) -> tuple[str, bool]:
        value = self.env.get(name)
        if value is None:
            self.unmatched.add(name)
            return "", False
        self.matched.add(name)
        return value, True

    def process_until(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Read up to ``stop`` (consumed) or the end (``stop == _EOF``)."""
        saved_raw = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._process_until(stop)
        finally:
            self.raw_escapes = saved_raw

    def _process_until(self, stop: str) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        text, escape = self.text, self.escape
        while self.pos < len(text):
            ch = text[self.pos]
            if stop and ch == stop:
                self.pos += 1
                return "".join(result), words.finish()
            if ch == "$":
                piece = self.dollar()
                result.append(piece)
                words.add_string(piece)
            elif ch == "<":
                piece = self.possible_heredoc()
                result.append(piece)
                words.add_raw(piece)
            elif ch == "'":
                piece = self.single_quote()
                result.append(piece)
                words.add_raw(piece)
            elif ch == '"':
                piece = self.double_quote()
                result.append(piece)
                words.add_raw(piece)
            else:
                self.pos += 1
                if ch == escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self.next()
                    if ch == _EOF:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        if stop:
            raise _ExpandError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.finish()

    def single_quote(self) -> str:
        start = self.pos + 1
        end = self.text.find("'", start)
        if end < 0:
            self.pos = len(self.text)
            raise _ExpandError("unexpected end of statement while looking for matching single-quote")
        self.pos = end + 1
        if self.raw_quotes:
            return self.text[start - 1 : end + 1]
        return self.text[start:end]

    def double_quote(self) -> str:
        result: list[str] = []
        if self.raw_quotes:
            result.append('"')
        self.pos += 1
        while True:
            ch = self.peek()
            if ch == _EOF:
                raise _ExpandError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.pos += 1
                if self.raw_quotes:
                    result.append('"')
                return "".join(result)
            if ch == "$":
                result.append(self.dollar())
                continue
            self.pos += 1
            if ch == self.escape:
                if self.raw_escapes:
                    result.append(ch)
                following = self.peek()
                if following == _EOF:
                    continue  # an escape at the end of the word is dropped
                if following in ('"', "$", self.escape):
                    ch = self.next()
            result.append(ch)

    def possible_heredoc(self) -> str:
        self.pos += 1
        if self.peek() != "<":
            return "<"
        self.pos += 1
        start = self.pos
        while self.peek() in ("\t", "\r", " "):
            self.pos += 1
        return "<<" + self.text[start : self.pos]

    def name(self) -> str:
        """A variable name: letters/digits/_; or a run of digits; or one special parameter."""
        text, start = self.text, self.pos
        if start >= len(text):
            return ""
        first = text[start]
        if first.isdecimal():
            end = start
            while end < len(text) and text[end].isdecimal():
                end += 1
            self.pos = end
            return text[start:end]
        if first in _SPECIAL_PARAMS:
            self.pos += 1
            return first
        end = start
        while end < len(text) and (text[end].isalpha() or text[end].isdecimal() or text[end] == "_"):
            end += 1
        self.pos = end
        return text[start:end]

    def dollar(self) -> str:
        self.pos += 1  # the "$"
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.skip_unset:
                return "$" + name
            return value

        self.pos += 1  # the "{"
        first = self.peek()
        if first == _EOF:
            raise _ExpandError("syntax error: missing '}'")
        if first in "{}:":
            raise _ExpandError("syntax error: bad substitution")
        name = self.name()
        op = self.next()
        if op == _EOF:
            raise _ExpandError("syntax error: missing '}'")
        if op == "}":
            value, found = self.lookup(name)
            if not found and self.skip_unset:
                return "${" + name + "}"
            return value
        if op == "/":
            return self.replace(name)
        if op not in ":+-?#%":
            raise _ExpandError(f"unsupported modifier ({op}) in substitution")
        modifier = op
        null_is_unset = op == ":"
        if null_is_unset:
            op = self.next()
            modifier += op
        pattern_like = op in ("#", "%")
        if null_is_unset and pattern_like:
            raise _ExpandError(f"unsupported modifier ({modifier}) in substitution")
        word = self.nested("}", pattern_like, "syntax error: missing '}'")
        value, found = self.lookup(name)
        if self.skip_unset and not found:
            return "${" + name + modifier + word + "}"
        empty = not found or (null_is_unset and value == "")
        if op == "-":
            return word if empty else value
        if op == "+":
            return "" if empty else word
        if op == "?":
            if not found:
                raise _ExpandError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise _ExpandError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if op in ("#", "%"):
            greedy = word.startswith(op)
            if greedy:
                word = word[1:]
            if op == "%":
                return trim_suffix(word, value, greedy)
            return trim_prefix(word, value, greedy)
        raise _ExpandError(f"unsupported modifier ({modifier}) in substitution")

    def nested(self, stop: str, raw_escapes: bool, eof_message: str) -> str:
        try:
            word, _ = self.process_until(stop, raw_escapes)
        except _ExpandError:
            if self.peek() == _EOF:
                raise _ExpandError(eof_message) from None
            raise
        return word

    def replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.pos += 1
        pattern = self.nested("/", True, "syntax error: missing '/' in ${}")
        replacement = self.nested("}", True, "syntax error: missing '}'")
        value, found = self.lookup(name)
        if self.skip_unset and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = pattern_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return _replace_all(regex, value, replacement)
        match = regex.search(value)
        if match is None:
            return value
        return value[: match.start()] + replacement + value[match.end() :]


def _plain(word: str, escape: str) -> bool:
    if escape not in ("\\", "`"):
        return False  # let expand() reject the escape token
    return not any(c in word for c in ("$", "'", '"', "<", escape))


def expand(
    word: str,
    env: Mapping[str, str],
    escape: str = "\\",
    *,
    skip_unset: bool = False,
    raw_quotes: bool = False,
    raw_escapes: bool = False,
) -> Expansion:
    """Expand ``word`` with ``env``; the complete result (see :class:`Expansion`).

    ``skip_unset`` keeps references to unset variables as written; ``raw_quotes`` and
    ``raw_escapes`` keep quote and escape characters in the output (the parser's heredoc
    detection uses them). Raises DockerfileError on bad syntax or a failed ``${v:?msg}``.
    """
    if escape not in ("\\", "`"):
        raise DockerfileError(f"invalid escape token {escape!r} does not match ` or \\")
    lexer = _Lexer(
        word, env, escape, skip_unset=skip_unset, raw_quotes=raw_quotes, raw_escapes=raw_escapes
    )
    try:
        value, words = lexer.process_until(_EOF, raw_escapes)
    except (_ExpandError, PatternError) as exc:
        raise DockerfileError(f"failed to process {go_quote(word)}: {exc}") from None
    except re.error as exc:  # a glob we translated badly is our bug, but never a crash
        raise DockerfileError(f"failed to process {go_quote(word)}: {exc}") from exc
    except RecursionError:  # ${a:-${b:-${c:-...}}} nested thousands deep
        raise DockerfileError(
            f"failed to process {go_quote(word[:80])}: substitutions nested too deeply"
        ) from None
    return Expansion(value, tuple(words), frozenset(lexer.matched), frozenset(lexer.unmatched))


def expand_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """The expanded word with quotes removed; whitespace is kept (BuildKit ``ProcessWord``)."""
    if _plain(word, escape):
        return word
    return expand(word, env, escape).value


def expand_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """The expanded word split on unquoted whitespace (BuildKit ``ProcessWords``).

    Whitespace produced by an unquoted expansion splits too; empty words are dropped.
    """
    if _plain(word, escape):
        return _split_plain(word)
    return list(expand(word, env, escape).words)


def expand_word_with_refs(
    word: str, env: Mapping[str, str], escape: str = "\\"
) -> tuple[str, frozenset[str]]:
    """``(expand_word(...), names referenced)``: every variable name the expansion looked up,
    set or not. Use :func:`expand` for the set/unset split."""
    result = expand(word, env, escape)
    return result.value, result.matched | result.unmatched


def _split_plain(word: str) -> list[str]:
    words: list[str] = []
    current: list[str] = []
    for ch in word:
        if ch in _SPACES:
            if current:
                words.append("".join(current))
                current.clear()
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


_GO_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t",
               "\v": r"\v", "\\": "\\\\", '"': '\\"'}


def go_quote(text: str) -> str:
    """Go's ``%q`` (``strconv.Quote``) for error messages: printable runes kept, the rest
    escaped."""
    out = ['"']
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)
