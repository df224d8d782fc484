"""The Debian builds against a reference BuildKit (``../shared/tools/buildkit-oracle.sh``):
the flattened images must agree path for path on type, mode, owner and link target, and on
the config fields a Dockerfile sets. File contents are not compared: apt and dpkg write
timestamps into logs and databases. Skipped with a reason when no reference dockerd answers.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from debian_cases import APT, DPKG, USERS, USERS_FILES

from ocibuild.testing.flatten import Entry, load_layout
from ocibuild.testing.oracle import reference_docker

pytestmark = [pytest.mark.slow, pytest.mark.oracle, pytest.mark.dockerd,
              pytest.mark.timeout(900)]

CASES = {
    "apt": (APT.replace(" @OPTS@", ""), {}),
    "users": (USERS, USERS_FILES),
    "dpkg": (DPKG, {}),
}


def _docker() -> str:
    return reference_docker()


def _shape(e: Entry | None) -> tuple[str, int, int, int, str] | None:
    return None if e is None else (e.kind, e.mode, e.uid, e.gid, e.target)


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_as_buildkit(case: str, build_image, debian_registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docker = _docker()
    dockerfile, files = CASES[case]
    built = build_image(dockerfile, files=files)
    ours, ctx = built.image, built.context
    tag = f"ocibuild-debian-oracle/{case}:1"
    subprocess.run([docker, "buildx", "build", "-q", "--network", "host", "--load", "-t", tag,
                    str(ctx)], check=True, capture_output=True, timeout=600)
    saved = tmp_path / "buildkit.tar"
    try:
        subprocess.run([docker, "save", "-o", str(saved), tag], check=True, capture_output=True)
    finally:
        subprocess.run([docker, "rmi", "-f", tag], capture_output=True, check=False)
    layout = tmp_path / "buildkit"
    layout.mkdir()
    try:
        subprocess.run(["tar", "-xf", str(saved), "-C", str(layout)], check=True)
        theirs = load_layout(layout)  # docker 26 saves an OCI image layout
    finally:
        saved.unlink()
        shutil.rmtree(layout, ignore_errors=True)

    differ = [f"{p}: ours {_shape(ours.tree.get(p))} buildkit {_shape(theirs.tree.get(p))}"
              for p in sorted(set(ours.tree) | set(theirs.tree))
              if _shape(ours.tree.get(p)) != _shape(theirs.tree.get(p))]
    assert not differ, "\n".join(differ[:40])
    assert len(ours.manifest["layers"]) == len(theirs.manifest["layers"])
    for key in ("Env", "Cmd", "Entrypoint", "User", "WorkingDir"):
        assert ours.config["config"].get(key) == theirs.config["config"].get(key), key
