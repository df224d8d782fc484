"""BuildKit conformance: every case under ``cases/`` built by ocibuild against the test
registry (seeded with the same busybox image the goldens were recorded on) and compared with
``buildkit.txt``, BuildKit's own result recorded by ``record.py`` (the reference BuildKit is
not needed here).

A case where ocibuild still differs is listed in ``KNOWN`` with the exact difference, as a
strict xfail: CI stays green while the gap shows, and fixing it turns the xfail into a failure
that asks for the entry to be removed (``../shared-notes/conformance-report.md`` diagnoses each).
``CONFORMANCE_DUMP=DIR`` writes ocibuild's rendering of each differing case to
``DIR/<case>.txt`` for a ``diff`` against the golden.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conformance import CASES, build_ocibuild, case_names, render, sections

from ocibuild.testing.flatten import Entry

# The goldens are what the reference BuildKit (docker 26.1: BuildKit 0.13, Dockerfile frontend
# 1.7) produced. Where current BuildKit knowingly does otherwise, the golden is corrected to
# current BuildKit before comparing: case -> ((0.13's text, current's text, why), ...); each
# ``why`` names the BuildKit change (read in moby/buildkit's source and history).
_EXPOSE = "EXPOSE history: '%v' of the parsed ports, raw words sorted (dockerfile 1.19, 98eab32)"
_HEALTH = "HEALTHCHECK history: '%+v' of the struct (dockerfile 1.24, d67dafe)"
_ARG = "ARG history: the effective value, a --build-arg's included (dockerfile 1.8, 47a52a1)"
_ARGDUP = "RUN history: a re-declared ARG listed once (dockerfile 1.12, e2be8f7)"
_UNPACK = "ADD --chown of a local archive chowns its entries (BuildKit 0.23, 46e52f4)"
_PARENTS = ("COPY --chmod also sets the mode of the directories it creates for the destination "
            "(BuildKit 0.21, fsutil copy.MkdirAll(..., ci.Mode))")
CURRENT_BUILDKIT: dict[str, tuple[tuple[str, str, str], ...]] = {
    "arg-scoping": (
        ("[empty] ARG VERSION\n", "[empty] ARG VERSION=2.5\n", _ARG),
        ("[empty] ARG BUILD_DATE\n", "[empty] ARG BUILD_DATE=2024-01-01\n", _ARG),
    ),
    "global-arg-from": (
        ("[empty] ARG REGISTRY\n", "[empty] ARG REGISTRY=localhost:5000\n", _ARG),
    ),
    "ports-volumes-labels": (
        ("[empty] ARG VERSION=0.0.0", "[empty] ARG VERSION=3.1.4", _ARG),
        ("EXPOSE map[8080/tcp:{} 9090/udp:{}]", "EXPOSE [8080/tcp 9090/udp]", _EXPOSE),
        ("EXPOSE map[7000/tcp:{} 7001/tcp:{} 7002/tcp:{}]", "EXPOSE [7000/tcp 7001/tcp 7002/tcp]",
         _EXPOSE),
    ),
    "env-arg-interplay": (
        ("[empty] ARG LEVEL=1", "[empty] ARG LEVEL=7", _ARG),
        ("[empty] ARG LEVEL=from-arg", "[empty] ARG LEVEL=7", _ARG),
        ("RUN |3 MODE=ignored LEVEL=7 MODE=ignored /bin/sh",
         "RUN |2 MODE=ignored LEVEL=7 /bin/sh", _ARGDUP),
        ("RUN |4 MODE=ignored LEVEL=7 MODE=ignored LEVEL=7 /bin/sh",
         "RUN |2 MODE=ignored LEVEL=7 /bin/sh", _ARGDUP),
    ),
    "healthcheck-forms": (
        ("""HEALTHCHECK &{["CMD" "/bin/sh" "-c" "test -f /ok"] "5m0s" "10s" "0s" "0s" '\\x00'}""",
         "HEALTHCHECK {Test:[CMD /bin/sh -c test -f /ok] Interval:5m0s Timeout:10s"
         " StartPeriod:0s StartInterval:0s Retries:0}", _HEALTH),
        ("""HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" '\\x00'}""",
         "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s"
         " Retries:0}", _HEALTH),
        ("""HEALTHCHECK &{["CMD-SHELL" "test -f /ready"] "0s" "0s" "0s" "0s" '\\x05'}""",
         "HEALTHCHECK {Test:[CMD-SHELL test -f /ready] Interval:0s Timeout:0s StartPeriod:0s"
         " StartInterval:0s Retries:5}", _HEALTH),
    ),
    "healthcheck-none": (
        ("""HEALTHCHECK &{["CMD" "/bin/sh" "-c" "test -f /ok"] "5m0s" "10s" "0s" "0s" '\\x00'}""",
         "HEALTHCHECK {Test:[CMD /bin/sh -c test -f /ok] Interval:5m0s Timeout:10s"
         " StartPeriod:0s StartInterval:0s Retries:0}", _HEALTH),
        ("""HEALTHCHECK &{["NONE"] "0s" "0s" "0s" "0s" '\\x00'}""",
         "HEALTHCHECK {Test:[NONE] Interval:0s Timeout:0s StartPeriod:0s StartInterval:0s"
         " Retries:0}", _HEALTH),
    ),
    "nginx-static": (
        ("EXPOSE map[443/tcp:{} 80/tcp:{} 8443/udp:{}]", "EXPOSE [443/tcp 80/tcp 8443/udp]",
         _EXPOSE),
        ("""HEALTHCHECK &{["CMD-SHELL" "wget -q -O- http://localhost/ || exit 1"] "30s" "3s" "5s" \
"0s" '\\x03'}""",
         "HEALTHCHECK {Test:[CMD-SHELL wget -q -O- http://localhost/ || exit 1] Interval:30s"
         " Timeout:3s StartPeriod:5s StartInterval:0s Retries:3}", _HEALTH),
    ),
    "node-app": (("EXPOSE map[3000/tcp:{}]", "EXPOSE [3000/tcp]", _EXPOSE),),
    "arg-stopsignal-user": (
        ("[empty] ARG SIG\n", "[empty] ARG SIG=SIGUSR1\n", _ARG),
        ("[empty] ARG PORT=8080", "[empty] ARG PORT=9000", _ARG),
        ("EXPOSE map[9000/tcp:{} 9000/udp:{}]", "EXPOSE [9000/tcp 9000/udp]", _EXPOSE),
    ),
    "copy-chmod-dir": (("d 0755 0:0 /opt/tree\n", "d 0750 0:0 /opt/tree\n", _PARENTS),),
    "labels-inherit": (
        ("EXPOSE map[80/tcp:{}]", "EXPOSE [80/tcp]", _EXPOSE),
        ("EXPOSE map[81/udp:{}]", "EXPOSE [81/udp]", _EXPOSE),
    ),
    "platform-args": (
        ("[empty] ARG TARGETARCH\n", "[empty] ARG TARGETARCH=amd64\n",
         "ARG history: an automatic platform ARG shows its value (dockerfile 1.8, 47a52a1)"),
    ),
    "parallel-stages-merge": (("EXPOSE map[8080/tcp:{}]", "EXPOSE [8080/tcp]", _EXPOSE),),
    "add-local-archives": tuple(
        (f"{old} /opt/owned/vendor{rest}", f"{new} /opt/owned/vendor{rest}", _UNPACK)
        for old, new, rest in (
            ("d 0755 0:0", "d 0755 1000:1000", "\n"),
            ("f 4755 0:0", "f 4755 1000:1000", "/bin/tool"),
            ("l 0777 0:0", "l 0777 1000:1000", "/current"),
            ("d 0750 1234:1234", "d 0750 1000:1000", "/lib\n"),
            ("f 0644 1234:1234", "f 0644 1000:1000", "/lib/a.txt"),
            ("f 0644 1234:1234", "f 0644 1000:1000", "/lib/b.txt"),
        )),
    "copy-chown-chmod": (
        ("d 0755 65534:65534 /etc/app\n", "d 0640 65534:65534 /etc/app\n", _PARENTS),
        ("d 0755 65534:65534 /etc/app/conf.d\n", "d 0640 65534:65534 /etc/app/conf.d\n",
         _PARENTS),
    ),
}

# case -> the difference ocibuild still has from (current) BuildKit; strict xfails.
KNOWN: dict[str, str] = {}


def expected(case: str) -> str:
    """``buildkit.txt`` corrected to current BuildKit (``CURRENT_BUILDKIT``); every correction
    must apply, so a re-recorded golden cannot silently drop one."""
    text = (CASES / case / "buildkit.txt").read_text()
    for old, new, why in CURRENT_BUILDKIT.get(case, ()):
        assert text.count(old) == 1, f"{case}: correction no longer applies ({why}): {old!r}"
        text = text.replace(old, new)
    return text


def _params() -> list[object]:
    out = []
    for name in case_names():
        marks = []
        if name in KNOWN:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN[name]))
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("case", _params())
def test_matches_buildkit(case: str, conformance_registry: str, conformance_store: Path,
                          busybox_tree: dict[str, Entry], isolation: str,
                          tmp_path: Path) -> None:
    built, _log = build_ocibuild(case, conformance_registry, conformance_store, tmp_path,
                                 isolation)
    ours = render(built, busybox_tree).replace(conformance_registry, "localhost:5000")
    golden = expected(case)
    if ours == golden:
        return
    dump = os.environ.get("CONFORMANCE_DUMP")  # a directory: keep ours for a diff by hand
    if dump:
        Path(dump).mkdir(parents=True, exist_ok=True)
        (Path(dump) / f"{case}.txt").write_text(ours)
    mine, theirs = sections(ours), sections(golden)
    differing = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
    assert ours == golden, f"{case}: ocibuild differs from BuildKit in {differing}"
