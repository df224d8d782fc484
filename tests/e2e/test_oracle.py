"""Differential tests against a reference BuildKit (``../shared/tools/buildkit-oracle.sh``
starts one: docker 26 / BuildKit 0.13, Dockerfile frontend 1.7).

For every e2e case (except labs-only ones), the same Dockerfile and context are built by BuildKit (``docker
buildx build --load``, then ``docker save``) and by ocibuild; the flattened filesystems and the
image configs must agree. History texts are not compared: BuildKit 0.13 predates the current
``HEALTHCHECK``/``EXPOSE`` renderings that ocibuild follows. Skipped with a reason when no
dockerd answers (set ``ORACLE_DOCKER`` and ``DOCKER_HOST`` as the script prints them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from e2e_harness import CASES, build_case, case_flags, case_names, case_options

from ocibuild.testing.flatten import listing, load_docker_save, load_layout
from ocibuild.testing.oracle import reference_docker

pytestmark = pytest.mark.oracle


# Differences we know of and keep (each says why).
KNOWN_DIFFERENCES: dict[str, str] = {}


def _docker() -> list[str]:
    return [reference_docker()]


def _comparable(config: dict) -> dict:
    cfg = {k: v for k, v in config.items()
           if k not in ("created", "history", "rootfs", "container", "container_config",
                        "docker_version", "id", "parent")}
    inner = {k: v for k, v in (cfg.get("config") or {}).items() if v not in (None, "", [], {})}
    cfg["config"] = inner
    return cfg


@pytest.mark.parametrize("case", case_names())
def test_against_buildkit(case: str, e2e_registry, e2e_store: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docker = _docker()
    if case in KNOWN_DIFFERENCES:
        pytest.xfail(KNOWN_DIFFERENCES[case])
    if case_options(case).get("oracle") == "no":
        pytest.skip("uses Dockerfile labs features the reference frontend lacks")
    (tmp_path / "ours").mkdir()
    ours = load_layout(build_case(case, e2e_registry.host, e2e_store, tmp_path / "ours").layout)
    dockerfile = tmp_path / "Dockerfile"
    text = (CASES / case / "Dockerfile").read_text().replace("localhost:5000", e2e_registry.host)
    # The built-in frontend (no network to pull docker/dockerfile:1) has what the cases use.
    text = "\n".join(line for line in text.split("\n") if not line.startswith("# syntax="))
    dockerfile.write_text(text)
    tag = f"ocibuild-oracle/{case}:1"
    flags = [f for f in case_flags(case)]
    env = dict(os.environ, E2E_SECRET_ENV="fromenv")
    build = subprocess.run([*docker, "buildx", "build", "--network", "none", "--load", "-t", tag,
                            "-f", str(dockerfile), *flags, str(CASES / case / "ctx")],
                           capture_output=True, env=env, timeout=300)
    assert build.returncode == 0, build.stderr.decode()[-3000:]
    saved = tmp_path / "saved.tar"
    subprocess.run([*docker, "save", "-o", str(saved), tag], check=True, timeout=120)
    theirs = load_docker_save(saved, tmp_path / "saved")
    config, tree = theirs.config, theirs.tree
    subprocess.run([*docker, "rmi", "-f", tag], capture_output=True)
    mine, theirs = listing(ours.tree), listing(tree)
    only_ours = sorted(set(mine) - set(theirs))
    only_buildkit = sorted(set(theirs) - set(mine))
    assert mine == theirs, f"only ocibuild: {only_ours}\nonly BuildKit: {only_buildkit}"
    assert _comparable(ours.config) == _comparable(config)
    shutil.rmtree(tmp_path / "saved", ignore_errors=True)
