"""Every case under tests/e2e/cases/ built against the test registry and compared with its
golden ``expected.txt`` (the flattened image: paths, types, modes, uid/gid, content digests,
link targets, hard-link groups; the config without times; the history). Rewrite the goldens with
``pytest tests/e2e --update-golden`` and review the diff against BuildKit's behaviour.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e_harness import CASES, build_case, case_names, case_options

from ocibuild.testing.flatten import describe, load_layout

# Every case runs again in tests/run-rootless.sh: as unprivileged users (with and without
# subuid ranges) and as root without CAP_SYS_ADMIN (chroot mode: no namespaces, copy
# snapshots, RUN mounts placed in the rootfs by executor/chroot_mounts.py). A case whose RUN
# changes ownership says ``ids=all`` (a single-id sandbox cannot keep that, by design, with a
# warning); one that needs namespaces says ``needs=namespaces``.


def _params() -> list[object]:
    out = []
    for name in case_names():
        marks = [pytest.mark.rootless, pytest.mark.chroot]
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("case", _params())
def test_case(case: str, e2e_registry, e2e_store: Path, isolation: str, tmp_path: Path,  # type: ignore[no-untyped-def]
              request: pytest.FixtureRequest) -> None:
    options = case_options(case)
    if options.get("needs") == "namespaces" and not request.getfixturevalue("namespaced"):
        pytest.skip("needs mount/network namespaces, which chroot mode does not have")
    if options.get("ids") == "all" and request.getfixturevalue("single_id"):
        pytest.skip("needs ids other than the caller's, which a single-id sandbox does not have")
    built = build_case(case, e2e_registry.host, e2e_store, tmp_path, isolation)
    image = load_layout(built.layout)
    base = e2e_registry.busybox_tree if "/bin/busybox" in image.tree else None
    text = describe(image, base, e2e_registry.busybox_history)
    text = text.replace(e2e_registry.host, "localhost:5000")
    golden = CASES / case / "expected.txt"
    if request.config.getoption("--update-golden"):
        golden.write_text(text)
        return
    assert golden.exists(), f"no golden for {case}: run with --update-golden and review it"
    assert text == golden.read_text()
