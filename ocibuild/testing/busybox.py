"""A tiny but real base image made from Debian's static busybox (package ``busybox-static``).

Used by the e2e tests (pushed into the test registry as ``library/busybox`` and friends), by
``make demo`` and by the benchmarks. Everything is deterministic: the same busybox binary gives
the same tar bytes, so layer digests are stable across runs.

The root filesystem holds ``/bin/busybox``, an absolute symlink to it for every applet busybox
lists (``/bin/sh``, ``/usr/bin/env``, ...), a minimal ``/etc/passwd`` and ``/etc/group`` (root,
daemon, bin, nobody, an ``app`` user 1000:1000 for ``--chown``/``USER`` tests), ``/tmp`` (1777),
``/root`` (0700) and an empty ``/home/app``.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUSYBOX = Path("/bin/busybox")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MTIME = 1_700_000_000  # fixed, so the tar is reproducible

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """\
root:x:0:
daemon:x:1:
bin:x:2:
adm:x:4:app
staff:x:50:
app:x:1000:
users:x:100:app
nogroup:x:65534:
"""


@dataclass(frozen=True)
class Entry:
    """One rootfs entry: ``kind`` is dir|file|symlink; ``data`` for files, ``target`` for links."""

    path: str  # relative, no leading slash
    kind: str
    mode: int
    uid: int = 0
    gid: int = 0
    data: bytes = b""
    source: Path | None = None  # file content read from here instead of ``data``
    target: str = ""


def applets(busybox: Path = BUSYBOX) -> list[str]:
    """Applet install paths as busybox lists them (``usr/bin/env``), sorted, without busybox."""
    try:
        out = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(f"run {busybox} --list-full: {exc} (install busybox-static)") from exc
    names = {line.strip() for line in out.stdout.decode().splitlines() if line.strip()}
    names.discard("bin/busybox")
    return sorted(names)


def entries(busybox: Path = BUSYBOX, *, with_applets: bool = True) -> list[Entry]:
    """The rootfs entries in a stable (sorted) order, parents before children."""
    dirs = {"bin", "dev", "etc", "home", "home/app", "mnt", "opt", "proc", "root", "run", "sbin",
            "srv", "sys", "tmp", "usr", "usr/bin", "usr/local", "usr/local/bin", "usr/sbin", "var",
            "var/tmp"}
    out: list[Entry] = []
    links = applets(busybox) if with_applets else []
    for link in links:
        parent = link.rpartition("/")[0]
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = parent.rpartition("/")[0]
    special = {"tmp": 0o1777, "var/tmp": 0o1777, "root": 0o700}
    owners = {"home/app": (1000, 1000)}
    for d in dirs:
        uid, gid = owners.get(d, (0, 0))
        out.append(Entry(d, "dir", special.get(d, 0o755), uid, gid))
    out.append(Entry("bin/busybox", "file", 0o755, source=busybox))
    out.append(Entry("etc/passwd", "file", 0o644, data=PASSWD.encode()))
    out.append(Entry("etc/group", "file", 0o644, data=GROUP.encode()))
    for link in links:
        out.append(Entry(link, "symlink", 0o777, target="/bin/busybox"))
    out.sort(key=lambda e: e.path)
    return out


def write_tar(dest: Path, busybox: Path = BUSYBOX, *, with_applets: bool = True) -> Path:
    """Write the rootfs as an uncompressed, reproducible tar (PAX, numeric ids) to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, stream in _tar_members(entries(busybox, with_applets=with_applets)):
            tar.addfile(info, stream)
    tmp.rename(dest)
    return dest


def _tar_members(items: list[Entry]) -> Iterator[tuple[tarfile.TarInfo, io.BufferedIOBase | None]]:
    for e in items:
        info = tarfile.TarInfo(e.path + ("/" if e.kind == "dir" else ""))
        info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, MTIME
        info.uname = info.gname = ""
        if e.kind == "dir":
            info.type = tarfile.DIRTYPE
            yield info, None
        elif e.kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, e.target
            yield info, None
        else:
            data = e.source.read_bytes() if e.source is not None else e.data
            info.size = len(data)
            yield info, io.BytesIO(data)


def write_rootfs(dest: Path, busybox: Path = BUSYBOX, *, with_applets: bool = True) -> Path:
    """Materialise the rootfs as a directory (ids applied only when running as root)."""
    import os
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for e in entries(busybox, with_applets=with_applets):
        p = dest / e.path
        if e.kind == "dir":
            p.mkdir(exist_ok=True)
        elif e.kind == "symlink":
            p.symlink_to(e.target)
        elif e.source is not None:
            shutil.copyfile(e.source, p)
        else:
            p.write_bytes(e.data)
        if e.kind != "symlink":
            p.chmod(e.mode)
        if os.geteuid() == 0:
            os.lchown(p, e.uid, e.gid)
    return dest


def image_config(architecture: str = "amd64", os_name: str = "linux") -> dict[str, object]:
    """The config the test registry's busybox image carries (like Docker Hub's busybox)."""
    return {
        "architecture": architecture,
        "os": os_name,
        "config": {"Env": [f"PATH={DEFAULT_PATH}"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created_by": "ocibuild test busybox rootfs"}],
    }


def make_image(store: Any, *, architecture: str = "amd64", config: dict[str, Any] | None = None,
               extra_layers: Sequence[Path] = (), busybox: Path = BUSYBOX) -> Any:
    """The busybox image as an ``ocibuild.image.Image`` whose gzip layers are in ``store``:
    the rootfs layer, then ``extra_layers`` (uncompressed or gzip tars), with ``config``'s
    fields merged over ``image_config()`` (``config["config"]`` merged key by key)."""
    import gzip
    import hashlib
    import shutil
    import tempfile

    from ocibuild import mediatypes as mt
    from ocibuild.digest import Digest
    from ocibuild.image import Descriptor, Image, ImageConfig, Layer

    cfg = image_config(architecture)
    for key, value in (config or {}).items():
        if key == "config":
            cfg["config"] = {**cfg["config"], **value}  # type: ignore[dict-item]
        else:
            cfg[key] = value
    layers = []
    with tempfile.TemporaryDirectory(prefix="busybox-image-") as tmp:
        tars = [write_tar(Path(tmp) / "rootfs.tar", busybox), *extra_layers]
        for i, tar in enumerate(tars):
            raw = Path(tar).read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            diff_id = Digest("sha256", hashlib.sha256(raw).hexdigest())
            gz = Path(tmp) / f"layer{i}.tar.gz"
            with open(gz, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as z:
                z.write(raw)
            digest, size = store.put_file(gz)
            layers.append(Layer(Descriptor(mt.OCI_LAYER_GZIP, digest, size), diff_id))
        shutil.rmtree(tmp, ignore_errors=True)
    history = list(cfg.get("history") or [])  # type: ignore[call-overload]
    while len(history) < len(layers):
        history.append({"created_by": "ocibuild test layer"})
    cfg["history"] = history
    cfg["rootfs"] = {"type": "layers", "diff_ids": [str(layer.diff_id) for layer in layers]}
    return Image(ImageConfig(cfg), tuple(layers))
