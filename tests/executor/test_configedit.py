"""Config edits and history texts, checked against BuildKit's renderings (dockerfile2llb)."""

from __future__ import annotations

import pytest

from ocibuild.dockerfile import model as df
from ocibuild.errors import ExecutionError, Location
from ocibuild.executor import configedit as ce

LOC = Location("Dockerfile", 1)


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0s"), (1, "1ns"), (1500, "1.5µs"), (2_000_000, "2ms"), (1_500_000_000, "1.5s"),
    (30 * 10**9, "30s"), (90 * 10**9, "1m30s"), (3600 * 10**9, "1h0m0s"),
    (3661 * 10**9 + 5 * 10**8, "1h1m1.5s"),
])
def test_go_duration(ns: int, text: str) -> None:
    assert ce.go_duration(ns) == text


@pytest.mark.parametrize(("value", "quoted"), [
    ("a b", '"a b"'), ('say "hi"', '"say \\"hi\\""'), ("tab\there", '"tab\\there"'),
    ("\x01", '"\\x01"'), ("é", '"é"'), ("back\\slash", '"back\\\\slash"'),
])
def test_go_quote(value: str, quoted: str) -> None:
    assert ce.go_quote(value) == quoted


@pytest.mark.parametrize(("current", "requested", "result"), [
    ("/", "/root/", "/root/"),  # BuildKit keeps an absolute WORKDIR as written
    ("/a", "b", "/a/b"), ("/a/b", "../c", "/a/c"), ("", "x", "/x"), ("/a", "", "/a"),
    ("/", "/a//b/", "/a//b/"),
])
def test_normalize_workdir(current: str, requested: str, result: str) -> None:
    assert ce.normalize_workdir(current, requested) == result


def test_parse_ports() -> None:
    assert ce.parse_ports(["80", "53/UDP", "8000-8002/tcp", "127.0.0.1:9000:9001"]) == [
        "80/tcp", "53/udp", "8000/tcp", "8001/tcp", "8002/tcp", "9001/tcp"]
    with pytest.raises(ExecutionError):
        ce.parse_ports(["http"])


def _apply(cfg: dict, instr: df.Instruction, cmd_set: bool = False) -> tuple[dict, dict | None]:
    return ce.apply_config(cfg, instr, cmd_set=cmd_set, created=None)


def test_entrypoint_clears_inherited_cmd_but_not_one_set_in_the_stage() -> None:
    base = ce.empty_config("linux", "amd64")
    base["config"]["Cmd"] = ["sh"]
    entry = df.Entrypoint("ENTRYPOINT", LOC, "", command=df.ExecForm(("/bin/echo",)))
    cfg, hist = _apply(base, entry)
    assert "Cmd" not in cfg["config"] and cfg["config"]["Entrypoint"] == ["/bin/echo"]
    assert hist == {"created_by": 'ENTRYPOINT ["/bin/echo"]', "comment": ce.HISTORY_COMMENT,
                    "empty_layer": True}
    kept, _ = _apply(base, entry, cmd_set=True)
    assert kept["config"]["Cmd"] == ["sh"]
    assert base["config"]["Cmd"] == ["sh"]  # the input is never mutated


def test_shell_form_uses_the_stage_shell() -> None:
    cfg = ce.empty_config("linux", "amd64")
    cfg, _ = _apply(cfg, df.Shell("SHELL", LOC, "", args=("/bin/bash", "-ec")))
    cfg, hist = _apply(cfg, df.Cmd("CMD", LOC, "", command=df.ShellForm("make all")))
    assert cfg["config"]["Cmd"] == ["/bin/bash", "-ec", "make all"]
    assert cfg["config"]["ArgsEscaped"] is True
    assert hist is not None and hist["created_by"] == 'CMD ["/bin/bash" "-ec" "make all"]'


def test_healthcheck_history_and_config() -> None:
    hc = df.Healthcheck("HEALTHCHECK", LOC, "", test=("CMD-SHELL", "curl -f x"),
                        interval=30 * 10**9, retries=3)
    cfg, hist = _apply(ce.empty_config("linux", "amd64"), hc)
    assert cfg["config"]["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f x"],
                                            "Interval": 30 * 10**9, "Retries": 3}
    assert hist is not None and hist["created_by"] == (
        "HEALTHCHECK {Test:[CMD-SHELL curl -f x] Interval:30s Timeout:0s StartPeriod:0s "
        "StartInterval:0s Retries:3}")


def test_onbuild_has_no_history_and_does_not_carry_to_the_next_stage() -> None:
    cfg, hist = _apply(ce.empty_config("linux", "amd64"),
                       df.Onbuild("ONBUILD", LOC, "", expression="RUN make"))
    assert hist is None and cfg["config"]["OnBuild"] == ["RUN make"]
    assert "OnBuild" not in ce.start_stage(cfg)["config"]


def test_start_stage_adds_path_and_drops_created() -> None:
    base = {"os": "linux", "created": "2020-01-01T00:00:00Z", "config": {"Env": ["A=1"]}}
    cfg = ce.start_stage(base)
    assert cfg["config"]["Env"] == ["A=1", f"PATH={ce.DEFAULT_PATH}"] and "created" not in cfg


def test_run_and_copy_history_texts() -> None:
    assert ce.run_created_by(["/bin/sh", "-c", "make"], [("A", "1"), ("B", "")]) == \
        "RUN |2 A=1 B= /bin/sh -c make # buildkit"
    copy = df.Copy("COPY", LOC, "", sources=("a", "b"), dest="/d/",
                   heredocs=(df.Heredoc("EOF", "x\n"),))
    assert ce.copy_created_by(copy, ["a", "b", "EOF"], "/d/", "app", "0644", False) == \
        "COPY --chown=app --chmod=0644 a b <<EOF /d/ # buildkit"


def test_empty_entrypoint_and_cmd_leave_no_keys() -> None:
    """BuildKit's config type marks Entrypoint/Cmd ``omitempty``: ``ENTRYPOINT []`` and
    ``CMD []`` remove the keys (ArgsEscaped stays), the history still names them."""
    base = ce.empty_config("linux", "amd64")
    base["config"].update(Entrypoint=["/bin/sh", "-c"], Cmd=["echo hi"])
    entry = df.Entrypoint("ENTRYPOINT", LOC, "", command=df.ExecForm(()))
    cfg, hist = _apply(base, entry, cmd_set=True)
    assert "Entrypoint" not in cfg["config"] and cfg["config"]["Cmd"] == ["echo hi"]
    assert hist is not None and hist["created_by"] == "ENTRYPOINT []"
    cmd = df.Cmd("CMD", LOC, "", command=df.ExecForm(()))
    cfg, hist = _apply(cfg, cmd)
    assert "Cmd" not in cfg["config"] and cfg["config"]["ArgsEscaped"] is True
    assert hist is not None and hist["created_by"] == "CMD []"


def test_start_stage_drops_empty_inherited_fields() -> None:
    base = {"architecture": "amd64", "os": "linux",
            "config": {"Env": ["A=1"], "Entrypoint": None, "Cmd": [], "Labels": {},
                       "WorkingDir": "", "User": "app"}}
    inner = ce.start_stage(base)["config"]
    assert sorted(inner) == ["Env", "User"]


def test_start_stage_keeps_only_the_fields_of_buildkits_image_type() -> None:
    """A base written by classic Docker (checked against the reference BuildKit: the image
    built on it has the same config bytes): the frontend reads the base into Go structs, so
    fields they lack are gone, empty ``omitempty`` ones too, and a Healthcheck is in its
    struct's order."""
    base = {
        "architecture": "amd64", "os": "linux", "variant": "", "os.features": ["a"],
        "author": "someone", "container": "abc123", "docker_version": "20.10.7",
        "container_config": {"Hostname": "abc", "Image": "sha256:1234"}, "moby.extra": {"k": 1},
        "created": "2020-01-01T00:00:00.1Z",
        "history": [{"created": "2020-01-01T00:00:00Z", "created_by": "ADD x /", "extra": "x",
                     "comment": "", "empty_layer": False}],
        "config": {"Hostname": "", "Domainname": "", "AttachStdin": False, "Tty": False,
                   "Env": ["PATH=/bin"], "Cmd": ["sh"], "Image": "sha256:1234", "Volumes": None,
                   "StopTimeout": 7, "MacAddress": "x", "ExposedPorts": {"80/tcp": {"x": 1}},
                   "Healthcheck": {"Test": ["CMD", "true"], "Retries": 0, "Extra": 1,
                                   "Interval": 1000000000}},
    }
    cfg = ce.start_stage(base)
    assert sorted(cfg) == ["architecture", "author", "config", "history", "os", "os.features"]
    assert cfg["history"] == [{"created": "2020-01-01T00:00:00Z", "created_by": "ADD x /"}]
    assert cfg["config"] == {"Env": ["PATH=/bin"], "Cmd": ["sh"], "ExposedPorts": {"80/tcp": {}},
                             "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1000000000}}
    assert list(cfg["config"]["Healthcheck"]) == ["Test", "Interval"]
