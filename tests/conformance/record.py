"""Record BuildKit's result for the conformance cases as ``cases/<case>/buildkit.txt``.

Needs the reference BuildKit (``eval "$(../shared/tools/buildkit-oracle.sh)"``), run by hand:

    python tests/conformance/record.py [CASE ...]        # all cases when none are named
    python tests/conformance/record.py --check [CASE ...] # rebuild, compare, write nothing

Starts its own registry on 127.0.0.1, pushes the same busybox image the tests push, builds each
case with ``docker buildx build --network none --load``, reads ``docker save``'s archive with
the independent flattener and writes the rendering. Prints BuildKit's error for a case that
fails to build (such a case must not stay in the corpus).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conformance import (  # noqa: E402
    CASES,
    Built,
    base_tree,
    build_flags,
    case_args,
    case_names,
    dockerfile_text,
    make_context_dirs,
    render,
    seed,
    serve_files,
    source_dir,
    write_dockerfile_ignore,
)
from httpfiles import unplace  # noqa: E402

from ocibuild.testing.flatten import load_docker_save  # noqa: E402
from ocibuild.testing.registry import start_registry  # noqa: E402


def build_buildkit(docker: str, case: str, host: str, work: Path, no_cache: bool = False) -> Built:
    with serve_files(case) as files:
        built = _build_buildkit(docker, case, host, work, no_cache, files)
    return Built(unplace(built.config, files), built.tree)


def _build_buildkit(docker: str, case: str, host: str, work: Path, no_cache: bool,
                    files: str | None) -> Built:
    make_context_dirs(case)
    dockerfile = work / "Dockerfile"
    # No network for docker/dockerfile:1: the built-in frontend (1.7) has what the corpus uses.
    text = dockerfile_text(case, host, files)
    dockerfile.write_text("\n".join(line for line in text.split("\n")
                                    if not line.startswith("# syntax=")))
    write_dockerfile_ignore(case, dockerfile)
    tag = f"conformance/{case}:1"
    proc = subprocess.run([docker, "buildx", "build", "--network", "none", "--load", "-t", tag,
                           *(["--no-cache"] if no_cache else []), "-f", str(dockerfile), *build_flags(case, host),
                           str(source_dir(case) / "ctx")], capture_output=True, timeout=600,
                          env={**os.environ, **(case_args(case, host).get("env") or {})})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode(errors="replace")[-3000:])
    saved = work / "saved.tar"
    subprocess.run([docker, "save", "-o", str(saved), tag], check=True, timeout=300)
    subprocess.run([docker, "rmi", "-f", tag], capture_output=True)
    theirs = load_docker_save(saved, work / "saved")
    return Built(theirs.config, theirs.tree)


def main(argv: list[str]) -> int:
    docker = os.environ.get("ORACLE_DOCKER")
    if not docker:
        print("run: eval \"$(../shared/tools/buildkit-oracle.sh)\" first", file=sys.stderr)
        return 2
    check = "--check" in argv  # rebuilt without BuildKit's cache: the goldens are reproducible
    cases = [a for a in argv if a != "--check"] or case_names()
    failed = 0
    server = start_registry()
    try:
        with tempfile.TemporaryDirectory(prefix="conformance-record-") as tmp:
            seed(server.host, Path(tmp) / "store")
            base = base_tree(Path(tmp))
            for case in cases:
                work = Path(tmp) / case
                work.mkdir()
                try:
                    built = build_buildkit(docker, case, server.host, work, no_cache=check)
                except RuntimeError as exc:
                    failed += 1
                    print(f"FAIL {case}:\n{exc}", file=sys.stderr)
                    continue
                text = render(built, base).replace(server.host, "localhost:5000")
                golden = CASES / case / "buildkit.txt"
                if check:
                    same = golden.exists() and golden.read_text() == text
                    failed += not same
                    print(f"{'same' if same else 'DIFF'} {case}")
                    continue
                golden.write_text(text)
                print(f"ok   {case}")
    finally:
        server.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
