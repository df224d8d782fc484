"""A real Debian base image for the realistic build tests (``tests/debian/``).

``base_layer()`` makes a Debian root filesystem with ``debootstrap --variant=minbase`` from the
mirror this machine's apt uses, trims it the way Docker's ``debian`` images are trimmed (no
``/dev`` nodes, no downloaded ``.deb`` files or package lists, no ``/etc/resolv.conf`` or
``/etc/hostname``) and packs it as one gzip layer tar: numeric ids, xattrs, sorted names, so
setuid bits, ``root:shadow`` group ownership and hard links are exactly what dpkg made.

The result is cached across test sessions in ``$OCIBUILD_DEBIAN_CACHE`` (default
``/var/tmp/ocibuild-debian``), one directory per suite and variant, made in a temporary
directory and renamed into place under a lock, world-readable so the unprivileged users of
``tests/run-rootless.sh`` (own ``HOME`` and ``XDG_CACHE_HOME`` each) use the copy root made.
Making it needs root and ``debootstrap``; ``DebianUnavailable`` says why it cannot be made.

``push_base(host, base)`` pushes it to a registry as ``<host>/library/debian:<suite>`` with a
config like Docker Hub's (``Env`` PATH, ``Cmd ["bash"]``).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUITE = "bookworm"
VARIANT = "minbase"
CACHE_ENV = "OCIBUILD_DEBIAN_CACHE"
DEFAULT_CACHE = Path("/var/tmp/ocibuild-debian")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBOOTSTRAP_TIMEOUT = 900  # seconds; a cold run takes about one minute here

# Left out of the layer, relative to the root (Docker's debian images leave them out too, and
# the sandbox provides /dev, /etc/resolv.conf and /etc/hostname at run time).
_TRIM_CONTENTS = ("dev", "var/cache/apt/archives", "var/lib/apt/lists", "tmp", "var/tmp")
_TRIM_FILES = ("etc/resolv.conf", "etc/hostname", "var/log/bootstrap.log",
               "var/cache/apt/pkgcache.bin", "var/cache/apt/srcpkgcache.bin")
_KEEP = {"partial"}  # apt's download directories stay (empty), as in Debian's images


class DebianUnavailable(Exception):
    """The Debian base cannot be made here (not root, no debootstrap, mirror unreachable)."""


@dataclass(frozen=True)
class DebianBase:
    """A cached Debian base layer: ``layer`` is a gzip tar; ``info`` its build record."""

    suite: str
    variant: str
    layer: Path
    info: dict[str, Any]

    def config(self) -> dict[str, Any]:
        """An image config like Docker Hub's ``debian:<suite>`` (diff ids filled by the
        pusher)."""
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.info["created"]))
        return {
            "created": created,
            "config": {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["bash"]},
            "history": [{
                "created": created,
                "created_by": f"# debootstrap --variant={self.variant} {self.suite} "
                              f"{self.info['mirror']}",
                "comment": "ocibuild.testing.debian",
            }],
        }


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)


def mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The Debian mirror this machine's apt uses (the first deb822 ``URIs`` of a stanza that
    is not the security archive, else the first ``deb`` line of ``/etc/apt/sources.list``)."""
    try:
        for stanza in sources.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.MULTILINE | re.IGNORECASE)
            if uris and "security" not in uris.group(1):
                return uris.group(1)
    except OSError:
        pass
    try:
        for line in Path("/etc/apt/sources.list").read_text().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and "security" not in words[1]:
                return words[1] if not words[1].startswith("[") else words[2]
    except OSError:
        pass
    return DEFAULT_MIRROR


def base_layer(suite: str = SUITE, variant: str = VARIANT, *,
               cache: Path | None = None) -> DebianBase:
    """The cached base layer for ``suite`` + ``variant``, made on first use (see the module
    docstring). Concurrent callers wait for one maker; a failed make leaves nothing behind."""
    root = cache or cache_root()
    key = root / f"{suite}-{variant}"
    found = _load(key, suite, variant)
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise DebianUnavailable(f"no Debian base cached in {key}, and making one needs root "
                                "(run the root test session first)")
    if shutil.which("debootstrap") is None:
        raise DebianUnavailable("debootstrap is not installed (tests/install-deps.sh adds it)")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    with open(root / f".{key.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _load(key, suite, variant)  # made while we waited
        if found is not None:
            return found
        work = Path(tempfile.mkdtemp(dir=root, prefix=f".{key.name}-"))
        try:
            _make(work, suite, variant)
            work.chmod(0o755)
            os.rename(work, key)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    found = _load(key, suite, variant)
    assert found is not None
    return found


def _load(key: Path, suite: str, variant: str) -> DebianBase | None:
    try:
        info = json.loads((key / "info.json").read_text())
    except (OSError, ValueError):
        return None
    layer = key / "layer.tar.gz"
    return DebianBase(suite, variant, layer, info) if layer.is_file() else None


def _make(work: Path, suite: str, variant: str) -> None:
    rootfs = work / "rootfs"
    url = mirror()
    started = time.monotonic()
    log = work / "debootstrap.log"
    with open(log, "wb") as out:
        try:
            proc = subprocess.run(
                ["debootstrap", f"--variant={variant}", suite, str(rootfs), url],
                stdout=out, stderr=subprocess.STDOUT, timeout=DEBOOTSTRAP_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            raise DebianUnavailable(f"debootstrap {suite} from {url} timed out") from exc
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-1500:]
        raise DebianUnavailable(f"debootstrap {suite} from {url} failed "
                                f"({proc.returncode}):\n{tail}")
    bootstrap_s = time.monotonic() - started
    trim(rootfs)
    layer = work / "layer.tar.gz"
    pack(rootfs, layer)
    shutil.rmtree(rootfs)
    info = {"suite": suite, "variant": variant, "mirror": url, "created": int(time.time()),
            "debootstrap_seconds": round(bootstrap_s, 1),
            "total_seconds": round(time.monotonic() - started, 1),
            "layer_bytes": layer.stat().st_size}
    (work / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    for path in (layer, work / "info.json", log):
        path.chmod(0o644)


def trim(rootfs: Path) -> None:
    """Remove what a container base image does not carry (see ``_TRIM_*``)."""
    for rel in _TRIM_CONTENTS:
        d = rootfs / rel
        if not d.is_dir():
            continue
        for child in d.iterdir():
            if child.name in _KEEP:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    for rel in _TRIM_FILES:
        (rootfs / rel).unlink(missing_ok=True)


def pack(rootfs: Path, dest: Path) -> None:
    """``rootfs`` as a gzip tar (PAX, numeric ids, xattrs, sorted, no ``./`` prefix) at
    ``dest``, written by GNU tar (an oracle that shares no code with ocibuild's writer)."""
    names = sorted(os.listdir(rootfs))
    gzip = ["pigz", "-n", "-6"] if shutil.which("pigz") else ["gzip", "-n", "-6"]
    with open(dest, "wb") as out:
        tar = subprocess.Popen(
            ["tar", "--create", "--file=-", f"--directory={rootfs}", "--format=posix",
             "--numeric-owner", "--xattrs", "--xattrs-include=*", "--sort=name",
             "--pax-option=delete=atime,delete=ctime", "--", *names],
            stdout=subprocess.PIPE,
        )
        assert tar.stdout is not None
        try:
            zipped = subprocess.run(gzip, stdin=tar.stdout, stdout=out)
        finally:
            tar.stdout.close()
            tar_rc = tar.wait()
    if tar_rc != 0 or zipped.returncode != 0:
        raise DebianUnavailable(f"packing {rootfs} failed (tar {tar_rc}, "
                                f"gzip {zipped.returncode})")


def push_base(host: str, base: DebianBase, repository: str = "library/debian") -> str:
    """Push ``base`` as ``<host>/<repository>:<suite>``; returns the manifest digest."""
    from ocibuild.testing.registry import push_image

    return push_image(host, f"{repository}:{base.suite}", [base.layer], config=base.config())
