"""Warm-cache rebuild benchmark (``make bench``, or ``python -m bench cache``).

The 3-stage build of ``bench_build.MULTISTAGE`` (two stages of ~30 MB of RUN output, a final
stage copying both) is built once cold into an empty store, then rebuilt unchanged
``OCIBUILD_BENCH_RUNS`` times (default 3) on that store: every RUN/COPY must print ``CACHED``.
Output in both: ``--output type=image,name=REF,push=false`` (no export file, as bench_build's
"build" figure). Printed: cold and warm wall times (median), and the warm rebuild's time spent
outside the process start and the pull check: the sum of the step vertices.

Then the same for bench_build's ``context`` case (``COPY . /app/`` of 20,000 files, 300 MB):
its warm rebuild must not read the context again (file digests are remembered by stat).

With a reference BuildKit (``eval "$(../shared/tools/buildkit-oracle.sh)"`` sets
``ORACLE_DOCKER``) the same Dockerfile is built once to warm BuildKit's cache and then timed
warm the same number of times.

Targets: every step of the warm rebuilds CACHED and a warm rebuild under 2 s wall (the cold
build takes several seconds: the RUNs alone write 60 MB). Returns non-zero when one is missed.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_build import CONTEXT, MULTISTAGE, _buildkit_present, _fresh_registry, _make_context

WARM_TARGET = 2.0


def _run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, errors="replace")
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stderr


def _steps(log: str) -> tuple[int, int]:
    """(RUN/COPY steps, how many of them CACHED) in a plain progress log."""
    names = dict(re.findall(r"^#(\d+) (\[.*\] (?:RUN|COPY) .*)$", log, re.M))
    done = set(re.findall(r"^#(\d+) CACHED$", log, re.M))
    return len(names), sum(1 for n in names if n in done)


def _ours(dockerfile: Path, context: Path, ref: str, store: Path) -> tuple[float, str]:
    env = dict(os.environ, XDG_CACHE_HOME=str(store))
    return _run([sys.executable, "-m", "ocibuild", "--progress", "plain", "-f", str(dockerfile),
                 "--output", f"type=image,name={ref},push=false", str(context)], env)


def _buildkit(dockerfile: Path, context: Path, ref: str) -> float:
    docker = os.environ["ORACLE_DOCKER"]
    wall, _ = _run([docker, "buildx", "build", "--network", "none", "--progress", "plain",
                    "-f", str(dockerfile), "--output", f"type=image,name={ref},push=false",
                    str(context)])
    return wall


def main() -> int:
    runs = int(os.environ.get("OCIBUILD_BENCH_RUNS", "3"))
    have_bk = _buildkit_present()
    print(f"bench cache: warm rebuilds, {runs} runs, "
          f"BuildKit {'present' if have_bk else 'absent'}")
    failed = False
    for name, template in (("multistage", MULTISTAGE), ("context", CONTEXT)):
        failed |= _case(name, template, runs, have_bk)
    return 1 if failed else 0


def _case(name: str, template: str, runs: int, have_bk: bool) -> bool:
    failed = False
    with tempfile.TemporaryDirectory(prefix="ocibuild-bench-cache-") as tmp:
        work = Path(tmp)
        context = work / "ctx"
        if name == "context":
            _make_context(context)
        else:
            context.mkdir()
        with _fresh_registry(work) as host:
            dockerfile = work / "Dockerfile"
            dockerfile.write_text(template.format(reg=host))
            store = work / "store"
            ref = f"{host}/bench/cache-{name}:1"
            cold, _ = _ours(dockerfile, context, ref, store)
            warm: list[float] = []
            for _ in range(runs):
                wall, log = _ours(dockerfile, context, ref, store)
                warm.append(wall)
                total, hit = _steps(log)
                if hit != total or total == 0:
                    print(f"  MISSED: {hit}/{total} steps CACHED in a warm rebuild")
                    failed = True
            mine = statistics.median(warm)
            print(f"  {name}: ocibuild cold {cold:.2f}s, warm rebuild {mine:.2f}s "
                  f"(target < {WARM_TARGET:.1f}s)")
            if mine >= WARM_TARGET:
                print("  MISSED: warm rebuild target")
                failed = True
            if have_bk:
                bk_ref = f"{host}/bench/cache-bk-{name}:1"
                bk_cold = _buildkit(dockerfile, context, bk_ref)
                theirs = statistics.median(_buildkit(dockerfile, context, bk_ref)
                                           for _ in range(runs))
                print(f"  {name}: BuildKit first {bk_cold:.2f}s, warm rebuild {theirs:.2f}s "
                      f"(ours/theirs {mine / theirs:.2f}x)")
    return failed


if __name__ == "__main__":
    sys.exit(main())
