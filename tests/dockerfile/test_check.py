"""Build checks (``docker build --check``): one positive and one negative case per rule, with
BuildKit's exact messages, plus the ``# check=`` directive and the ``--check`` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ocibuild.dockerfile.check import CheckConfig, check, run_checks
from ocibuild.dockerfile.parser import parse
from ocibuild.errors import DockerfileError, PlanError
from ocibuild.fs.ignore import IgnoreMatcher, read_ignore_file

# (rule, Dockerfile that triggers it, expected "line: message", Dockerfile that does not)
CASES = [
    ("StageNameCasing", "FROM scratch AS Build\n",
     "1: Stage name 'Build' should be lowercase", "FROM scratch AS build\n"),
    ("FromAsCasing", "FROM scratch as build\n",
     "1: 'as' and 'FROM' keywords' casing do not match", "from scratch as build\n"),
    ("ConsistentInstructionCasing", "FROM scratch\nCOPY a /a\nrun true\n",
     "3: Command 'run' should match the case of the command majority (uppercase)",
     "from scratch\ncopy a /a\nrun true\n"),
    ("DuplicateStageName", "FROM scratch AS a\nFROM scratch AS a\n",
     '2: Duplicate stage name "a", stage names should be unique',
     "FROM scratch AS a\nFROM scratch AS b\n"),
    ("ReservedStageName", "FROM scratch AS context\n",
     '1: Stage name should not use the same name as reserved stage "context"',
     "FROM scratch AS contexts\n"),
    ("JSONArgsRecommended", "FROM scratch\nCMD run server\n",
     "2: JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
     'FROM scratch\nSHELL ["/bin/sh", "-c"]\nCMD run server\nENTRYPOINT ["x"]\n'),
    ("MaintainerDeprecated", "FROM scratch\nMAINTAINER me\n",
     "2: Maintainer instruction is deprecated in favor of using label",
     'FROM scratch\nLABEL org.opencontainers.image.authors="me"\n'),
    ("UndefinedVar", "FROM scratch\nENV PATH=$PATH:/bin\nCOPY $SRC /x\n",
     "3: Usage of undefined variable '$SRC'",
     "FROM scratch\nARG SRC\nCOPY $SRC /x\nRUN echo $NOPE\n"),
    ("UndefinedVar", "FROM scratch\nENV PATH=/bin\nENV X=$PAHT\n",
     "3: Usage of undefined variable '$PAHT' (did you mean $PATH?)", "FROM scratch\nENV X=$PATH\n"),
    ("UndefinedVar", "FROM scratch\nCOPY <<EOF /f\n$UNSET\nEOF\n",
     "2: Usage of undefined variable '$UNSET'",
     "FROM scratch\nCOPY <<'EOF' /f\n$UNSET\nEOF\nRUN <<EOF\n$UNSET\nEOF\n"),
    ("UndefinedArgInFrom", "ARG VERSION=1\nFROM alpine:$VERSOIN\n",
     "2: FROM argument 'VERSOIN' is not declared (did you mean VERSION?)",
     "ARG VERSION=1\nFROM alpine:$VERSION\n"),
    ("InvalidDefaultArgInFrom", "ARG TAG\nFROM alpine:$TAG\n",
     "2: Default value for ARG alpine:$TAG results in empty or invalid base image name",
     "ARG TAG=3.19\nFROM alpine:$TAG\n"),
    ("WorkdirRelativePath", "FROM scratch\nWORKDIR app\n",
     '2: Relative workdir "app" can have unexpected results if the base image changes',
     "FROM scratch\nWORKDIR /app\nWORKDIR sub\n"),
    ("MultipleInstructionsDisallowed", 'FROM scratch\nCMD ["a"]\nCMD ["b"]\n',
     "2: Multiple CMD instructions should not be used in the same stage because only the last "
     "one will be used", 'FROM scratch AS a\nCMD ["a"]\nFROM a\nCMD ["b"]\n'),
    ("SecretsUsedInArgOrEnv", "FROM scratch\nARG GITHUB_TOKEN\n",
     '2: Do not use ARG or ENV instructions for sensitive data (ARG "GITHUB_TOKEN")',
     "FROM scratch\nARG PUBLIC_KEY\nENV TOKENIZER=x\n"),
    ("LegacyKeyValueFormat", "FROM scratch\nENV A 1\n",
     '2: "ENV key=value" should be used instead of legacy "ENV key value" format',
     "FROM scratch\nENV A=1\nLABEL b=2\n"),
    ("ExposeProtoCasing", "FROM scratch\nEXPOSE 80/TCP\n",
     "2: Defined protocol '80/TCP' in EXPOSE instruction should be lowercase",
     "FROM scratch\nEXPOSE 80/tcp 53/udp\n"),
    ("ExposeInvalidFormat", "FROM scratch\nEXPOSE 8080:80\n",
     "2: EXPOSE instruction should not define an IP address or host-port mapping, found '8080:80'",
     "FROM scratch\nEXPOSE 80 8000-8010\n"),
    ("FromPlatformFlagConstDisallowed", "FROM --platform=linux/arm64 alpine AS build\n",
     '1: FROM --platform flag should not use constant value "linux/arm64"',
     "FROM --platform=linux/arm64 alpine AS build-arm64\nFROM --platform=$BUILDPLATFORM alpine\n"),
    ("RedundantTargetPlatform", "FROM --platform=$TARGETPLATFORM alpine\n",
     "1: Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the "
     "default behavior", "FROM --platform=$BUILDPLATFORM alpine\n"),
    ("NoEmptyContinuation", "FROM scratch\nRUN echo \\\n\n  hi\n",
     "4: Empty continuation line", "FROM scratch\nRUN echo \\\n  hi\n"),
]


def findings(text: str, **kwargs: object) -> list[str]:
    return [f"{w.location.line}: {w.message}" for w in check(parse(text), **kwargs)  # type: ignore[arg-type]
            if w.rule == kwargs.get("rule", w.rule)]


@pytest.mark.parametrize(("rule", "positive", "expected", "negative"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule(rule: str, positive: str, expected: str, negative: str) -> None:
    found = check(parse(positive))
    assert expected in [f"{w.location.line}: {w.message}" for w in found if w.rule == rule]
    assert all(w.url.startswith("https://docs.docker.com/go/dockerfile/rule/") for w in found)
    assert [w for w in check(parse(negative)) if w.rule == rule] == []


def test_every_rule_has_a_case() -> None:
    from ocibuild.dockerfile.check import RULES

    assert set(RULES) - {c[0] for c in CASES} == {"CopyIgnoredFile"}


def test_copy_ignored_file() -> None:
    text = ("FROM scratch AS s\nCOPY node_modules/pkg /x\nCOPY src /src\n"
            "FROM scratch\nCOPY --from=s /node_modules /y\nADD logs/a.log /l\n")
    found = [str(w) for w in check(parse(text), ignore_patterns=["node_modules", "**/*.log"])]
    assert found == [
        'Dockerfile:2 CopyIgnoredFile: Attempting to Copy file "node_modules/pkg" that is '
        "excluded by .dockerignore",
        'Dockerfile:6 CopyIgnoredFile: Attempting to Add file "logs/a.log" that is excluded by '
        ".dockerignore",
    ]
    # BuildKit skips the rule when the ignore file has exclusions (too hard to decide statically)
    assert check(parse(text), ignore_patterns=["node_modules", "!node_modules/pkg"]) == []
    assert check(parse(text)) == []


def test_ignore_matcher_patterns() -> None:
    matcher = IgnoreMatcher(
        read_ignore_file("# comment\n/build\n*.tmp\ndocs/**/*.md\na?c\n[xy]z\n")
    )
    for path in ("build", "build/out/x", "f.tmp", "docs/a/b/c.md", "docs/c.md", "abc", "xz"):
        assert matcher.matches(path), path
    for path in ("src/build", "src/f.tmp", "docs/c.txt", "abbc", "zz"):
        assert not matcher.matches(path), path


def test_check_directive_skip_and_error() -> None:
    text = ("# check=skip=JSONArgsRecommended,MaintainerDeprecated;error=true\n"
            "FROM scratch AS X\nMAINTAINER me\nCMD run\n")
    result = run_checks(parse(text))
    assert [w.rule for w in result.warnings] == ["StageNameCasing"]
    assert result.config == CheckConfig(frozenset({"JSONArgsRecommended", "MaintainerDeprecated"}),
                                         False, True)
    assert check(parse("# check=skip=all\nFROM scratch AS X\nCMD run\n")) == []
    with pytest.raises(DockerfileError, match="invalid check option"):
        run_checks(parse("# check=skip\nFROM scratch\n"))


def test_plan_error_is_returned_with_findings() -> None:
    result = run_checks(parse("FROM scratch AS X\nCOPY --from=X /a /b\n"))
    assert [w.rule for w in result.warnings] == ["StageNameCasing"]
    assert isinstance(result.error, PlanError) and "circular dependency" in result.error.message
    with pytest.raises(PlanError):
        check(parse("FROM scratch AS X\nCOPY --from=X /a /b\n"))


def test_unneeded_stages_are_checked_without_target_only() -> None:
    text = "FROM scratch AS a\nCMD run\nFROM scratch AS b\nCOPY x /x\n"
    assert [w.rule for w in check(parse(text))] == ["JSONArgsRecommended"]
    assert check(parse(text), target="b") == []


def run_cli(tmp_path: Path, dockerfile: str, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    return subprocess.run(
        [sys.executable, "-m", "ocibuild", "--check", *extra, str(tmp_path)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2],
    )


def test_cli_prints_findings_and_exits_zero(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "FROM scratch\nCMD run\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("Dockerfile:2 JSONArgsRecommended: JSON arguments recommended for CMD "
                           "to prevent unintended behavior related to OS signals\n")


def test_cli_error_true_exits_one(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "# check=error=true\nFROM scratch\nCMD run\n")
    assert done.returncode == 1
    assert "lint violation found for rules: JSONArgsRecommended" in done.stderr
    assert run_cli(tmp_path, "# check=error=true\nFROM scratch\n").returncode == 0


def test_cli_parse_error(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "FROM scratch\n\nCOPPY a b\n")
    assert done.returncode == 1
    assert done.stderr.startswith("error: Dockerfile:3: unknown instruction: COPPY")


def test_cli_uses_dockerignore_and_file_flag(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("secret.txt\n")
    (tmp_path / "other.Dockerfile").write_text("FROM scratch\nCOPY secret.txt /\n")
    done = run_cli(tmp_path, "FROM scratch\n", "-f", str(tmp_path / "other.Dockerfile"))
    assert done.returncode == 0
    assert done.stdout.startswith(f"{tmp_path / 'other.Dockerfile'}:2 CopyIgnoredFile:")
