"""Modification times BuildKit keeps (checked against the reference BuildKit's ``type=local``
output when the corpus was recorded; the listing goldens carry no times): entries unpacked by
ADD from a local archive keep the archive's mtimes; files and directories COPY takes from the
context keep the context's mtimes (so the expectation is read from the checkout, not a golden).
"""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import pytest
from conformance import CASES, build_ocibuild

ARCHIVE_MTIME = 1_600_000_000  # what cases/add-local-archives/ctx/*.tar* were written with
# case -> {image path: int mtime, or the context path whose mtime it must carry}
EXPECTED: dict[str, dict[str, int | str]] = {
    "add-local-archives": {
        "/opt/vendor": ARCHIVE_MTIME, "/opt/vendor/lib": ARCHIVE_MTIME,
        "/opt/vendor/lib/a.txt": ARCHIVE_MTIME, "/opt/plain/readme": ARCHIVE_MTIME,
        "/opt/owned/vendor/bin/tool": ARCHIVE_MTIME, "/opt/notes/notes.txt.gz": "notes.txt.gz",
    },
    "copy-dest-variants": {
        "/dest/a.txt": "a.txt", "/renamed": "a.txt", "/dircontents/top": "dir/top",
        "/x/y/z/sub1": "dir/sub1", "/glob/a.txt": "a.txt", "/subglob/inner": "dir/sub2/inner",
    },
}


def _mtimes(layout: Path) -> dict[str, int]:
    """path -> mtime of its last appearance in the image's layers."""
    def blob(digest: str) -> Path:
        return layout / "blobs" / digest.replace(":", "/", 1)

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
    out: dict[str, int] = {}
    for layer in manifest["layers"]:
        with gzip.open(blob(layer["digest"])) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                out["/" + member.name.strip("/").removeprefix("./")] = int(member.mtime)
    return out


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_mtimes_like_buildkit(case: str, conformance_registry: str, conformance_store: Path,
                              isolation: str, tmp_path: Path) -> None:
    build_ocibuild(case, conformance_registry, conformance_store, tmp_path, isolation)
    got = _mtimes(tmp_path / "layout")
    want = {p: v if isinstance(v, int) else int((CASES / case / "ctx" / v).stat().st_mtime)
            for p, v in EXPECTED[case].items()}
    assert {p: got.get(p) for p in want} == want
