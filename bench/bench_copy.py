"""`ocibuild copy` against `skopeo copy` on a generated 500 MB, 5-layer image.

Generates the image once in a temporary directory (each layer a tar of incompressible random
bytes plus compressible text, gzip-compressed with pigz), pushes it to a local
``docker-registry``, then times, in the same run, registry -> registry and
registry -> oci-archive for both tools (each copy into its own fresh registry or file so that
no tool finds the other's blobs). Every run is a subprocess measured with ``/usr/bin/time``
(wall time and peak RSS of that process alone). Targets: ocibuild/skopeo wall time ratio <= 1.0 and
ocibuild peak RSS < 100 MB. Best of ``ROUNDS`` per figure.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocibuild.testing.registry import RegistryServer, push_image, start_registry  # noqa: E402

LAYERS = 5
LAYER_BYTES = 114 * 1000 * 1000  # 7/8 random: ~500 MB of gzip layers
ROUNDS = 3
RSS_LIMIT_MB = 100.0


class _Source(io.RawIOBase):
    """``size`` bytes: the first 7/8 random, the rest compressible text (streamed)."""

    def __init__(self, size: int, seed: int) -> None:
        self._size = size
        self._pos = 0
        self._line = f"layer {seed}: the quick brown fox jumps over the lazy dog\n".encode() * 64

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buf), self._size - self._pos, 1 << 20)
        if n <= 0:
            return 0
        if self._pos < self._size * 7 // 8:
            chunk = os.urandom(n)
        else:
            chunk = (self._line * (n // len(self._line) + 1))[:n]
        buf[:n] = chunk
        self._pos += n
        return n


def _make_layer(path: Path, index: int) -> Path:
    tar_path = path.with_suffix(".tar")
    src = _Source(LAYER_BYTES, index)
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo(f"data/layer{index}.bin")
        info.size = LAYER_BYTES
        info.mtime = 0
        tf.addfile(info, io.BufferedReader(src, 1 << 20))
    gz = path.with_suffix(".tar.gz")
    with open(gz, "wb") as out:
        subprocess.run(["pigz", "-1", "-n", "-c", str(tar_path)], stdout=out, check=True)
    tar_path.unlink()
    return gz


def _run(argv: list[str], work: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one subprocess, measured by ``/usr/bin/time`` (a small
    parent: a child forked from this Python would start with our RSS as its high-water mark)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    report = work / "time.out"
    start = time.monotonic()
    proc = subprocess.run(["/usr/bin/time", "-o", str(report), "-f", "%M", *argv], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    rss_kb = float(report.read_text().split()[-1])
    return wall, rss_kb / 1024.0


def main() -> int:
    for tool in ("skopeo", "pigz", "/usr/bin/time"):
        if shutil.which(tool) is None:
            print(f"bench_copy: {tool} is not installed; skipped")
            return 1
    work = Path(tempfile.mkdtemp(prefix="ocibuild-bench-copy-"))
    servers: list[RegistryServer] = []
    try:
        t0 = time.monotonic()
        layers = [_make_layer(work / f"layer{i}", i) for i in range(LAYERS)]
        total = sum(p.stat().st_size for p in layers)
        src = start_registry()
        servers.append(src)
        push_image(src.host, "bench/image:1", layers, {"config": {"Cmd": ["/bin/true"]}})
        for p in layers:
            p.unlink()
        print(f"image: {LAYERS} gzip layers, {total / 1e6:.0f} MB compressed, "
              f"{LAYERS * LAYER_BYTES / 1e6:.0f} MB uncompressed; generated and pushed in "
              f"{time.monotonic() - t0:.1f}s")
        image = f"docker://{src.host}/bench/image:1"
        ocibuild = [sys.executable, "-m", "ocibuild", "copy"]
        skopeo = ["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false"]
        results: dict[str, dict[str, tuple[float, float]]] = {}
        for round_no in range(ROUNDS):
            for case in ("registry->registry", "registry->oci-archive"):
                for tool, base in (("ocibuild", ocibuild), ("skopeo", skopeo)):
                    if case == "registry->registry":
                        dst_server = start_registry()
                        servers.append(dst_server)
                        dest = f"docker://{dst_server.host}/bench/copy:1"
                    else:
                        dest = f"oci-archive:{work / f'{tool}-{round_no}.tar'}:1"
                    wall, rss = _run([*base, image, dest], work)
                    best = results.setdefault(case, {}).get(tool)
                    if best is None or wall < best[0]:
                        results[case][tool] = (wall, max(rss, best[1] if best else 0.0))
                    elif rss > best[1]:
                        results[case][tool] = (best[0], rss)
                    if case == "registry->registry":
                        servers.remove(dst_server)
                        dst_server.stop()
                    else:
                        Path(dest.split(":")[1]).unlink()
        ok = True
        print(f"{'case':24} {'ocibuild s':>10} {'skopeo s':>9} {'ratio':>6} "
              f"{'ocibuild RSS MB':>16} {'skopeo RSS MB':>14}")
        for case, by_tool in results.items():
            (ow, orss), (sw, srss) = by_tool["ocibuild"], by_tool["skopeo"]
            ratio = ow / sw
            ok = ok and ratio <= 1.0 and orss < RSS_LIMIT_MB
            print(f"{case:24} {ow:10.2f} {sw:9.2f} {ratio:6.2f} {orss:16.1f} {srss:14.1f}")
        print(f"targets: ratio <= 1.0, ocibuild peak RSS < {RSS_LIMIT_MB:.0f} MB: "
              f"{'met' if ok else 'MISSED'} (best of {ROUNDS}; "
              f"cmd: python -m ocibuild copy {image} docker://HOST/... | oci-archive:PATH)")
        return 0 if ok else 1
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
