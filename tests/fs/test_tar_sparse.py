"""Sparse tar members, as GNU tar writes them (old GNU ``S``, PAX 0.0, 0.1, 1.0) and Go's reader
takes them for BuildKit's ADD: a file of its real size, the data at its offsets."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ocibuild.errors import ContentError
from ocibuild.fs.tarreader import TarReader

FORMATS = [["--format=gnu"]] + [["--format=pax", f"--sparse-version={v}"]
                                for v in ("0.0", "0.1", "1.0")]


@pytest.fixture
def sparse_file(tmp_path: Path) -> Path:
    """20 MiB with 40 runs of data (more than an old GNU header holds: extension blocks)."""
    path = tmp_path / "src" / "many"
    path.parent.mkdir()
    with open(path, "wb") as f:
        f.truncate(20 << 20)
        for i in range(1, 41):
            os.pwrite(f.fileno(), f"run {i}".encode() * 300, i * 400_000)
    (tmp_path / "src" / "small").write_bytes(b"small\n")
    return path


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar is not installed")
@pytest.mark.parametrize("flags", FORMATS, ids=lambda f: f[-1])
def test_sparse_members_read_as_their_files(tmp_path: Path, sparse_file: Path,
                                            flags: list[str]) -> None:
    archive = tmp_path / "t.tar"
    subprocess.run(["tar", *flags, "-S", "-C", str(sparse_file.parent), "-cf", str(archive),
                    "many", "small"], check=True)
    got = {}
    with open(archive, "rb") as raw:
        reader = TarReader(raw)
        for entry in reader:
            out = tmp_path / f"out-{entry.name}"
            fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                reader.copy_data_to(fd)
            finally:
                os.close(fd)
            got[entry.name] = (entry.size, out.read_bytes())
    assert got == {"many": (20 << 20, sparse_file.read_bytes()), "small": (6, b"small\n")}


def test_a_sparse_map_past_the_real_size_is_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    info = tarfile.TarInfo("f")
    info.size = 4
    info.pax_headers = {"GNU.sparse.map": "10,4", "GNU.sparse.size": "8"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(b"data"))
    buf.seek(0)
    with pytest.raises(ContentError, match="sparse map"):
        list(TarReader(buf))
