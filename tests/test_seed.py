"""The seed note's Dockerfiles (``testdata/seed/``) parse and plan as the note describes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocibuild.dockerfile.model import Copy, Run
from ocibuild.dockerfile.parser import parse
from ocibuild.plan import base_images, make_plan
from ocibuild.plan.model import BaseConfig, BuildPlan, CopyStep, ImageRef, RunStep, StageRef

SEED = Path(__file__).parent.parent / "testdata" / "seed"
PLATFORM = {"platform": "linux/amd64", "build_platform": "linux/amd64"}


def plan_of(name: str, target: str | None = None) -> BuildPlan:
    dockerfile = parse((SEED / name).read_text(), name)
    images = base_images(dockerfile, target, **PLATFORM)
    return make_plan(dockerfile, {i.ref: BaseConfig() for i in images}, target, **PLATFORM)


@pytest.mark.parametrize("name", sorted(p.name for p in SEED.glob("*.Dockerfile")))
def test_every_seed_dockerfile_plans_with_the_last_stage_last(name: str) -> None:
    dockerfile = parse((SEED / name).read_text(), name)
    plan = plan_of(name)
    assert plan.stages[-1].index == len(dockerfile.stages) - 1 == plan.target
    assert plan.groups[-1] == (plan.target,)


def test_builder_pattern_single_stage() -> None:
    plan = plan_of("build.Dockerfile")
    (stage,) = plan.stages
    assert stage.base == ImageRef("golang:1.16", "linux/amd64")
    assert [type(s) for s in stage.steps][1:] == [CopyStep, RunStep]
    run = stage.steps[2]
    assert isinstance(run, RunStep) and "CGO_ENABLED=0 go build" in run.command.text  # type: ignore[union-attr]


def test_multistage_copy_from_index_zero() -> None:
    plan = plan_of("multistage.Dockerfile")
    assert [s.index for s in plan.stages] == [0, 1]
    copy = next(s for s in plan.stages[1].steps if isinstance(s, CopyStep))
    assert copy.source == StageRef(0)
    assert copy.sources == ("/go/src/github.com/alexellis/href-counter/app",)
    assert copy.dest == "./"
    assert plan.stages[1].depends_on == (0,)
    assert plan.groups == ((0,), (1,))


def test_build_stages_full_and_target_stage2() -> None:
    full = plan_of("build-stages.Dockerfile")
    assert [s.name for s in full.stages] == ["stage1", "stage2", None]
    partial = plan_of("build-stages.Dockerfile", target="stage2")
    assert [s.name for s in partial.stages] == ["stage1", "stage2"]
    assert partial.target == 1
    assert partial.images == (ImageRef("debian:buster", "linux/amd64"),)
    copy = partial.stages[1].steps[0]
    assert isinstance(copy, CopyStep) and copy.source == StageRef(0)


def test_previous_stage_as_base() -> None:
    plan = plan_of("previous-stage.Dockerfile")
    stage2 = plan.stages[1]
    assert stage2.name == "stage2" and stage2.base == StageRef(0)
    assert isinstance(stage2.steps[0], RunStep)
    assert plan_of("previous-stage.Dockerfile", target="STAGE2").target == 1


def test_external_image_as_stage_is_listed() -> None:
    dockerfile = parse((SEED / "external-image.Dockerfile").read_text())
    images = base_images(dockerfile, **PLATFORM)
    assert ImageRef("nginx:latest", "linux/amd64") in images
    copy = plan_of("external-image.Dockerfile").stages[0].steps[0]
    assert isinstance(copy, CopyStep)
    assert copy.source == ImageRef("nginx:latest", "linux/amd64")
    assert isinstance(copy.instruction, Copy) and not isinstance(copy.instruction, Run)
