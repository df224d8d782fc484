"""The filesystem outputs' times: an entry takes the time of its copy in the top-most layer dir
that has it (a committed snapshot keeps nanoseconds; the layer tar whole seconds), when it is
the same second and the same type; a layer whose dir is unknown ends the search."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from ocibuild.digest import Digest
from ocibuild.image import chain_ids
from ocibuild.output.rootfs import write_rootfs
from ocibuild.store import BlobStore
from ocibuild.testing import busybox

T = busybox.MTIME * 10**9  # every entry's time in both layer tars


def _extra_layer(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("etc/extra")
        info.size, info.mtime = 2, busybox.MTIME
        tar.addfile(info, io.BytesIO(b"x\n"))
    return path


def _file(root: Path, rel: str, ns: int, *, link: bool = False) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if link:
        path.symlink_to("busybox")
    else:
        path.write_bytes(b"")
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def _outputs(tmp_path: Path, dirs: list[Path | None]) -> tuple[dict[str, int], dict[str, int]]:
    """``type=local`` (ns) and ``type=tar`` (seconds) times of ``bin/busybox``, ``bin/sh`` and
    ``etc/extra``, with ``dirs`` as the two layers' dirs (bottom first)."""
    names = ("bin/busybox", "bin/sh", "etc/extra")
    with BlobStore(tmp_path / "s") as store:
        image = busybox.make_image(store, extra_layers=[_extra_layer(tmp_path / "extra.tar")])
        by_chain = dict(zip(chain_ids(image.config.diff_ids), dirs, strict=True))

        def layer_dir(chain: Digest) -> Path | None:
            return by_chain[chain]

        write_rootfs(image, store, str(tmp_path / "local"), as_tar=False, layer_dir=layer_dir)
        write_rootfs(image, store, str(tmp_path / "fs.tar"), as_tar=True, layer_dir=layer_dir)
    local = {n: os.lstat(tmp_path / "local" / n).st_mtime_ns for n in names}
    with tarfile.open(tmp_path / "fs.tar") as tar:
        in_tar = {n: int(tar.getmember(n).mtime) for n in names}
    return local, in_tar


def test_times_come_from_the_top_most_layer_dir(tmp_path: Path) -> None:
    bottom, top = tmp_path / "bottom", tmp_path / "top"
    _file(bottom, "bin/busybox", T + 400_000_000)
    _file(bottom, "etc/extra", T + 100_000_000)  # replaced by the top layer's
    _file(top, "etc/extra", T + 700_000_000)
    local, in_tar = _outputs(tmp_path, [bottom, top])
    assert local == {"bin/busybox": T + 400_000_000, "bin/sh": T, "etc/extra": T + 700_000_000}
    assert in_tar == {"bin/busybox": busybox.MTIME, "bin/sh": busybox.MTIME,
                      "etc/extra": busybox.MTIME + 1}  # rounded, halfway up


def test_an_unknown_layer_dir_ends_the_search(tmp_path: Path) -> None:
    bottom = tmp_path / "bottom"
    _file(bottom, "bin/busybox", T + 400_000_000)
    _file(bottom, "etc/extra", T + 700_000_000)
    local, _ = _outputs(tmp_path, [bottom, None])  # the top layer might replace anything
    assert local == {"bin/busybox": T, "bin/sh": T, "etc/extra": T}


@pytest.mark.parametrize("which", ["second", "type"])
def test_another_second_or_type_is_not_taken(tmp_path: Path, which: str) -> None:
    bottom, top = tmp_path / "bottom", tmp_path / "top"
    if which == "second":
        _file(bottom, "bin/busybox", T + 5_300_000_000)
    else:
        _file(bottom, "bin/busybox", T + 400_000_000, link=True)  # a file in the image
    top.mkdir()
    local, in_tar = _outputs(tmp_path, [bottom, top])
    assert local["bin/busybox"] == T and in_tar["bin/busybox"] == busybox.MTIME
