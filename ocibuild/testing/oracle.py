"""The reference BuildKit for differential tests (``eval "$(../shared/tools/buildkit-oracle.sh)"``
sets ``ORACLE_DOCKER`` and ``DOCKER_HOST``); never used by ocibuild itself."""

from __future__ import annotations

import os
import subprocess

import pytest


def reference_docker() -> str:
    """The reference ``docker`` binary, or skip the test saying why there is none."""
    docker = os.environ.get("ORACLE_DOCKER")
    if not docker or not os.environ.get("DOCKER_HOST"):
        pytest.skip("no reference BuildKit: run eval \"$(../shared/tools/buildkit-oracle.sh)\"")
    probe = subprocess.run([docker, "version"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"reference dockerd does not answer: {probe.stderr.decode()[-200:]}")
    return docker
