"""Table tests for the planner's parts: platform specifiers, RUN --mount specs, cache keys,
WORKDIR normalisation, and the plan's contract (only needed stages, waves, locations)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ocibuild.dockerfile.parser import parse
from ocibuild.errors import PlanError
from ocibuild.image.platform import Platform, normalize_arch, parse_platform
from ocibuild.plan import base_images, make_plan
from ocibuild.plan.cachekey import step_cache_key
from ocibuild.plan.model import BaseConfig, ConfigStep, ContextRef, Mount, RunStep, Scratch
from ocibuild.plan.mounts import mount_from, parse_mount
from ocibuild.plan.steps import normalize_workdir

AMD64 = Platform("linux", "amd64")


@pytest.mark.parametrize(("spec", "expected"), [
    ("linux/amd64", "linux/amd64"),
    ("linux/x86_64", "linux/amd64"),
    ("amd64", "linux/amd64"),
    ("linux/aarch64", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64"),
    ("linux/arm64/v9.0", "linux/arm64/v9"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/armhf", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"),
    ("linux/arm/6", "linux/arm/v6"),
    ("linux/i386", "linux/386"),
    ("linux/i686", "linux/386"),
    ("i686", "linux/386"),
    ("LINUX/AMD64", "linux/amd64"),
    ("linux", "linux/amd64"),
    ("windows/amd64", "windows/amd64"),
    ("macos/arm64", "darwin/arm64"),
    ("riscv64", "linux/riscv64"),
])
def test_parse_platform(spec: str, expected: str) -> None:
    assert str(parse_platform(spec, AMD64)) == expected


@pytest.mark.parametrize("spec", ["", "linux/", "linux/amd64/v1/x", "*", "nosuch", "linux/a b"])
def test_parse_platform_errors(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_platform(spec, AMD64)


def test_normalize_arch_amd64_v1() -> None:
    assert normalize_arch("x86-64", "v1") == ("amd64", "")


@pytest.mark.parametrize("spec", [
    "linux/amd64", "linux/x86_64", "linux/amd64/v1", "linux/amd64/v3", "linux/aarch64",
    "linux/arm64/v8", "linux/arm64/8", "linux/arm", "linux/arm/7", "linux/armhf",
    "linux/armel", "linux/i386", "linux/i686", "linux/386", "windows/amd64",
])
def test_one_platform_for_planner_and_images(spec: str) -> None:
    """The planner's platforms are the image code's: same class, same normal form, so the
    ``ImageRef`` platform a plan names selects the manifest the registry code would."""
    from ocibuild.image import Platform as ImagePlatform

    planned = parse_platform(spec, AMD64)
    assert isinstance(planned, ImagePlatform)
    assert planned == ImagePlatform.parse(spec).normalised()
    assert ImagePlatform.parse(str(planned)).matches(ImagePlatform.parse(spec))


def test_no_second_platform_module() -> None:
    import importlib.util

    assert importlib.util.find_spec("ocibuild.plan.platform") is None


def _mount(spec: str, workdir: str = "/work", env: dict[str, str] | None = None) -> Mount:
    values = env or {}
    return parse_mount(spec, lambda v: values.get(v, v), workdir).mount


@pytest.mark.parametrize(("spec", "expected"), [
    ("target=/src", Mount("bind", target="/src", readonly=True)),
    ("type=bind,source=a/b,target=src,rw", Mount("bind", target="/work/src", source_path="/a/b",
                                                readonly=False)),
    ("type=bind,src=.,dst=/x,ro=false", Mount("bind", target="/x", readonly=False)),
    ("type=cache,target=/root/.cache/", Mount("cache", target="/root/.cache", source=Scratch(),
                                             readonly=False, id="/root/.cache")),
    ("type=cache,target=rel,id=x,sharing=PRIVATE,mode=0700,uid=1,gid=2",
     Mount("cache", target="/work/rel", source=Scratch(), readonly=False, id="x",
           sharing="private", mode=0o700, uid=1, gid=2)),
    ("type=tmpfs,target=/t,size=1g", Mount("tmpfs", target="/t", source=Scratch(), readonly=False,
                                          size=1 << 30)),
    ("type=secret,id=aws", Mount("secret", target="/run/secrets/aws", id="aws")),
    ("type=secret,target=/etc/token", Mount("secret", target="/etc/token", id="token")),
    ("type=secret,source=s,env=S,required", Mount("secret", id="s", env="S", required=True)),
    ("type=ssh", Mount("ssh", target="/run/buildkit/ssh_agent.0", id="default")),
    ("type=ssh,id=gh,target=/s,mode=0600", Mount("ssh", target="/s", id="gh", mode=0o600)),
    ("TYPE=Cache,Target=/c",
     Mount("cache", target="/c", source=Scratch(), readonly=False, id="/c")),
])
def test_parse_mount(spec: str, expected: Mount) -> None:
    assert _mount(spec) == expected


@pytest.mark.parametrize(("spec", "message"), [
    ("type=volume,target=/x", 'unsupported mount type "volume"'),
    ("type=cahce,target=/x", 'unsupported mount type "cahce" (did you mean cache?)'),
    ("type=bind,target=/x,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
    ("type=bind,target=/x,readonly=maybe", "invalid value for readonly: maybe"),
    ("type=bind,target=/x,size=1m", "unexpected key 'size' for mount type 'bind'"),
    ("type=bind,target=/x,required", "unexpected key 'required' for mount type 'bind'"),
    ("type=bind,target=/x,mode=0755", 'mode not allowed for "bind" type mounts'),
    ("type=cache,target=/x,sharing=everyone", 'unsupported sharing value "everyone"'),
    ("type=cache,target=/x,uid=-1", "invalid value -1 for uid"),
    ("type=cache,target=/x,mode=9", "invalid value 9 for mode"),
    ("type=bind,target=/", 'invalid mount target "/"'),
    ("type=bind,target=x", None),
    ("type=secret", "invalid secret mount. one of source, target required"),
    ("type=secret,id=a,from=x", "secret mount should not have a from"),
    ("type=secret,source=a,id=b", "both source and id can't be set"),
    ("type=ssh,source=a", "ssh does not support source"),
    ("type=tmpfs,target=/t,sharing=locked", "invalid cache sharing set for tmpfs mount"),
    ("type=bind,target=/x,oops", "invalid field 'oops' must be a key=value pair"),
])
def test_parse_mount_errors(spec: str, message: str | None) -> None:
    if message is None:
        assert _mount(spec, workdir="/").target == "/x"
        return
    with pytest.raises(ValueError) as info:
        _mount(spec)
    assert str(info.value) == message


def test_mount_values_are_expanded_and_from_is_not() -> None:
    mount = _mount("type=cache,target=$DIR,id=$ID", env={"$DIR": "/d", "$ID": "i"})
    assert (mount.target, mount.id) == ("/d", "i")
    assert mount_from("type=bind,from=build,target=/x") == "build"
    assert mount_from("type=bind,target=/x") == ""
    with pytest.raises(ValueError, match="doesn't support variable expansion"):
        mount_from("from=$STAGE,target=/x")


@pytest.mark.parametrize(("current", "requested", "expected"), [
    ("", "app", "/app"), ("/a", "b", "/a/b"), ("/a", "../..", "/"),
    ("/a/b", "./c/../d", "/a/b/d"), ("app", "b", "/app/b"),
    # BuildKit keeps an absolute WORKDIR as written; only a relative one is joined and cleaned.
    ("/a", "/b/", "/b/"), ("", "//x", "//x"), ("/", "/srv/../app/./", "/srv/../app/./"),
    ("/var//lib/app/", "sub/", "/var/lib/app/sub"), ("//", "x", "/x"),
    ("/x//", "", "/x//"), ("", "", "/"),  # empty (an ARG expanding to nothing) keeps the current
])
def test_normalize_workdir(current: str, requested: str, expected: str) -> None:
    assert normalize_workdir(current, requested) == expected


PLATFORM = {"platform": "linux/amd64", "build_platform": "linux/amd64"}


def plan_text(text: str, **kwargs: object):  # type: ignore[no-untyped-def]
    dockerfile = parse(text)
    images = base_images(dockerfile, **PLATFORM, **kwargs)  # type: ignore[arg-type]
    return make_plan(dockerfile, {i.ref: BaseConfig() for i in images}, **PLATFORM, **kwargs)  # type: ignore[arg-type]


def test_cache_key_ignores_location_and_proxies_but_not_args() -> None:
    one = plan_text("FROM scratch\nARG A=1\nRUN make\n", build_args={"HTTP_PROXY": "http://a"})
    two = plan_text("FROM scratch\n\n\nARG A=1\nRUN make\n", build_args={"HTTP_PROXY": "http://b"})
    three = plan_text("FROM scratch\nARG A=2\nRUN make\n")
    run1, run2, run3 = (p.stages[0].steps[-1] for p in (one, two, three))
    assert isinstance(run1, RunStep) and run1.instruction.location.line == 3
    assert step_cache_key("p", run1) == step_cache_key("p", run2)
    assert step_cache_key("p", run1) != step_cache_key("p", run3)
    assert step_cache_key("p", run1) != step_cache_key("q", run1)
    assert step_cache_key("p", run1, "content") != step_cache_key("p", run1)
    assert step_cache_key("p", run1).startswith("sha256:") and len(step_cache_key("p", run1)) == 71


def test_config_step_carries_an_expanded_copy() -> None:
    plan = plan_text("FROM scratch\nENV D=/data\nWORKDIR $D\n")
    step = plan.stages[0].steps[1]
    assert isinstance(step, ConfigStep)
    original = parse("FROM scratch\nENV D=/data\nWORKDIR $D\n").stages[0].instructions[1]
    assert step.instruction == replace(original, path="/data")


def test_copy_defaults_to_context_and_missing_base_config_is_an_error() -> None:
    step = plan_text("FROM scratch\nCOPY a /b\n").stages[0].steps[0]
    assert step.source == ContextRef()  # type: ignore[union-attr]
    with pytest.raises(PlanError, match="no config for base image alpine"):
        make_plan(parse("FROM alpine\n"), {}, **PLATFORM)  # type: ignore[arg-type]


def test_bad_platform() -> None:
    with pytest.raises(PlanError, match="invalid platform"):
        make_plan(parse("FROM scratch\n"), {}, platform="linux/a b")
