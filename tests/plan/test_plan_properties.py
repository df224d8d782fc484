"""Laws of the plan, over random multi-stage Dockerfiles built from a pool of lines: planning
and checking raise nothing but OcibuildError; a plan lists only needed stages in topological
order with the target last; the waves partition the stages and respect every dependency."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocibuild.dockerfile.check import run_checks
from ocibuild.dockerfile.parser import parse
from ocibuild.errors import OcibuildError
from ocibuild.plan import base_images, make_plan
from ocibuild.plan.model import BaseConfig, StageRef

NAMES = ["a", "b", "c", "Build", "base"]
BODY = [
    "RUN echo $X", "ARG X", "ARG X=${{Y:-1}}", "ENV Y=$X", "WORKDIR w$X", "EXPOSE 80/udp $P",
    "COPY --from={n} /a /b", "COPY --from={i} /a /b", "COPY --from=alpine /a /b",
    "RUN --mount=from={n},target=/m true", "RUN --mount=type=cache,target=c$X true",
    "ONBUILD COPY --from={n} /x /y", "USER ${{U:?no}}", "LABEL k=$X", "ARG TARGETARCH",
    "COPY <<EOF /f\n$X\nEOF", "STOPSIGNAL $S",
]
FROMS = ["FROM scratch", "FROM alpine:$V", "FROM {n}", "FROM --platform=$BUILDPLATFORM alpine"]


@st.composite
def dockerfiles(draw: st.DrawFn) -> str:
    lines = ["ARG V=3"] if draw(st.booleans()) else []
    for _ in range(draw(st.integers(1, 5))):
        base = draw(st.sampled_from(FROMS)).format(n=draw(st.sampled_from(NAMES)))
        if draw(st.booleans()):
            base += " AS " + draw(st.sampled_from(NAMES))
        lines.append(base)
        for _ in range(draw(st.integers(0, 4))):
            line = draw(st.sampled_from(BODY))
            lines.append(line.format(n=draw(st.sampled_from(NAMES)), i=draw(st.integers(0, 5))))
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=dockerfiles(), target=st.sampled_from([None, "a", "b", "0"]),
       args=st.dictionaries(st.sampled_from(["X", "V", "U", "Q"]), st.sampled_from(["", "1", "x y"]),
                            max_size=2))
def test_plan_laws(text: str, target: str | None, args: dict[str, str]) -> None:
    dockerfile = parse(text)
    try:
        run_checks(dockerfile, args, ["*.md"], target)
    except OcibuildError:
        pass
    try:
        images = base_images(dockerfile, target, args, "linux/amd64", "linux/amd64")
        bases = {i.ref: BaseConfig(onbuild=("RUN true",)) for i in images}
        plan = make_plan(dockerfile, bases, target, args, "linux/amd64", "linux/amd64")
    except OcibuildError:
        return
    order = [s.index for s in plan.stages]
    assert order == sorted(set(order)) and order[-1] == plan.target
    assert sorted(i for wave in plan.groups for i in wave) == order
    wave_of = {i: n for n, wave in enumerate(plan.groups) for i in wave}
    for stage in plan.stages:
        for dep in stage.depends_on:
            assert dep < stage.index and wave_of[dep] < wave_of[stage.index]
        if isinstance(stage.base, StageRef):
            assert stage.base.index in stage.depends_on
    assert set(images) <= set(plan.images)
