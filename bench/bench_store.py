"""Content store and OCI layout throughput and memory.

In a child process (so peak RSS is ours alone), with a 5-layer, 500 MB image: stream its
blobs into a fresh store (``put``), read them back verified (``read``), write the image as an
OCI archive (``write_oci_archive``), and load that archive into a second store
(``load_from_archive``). Each phase runs right after a baseline doing the least the contract
requires with plain files: write or copy in 1 MiB chunks computing sha256 once, fsync (for
``read``: read and sha256). Four times, in alternating order; the best ratio counts, because the machine is shared.
Targets: every ratio <= 1.5, and peak RSS under 100 MB whatever the image size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap

LAYERS = 5
LAYER_MB = 100
MAX_RSS_MB = 100
MAX_RATIO = 1.5
ROUNDS = 4

CHILD = textwrap.dedent(
    """
    import hashlib, json, os, resource, shutil, sys, time
    from pathlib import Path
    from ocibuild import mediatypes as mt
    from ocibuild.image import Descriptor, History, Image, Layer, Platform, append
    from ocibuild.output.layout import load_image, ref_annotations, write_oci_archive
    from ocibuild.store import BlobStore
    from ocibuild.store.images import put_image

    root, layers, layer_mb, rounds = Path(sys.argv[1]), *map(int, sys.argv[2:5])
    chunk = os.urandom(1 << 20)

    def chunks(i):
        for j in range(layer_mb):
            yield bytes([i, j]) + chunk[2:]  # distinct blobs, never a whole blob in memory

    def timed(fn):
        t = time.monotonic()
        fn()
        return time.monotonic() - t

    def baseline_write():
        for i in range(layers):
            h = hashlib.sha256()
            with open(root / f"plain{i}", "wb") as f:
                for c in chunks(i):
                    h.update(c)
                    f.write(c)
                f.flush()
                os.fsync(f.fileno())

    def baseline_copy():
        for i in range(layers):
            h = hashlib.sha256()
            with open(root / f"plain{i}", "rb") as src, open(root / f"copy{i}", "wb") as dst:
                while data := src.read(1 << 20):
                    h.update(data)
                    dst.write(data)
                dst.flush()
                os.fsync(dst.fileno())
            os.unlink(root / f"copy{i}")

    def baseline_read():
        for i in range(layers):
            h = hashlib.sha256()
            with open(root / f"plain{i}", "rb") as src:
                while data := src.read(1 << 20):
                    h.update(data)

    results = {}
    state = {}

    def cleanup():
        # Between timings: drop the previous round's copies (keep the first store: the source).
        for key in ("other", "extra"):
            if key in state:
                shutil.rmtree(state.pop(key).root)

    def put():
        store = BlobStore(root / f"a{time.monotonic_ns()}")
        if "store" in state:
            state["extra"] = store  # a repeat round: measure, then throw away
            for i in range(layers):
                with store.writer() as w:
                    for c in chunks(i):
                        w.write(c)
            return
        image = Image.empty(Platform.parse("linux/amd64"))
        for i in range(layers):
            with store.writer() as w:
                for c in chunks(i):
                    w.write(c)
            # Not a tar: the layout code does not look inside layers.
            layer = Layer(Descriptor(mt.OCI_LAYER, w.digest, w.size), w.digest)
            image = append(image, layer, History(created_by=f"layer {i}"))
        state["store"], state["image"] = store, image
        state["manifest"] = put_image(store, image)

    def read():
        for layer in state["image"].layers:
            state["store"].verify(layer.digest)

    def archive():
        m, image = state["manifest"], state["image"]
        d = m.descriptor(platform=image.platform).with_annotations(ref_annotations("bench:1"))
        write_oci_archive(root / "image.tar", [d], state["store"])

    def load():
        other = state["other"] = BlobStore(root / f"b{time.monotonic_ns()}")
        loaded = load_image(root / "image.tar", "1", Platform.parse("linux/amd64"), other)
        assert loaded.manifest.digest == state["manifest"].digest

    phases = [("put", baseline_write, put), ("read", baseline_read, read),
              ("write_oci_archive", baseline_copy, archive), ("load_from_archive", baseline_copy, load)]
    baseline_write()
    for name, base, fn in phases:
        best = None
        for r in range(rounds):
            cleanup()
            if r % 2:  # alternate the order: writeback of one must not always slow the other
                p = timed(fn)
                b = timed(base)
            else:
                b = timed(base)
                p = timed(fn)
            if best is None or p / b < best[2]:
                best = (b, p, p / b)
        results[name] = best
    out = {"phases": results, "total_mb": layers * layer_mb * (1 << 20) / 1e6,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(out))
    """
)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        cmd = [sys.executable, "-c", CHILD, tmp, str(LAYERS), str(LAYER_MB), str(ROUNDS)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        print(proc.stderr)
        return 1
    r = json.loads(proc.stdout)
    total = r["total_mb"]
    print(f"store bench: {LAYERS} layers x {LAYER_MB} MiB = {total:.0f} MB (python -m bench store)")
    ok = r["peak_rss_mb"] < MAX_RSS_MB
    for phase, (base, took, ratio) in r["phases"].items():
        ok = ok and ratio <= MAX_RATIO
        print(
            f"  {phase:18s} {took:6.2f} s ({total / took:5.0f} MB/s), baseline {base:6.2f} s "
            f"({total / base:5.0f} MB/s): ratio {ratio:.2f} (target <= {MAX_RATIO})"
        )
    print(f"  peak RSS {r['peak_rss_mb']:.0f} MB (target < {MAX_RSS_MB})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
