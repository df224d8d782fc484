"""Remote sources of ADD: HTTP(S) URLs and git repositories, fetched into a scratch directory.

As BuildKit: a URL becomes one file named after the last segment of the URL path
(``__unnamed__`` when there is none), mode 0600, mtime from ``Last-Modified`` (else the Unix
epoch), verified against ``--checksum=sha256:...``; a git source (``https://host/r.git#ref:sub``,
``git@host:r.git``, ``ssh://``, ``git://``, query forms ``?ref=&subdir=&keep-git-dir=``) is a
shallow checkout of the ref, without ``.git`` unless kept, files 0644/0755.
"""

from __future__ import annotations

import calendar
import hashlib
import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ocibuild.errors import ExecutionError
from ocibuild.fs.safepath import safe_join

_SCHEME = re.compile(r"^[A-Za-z0-9]+://")
_SCP = re.compile(r"^(?:[^@/]+@)?[^:/]+:(?!//).+$")
_GIT_SCHEMES = {"http", "https", "ssh", "git"}


@dataclass(frozen=True)
class GitSource:
    remote: str
    ref: str = ""
    subdir: str = ""
    keep_git_dir: bool | None = None
    checksum: str = ""


def is_http_source(src: str) -> bool:
    return src.startswith(("http://", "https://")) and parse_git_source(src) is None


def parse_git_source(src: str) -> GitSource | None:
    """A ``GitSource`` when BuildKit would treat ``src`` as a git repository, else None."""
    if src.startswith(("./", "../")):
        return None
    match = _SCHEME.match(src)
    if match:
        scheme = match.group(0)[:-3].lower()
        if scheme not in _GIT_SCHEMES:
            return None
        parts = urlsplit(src)
        if scheme in ("http", "https") and not parts.path.endswith(".git"):
            return None
        remote = parts._replace(query="", fragment="").geturl()
        query, fragment = parts.query, parts.fragment
    elif _SCP.match(src) and "@" in src.split(":", 1)[0]:
        remote, _, fragment = src.partition("#")
        remote, _, query = remote.partition("?")
    else:
        return None
    ref, _, subdir = unquote(fragment).partition(":")
    keep: bool | None = None
    checksum = ""
    for key, values in parse_qs(query, keep_blank_values=True).items():
        value = values[-1]
        if key in ("ref", "tag", "branch"):
            ref = value
        elif key == "subdir":
            subdir = value
        elif key in ("checksum", "commit"):
            checksum = value
        elif key == "keep-git-dir":
            keep = value.lower() in ("", "1", "true", "t")
    return GitSource(remote, ref, subdir, keep, checksum)


def url_filename(url: str) -> str:
    """The file name ADD gives a downloaded URL, as dockerfile2llb: Go's ``path.Base`` of the
    percent-decoded URL path (trailing slashes dropped: ``/dir/`` -> ``dir``), ``__unnamed__``
    when that is ``.`` or ``/`` (no path, or only slashes). ``Content-Disposition`` is not
    consulted: the frontend always names the file."""
    base = unquote(urlsplit(url).path).rstrip("/").rsplit("/", 1)[-1]
    return "__unnamed__" if base in ("", ".") else base


def fetch_url(url: str, scratch: Path, checksum: str | None) -> str:
    """Download ``url`` into ``scratch``; returns the file's name there."""
    import requests

    name = url_filename(url)
    path = scratch / name
    digest = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=(30, 300)) as resp:
            if resp.status_code >= 400:
                raise ExecutionError(f"ADD {url}: invalid response status {resp.status_code}")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                for chunk in resp.iter_content(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            last_modified = resp.headers.get("Last-Modified")
    except requests.RequestException as exc:
        raise ExecutionError(f"ADD {url}: {exc}") from exc
    if checksum:
        algo, _, want = checksum.partition(":")
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", want):
            raise ExecutionError(f"invalid checksum {checksum!r}: want sha256:<64 hex digits>")
        got = digest.hexdigest()
        if got != want:
            raise ExecutionError(
                f"ADD {url}: checksum mismatch: expected sha256:{want}, got sha256:{got}"
            )
    os.chmod(path, 0o600)
    mtime = http_time(last_modified) if last_modified else None
    os.utime(path, (mtime or 0, mtime or 0))
    return name


_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTH = r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_CLOCK = r"(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)"
# Go's http.ParseTime: RFC 1123 with a literal GMT, RFC 850, ANSI C asctime (all UTC).
_HTTP_TIMES = (
    re.compile(rf"{_DAY}, (?P<d>\d\d) {_MONTH} (?P<y>\d{{4}}) {_CLOCK} (?-i:GMT)", re.I),
    re.compile(rf"(?:Mon|Tues|Wednes|Thurs|Fri|Satur|Sun)day, (?P<d>\d\d)-{_MONTH}-"
               rf"(?P<yy>\d\d) {_CLOCK} [A-Z]{{3,4}}", re.I),
    re.compile(rf"{_DAY} {_MONTH} (?P<d>[ \d]\d) {_CLOCK} (?P<y>\d{{4}})", re.I),
)


def http_time(value: str) -> int | None:
    """A ``Last-Modified`` value as Go's ``http.ParseTime`` reads it (None: not a time it
    accepts; BuildKit then uses the epoch). Stricter than ``email.utils``: no numeric zones,
    no missing weekday, ``GMT`` only in the RFC 1123 form."""
    for pattern in _HTTP_TIMES:
        match = pattern.fullmatch(value)
        if match is None:
            continue
        parts = match.groupdict()
        year = int(parts["y"]) if parts.get("y") else int(parts["yy"])
        if not parts.get("y"):
            year += 1900 if year >= 69 else 2000
        try:
            when = datetime(year, _MONTHS.index(parts["mon"].lower()) + 1, int(parts["d"]),
                            int(parts["h"]), int(parts["m"]), int(parts["s"]), tzinfo=UTC)
        except ValueError:
            return None  # Go refuses out-of-range fields too ("day out of range")
        return calendar.timegm(when.utctimetuple())
    return None


def checkout_git(source: GitSource, scratch: Path, keep_git_dir: bool) -> Path:
    """Check ``source`` out under ``scratch``; returns the directory to copy from."""
    if shutil.which("git") is None:
        raise ExecutionError(f"ADD {source.remote}: git is not installed")
    repo = scratch / "repo"
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ASKPASS": "true",
    }

    def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
        )
        if check and proc.returncode != 0:
            detail = (proc.stderr.strip().splitlines() or ["exit status " + str(proc.returncode)])
            raise ExecutionError(f"ADD {source.remote}: git {args[0]}: {detail[-1]}")
        return proc

    repo.mkdir()
    git("init", "-q")
    git("remote", "add", "origin", source.remote)
    ref = source.ref or "HEAD"
    # Shallow first; dumb HTTP servers cannot do shallow fetches, and a commit id is not always
    # fetchable by name: then fetch it whole, or every branch and tag and look the ref up.
    if (
        git("fetch", "-q", "--depth=1", "--no-tags", "origin", ref, check=False).returncode == 0
        or git("fetch", "-q", "--no-tags", "origin", ref, check=False).returncode == 0
    ):
        git("checkout", "-q", "--detach", "FETCH_HEAD")
    else:
        git("fetch", "-q", "--tags", "origin", "+refs/heads/*:refs/remotes/origin/*")
        git("checkout", "-q", "--detach", ref)
    if source.checksum:
        head = git("rev-parse", "HEAD").stdout.strip()
        if not head.startswith(source.checksum):
            raise ExecutionError(
                f"ADD {source.remote}: checksum mismatch: expected {source.checksum}, got {head}"
            )
    if (repo / ".gitmodules").exists():
        git("submodule", "update", "-q", "--init", "--recursive", "--depth=1")
    if keep_git_dir:
        # As BuildKit's kept checkout: no reflog entries, no FETCH_HEAD.
        git("reflog", "expire", "--all", "--expire=now")
        (repo / ".git" / "FETCH_HEAD").unlink(missing_ok=True)
    else:
        shutil.rmtree(repo / ".git")
    _normalise_modes(repo)
    if not source.subdir:
        return repo
    sub = safe_join(repo, source.subdir)
    if not sub.is_dir():
        raise ExecutionError(f"ADD {source.remote}: subdirectory {source.subdir!r} not found")
    return sub


def _normalise_modes(root: Path) -> None:
    """Git writes files through the umask; BuildKit's checkouts are 0644/0755 (a kept
    ``.git`` is left as git wrote it: loose objects stay 0444)."""
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == str(root) and ".git" in dirnames:
            dirnames.remove(".git")
        os.chmod(dirpath, 0o755)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):
                os.chmod(path, 0o755 if st.st_mode & 0o100 else 0o644)
