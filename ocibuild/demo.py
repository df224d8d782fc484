"""``make demo``: the seed note's multi-stage examples built end to end, offline.

1. A base image is built by ocibuild itself from an embedded Dockerfile: ``FROM scratch``,
   ``COPY`` Debian's static busybox, ``RUN busybox --install -s``; written as an OCI layout.
2. The note's Dockerfiles (``testdata/seed/*.Dockerfile``) are built with
   ``--build-context debian:buster=oci-layout://...`` (and alpine, golang, nginx), so no
   registry is needed. There is no Go toolchain here: the Go examples' ``go get``/``go build``
   (and ``apk add``) steps are replaced by shell stand-ins, and the demo says so.
3. For each build it shows the stages that ran, the layers, the final CMD and files, writes an
   OCI tarball, and runs the final image's CMD in the sandbox (``Stage1 Stage2``).

Run: ``python -m ocibuild.demo [WORKDIR]`` (default ``build/demo``; the content store lives
there too, so a second run reuses the unpacked layers).
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ocibuild.errors import OcibuildError
from ocibuild.executor.build import BuildOptions, BuildResult, build

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "testdata" / "seed"

BASE_DOCKERFILE = """\
# The demo's base image: Debian's static busybox and its applets, nothing else.
FROM scratch
COPY busybox /bin/busybox
COPY passwd group /etc/
RUN ["/bin/busybox", "mkdir", "-p", "/usr/bin", "/usr/sbin", "/sbin", "/opt", "/tmp", "/root"]
RUN ["/bin/busybox", "--install", "-s"]
CMD ["sh"]
"""
NGINX_DOCKERFILE = """\
# Stand-in for nginx:latest: only the file the note copies from it.
FROM busybox:latest
RUN mkdir -p /etc/nginx && echo "worker_processes 1; # demo nginx.conf" > /etc/nginx/nginx.conf
"""
APP_GO = 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("href-counter") }\n'
GO_STANDIN = ("printf '#!/bin/sh\\necho \"href-counter (shell stand-in for the Go binary built "
              "from app.go)\"\\n' > app && chmod 755 app")


@dataclass(frozen=True)
class Example:
    title: str
    dockerfile: str
    flags: dict[str, str]  # target etc.
    expect: str = ""  # output the final CMD must print
    argv: tuple[str, ...] = ()  # run this instead of the image's CMD (an image without one)


def adapt(text: str) -> tuple[str, list[str]]:
    """The seed Dockerfile with Go/apk steps replaced by shell stand-ins, and what changed."""
    notes: list[str] = []
    joined = re.sub(r"\\\n\s*", "", text)  # continuation lines, as the parser joins them
    out = []
    for line in joined.split("\n"):
        if line.startswith("RUN") and "go build" in line:
            out.append(f"RUN {GO_STANDIN}")
            notes.append(f"replaced `{line.strip()}` (no Go toolchain here)")
        elif line.startswith("RUN") and "go get" in line:
            out.append('RUN echo "go get skipped: offline demo" > /tmp/go-get.log')
            notes.append(f"replaced `{line.strip()}` (no network, no Go)")
        elif line.startswith("RUN") and "apk " in line:
            out.append('RUN echo "apk add skipped: busybox base has no apk" > /tmp/apk.log')
            notes.append(f"replaced `{line.strip()}` (busybox base, offline)")
        else:
            out.append(line)
    return "\n".join(out), notes


def _say(text: str = "") -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, work: Path):
        self.work = work
        self.store = work / "store"
        self.contexts: list[str] = []

    def build(self, name: str, dockerfile: str, context: Path, *, target: str | None = None,
              outputs: tuple[str, ...] = (), progress: str = "quiet") -> BuildResult:
        path = self.work / f"{name}.Dockerfile"
        path.write_text(dockerfile)
        options = BuildOptions(
            context=str(context), dockerfile=str(path), target=target, outputs=outputs,
            build_contexts=tuple(self.contexts), progress=progress, store_root=self.store,
            progress_stream=sys.stdout,
        )
        return build(options)

    def base(self) -> Path:
        ctx = self.work / "base-context"
        ctx.mkdir(parents=True, exist_ok=True)
        shutil.copy2("/bin/busybox", ctx / "busybox")
        from ocibuild.testing.busybox import GROUP, PASSWD

        (ctx / "passwd").write_text(PASSWD)
        (ctx / "group").write_text(GROUP)
        layout = self.work / "base-layout"
        shutil.rmtree(layout, ignore_errors=True)
        _say("== 1. base image: FROM scratch + Debian's static busybox, built by ocibuild")
        _say(BASE_DOCKERFILE)
        result = self.build("base", BASE_DOCKERFILE, ctx, progress="plain",
                            outputs=(f"type=oci,dest={layout},tar=false,name=busybox:latest",))
        _say(f"\nbase image {result.manifest_digest} -> {layout} (OCI layout)\n")
        for name in ("debian:buster", "alpine:latest", "golang:1.16", "busybox:latest"):
            self.contexts.append(f"{name}=oci-layout://{layout}:latest")
        nginx = self.work / "nginx-layout"
        shutil.rmtree(nginx, ignore_errors=True)
        self.build("nginx", NGINX_DOCKERFILE, ctx,
                   outputs=(f"type=oci,dest={nginx},tar=false,name=nginx:latest",))
        self.contexts.append(f"nginx:latest=oci-layout://{nginx}:latest")
        return layout

    def show(self, result: BuildResult, tarball: Path) -> None:
        from ocibuild.testing.flatten import listing

        image = result.image
        cfg = image.config.to_json().get("config") or {}
        _say(f"   stages run: {', '.join(str(i) for i in result.stages)}")
        _say(f"   layers: {len(image.layers)} "
             f"({', '.join(f'{layer.size}B' for layer in image.layers)})")
        _say(f"   Entrypoint: {cfg.get('Entrypoint')}  Cmd: {cfg.get('Cmd')}  "
             f"WorkingDir: {cfg.get('WorkingDir')}")
        tree = _tree(image, result)
        base = _tree_of_base(self)
        changed = listing(tree, base)
        _say(f"   files added on top of the busybox base ({len(changed)}):")
        for line in changed[:12]:
            _say(f"     {line}")
        _say(f"   OCI tarball: {tarball} ({tarball.stat().st_size} bytes)")

    def run_cmd(self, result: BuildResult, override: tuple[str, ...] = ()) -> str:
        """Run the image's ENTRYPOINT + CMD (or ``override``) in the sandbox; its output."""
        from ocibuild.executor.runtime import RunSpec, Runtime
        from ocibuild.image import chain_ids
        from ocibuild.store.blobs import BlobStore

        image = result.image
        cfg = image.config.to_json().get("config") or {}
        argv = list(override) or [*(cfg.get("Entrypoint") or []), *(cfg.get("Cmd") or [])]
        store = BlobStore(self.store)
        chunks: list[bytes] = []
        with Runtime.detect(store=store, need_run=True) as runtime:
            lowers = [runtime.unpack_layer(c, store.path(layer.digest))
                      for layer, c in zip(image.layers, chain_ids(image.config.diff_ids),
                                          strict=True)]
            snap = runtime.new_snapshot(list(reversed(lowers)))
            try:
                spec = RunSpec(argv=tuple(argv), env=tuple(cfg.get("Env") or ()),
                               cwd=cfg.get("WorkingDir") or "/", user=cfg.get("User") or "")
                code = runtime.run(snap, spec, chunks.append)
            finally:
                runtime.remove(snap)
        out = b"".join(chunks).decode(errors="replace")
        return out if code == 0 else f"{out}(exit code {code})"


def _tree(image: object, result: BuildResult) -> dict:  # type: ignore[type-arg]
    key = str(result.manifest_digest)
    if key not in _flat_cache:  # not setdefault: its default would flatten every time
        _flat_cache[key] = _flatten_image(image)
    return _flat_cache[key]


_flat_cache: dict[str, dict] = {}  # type: ignore[type-arg]


def _flatten_image(image: object) -> dict:  # type: ignore[type-arg]
    from ocibuild.store.blobs import BlobStore
    from ocibuild.testing.flatten import apply_layer

    tree: dict = {}  # type: ignore[type-arg]
    store = BlobStore(_DEMO_STORE[0])
    for layer in image.layers:  # type: ignore[attr-defined]
        with open(store.path(layer.digest), "rb") as f:
            apply_layer(tree, f)
    return tree


_DEMO_STORE: list[Path] = []


def _tree_of_base(demo: Demo) -> dict:  # type: ignore[type-arg]
    from ocibuild.testing.flatten import load_layout

    key = "base"
    if key not in _flat_cache:
        _flat_cache[key] = load_layout(demo.work / "base-layout").tree
    return _flat_cache[key]


def examples() -> list[Example]:
    def seed(name: str) -> str:
        return (SEED / name).read_text()

    return [
        Example("Build stages (named stages, COPY --from=stage)", seed("build-stages.Dockerfile"),
                {}, "Stage1\nStage2\n"),
        Example("Use a previous stage as a new stage (FROM stage1 AS stage2)",
                seed("previous-stage.Dockerfile"), {}, "Stage1\nStage2\n"),
        Example("Stop at a specific build stage (--target stage2)",
                seed("build-stages.Dockerfile"), {"target": "stage2"}, "Stage1\nStage2\n",
                ("cat", "/opt/stage1", "/opt/stage2")),
        Example("Multi-stage builder pattern (COPY --from=0)", seed("multistage.Dockerfile"),
                {}, "href-counter"),
        Example("Use an external image as a stage (COPY --from=nginx:latest)",
                seed("external-image.Dockerfile"), {}, "worker_processes", ("cat", "/nginx.conf")),
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    work = Path(args[0] if args else ROOT / "build" / "demo").resolve()
    work.mkdir(parents=True, exist_ok=True)
    _DEMO_STORE.append(work / "store")
    demo = Demo(work)
    ok = True
    try:
        demo.base()
        ctx = work / "app-context"
        ctx.mkdir(exist_ok=True)
        (ctx / "app.go").write_text(APP_GO)
        for n, ex in enumerate(examples(), start=2):
            text, notes = adapt(ex.dockerfile)
            _say(f"== {n}. {ex.title}")
            for note in notes:
                _say(f"   adapted: {note}")
            tarball = work / f"example{n}.oci.tar"
            result = demo.build(f"example{n}", text, ctx, target=ex.flags.get("target"),
                                outputs=(f"type=oci,dest={tarball}",),
                                progress="plain" if n == 2 else "quiet")
            demo.show(result, tarball)
            out = demo.run_cmd(result, ex.argv)
            shown = out.strip().replace("\n", " ") or "(no output)"
            what = " ".join(ex.argv) if ex.argv else "its CMD"
            _say(f"   running {what} in the sandbox: {shown}")
            if ex.expect and ex.expect.strip() not in out:
                _say(f"   UNEXPECTED: wanted {ex.expect.strip()!r}")
                ok = False
            _say()
    except OcibuildError as exc:
        _say(f"demo failed: {exc}")
        return 1
    _say("demo: all examples built" if ok else "demo: some examples did not behave as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
