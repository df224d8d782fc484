"""Building one e2e case: ``tests/e2e/cases/<case>/`` holds ``Dockerfile``, the context
``ctx/``, optional ``flags`` (one CLI word per line, ``@CASE@`` replaced by the case dir) and
``options`` (``key=value`` lines: ``oracle=no``, ``needs=namespaces``, ``ids=all``: skipped in
a single-id sandbox), and ``expected.txt``.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from ocibuild.executor.build import BuildOptions, BuildResult, build, options_from_args

CASES = Path(__file__).parent / "cases"
PLACEHOLDER = "localhost:5000"


@dataclass(frozen=True)
class Built:
    result: BuildResult
    layout: Path
    log: str


def case_names() -> list[str]:
    return sorted(p.name for p in CASES.iterdir() if (p / "Dockerfile").is_file())


def case_options(case: str) -> dict[str, str]:
    path = CASES / case / "options"
    if not path.exists():
        return {}
    return dict(line.split("=", 1) for line in path.read_text().split("\n") if "=" in line)


def case_flags(case: str) -> list[str]:
    path = CASES / case / "flags"
    if not path.exists():
        return []
    return [w.replace("@CASE@", str(CASES / case)) for w in path.read_text().split("\n") if w]


def build_case(case: str, host: str, store: Path, work: Path, isolation: str = "auto",
               extra: list[str] | None = None) -> Built:
    """Build the case into an OCI layout directory ``work/layout``."""
    from ocibuild import cli

    src = CASES / case
    (src / "ctx").mkdir(exist_ok=True)  # git keeps no empty directories
    dockerfile = work / "Dockerfile"
    dockerfile.write_text((src / "Dockerfile").read_text().replace(PLACEHOLDER, host))
    ignore = src / "Dockerfile.dockerignore"
    if ignore.exists():
        (work / "Dockerfile.dockerignore").write_text(ignore.read_text())
    layout = work / "layout"
    argv = ["-f", str(dockerfile), "--progress", "plain", "--isolation", isolation,
            "--output", f"type=oci,dest={layout},tar=false", *case_flags(case), *(extra or []),
            str(src / "ctx")]
    args = cli._build_parser().parse_args(argv)
    stream = io.StringIO()
    options: BuildOptions = options_from_args(args)
    options = BuildOptions(**{**options.__dict__, "store_root": store,
                              "progress_stream": stream})
    env_before = os.environ.get("E2E_SECRET_ENV")
    os.environ["E2E_SECRET_ENV"] = "fromenv"
    try:
        result = build(options)
    except Exception as exc:
        exc.add_note(stream.getvalue()[-4000:])
        raise
    finally:
        if env_before is None:
            os.environ.pop("E2E_SECRET_ENV", None)
    return Built(result, layout, stream.getvalue())
