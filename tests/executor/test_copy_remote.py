"""ADD of URLs and git repositories, served from 127.0.0.1 by fixtures (no internet).

Git repositories are served over git's "dumb" HTTP protocol (a bare repository after
``git update-server-info`` behind a static file server), as BuildKit's own tests do.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocibuild.dockerfile.model import Instruction
from ocibuild.errors import ExecutionError, Location
from ocibuild.executor.copy import copy_into
from ocibuild.executor.copy_remote import parse_git_source, url_filename
from ocibuild.executor.runtime import CallContext
from ocibuild.plan.model import CopyStep
from ocibuild.testing.httpserve import BackgroundHTTPServer

LAST_MODIFIED = 1500000000


def ctx_over(root: Path, roots: dict[str, Path] | None = None) -> CallContext:
    """The runtime's real ``CallContext`` over plain directories (as root: chown on disk)."""
    return CallContext(root, dict(roots or {}), owns_files=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on 127.0.0.1 over a directory; yields (base URL, directory)."""
    root = tmp_path_factory.mktemp("www")
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = BackgroundHTTPServer(handler)
    try:
        yield f"http://127.0.0.1:{server.port}", root
    finally:
        server.close()


def add(line_sources: list[str], dest: str, **flags: object) -> CopyStep:
    return CopyStep(Instruction("ADD", Location("Dockerfile", 3), "ADD ..."), add=True,
                    sources=tuple(line_sources), dest=dest, **flags)  # type: ignore[arg-type]


def test_url_download(served: tuple[str, Path], tmp_path: Path) -> None:
    base, www = served
    (www / "file.bin").write_bytes(b"payload")
    os.utime(www / "file.bin", (LAST_MODIFIED, LAST_MODIFIED))
    root = tmp_path / "root"
    root.mkdir()
    digest = "sha256:" + hashlib.sha256(b"payload").hexdigest()
    copy_into(ctx_over(root), add([f"{base}/file.bin"], "/dl/", checksum=digest))
    st = os.lstat(root / "dl/file.bin")
    assert (root / "dl/file.bin").read_bytes() == b"payload"
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 0, 0)
    assert int(st.st_mtime) == LAST_MODIFIED
    # Without a trailing slash the destination is the file's name.
    copy_into(ctx_over(root), add([f"{base}/file.bin"], "/named", chmod="644", chown="7:8"))
    st = os.lstat(root / "named")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o644, 7, 8)


def test_url_checksum_mismatch(served: tuple[str, Path], tmp_path: Path) -> None:
    base, www = served
    (www / "other.bin").write_bytes(b"other")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ExecutionError, match="Dockerfile:3: ADD: .*checksum mismatch"):
        copy_into(ctx_over(root), add([f"{base}/other.bin"], "/x", checksum="sha256:" + "0" * 64))
    with pytest.raises(ExecutionError, match="invalid response status 404"):
        copy_into(ctx_over(root), add([f"{base}/missing.bin"], "/x"))


def test_url_archive_not_unpacked_unless_asked(served: tuple[str, Path], tmp_path: Path) -> None:
    import io
    import tarfile

    base, www = served
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("inner.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    (www / "pkg.tgz").write_bytes(buf.getvalue())
    root = tmp_path / "root"
    root.mkdir()
    copy_into(ctx_over(root), add([f"{base}/pkg.tgz"], "/a/"))
    assert (root / "a/pkg.tgz").read_bytes() == buf.getvalue()
    copy_into(ctx_over(root), add([f"{base}/pkg.tgz"], "/b/", unpack=True))
    assert (root / "b/inner.txt").read_bytes() == b"hi"


@pytest.mark.parametrize(("url", "name"), [
    ("http://h/x/file.tar.gz", "file.tar.gz"),
    ("http://h/x/file?q=1", "file"),
    ("http://h/", "__unnamed__"),
    ("http://h", "__unnamed__"),
    ("http://h/dir/", "dir"),  # Go's path.Base drops trailing slashes
    ("http://h//", "__unnamed__"),
    ("http://h/.", "__unnamed__"),
    ("http://h/a%20b.txt", "a b.txt"),  # u.Path is decoded
    ("http://h/a%2Fb", "b"),
])
def test_url_filename(url: str, name: str) -> None:
    assert url_filename(url) == name


@pytest.mark.parametrize(("src", "remote", "ref", "subdir"), [
    ("https://github.com/o/r.git", "https://github.com/o/r.git", "", ""),
    ("https://github.com/o/r.git#v1.2:docs", "https://github.com/o/r.git", "v1.2", "docs"),
    ("git@github.com:o/r.git#main", "git@github.com:o/r.git", "main", ""),
    ("ssh://git@host/o/r#dev", "ssh://git@host/o/r", "dev", ""),
    ("git://host/r.git?ref=t&subdir=s", "git://host/r.git", "t", "s"),
])
def test_parse_git_source(src: str, remote: str, ref: str, subdir: str) -> None:
    git = parse_git_source(src)
    assert git is not None
    assert (git.remote, git.ref, git.subdir) == (remote, ref, subdir)


@pytest.mark.parametrize("src", ["https://example.com/file.tar", "dir/file", "./x.git",
                                 "file:with:colons", "ftp://h/r.git"])
def test_not_git(src: str) -> None:
    assert parse_git_source(src) is None


@pytest.fixture(scope="module")
def repo(served: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A git repository with a tag, a subdirectory and an executable, served over dumb HTTP."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    base, www = served
    work = tmp_path_factory.mktemp("gitwork")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}

    def git(*args: str, cwd: Path = work) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    (work / "README").write_text("v1\n")
    (work / "sub").mkdir()
    (work / "sub/tool.sh").write_text("#!/bin/sh\n")
    os.chmod(work / "sub/tool.sh", 0o755)
    git("add", "-A")
    git("commit", "-q", "-m", "one")
    git("tag", "v1")
    (work / "README").write_text("v2\n")
    git("commit", "-q", "-am", "two")
    git("clone", "-q", "--bare", str(work), str(www / "repo.git"))
    git("update-server-info", cwd=www / "repo.git")
    return f"{base}/repo.git"


def test_add_git(repo: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    copy_into(ctx_over(root), add([repo], "/src"))
    assert (root / "src/README").read_text() == "v2\n"
    assert not (root / "src/.git").exists()
    st = os.lstat(root / "src/sub/tool.sh")
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o755, 0)
    assert stat.S_IMODE(os.lstat(root / "src/README").st_mode) == 0o644

    copy_into(ctx_over(root), add([f"{repo}#v1:sub"], "/tool/"))
    assert sorted(os.listdir(root / "tool")) == ["tool.sh"]

    copy_into(ctx_over(root), add([repo], "/ex/", excludes=("sub",)))
    assert sorted(os.listdir(root / "ex")) == ["README"]

    copy_into(ctx_over(root), add([f"{repo}#v1"], "/keep", keep_git_dir=True))
    assert (root / "keep/README").read_text() == "v1\n"
    assert (root / "keep/.git").is_dir()


def test_add_git_errors(repo: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ExecutionError, match="checksum mismatch"):
        copy_into(ctx_over(root), add([f"{repo}#v1"], "/x", checksum="0000000"))
    with pytest.raises(ExecutionError, match="git"):
        copy_into(ctx_over(root), add([f"{repo}#no-such-ref"], "/x"))
