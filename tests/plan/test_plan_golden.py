"""Golden plan dumps: ``golden/<case>/Dockerfile`` (+ ``args.txt``: one ``--build-arg K=V``,
``--target T``, ``--platform P`` or ``--build-platform P`` per line; + ``bases.json``: base
image configs by reference) planned and dumped, compared with ``expected.txt``.

Run ``pytest tests/plan --update-golden`` to rewrite the expected files, then review the diff.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocibuild.dockerfile.parser import parse
from ocibuild.errors import OcibuildError
from ocibuild.plan import base_images, make_plan
from ocibuild.plan.dump import dump_plan
from ocibuild.plan.model import BaseConfig

GOLDEN = Path(__file__).parent / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())


def render(case: Path) -> str:
    """The case's expected text: images to resolve, then the plan dump, or the error."""
    options: dict[str, str | None] = {"target": None, "platform": "linux/amd64",
                                      "build_platform": "linux/amd64"}
    build_args: dict[str, str] = {}
    args_file = case / "args.txt"
    for line in args_file.read_text().splitlines() if args_file.exists() else ():
        flag, _, value = line.strip().partition(" ")
        if flag == "--build-arg":
            key, _, val = value.partition("=")
            build_args[key] = val
        elif flag:
            options[flag.removeprefix("--").replace("-", "_")] = value
    configs_file = case / "bases.json"
    configs = json.loads(configs_file.read_text()) if configs_file.exists() else {}
    try:
        dockerfile = parse((case / "Dockerfile").read_text(), "Dockerfile")
        images = base_images(dockerfile, build_args=build_args, **options)
        bases = {
            i.ref: BaseConfig(**{k: tuple(v) if isinstance(v, list) else v
                                 for k, v in configs.get(i.ref, {}).items()})
            for i in images
        }
        plan = make_plan(dockerfile, bases, build_args=build_args, **options)
    except OcibuildError as exc:
        return f"error: {exc}\n" + (f"hint: {exc.hint}\n" if exc.hint else "")
    listed = ", ".join(f"{i.ref} ({i.platform})" for i in images) or "-"
    return f"base images: {listed}\n" + dump_plan(plan)


@pytest.mark.parametrize("name", CASES)
def test_golden_plan(name: str, update_golden: bool) -> None:
    case = GOLDEN / name
    got = render(case)
    expected = case / "expected.txt"
    if update_golden:
        expected.write_text(got)
    assert expected.exists(), f"no expected.txt for {name}: run with --update-golden"
    assert got == expected.read_text()


def test_enough_cases() -> None:
    assert len(CASES) >= 25
