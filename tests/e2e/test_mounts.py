"""RUN --mount=type=secret never leaks; type=ssh forwards an agent socket."""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

import pytest
from e2e_harness import PLACEHOLDER

from ocibuild import cli

SECRET = "v3ry-s3cret-value-4242"


def _all_bytes(layout: Path) -> bytes:
    out = []
    for blob in (layout / "blobs" / "sha256").iterdir():
        data = blob.read_bytes()
        out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return b"".join(out)


def test_secret_is_in_no_layer_config_or_history(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MY_TOKEN", SECRET)
    (tmp_path / "ctx").mkdir()
    (tmp_path / "s.txt").write_text(SECRET)
    df = tmp_path / "Dockerfile"
    df.write_text(f"FROM {PLACEHOLDER}/busybox:latest\n".replace(PLACEHOLDER, e2e_registry.host)
                  + "RUN --mount=type=secret,id=f cat /run/secrets/f | wc -c > /len\n"
                  + "RUN --mount=type=secret,id=t,env=TOK test \"$TOK\" = " + SECRET + " || true\n")
    out = tmp_path / "out"
    code = cli.main(["-f", str(df), "--progress", "quiet", "--secret", f"id=f,src={tmp_path / 's.txt'}",
                     "--secret", "id=t,env=MY_TOKEN", "--output", f"type=oci,dest={out},tar=false",
                     str(tmp_path / "ctx")])
    assert code == 0
    everything = _all_bytes(out)
    assert b"/len" in everything  # the layers were read
    # The RUN text names the secret only where the Dockerfile itself does (history is the
    # instruction), never the value read from the file or the environment.
    assert everything.count(SECRET.encode()) == 1
    assert b"run/secrets" in everything and b"22\n" in everything


def test_ssh_agent_socket_is_forwarded(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    sock_path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(1)
    try:
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock_path))
        (tmp_path / "ctx").mkdir()
        df = tmp_path / "Dockerfile"
        df.write_text(f"FROM {PLACEHOLDER}/busybox:latest\n".replace(PLACEHOLDER, e2e_registry.host)
                      + 'RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && echo "$SSH_AUTH_SOCK" > /ssh\n')
        out = tmp_path / "out"
        code = cli.main(["-f", str(df), "--progress", "quiet", "--ssh", "default",
                         "--output", f"type=local,dest={out}", str(tmp_path / "ctx")])
        assert code == 0
        assert (out / "ssh").read_text() == "/run/buildkit/ssh_agent.0\n"
        assert not (out / "run" / "buildkit" / "ssh_agent.0").exists()
    finally:
        server.close()


def test_cache_mount_from_stage_is_seeded_once(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``type=cache,from=STAGE,source=DIR`` starts as a copy of DIR in that stage (BuildKit:
    a mutable ref made from the ``from`` state); what a RUN adds stays for the next build,
    and the stage itself is never written."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "ctx").mkdir()
    df = tmp_path / "Dockerfile"
    df.write_text(f"FROM {PLACEHOLDER}/busybox:latest AS seed\n".replace(PLACEHOLDER, e2e_registry.host)
                  + "RUN mkdir -p /seed/sub && echo seeded > /seed/sub/s.txt && chmod 0750 /seed\n"
                  + f"FROM {PLACEHOLDER}/busybox:latest\n".replace(PLACEHOLDER, e2e_registry.host)
                  + "ARG N\n"
                  + "RUN --mount=type=cache,target=/c,from=seed,source=/seed"
                  + " (ls -A /c; stat -c %a /c; cat /c/sub/s.txt) > /seen && touch /c/added-$N\n"
                  + "RUN --mount=type=bind,from=seed,source=/seed,target=/b ls -A /b > /stage\n")
    seen = []
    for n in ("1", "2"):
        out = tmp_path / f"out{n}"
        code = cli.main(["-f", str(df), "--progress", "quiet", "--build-arg", f"N={n}",
                         "--output", f"type=local,dest={out}", str(tmp_path / "ctx")])
        assert code == 0
        seen.append((out / "seen").read_text())
        assert (out / "stage").read_text() == "sub\n"
    assert seen[0] == "sub\n750\nseeded\n"
    assert seen[1] == "added-1\nsub\n750\nseeded\n"


def test_cache_mount_mode_keeps_permission_bits_only(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A new cache dir gets ``mode & 0777`` under umask 022: BuildKit makes it with a mkdir
    FileOp (``os.Mkdir(mode & 0777)``), so setuid/setgid/sticky are dropped, and the reference
    (BuildKit inside dockerd, which sets umask 022) loses group and other write too."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "ctx").mkdir()
    df = tmp_path / "Dockerfile"
    df.write_text(f"FROM {PLACEHOLDER}/busybox:latest\n".replace(PLACEHOLDER, e2e_registry.host)
                  + "RUN --mount=type=cache,target=/a,mode=1777 stat -c %a /a > /modes\n"
                  + "RUN --mount=type=cache,target=/b,mode=2775,gid=100 stat -c %g:%a /b >> /modes\n"
                  + "RUN --mount=type=cache,target=/c,mode=6711 stat -c %a /c >> /modes\n")
    out = tmp_path / "out"
    code = cli.main(["-f", str(df), "--progress", "quiet",
                     "--output", f"type=local,dest={out}", str(tmp_path / "ctx")])
    assert code == 0
    assert (out / "modes").read_text() == "755\n100:755\n711\n"


def test_mount_target_parents_resolve_inside_the_rootfs(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A mount target reached through an absolute symlink of the image is placed where the
    link leads inside the rootfs (runc's rule), never on the host the link names."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "ctx").mkdir()
    host = tmp_path / "host-side"
    host.mkdir()
    df = tmp_path / "Dockerfile"
    df.write_text(f"FROM {PLACEHOLDER}/busybox:latest\n".replace(PLACEHOLDER, e2e_registry.host)
                  + f"RUN mkdir -p {host} && ln -s {host} /escape\n"
                  + "RUN --mount=type=tmpfs,target=/escape/t touch /escape/t/x"
                  + f" && ls -A {host} > /seen\n")
    out = tmp_path / "out"
    code = cli.main(["-f", str(df), "--progress", "quiet",
                     "--output", f"type=local,dest={out}", str(tmp_path / "ctx")])
    assert code == 0
    assert (out / "seen").read_text() == "t\n"
    assert list(host.iterdir()) == []
