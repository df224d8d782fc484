"""Layer engine benchmark: commit 1 GB / 20,000 files, unpack a 300 MB layer, peak memory.

Targets (issue 4): ``write_layer`` gzip <= 0.7x ``tar -c | gzip -6``; zstd <= 1.2x
``tar -c | zstd -3 -T0``; ``unpack_layer`` of a ~300 MB gzip layer <= 1.3x ``tar -xzf``; peak
RSS of each of our operations < 100 MB (measured in a child process). The reference commands
run on the same tree in the same run, from a warm page cache like ours. Temp data lives under
/tmp and is removed afterwards. ``python -m bench.bench_layers [--files N --total-mb M]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"gzip": 0.7, "zstd": 1.2, "unpack": 1.3}
MAX_RSS_MB = 100.0


def make_tree(root: Path, files: int, total: int, seed: int = 1) -> int:
    """``files`` files, ``total`` bytes in all: many small, some large; half random, half text."""
    rng = random.Random(seed)
    words = [bytes(rng.choices(b"abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 10))) for _ in range(4000)]
    text = b" ".join(rng.choices(words, k=400_000))[: 2 << 20]
    # Sizes: a log-uniform spread, rescaled so the tree holds ``total`` bytes.
    raw = [int(2 ** rng.uniform(8, 22)) for _ in range(files)]
    scale = total / sum(raw)
    sizes = [max(1, int(s * scale)) for s in raw]
    written = 0
    for i, size in enumerate(sizes):
        d = root / f"d{i % 97:02d}" / f"s{i % 13}"
        d.mkdir(parents=True, exist_ok=True)
        half = size // 2
        off = rng.randrange(0, len(text) - half) if half < len(text) else 0
        body = rng.randbytes(half) + (text[off : off + size - half] * (1 + (size - half) // len(text)))[: size - half]
        (d / f"f{i:05d}.dat").write_bytes(body)
        written += len(body)
    return written


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _timed_shell(cmd: str) -> tuple[float, float]:
    """Wall and CPU seconds (all processes of the pipeline) of a shell command."""
    cpu = _children_cpu()
    t = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True)
    return time.perf_counter() - t, _children_cpu() - cpu


def _child(args: list[str]) -> dict[str, float]:
    """Run one of our operations in a fresh interpreter; returns its time and peak RSS."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_layers", "--child", *args],
        check=True, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _run_child(op: str, src: str, dest: str, compression: str) -> None:
    from ocibuild.fs.diff import overlay_changes
    from ocibuild.fs.layer import write_layer
    from ocibuild.fs.unpack import unpack_layer

    t = time.perf_counter()
    if op == "write":
        write_layer(overlay_changes(Path(src)), Path(dest), compression, ordered=True)
    else:
        unpack_layer(Path(src), Path(dest))
    elapsed = time.perf_counter() - t
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu = ru.ru_utime + ru.ru_stime
    print(json.dumps({"seconds": elapsed, "cpu": cpu, "rss_mb": ru.ru_maxrss / 1024}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench_layers")
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--total-mb", type=int, default=1000)
    p.add_argument("--unpack-mb", type=int, default=390)  # ~300 MB once gzipped
    p.add_argument("--child", nargs=4, metavar=("OP", "SRC", "DEST", "COMP"))
    args = p.parse_args(argv if argv is not None else [])
    if args.child:
        _run_child(*args.child)
        return 0
    for tool in ("tar", "gzip", "zstd"):
        if shutil.which(tool) is None:
            print(f"bench_layers: {tool} not installed")
            return 1
    work = Path(tempfile.mkdtemp(prefix="ocibuild-bench-", dir="/tmp"))
    failures: list[str] = []
    try:
        tree = work / "tree"
        tree.mkdir()
        t = time.perf_counter()
        size = make_tree(tree, args.files, args.total_mb << 20)
        print(f"tree: {args.files} files, {size / 1e6:.0f} MB in {time.perf_counter() - t:.1f}s "
              f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, "
              f"python {sys.version.split()[0]})", flush=True)

        def compare(name: str, ref_cmd: str, ours: dict[str, float], ref: tuple[float, float]) -> None:
            ratio = ours["seconds"] / ref[0]
            ok = ratio <= TARGETS[name] and ours["rss_mb"] < MAX_RSS_MB
            print(f"{name:7s} ours {ours['seconds']:6.2f}s (cpu {ours['cpu']:5.1f}s)  "
                  f"ref {ref[0]:6.2f}s (cpu {ref[1]:5.1f}s)  ratio {ratio:.2f} "
                  f"(target <= {TARGETS[name]})  peak RSS {ours['rss_mb']:.0f} MB  "
                  f"{'ok' if ok else 'MISS'}   ref: {ref_cmd}", flush=True)
            if not ok:
                failures.append(name)

        ref_cmd = f"tar -C {tree} -cf - . | gzip -6 > {work}/ref.tar.gz"
        ref = _timed_shell(ref_cmd)
        ours = _child(["write", str(tree), str(work / "ours.tar.gz"), "gzip"])
        compare("gzip", "tar -c | gzip -6", ours, ref)
        subprocess.run(["gzip", "-t", str(work / "ours.tar.gz")], check=True)
        (work / "ref.tar.gz").unlink()
        (work / "ours.tar.gz").unlink()

        # The short runs are noisy on a shared machine: best of three, alternating.
        zref = f"tar -C {tree} -cf - . | zstd -q -3 -T0 > {work}/ref.tar.zst"
        zours = ["write", str(tree), str(work / "ours.tar.zst"), "zstd"]
        refs, ourss = [], []
        for _ in range(3):
            refs.append(_timed_shell(zref))
            ourss.append(_child(zours))
        compare("zstd", "tar -c | zstd -3 -T0", min(ourss, key=lambda o: o["seconds"]), min(refs))
        subprocess.run(["zstd", "-tq", str(work / "ours.tar.zst")], check=True)
        (work / "ref.tar.zst").unlink()
        (work / "ours.tar.zst").unlink()

        # A ~300 MB gzip layer: the first directories of the tree.
        sub = work / "sub"
        sub.mkdir()
        acc = 0
        for d in sorted(tree.iterdir()):
            if acc >= args.unpack_mb << 20:
                break
            d.rename(sub / d.name)
            acc += sum(f.stat().st_size for f in (sub / d.name).rglob("*") if f.is_file())
        shutil.rmtree(tree)
        gz = "pigz -6" if shutil.which("pigz") else "gzip -6"  # only makes the test layer
        subprocess.run(["bash", "-c", f"tar -C {sub} -cf - . | {gz} > {work}/layer.tar.gz"], check=True)
        shutil.rmtree(sub)
        layer_mb = (work / "layer.tar.gz").stat().st_size / 1e6
        (work / "x1").mkdir()
        (work / "x2").mkdir()
        refs, ourss = [], []
        for _ in range(2):
            refs.append(_timed_shell(f"tar -C {work}/x1 -xzf {work}/layer.tar.gz"))
            ourss.append(_child(["unpack", str(work / "layer.tar.gz"), str(work / "x2"), "-"]))
            shutil.rmtree(work / "x1")
            shutil.rmtree(work / "x2")
            (work / "x1").mkdir()
            (work / "x2").mkdir()
        ref, ours = min(refs), min(ourss, key=lambda o: o["seconds"])
        print(f"unpack layer: {acc / 1e6:.0f} MB of files, {layer_mb:.0f} MB gzip")
        compare("unpack", "tar -xzf", ours, ref)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        print(f"bench_layers: missed targets: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
