"""Build benchmarks (``make bench``, or ``python -m bench build``).

1. ``multistage``: a 3-stage build: two stages each make ~30 MB of files with RUN, a slim final
   stage copies both; built cold (empty store) and pushed to a local registry.
2. ``context``: ``COPY . /app/`` of a 20,000-file, 300 MB context; cold, pushed.

Each runs ``python -m ocibuild`` as a child and reports wall time, the push time (the
"exporting to image" step) and the peak RSS of the build's processes. Where a reference dockerd
runs (``eval "$(../shared/tools/buildkit-oracle.sh)"`` sets ``ORACLE_DOCKER``), BuildKit builds
the same with ``--no-cache`` and pushes to the same registry, for comparison.

Targets: peak memory < 100 MB; with BuildKit present: cold build no slower than BuildKit and
push at least 3x faster. Returns non-zero when a measured target is missed.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MULTISTAGE = """\
FROM {reg}/busybox:latest AS one
RUN mkdir /data && for i in $(seq 1 30); do head -c 1048576 /dev/urandom > /data/a$i; done
FROM {reg}/busybox:latest AS two
RUN mkdir /data && for i in $(seq 1 30); do head -c 1048576 /dev/urandom > /data/b$i; done
FROM {reg}/busybox:latest
COPY --from=one /data /data
COPY --from=two /data /data
CMD ["ls", "/data"]
"""
CONTEXT = """\
FROM {reg}/busybox:latest
COPY . /app/
"""
FILES, CONTEXT_BYTES = 20_000, 300 * 1024 * 1024


def _make_context(root: Path) -> None:
    """20,000 files in 200 directories, 300 MB in all: half of each file random, half text."""
    size = CONTEXT_BYTES // FILES
    for d in range(200):
        sub = root / f"dir{d:03d}"
        sub.mkdir(parents=True)
        for f in range(FILES // 200):
            text = (f"file {d}/{f}\n" * (size // 20))[: size // 2].encode()
            (sub / f"f{f:03d}.dat").write_bytes(os.urandom(size - len(text)) + text)


def _child_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def _run_ocibuild(dockerfile: Path, context: Path, ref: str, store: Path) -> tuple[float, float, float]:
    """(wall seconds, push seconds, peak MB) of one cold build + push."""
    env = dict(os.environ, XDG_CACHE_HOME=str(store))
    cmd = [sys.executable, "-m", "ocibuild", "--progress", "plain", "-f", str(dockerfile),
           "--output", f"type=image,name={ref},push=true", str(context)]
    before = _child_peak_mb()
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"ocibuild failed:\n{proc.stderr[-3000:]}")
    peak = _child_peak_mb()
    push = _vertex_time(proc.stderr, "exporting to image")
    return wall, push, peak if peak > before else before


def _vertex_time(log: str, name: str) -> float:
    numbers = re.findall(rf"^#(\d+) {re.escape(name)}", log, re.M)
    total = 0.0
    for n in numbers:
        m = re.search(rf"^#{n} DONE ([\d.]+)s", log, re.M)
        total += float(m.group(1)) if m else 0.0
    return total


def _run_buildkit(dockerfile: Path, context: Path, ref: str) -> tuple[float, float] | None:
    docker = os.environ.get("ORACLE_DOCKER")
    if not docker or subprocess.run([docker, "version"], capture_output=True).returncode != 0:
        return None
    cmd = [docker, "buildx", "build", "--no-cache", "--network", "none", "--progress", "plain",
           "-f", str(dockerfile),
           "--output", f"type=image,name={ref},push=true", str(context)]
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        print(f"   BuildKit failed: {proc.stderr[-500:]}")
        return None
    push = _vertex_time(proc.stderr, "exporting to image")
    return wall, push


def main() -> int:
    from ocibuild.reference import Reference
    from ocibuild.registry.client import RegistryClient
    from ocibuild.store.blobs import BlobStore
    from ocibuild.testing import busybox
    from ocibuild.testing.registry import start_registry

    work = Path(tempfile.mkdtemp(prefix="ocibuild-bench-"))
    server = start_registry()
    failed = False
    try:
        seed_store = BlobStore(work / "seed-store")
        with RegistryClient(insecure_hosts=[server.host]) as client:
            client.push_image(busybox.make_image(seed_store),
                              [Reference.parse(f"{server.host}/busybox:latest")], seed_store)
        benches = {"multistage": (MULTISTAGE, None), "context": (CONTEXT, _make_context)}
        print(f"registry {server.host}; python {sys.version.split()[0]}; {os.cpu_count()} cpus")
        for name, (template, make) in benches.items():
            ctx = work / f"{name}-ctx"
            ctx.mkdir()
            if make is not None:
                make(ctx)
            dockerfile = work / f"{name}.Dockerfile"
            dockerfile.write_text(template.format(reg=server.host))
            ref = f"{server.host}/bench/{name}:ocibuild"
            wall, push, peak = _run_ocibuild(dockerfile, ctx, ref, work / f"{name}-store")
            print(f"{name}: ocibuild cold build+push {wall:.1f}s (push {push:.1f}s), "
                  f"peak RSS {peak:.0f} MB")
            if peak >= 100:
                print(f"   MISSED: peak memory {peak:.0f} MB >= 100 MB")
                failed = True
            bk = _run_buildkit(dockerfile, ctx, f"{server.host}/bench/{name}:buildkit")
            if bk is None:
                print("   BuildKit: no reference dockerd here (optional comparison skipped)")
                continue
            bk_wall, bk_push = bk
            print(f"   BuildKit --no-cache build+push {bk_wall:.1f}s (push {bk_push:.1f}s)")
            if wall - push > bk_wall - bk_push:
                print("   MISSED: cold build slower than BuildKit")
                failed = True
            if bk_push and push * 3 > bk_push:
                print("   MISSED: push not 3x faster than BuildKit")
                failed = True
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
