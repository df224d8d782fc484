"""Property tests for the Dockerfile frontend: nothing but OcibuildError escapes, whatever the
input; plain words expand to themselves; locations are sane."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ocibuild.dockerfile import expand, expand_word, expand_words, parse, parse_instruction
from ocibuild.dockerfile.expand import is_space
from ocibuild.errors import DockerfileError, OcibuildError

# Pieces that exercise every branch of the lexer and parser when shuffled together.
_PIECES = [
    "FROM", "from", "scratch", "AS", "as", "RUN", "COPY", "ADD", "ENV", "ARG", "LABEL", "CMD",
    "ENTRYPOINT", "SHELL", "ONBUILD", "HEALTHCHECK", "NONE", "EXPOSE", "VOLUME", "USER",
    "WORKDIR", "STOPSIGNAL", "MAINTAINER", "COPPY", "--mount=type=cache,target=/x", "--from=a",
    "--link", "--link=false", "--interval=5s", "--retries=3", "--", "--x", " ", "  ", "\t",
    "\n", "\r\n", "\\", "\\\n", "`", "# escape=`\n", "# syntax=x\n", "# check=error=true\n",
    "#", "<<EOF", "<<-EOF", "<<'EOF'", '<<"EOF"', "EOF", "\tEOF", "3<<X", "X", "[", "]", '"',
    "'", ",", '["a", "b"]', "[1]", "$", "${", "}", "${A:-b}", "$A", "=", "a=b", "\x00",
    "\ufeff", "é", "\u00a0", "\x1c",
]

_dockerfile_text = st.lists(st.sampled_from(_PIECES), max_size=40).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_parse_arbitrary_bytes_raises_only_ocibuild_errors(data: bytes) -> None:
    try:
        parse(data)
    except OcibuildError:
        pass


@settings(max_examples=500, deadline=None)
@given(_dockerfile_text)
def test_parse_dockerfile_like_text_raises_only_ocibuild_errors(text: str) -> None:
    try:
        result = parse("FROM scratch\n" + text)
    except OcibuildError as exc:
        assert str(exc)  # renders as one message
        return
    total_lines = ("FROM scratch\n" + text).count("\n") + 1
    previous = 0
    for instruction in result.instructions:
        location = instruction.location
        assert 1 <= location.line <= total_lines
        assert location.end_line is not None and location.line <= location.end_line
        assert location.line > previous
        previous = location.end_line
        assert instruction.keyword == instruction.keyword.upper()


@settings(max_examples=300, deadline=None)
@given(_dockerfile_text)
def test_parse_instruction_raises_only_ocibuild_errors(text: str) -> None:
    try:
        parse_instruction(text)
    except OcibuildError:
        pass


_word_text = st.lists(
    st.sampled_from(["$", "{", "}", ":", "-", "+", "?", "#", "%", "/", "'", '"', "\\", "`",
                     "A", "B", "1", "@", " ", "*", "<", "<<", "x"]),
    max_size=25,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(_word_text, st.sampled_from(["\\", "`"]))
def test_expand_raises_only_dockerfile_errors(word: str, escape: str) -> None:
    env = {"A": "a b", "B": ""}
    try:
        result = expand(word, env, escape)
    except DockerfileError as exc:
        assert str(exc).startswith("failed to process")
        return
    assert result.matched <= {"A", "B"}
    assert not result.words or all(result.words)


_plain = st.text(
    alphabet=st.characters(blacklist_characters="$'\"\\`<", blacklist_categories=("Cs",)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(_plain)
def test_plain_words_expand_to_themselves(word: str) -> None:
    assert expand_word(word, {"A": "x"}) == word
    assert expand(word, {"A": "x"}).value == word
    expected = "".join(" " if is_space(ch) else ch for ch in word).split(" ")
    assert expand_words(word, {}) == [piece for piece in expected if piece]


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True), _plain)
def test_variables_substitute_their_value(name: str, value: str) -> None:
    env = {name: value}
    assert expand_word("${" + name + "}", env) == value
    assert expand_word('"$' + name + '"', env) == value
    assert expand_word("'$" + name + "'", env) == "$" + name
