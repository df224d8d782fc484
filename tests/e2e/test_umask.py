"""The image does not depend on the umask ocibuild is started with: BuildKit's daemon works
under 022 whatever the user's shell has (0002 on many desktops, 0077 on hardened ones)."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from e2e_harness import PLACEHOLDER

from ocibuild import cli


def _implied_tar() -> bytes:
    """A tar with a file and no entries for its directories (ADD makes them)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("pkg/share/doc/README")
        info.size, info.mode = 3, 0o644
        tar.addfile(info, io.BytesIO(b"hi\n"))
    return buf.getvalue()


@pytest.mark.rootless
@pytest.mark.chroot
def test_a_users_umask_changes_no_mode_in_the_image(e2e_registry, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "pkg.tar").write_bytes(_implied_tar())
    (tmp_path / "s.txt").write_text("secret")
    df = tmp_path / "Dockerfile"
    df.write_text(
        f"FROM {PLACEHOLDER}/busybox:latest AS seed\n".replace(PLACEHOLDER, e2e_registry.host)
        + "RUN mkdir /made\n"
        + f"FROM {PLACEHOLDER}/busybox:latest\n".replace(PLACEHOLDER, e2e_registry.host)
        + "ADD pkg.tar /opt/\n"
        + "RUN mkdir /d && : > /f\n"
        + "RUN --mount=type=bind,from=seed,target=/s --mount=type=cache,target=/c,mode=0777 \\\n"
        + "    --mount=type=secret,id=s,mode=0666 \\\n"
        + "    stat -c '%n %a' / /s /s/made /c /run/secrets/s > /modes\n"
        + "USER nobody\n"
        + "RUN id -u > /tmp/uid\n")  # fails if / or /bin is closed to other users
    out = tmp_path / "out"
    old = os.umask(0o077)
    try:
        code = cli.main(["-f", str(df), "--progress", "quiet", "--secret",
                         f"id=s,src={tmp_path / 's.txt'}", "--output", f"type=local,dest={out}",
                         str(ctx)])
    finally:
        os.umask(old)
    assert code == 0
    modes = {p: oct(os.lstat(out / p).st_mode & 0o7777)
             for p in ("d", "f", "opt/pkg", "opt/pkg/share", "opt/pkg/share/doc")}
    assert modes == {"d": "0o755", "f": "0o644", "opt/pkg": "0o755", "opt/pkg/share": "0o755",
                     "opt/pkg/share/doc": "0o755"}
    assert (out / "modes").read_text().split("\n") == [
        "/ 755", "/s 755", "/s/made 755", "/c 755", "/run/secrets/s 666", ""]
    assert (out / "tmp" / "uid").read_text() == "65534\n"
