"""The Dockerfile frontend: text -> typed instructions (pure, no I/O).

``parse(text, name)`` builds a :class:`~ocibuild.dockerfile.model.Dockerfile`;
``parse_instruction(text)`` one instruction (ONBUILD triggers from an image config);
``expand_word``/``expand_words``/``expand`` implement BuildKit's shell-word expansion.

Modules, in pipeline order: ``lines`` (directives, continuations, comments, heredoc bodies),
``nodes`` (keyword, flags, argument words: BuildKit's AST), ``instructions`` (typed model
values, per-instruction validation, with ``flags`` for ``--flag`` rules and Go durations),
``parser`` (entry points, stage grouping); ``expand`` + ``globs`` (word expansion); ``dump``
(stable text form for golden tests); ``model`` (the contract); ``check`` (build checks).
"""

from ocibuild.dockerfile.expand import (
    Expansion,
    expand,
    expand_word,
    expand_word_with_refs,
    expand_words,
)
from ocibuild.dockerfile.parser import parse, parse_instruction

__all__ = [
    "Expansion",
    "expand",
    "expand_word",
    "expand_word_with_refs",
    "expand_words",
    "parse",
    "parse_instruction",
]
