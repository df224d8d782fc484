"""Fixtures for the realistic builds on a Debian base (``ocibuild.testing.debian``).

``debian_registry``: the session's ``registry`` holding ``library/debian:bookworm`` (made once
per machine by debootstrap, then cached; skipped with the reason where it cannot be made).
``build_image``: runs ``python -m ocibuild`` on a Dockerfile text in a fresh context and returns
the flattened OCI layout plus the raw layer tars, with one content store for the session so the
base layer is pulled and unpacked once. ``ids``: how this process's sandbox maps ids.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocibuild.testing import debian
from ocibuild.testing.flatten import Entry, LoadedImage, load_layout, tree_of_tar

PLACEHOLDER = "localhost:5000"
BUILD_TIMEOUT = 600


@dataclass(frozen=True)
class DebianRegistry:
    host: str
    base: debian.DebianBase
    digest: str  # manifest digest of library/debian:bookworm
    tree: dict[str, Entry]  # the base image flattened


@dataclass(frozen=True)
class Built:
    image: LoadedImage
    layout: Path
    log: str
    context: Path

    def layer_paths(self) -> list[Path]:
        return [self.layout / "blobs" / "sha256" / layer["digest"].split(":", 1)[1]
                for layer in self.image.manifest["layers"]]


@dataclass(frozen=True)
class Ids:
    """The sandbox this process gets: ``exact`` when RUN's chown/setuid land on disk (root,
    chroot, rootless with a sub-id range); ``mode`` as ``ocibuild`` detected it."""

    mode: str
    exact: bool


@pytest.fixture(scope="session")
def ids() -> Ids:
    from ocibuild.executor.runtime import Runtime

    with Runtime.detect("auto", "auto") as runtime:
        return Ids(runtime.isolation.mode, not runtime.isolation.single_id)


@pytest.fixture(scope="session")
def debian_registry(registry) -> DebianRegistry:  # type: ignore[no-untyped-def]
    try:
        base = debian.base_layer()
    except debian.DebianUnavailable as exc:
        pytest.skip(f"no Debian base image: {exc}")
    return DebianRegistry(registry.host, base, debian.push_base(registry.host, base),
                          tree_of_tar(base.layer))


@pytest.fixture(scope="session")
def debian_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """XDG_CACHE_HOME for every build of the session (the store is ``<it>/ocibuild``); emptied
    at the end with ``ocibuild prune --all``, which can remove sub-id owned snapshots."""
    cache = tmp_path_factory.mktemp("debian-cache")
    yield cache
    subprocess.run([sys.executable, "-m", "ocibuild", "prune", "--all"],
                   env={**os.environ, "XDG_CACHE_HOME": str(cache)},
                   capture_output=True, check=False, timeout=300)
    shutil.rmtree(cache, ignore_errors=True)


BuildFn = Callable[..., Built]


@pytest.fixture
def build_image(debian_registry: DebianRegistry, debian_store: Path,
                tmp_path: Path) -> Iterator[BuildFn]:
    """``build_image(dockerfile, files={}, args=[])``: build, return a :class:`Built`; a
    failed build fails the test with the tail of the progress log."""

    def run(dockerfile: str, files: dict[str, str | bytes] | None = None,
            args: list[str] | None = None) -> Built:
        work = tmp_path / f"build{len(made)}"
        made.append(work)
        ctx = work / "ctx"
        ctx.mkdir(parents=True)
        (ctx / "Dockerfile").write_text(dockerfile.replace(PLACEHOLDER, debian_registry.host))
        for name, data in (files or {}).items():
            path = ctx / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, str):
                path.write_text(data)
            else:
                path.write_bytes(data)
        layout = work / "layout"
        env = {**os.environ, "XDG_CACHE_HOME": str(debian_store)}
        proc = subprocess.run(
            [sys.executable, "-m", "ocibuild", "--progress", "plain",
             "-o", f"type=oci,dest={layout},tar=false", *(args or []), str(ctx)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
            timeout=BUILD_TIMEOUT, check=False,
        )
        log = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            pytest.fail(f"build failed ({proc.returncode}):\n{log[-6000:]}", pytrace=False)
        return Built(load_layout(layout), layout, log, ctx)

    made: list[Path] = []
    yield run
    # a layout holds the 49 MB base blob: don't leave it to pytest's tmp retention
    for work in made:
        shutil.rmtree(work, ignore_errors=True)
