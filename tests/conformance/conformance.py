"""The BuildKit conformance corpus: shared by the recorder (``record.py``, needs the reference
BuildKit) and the test (``test_conformance.py``, needs only ocibuild and a test registry).

A case is ``cases/<case>/``: ``Dockerfile`` (``localhost:5000`` stands for the test registry),
``ctx/`` (the build context), optional ``args.json`` (``{"build_args": {K: V}, "target": NAME,
"secrets": {ID: FILE relative to the case dir}, "labels": {K: V}, "env": {K: V},
"empty_dirs": [PATH in ctx], "specials": [[KIND, PATH in ctx, ...]],
"dockerfile_ignore": TEXT (written as ``Dockerfile.dockerignore`` beside the Dockerfile), "http_files": {URL PATH: {...}}}``, the last served to ``ADD``
by ``httpfiles.serve`` as ``http://fileserver:8080``; a
``build_args`` value of null is passed as a bare ``--build-arg K``, taken from ``env``, the
builder's environment) and ``buildkit.txt``, the golden: BuildKit's
result rendered by ``render``. Both builders pull the SAME busybox image bytes (``seed``), so the
base layer is identical and only what the Dockerfile did shows in the listing.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from httpfiles import HTTP_PLACEHOLDER, serve, unplace

from ocibuild.testing import busybox
from ocibuild.testing.flatten import Entry, listing, tree_of_tar

CASES = Path(__file__).parent / "cases"
PLACEHOLDER = "localhost:5000"
# Every base-image name the corpus uses: all are the same busybox image (real Dockerfiles name
# real distributions; we have one tiny rootfs).
BASE_TAGS = ("busybox:latest", "busybox:1.36", "alpine:3.19", "debian:bookworm-slim",
             "node:20-alpine", "python:3.12-slim", "golang:1.22", "nginx:1.25")
# The config fields compared (inside ``config``), in the order they are printed.
CONFIG_FIELDS = ("User", "Env", "Entrypoint", "Cmd", "WorkingDir", "ExposedPorts", "Volumes",
                 "Labels", "StopSignal", "Healthcheck", "OnBuild", "Shell", "ArgsEscaped")
TOP_FIELDS = ("author", "architecture", "os", "variant")


@dataclass(frozen=True)
class Built:
    """A built image, whichever builder made it."""

    config: dict[str, Any]
    tree: dict[str, Entry]


def case_names() -> list[str]:
    return sorted(p.name for p in CASES.iterdir()
                  if (p / "Dockerfile").is_file() or (p / "args.json").is_file()
                  and "same_as" in json.loads((p / "args.json").read_text()))


def case_args(case: str, host: str = PLACEHOLDER) -> dict[str, Any]:
    path = CASES / case / "args.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text().replace(PLACEHOLDER, host))


def source_dir(case: str) -> Path:
    """Where the case's Dockerfile, ``ctx/`` and other inputs live: its own directory, or that
    of the case its ``args.json`` names as ``same_as`` (one Dockerfile built with other flags,
    e.g. another ``--target``); ``args.json`` and ``buildkit.txt`` are always the case's own."""
    return CASES / (case_args(case).get("same_as") or case)


def make_context_dirs(case: str) -> None:
    """Git keeps no empty directories: the context dir itself, and those a case lists under
    ``empty_dirs`` in ``args.json``, are made before a build; so are its ``specials``."""
    ctx = source_dir(case) / "ctx"
    ctx.mkdir(exist_ok=True)
    for rel in case_args(case).get("empty_dirs") or ():
        (ctx / rel).mkdir(parents=True, exist_ok=True)
    for special in case_args(case).get("specials") or ():
        make_special(ctx, *special)


def make_special(ctx: Path, kind: str, rel: str, *args: Any) -> None:
    """What git cannot hold, made in the context before a build (idempotent; the paths a case
    creates are listed in its ``.gitignore``): ``["fifo", P]``, ``["socket", P]`` (a bound unix
    socket), ``["hardlink", P, TARGET]``, ``["xattr", P, NAME, VALUE]``, ``["chmod", P, OCTAL]``,
    ``["mtime", P, SECONDS]`` (not following a symlink), ``["file", P, TEXT]`` (with its
    parents: names git or other checkouts handle badly, newlines, ``\\``)."""
    path = ctx / rel
    if kind == "file":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(args[0])
    elif kind == "fifo" and not os.path.lexists(path):
        os.mkfifo(path)
    elif kind == "socket" and not os.path.lexists(path):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(path))
    elif kind == "hardlink" and not os.path.lexists(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        os.link(ctx / args[0], path)
    elif kind == "xattr":
        os.setxattr(path, args[0], str(args[1]).encode(), follow_symlinks=False)
    elif kind == "chmod":
        os.chmod(path, int(args[0], 8))
    elif kind == "mtime":
        os.utime(path, (args[0], args[0]), follow_symlinks=False)
    elif kind not in ("fifo", "socket", "hardlink", "file"):
        raise ValueError(f"unknown special {kind!r} for {rel}")


def build_flags(case: str, host: str) -> list[str]:
    """The ``docker buildx build`` flags (ocibuild spells them the same) from ``args.json``."""
    args = case_args(case, host)
    flags: list[str] = []
    for key, value in (args.get("build_args") or {}).items():
        flags += ["--build-arg", key if value is None else f"{key}={value}"]
    for key, value in (args.get("labels") or {}).items():
        flags += ["--label", f"{key}={value}"]
    if args.get("target"):
        flags += ["--target", args["target"]]
    for sid, src in (args.get("secrets") or {}).items():
        flags += ["--secret", f"id={sid},src={source_dir(case) / src}"]
    return flags


def dockerfile_text(case: str, host: str, files_host: str | None = None) -> str:
    text = (source_dir(case) / "Dockerfile").read_text().replace(PLACEHOLDER, host)
    return text.replace(HTTP_PLACEHOLDER, files_host) if files_host else text


def write_dockerfile_ignore(case: str, dockerfile: Path) -> None:
    """The case's ``dockerfile_ignore`` as ``<Dockerfile>.dockerignore`` (which wins over the
    context's ``.dockerignore`` in both builders)."""
    text = case_args(case).get("dockerfile_ignore")
    if text is not None:
        dockerfile.with_name(dockerfile.name + ".dockerignore").write_text(text)


def serve_files(case: str):  # type: ignore[no-untyped-def]
    """The case's ``http_files`` served while a builder runs (``httpfiles.serve``)."""
    return serve(source_dir(case), case_args(case).get("http_files"))


def base_tree(work: Path) -> dict[str, Entry]:
    """The flattened busybox rootfs every case starts from (for a listing of changes only)."""
    return tree_of_tar(busybox.write_tar(work / "busybox-base.tar"))


def base_history() -> list[str]:
    return [h.get("created_by", "") for h in busybox.image_config()["history"]]  # type: ignore[union-attr]


def seed(host: str, store_root: Path) -> None:
    """Push the busybox image under every ``BASE_TAGS`` name to the registry at ``host``."""
    from ocibuild.reference import Reference
    from ocibuild.registry.client import RegistryClient
    from ocibuild.store.blobs import BlobStore

    store = BlobStore(store_root)
    image = busybox.make_image(store)
    refs = [Reference.parse(f"{host}/{name}") for name in BASE_TAGS]
    with RegistryClient(insecure_hosts=[host]) as client:
        client.push_image(image, refs, store)


def render(built: Built, base: dict[str, Entry]) -> str:
    """The golden text: compared config fields, history (the base image's own entries
    dropped), layer count, and the files that differ from the busybox base."""
    cfg = built.config
    inner = cfg.get("config") or {}
    shown: dict[str, Any] = {k: cfg[k] for k in TOP_FIELDS if cfg.get(k) not in (None, "")}
    shown["config"] = {k: inner[k] for k in CONFIG_FIELDS if inner.get(k) is not None}
    skip = base_history()
    history = []
    for h in cfg.get("history") or []:
        text = h.get("created_by", "")
        if skip and text == skip[0]:
            skip.pop(0)
            continue
        history.append(f"  {'[empty]' if h.get('empty_layer') else '[layer]'} {text}")
    layers = len((cfg.get("rootfs") or {}).get("diff_ids") or [])
    out = ["config:", *("  " + line for line in json.dumps(shown, indent=2, sort_keys=True,
                                                          ensure_ascii=False).splitlines())]
    out.append("history:")
    out.extend(history)
    out.append(f"layers: {layers}")
    keep_base = "/bin/busybox" in built.tree
    out.append("files:" + (" (changed from the base image)" if keep_base else ""))
    # A newline in a file name would start a line of its own (and a bogus section).
    out.extend("  " + line.replace("\n", "\\n")
               for line in listing(built.tree, base if keep_base else None))
    return "\n".join(out) + "\n"


def sections(text: str) -> dict[str, str]:
    """Split a rendered text into its parts, so a test can say WHICH part differs."""
    parts: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if not line.startswith(" "):
            current = line.split(":", 1)[0]
        parts.setdefault(current, []).append(line)
    return {k: "\n".join(v) for k, v in parts.items()}


def build_ocibuild(case: str, host: str, store: Path, work: Path,
                   isolation: str = "auto") -> tuple[Built, str]:
    """Build ``case`` with ocibuild in-process into an OCI layout under ``work``; returns the
    flattened image and the progress log."""
    with serve_files(case) as files:
        built, log = _build_ocibuild(case, host, store, work, isolation, files)
    return Built(unplace(built.config, files), built.tree), log


def _build_ocibuild(case: str, host: str, store: Path, work: Path, isolation: str,
                    files: str | None) -> tuple[Built, str]:
    from ocibuild import cli
    from ocibuild.executor.build import BuildOptions, build, options_from_args
    from ocibuild.testing.flatten import load_layout

    make_context_dirs(case)
    dockerfile = work / "Dockerfile"
    dockerfile.write_text(dockerfile_text(case, host, files))
    write_dockerfile_ignore(case, dockerfile)
    layout = work / "layout"
    argv = ["-f", str(dockerfile), "--progress", "plain", "--isolation", isolation,
            "--insecure-registry", host, "--output", f"type=oci,dest={layout},tar=false",
            *build_flags(case, host), str(source_dir(case) / "ctx")]
    args = cli._build_parser().parse_args(argv)
    stream = io.StringIO()
    env = case_args(case, host).get("env") or {}
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # a bare --build-arg K reads it while the options are made
    try:
        options = options_from_args(args)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    options = BuildOptions(**{**options.__dict__, "store_root": store, "progress_stream": stream})
    # Cache mounts live in the store and outlive a build: each case starts without those an
    # earlier case left under the same id (a target path), as its golden was recorded alone.
    shutil.rmtree(store / "cache", ignore_errors=True)
    try:
        build(options)
    except Exception as exc:
        exc.add_note(stream.getvalue()[-3000:])
        raise
    image = load_layout(layout)
    return Built(image.config, image.tree), stream.getvalue()
