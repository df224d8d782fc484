"""Modification times BuildKit keeps (checked against the reference BuildKit's ``type=local``
output when the corpus was recorded; the listing goldens carry no times): entries unpacked by
ADD from a local archive keep the archive's mtimes; files and directories COPY takes from the
context keep the context's mtimes (so the expectation is read from the checkout, not a golden);
a file ADD downloads carries the ``Last-Modified`` time, else the epoch; directories COPY or ADD
creates get the time of the build (``NOW``).
"""

from __future__ import annotations

import gzip
import json
import tarfile
import time
from pathlib import Path

import pytest
from conformance import build_ocibuild, source_dir

ARCHIVE_MTIME = 1_600_000_000  # what cases/add-local-archives/ctx/*.tar* were written with
LAST_MODIFIED = 1_445_412_480  # the Last-Modified header fs-add-url serves plain.txt with
NOW = "<now>"  # made by the build: during this test session (the store may hold it cached)
_SESSION_START = int(time.time())  # collection time, before any build
# case -> {image path: int mtime, NOW, or the context path whose mtime it must carry}
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
    "fs-add-url": {
        "/u/plain.txt": LAST_MODIFIED, "/u/renamed": LAST_MODIFIED, "/u/x": LAST_MODIFIED,
        "/u/multi/plain.txt": LAST_MODIFIED, "/u/multi/two.txt": 0, "/u/d1/dir": 0,
        "/u/arch/app.tar.gz": 0, "/new/deep/file": 0, "/u": NOW, "/new/deep": NOW, "/w": NOW,
    },
    # Go's http.ParseTime: RFC 1123 (literal GMT), RFC 850 (any zone name, read as UTC), ANSI C;
    # names case-insensitive, weekday not checked; anything else is the epoch.
    "fs-add-url-last-modified": {
        **{f"/lm/{name}": 784_111_777 for name in (
            "rfc1123", "rfc850", "asctime", "lownames", "wrongwd", "pst850")},
        **{f"/lm/{name}": 0 for name in (
            "numzone", "noday", "utc", "garbage", "lowgmt", "badday", "oneday")},
        "/lm/asctime2": 784_975_777, "/lm/y69": 1,
    },
    # Checked out at build time (BuildKit: when its git source cache made the checkout).
    "fs-add-git": {"/g/head/README": NOW, "/g/head/link": NOW, "/g/own": NOW, "/g/own/deep": NOW},
    # Context mtimes set by args.json "specials" (d 1400000001, d/sub ...2, d/a ...3, d/lnk
    # ...4, d/sub/b ...5, d/fifo ...6, top.txt ...7); arch.tar entries 1500000001-4.
    "fs-mtimes": {
        **{f"{top}/{rel}": 1_400_000_000 + n
           for top in ("/c1", "/co", "/ln", "/exist/d", "/all/d")
           for rel, n in (("a", 3), ("lnk", 4), ("sub", 2), ("sub/b", 5), ("fifo", 6))},
        # a directory's contents into a new or an existing directory: it gets the source's
        "/c1": 1_400_000_001, "/co": 1_400_000_001, "/ln": 1_400_000_001,
        "/exist/d": 1_400_000_001, "/all/d": 1_400_000_001,
        "/deep/er": 1_400_000_002, "/deep/er/b": 1_400_000_005,
        "/exist/top.txt": 1_400_000_007, "/newparent/x/top.txt": 1_400_000_007,
        "/all/top.txt": 1_400_000_007, "/all/arch.tar": "arch.tar",
        "/un/adir": 1_500_000_001, "/un/adir/f": 1_500_000_002, "/un/adir/l": 1_500_000_003,
        "/un/implied/x/f2": 1_500_000_004, "/exist/adir": 1_500_000_001,
        "/exist/implied/x/f2": 1_500_000_004,
        # made by the build: parents COPY/ADD create, implied archive parents, WORKDIR, the
        # root of `COPY . /all/`, an existing directory something was copied into
        "/all": NOW, "/deep": NOW, "/newparent": NOW, "/newparent/x": NOW, "/un": NOW,
        "/un/implied": NOW, "/un/implied/x": NOW, "/exist/implied": NOW, "/exist": NOW,
        "/wd": NOW, "/wd/sub": NOW,
    },
    # BuildKit's MountStubsCleaner removes a stub and puts back its parent's times as they were
    # just before the removal: the parent keeps the stub's time (and is in the layer); /etc
    # too, as busybox has no hosts/resolv.conf. Its grandparents are untouched.
    "fs-run-stub-mtimes": {
        "/opt": 1_300_000_000, "/opt/a": NOW, "/srv": 1_300_000_000, "/srv/keep": NOW,
        "/srv/keep/f": 1_300_000_000, "/var": NOW, "/etc": NOW, "/tmp": 1_250_000_000,
    },
    # go-archive's boundTime: an archive mtime before the epoch or after 2262 is unpacked as
    # the epoch (0.13's docker/pkg/archive system.Chtimes and current go-archive alike).
    "h1b-add-tar-modes": {"/opt/modes/m0": 0, "/opt/modes/mneg": 0, "/opt/modes/mbig": 0,
                          "/opt/modes/suid": ARCHIVE_MTIME},
}
# case -> why ocibuild still differs (strict xfail: fixing it asks for the entry's removal)
KNOWN: dict[str, str] = {}


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


@pytest.mark.parametrize("case", [
    pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=KNOWN[case]))
    if case in KNOWN else case for case in sorted(EXPECTED)])
def test_mtimes_like_buildkit(case: str, conformance_registry: str, conformance_store: Path,
                              isolation: str, tmp_path: Path) -> None:
    build_ocibuild(case, conformance_registry, conformance_store, tmp_path, isolation)
    end = int(time.time())
    got = _mtimes(tmp_path / "layout")
    want = {p: v if isinstance(v, int) else int((source_dir(case) / "ctx" / v).stat().st_mtime)
            for p, v in EXPECTED[case].items() if v != NOW}
    assert {p: got.get(p) for p in want} == want
    made = {p: got.get(p) for p, v in EXPECTED[case].items() if v == NOW}
    assert {p: _SESSION_START <= (t or 0) <= end for p, t in made.items()} == \
        dict.fromkeys(made, True), made
