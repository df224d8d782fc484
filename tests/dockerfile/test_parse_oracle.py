"""Differential tests against a reference BuildKit (``pytest -m oracle``; skipped unless
``ORACLE_DOCKER`` is set, e.g. by ``eval "$(../shared/tools/buildkit-oracle.sh)"``).

Each word of the expansion table becomes a LABEL value; BuildKit's labels must equal our
``expand_word``. Heredoc bodies are exported with ``-o type=local`` and compared with the model.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from test_expand import ENV, WORD_CASES, Err  # tests/dockerfile is on sys.path (rootdir mode)

from ocibuild.dockerfile import expand_word, parse
from ocibuild.dockerfile import model as m
from ocibuild.dockerfile.words import parse_words

pytestmark = [
    pytest.mark.oracle,
    pytest.mark.skipif("ORACLE_DOCKER" not in os.environ, reason="no reference BuildKit"),
]


def _docker(*args: str) -> str:
    command = [os.environ["ORACLE_DOCKER"], *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _usable(word: str) -> bool:
    # BuildKit 0.13 panics on an empty #/% pattern (``${v#}``); a LABEL value must be one word.
    return (
        "\n" not in word
        and "\t" not in word
        and "NL" not in word
        and "#}" not in word
        and "%}" not in word
        and not word.endswith("\\")
        and parse_words(word, "\\") == [word]
    )


def test_label_values_expand_like_buildkit(tmp_path: Path) -> None:
    env = {k: v for k, v in ENV.items() if "\n" not in v}
    lines = ["FROM scratch", "ENV " + " ".join(f"{k}={json.dumps(v)}" for k, v in env.items())]
    cases = {}
    for index, (word, expected) in enumerate(WORD_CASES):
        if word and not isinstance(expected, Err) and _usable(word):
            cases[f"l{index}"] = word
            lines.append(f"LABEL l{index}={word}")
    (tmp_path / "Dockerfile").write_text("\n".join(lines) + "\n", encoding="utf-8")
    dockerfile = parse((tmp_path / "Dockerfile").read_text(encoding="utf-8"))
    env_instr = dockerfile.instructions[1]
    assert isinstance(env_instr, m.Env)
    our_env = {pair.key: expand_word(pair.value, {}) for pair in env_instr.pairs}
    tag = f"ocibuild-oracle-words:{os.getpid()}"
    _docker("build", "-q", "-t", tag, str(tmp_path))
    try:
        labels = json.loads(_docker("image", "inspect", tag, "--format", "{{json .Config.Labels}}"))
    finally:
        _docker("image", "rm", tag)
    diffs = {
        word: (labels.get(key), expand_word(word, our_env))
        for key, word in cases.items()
        if labels.get(key) != expand_word(word, our_env)
    }
    assert not diffs
    assert len(cases) > 100


def test_heredoc_bodies_like_buildkit(tmp_path: Path) -> None:
    text = (
        "FROM scratch\nARG X=val\n"
        "COPY <<EOF /a\n\t$X tab\n${X%%l}\nEOF\n"
        "COPY <<-EOF /b\n\t$X\n\t\tx\n  y\n\tEOF\n"
        'COPY <<"EOF" /c\n$X\nEOF\n'
        'COPY <<E"O"F /d\n$X\nEOF\n'
        "COPY <<EOF1 <<EOF2 /e/\none\nEOF1\ntwo\nEOF2\n"
    )
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    _docker("build", "-q", "-o", f"type=local,dest={out}", str(tmp_path / "ctx"))
    copies = [i for i in parse(text).instructions if isinstance(i, m.Copy)]
    for copy in copies:
        for heredoc in copy.heredocs:
            dest = copy.dest + heredoc.name if copy.dest.endswith("/") else copy.dest
            body = heredoc.content
            if heredoc.expand:
                body = expand_word(body, {"X": "val"}) if "$" in body else body
            assert (out / dest.lstrip("/")).read_text(encoding="utf-8") == body, dest


def test_env_label_arg_forms_like_buildkit(tmp_path: Path) -> None:
    text = (
        "FROM scratch\n"
        'ENV MSG "quoted value" tail\n'
        "ENV L2   hello   big  world  \n"
        "ENV A=\"x y\" B='$MSG' C=a\\ b D=\"\\$E\" E= F=\"\"\n"
        "ARG G=\"q r\" H='s t' I\n"
        "ENV G=$G H=$H I=${I:-unset}\n"
        "LABEL \"c d\"=\"e f\" plain=1 'sq k'=v\n"
        'LABEL legacy some value "with quotes"\n'
        "ENV J=a\\\nb\n"
    )
    (tmp_path / "Dockerfile").write_text(text, encoding="utf-8")
    tag = f"ocibuild-oracle-forms:{os.getpid()}"
    _docker("build", "-q", "-t", tag, str(tmp_path))
    try:
        config = json.loads(_docker("image", "inspect", tag, "--format", "{{json .Config}}"))
    finally:
        _docker("image", "rm", tag)
    env: dict[str, str] = {}
    args: dict[str, str] = {}
    labels: dict[str, str] = {}
    for instruction in parse(text).instructions:
        scope = {**args, **env}
        if isinstance(instruction, m.Arg):
            for decl in instruction.args:
                if decl.default is not None:
                    args[decl.name] = expand_word(decl.default, scope)
        elif isinstance(instruction, m.Env):
            for pair in instruction.pairs:
                env[expand_word(pair.key, scope)] = expand_word(pair.value, scope)
        elif isinstance(instruction, m.Label):
            for pair in instruction.pairs:
                labels[expand_word(pair.key, scope)] = expand_word(pair.value, scope)
    theirs = dict(item.split("=", 1) for item in config["Env"])
    theirs.pop("PATH")
    assert theirs == env
    assert config["Labels"] == labels
