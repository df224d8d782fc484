"""``docker buildx build`` flags that set what every RUN gets (``--network``, ``--add-host``,
``--shm-size``, ``--ulimit``), and those a buildx command line carries that ocibuild accepts
without acting on them (``--provenance=false``, ``--pull``, ``--builder``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_harness import PLACEHOLDER

from ocibuild import cli
from ocibuild.executor.build import BuildOptions, _client
from ocibuild.output.export import plan_outputs

DOCKERFILE = """\
FROM localhost:5000/busybox:latest
RUN tail -n 2 /etc/hosts > /hosts && df -k /dev/shm | awk 'NR == 2 {print $2}' > /shm \\
 && ulimit -n > /nofile && ulimit -Hn >> /nofile && ls /sys/class/net > /net
RUN --network=default ls /sys/class/net > /net-default
"""


@pytest.mark.rootless  # (chroot mode has no network namespace for --network none)
def test_run_flags_reach_every_run(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                   monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "ctx").mkdir()
    df = tmp_path / "Dockerfile"
    df.write_text(DOCKERFILE.replace(PLACEHOLDER, e2e_registry.host))
    out = tmp_path / "out"
    code = cli.main(["-f", str(df), "--progress", "plain", "--network", "none",
                     "--add-host", "db:10.1.2.3", "--add-host", "v6=fd00::1",
                     "--shm-size", "128m", "--ulimit", "nofile=1000:2000",
                     "--provenance=false", "--pull", "--builder", "default",
                     "--output", f"type=local,dest={out}", str(tmp_path / "ctx")])
    assert code == 0
    assert (out / "hosts").read_text() == "10.1.2.3\tdb\nfd00::1\tv6\n"
    assert (out / "shm").read_text() == "131072\n"
    assert (out / "nofile").read_text() == "1000\n2000\n"
    # --network none is the build's default network: RUN --network=default gets it too.
    assert (out / "net").read_text() == (out / "net-default").read_text() == "lo\n"
    assert "provenance" not in capsys.readouterr().err  # =false asks for nothing unsupported


@pytest.mark.parametrize("flag", [["--network", "bridge"], ["--add-host", "db:not-an-ip"],
                                  ["--shm-size", "lots"], ["--ulimit", "nofile=10:5"],
                                  ["--ulimit", "files=10"]])
def test_bad_run_flags_fail_before_the_build(tmp_path: Path, flag: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    code = cli.main(["-f", str(tmp_path / "Dockerfile"), *flag, str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and flag[0] in err and len(err.strip().splitlines()) == 1, err


def test_registry_insecure_lets_its_registries_use_plain_http() -> None:
    options = BuildOptions(context=".", outputs=(
        "type=image,name=reg.example:5000/a:1,push=true,registry.insecure=true",
        "type=image,name=other.example/b:1,push=true"))
    client = _client(options, plan_outputs(options))
    assert client.transport.insecure_hosts == {"reg.example:5000"}


@pytest.mark.rootless
@pytest.mark.chroot
def test_a_run_is_not_taken_from_the_cache_of_other_run_flags(
        e2e_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """BuildKit keys a RUN with its meta (extra hosts, limits, network): a cached result made
    with other flags is not reused."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "ctx").mkdir()
    df = tmp_path / "Dockerfile"
    df.write_text(f"FROM {e2e_registry.host}/busybox:latest\nRUN tail -n 1 /etc/hosts > /h\n")
    for ip in ("10.0.0.1", "10.0.0.2"):
        out = tmp_path / ip
        assert cli.main(["-f", str(df), "--progress", "quiet", "--add-host", f"db:{ip}",
                         "--output", f"type=local,dest={out}", str(tmp_path / "ctx")]) == 0
        assert (out / "h").read_text() == f"{ip}\tdb\n"


@pytest.mark.rootless
@pytest.mark.parametrize("flags", [["--allow", "network.host"], ["--network", "host"]])
def test_run_network_host_with_the_entitlement(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                monkeypatch: pytest.MonkeyPatch,
                                                flags: list[str]) -> None:
    """Refused without it (test_errors); ``--network host`` grants it, as buildx adds it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "ctx").mkdir()
    df = tmp_path / "Dockerfile"
    df.write_text(f"FROM {e2e_registry.host}/busybox:latest\nRUN --network=host true\n")
    assert cli.main(["-f", str(df), "--progress", "quiet", *flags, "--output",
                     f"type=local,dest={tmp_path / 'out'}", str(tmp_path / "ctx")]) == 0
