"""The command line: parses flags like ``docker buildx build``, calls one ``api`` function,
renders errors as one line and sets the exit code. Nothing else lives here.

    python -m ocibuild [build flags] CONTEXT       build (the default verb)
    python -m ocibuild --check [-f FILE] CONTEXT   build checks only
    python -m ocibuild --print-plan [...] CONTEXT  the stages that would run, in order
    python -m ocibuild copy SRC DST                copy an image between transports
    python -m ocibuild inspect REF                 manifest, config and platforms as JSON
    python -m ocibuild login HOST -u USER --password-stdin
    python -m ocibuild prune                       garbage-collect the content store
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from ocibuild import __version__, api
from ocibuild.errors import OcibuildError, UsageError

VERBS = ("build", "copy", "inspect", "login", "prune")


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ocibuild",
        description="Build an OCI image from a Dockerfile without a daemon.",
    )
    p.add_argument("context", metavar="CONTEXT", help="build context directory, or - for a tar on stdin")
    p.add_argument("-f", "--file", help="Dockerfile path (default: CONTEXT/Dockerfile; - for stdin)")
    p.add_argument("-t", "--tag", action="append", default=[], help="image name (repeatable)")
    p.add_argument("--target", help="build this stage (by name or index)")
    p.add_argument("--build-arg", action="append", default=[], metavar="K=V")
    p.add_argument("--platform", help="target platform, e.g. linux/amd64")
    p.add_argument("-o", "--output", action="append", default=[], metavar="SPEC",
                   help="type=oci|docker|image|registry|local|tar,dest=...,name=...,push=true")
    p.add_argument("--push", action="store_true", help="shorthand for --output type=registry")
    p.add_argument("--load", action="store_true", help="shorthand for --output type=docker")
    p.add_argument("--no-cache", action="store_true",
                   help="run every step again (the local build cache is not read, only written)")
    p.add_argument("--cache-from", action="append", default=[])
    p.add_argument("--cache-to", action="append", default=[])
    p.add_argument("--secret", action="append", default=[], metavar="id=ID,src=PATH|env=VAR")
    p.add_argument("--allow", action="append", default=[], metavar="ENTITLEMENT",
                   help="security.insecure: RUN --security=insecure keeps every capability "
                        "(network.host: accepted, RUN shares the host's network anyway)")
    p.add_argument("--build-context", action="append", default=[],
                   metavar="NAME=oci-layout://PATH[:TAG|@DIGEST]|docker-image://REF|DIR",
                   help="named context: FROM NAME / COPY --from=NAME use it instead of a registry")
    p.add_argument("--ssh", action="append", default=[], metavar="default|ID[=SOCKET]")
    p.add_argument("--network", default="default", metavar="default|none|host",
                   help="network mode of every RUN without its own --network")
    p.add_argument("--add-host", action="append", default=[], metavar="NAME:IP",
                   help="an /etc/hosts line for every RUN (repeatable)")
    p.add_argument("--shm-size", metavar="SIZE", help="size of a RUN's /dev/shm (default 64m)")
    p.add_argument("--ulimit", action="append", default=[], metavar="NAME=SOFT[:HARD]",
                   help="a resource limit of every RUN (repeatable)")
    p.add_argument("--provenance", metavar="VALUE", help="attestations are not made: only false")
    p.add_argument("--sbom", metavar="VALUE", help="attestations are not made: only false")
    p.add_argument("--attest", action="append", default=[], help=argparse.SUPPRESS)
    p.add_argument("--pull", action="store_true",
                   help="accepted: base image tags are always looked up again")
    p.add_argument("--builder", help=argparse.SUPPRESS)
    p.add_argument("--progress", default="auto", choices=("auto", "plain", "tty", "quiet"))
    p.add_argument("-q", "--quiet", action="store_true", help="same as --progress quiet")
    p.add_argument("--label", action="append", default=[], metavar="K=V")
    p.add_argument("--annotation", action="append", default=[], metavar="[TYPE[PLATFORM]:]K=V",
                   help="TYPE: manifest (default), manifest-descriptor, index, index-descriptor")
    p.add_argument("--isolation", choices=("auto", "rootless", "root", "chroot"), default="auto")
    p.add_argument("--snapshotter", choices=("auto", "overlay", "fuse-overlayfs", "copy"), default="auto")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST")
    p.add_argument("--compression", choices=("gzip", "zstd", "uncompressed"), default="gzip")
    p.add_argument("--compression-level", type=int)
    p.add_argument("--metadata-file")
    p.add_argument("--iidfile")
    p.add_argument("--check", action="store_true", help="run the build checks only")
    p.add_argument("--print-plan", action="store_true", help="print the build plan only")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"ocibuild {__version__}")
    return p


def _verb_parser(verb: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"ocibuild {verb}")
    p.add_argument("--debug", action="store_true")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST")
    if verb == "copy":
        p.add_argument("src", help="docker://REF | oci-archive:PATH[:TAG] | oci:DIR[:TAG] | docker-archive:PATH")
        p.add_argument("dst")
        p.add_argument("--platform", help="copy only this platform of an index")
        p.add_argument("--all", action="store_true", help="copy every platform of an index")
        p.add_argument("--format", choices=("oci", "v2s2"), help="convert manifests")
        p.add_argument("--dest-compress-format", choices=("gzip", "zstd"))
    elif verb == "inspect":
        p.add_argument("ref")
        p.add_argument("--platform")
        p.add_argument("--raw", action="store_true", help="print the manifest bytes as received")
    elif verb == "login":
        p.add_argument("host")
        p.add_argument("-u", "--username", required=True)
        p.add_argument("-p", "--password")
        p.add_argument("--password-stdin", action="store_true")
    elif verb == "prune":
        p.add_argument("--all", action="store_true", help="remove every cached blob and snapshot")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    tune_allocator()
    args_list = list(sys.argv[1:] if argv is None else argv)
    verb = args_list[0] if args_list and args_list[0] in VERBS else "build"
    if args_list and args_list[0] in VERBS:
        args_list = args_list[1:]
    parser = _build_parser() if verb == "build" else _verb_parser(verb)
    args = parser.parse_args(args_list)
    try:
        return api.run_verb(verb, args)
    except OcibuildError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: A freed block at the top of a heap is returned to the kernel only above this size, and a
#: request is served by its own mmap only from this size: both above the few MiB of buffers
#: a layer's writing and upload keep in use at once.
TRIM_THRESHOLD, MMAP_THRESHOLD = 16 << 20, 4 << 20


def tune_allocator() -> None:
    """Keep the C allocator from giving the build's 1 MiB buffers back to the kernel between
    uses (glibc only; elsewhere nothing changes).

    Writing, compressing and uploading a layer allocates and frees 1 MiB blocks thousands of
    times (tar batches, compressed blocks, HTTP chunks), a few at once. With glibc's defaults
    each freed run at the top of a thread's heap above 2 MiB is trimmed (``MADV_DONTNEED``)
    and the next allocation faults its pages back in, zeroed: about 3 us per 4 KiB page here.
    For the 60 MB the benchmark's multistage case pushes that was 17,000 faults (of 33,000
    the push added), ~0.05 s of CPU. The memory kept is bounded by ``TRIM_THRESHOLD`` per
    heap, and only the command sets it: the library (``api``) leaves the allocator as its
    caller has it."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def exit_process(code: int) -> NoReturn:
    """End ``python -m ocibuild`` with ``code`` as ``sys.exit`` would, less the interpreter's
    teardown: freeing every module and object one by one takes 30-40 ms after a build here,
    for a process that is ending anyway. What exit needs is done first: the threads still
    running (none, after a build) are waited for, the ``atexit`` handlers run (the
    interpreter's own hook, as ``Py_Finalize`` calls it), stdout and stderr are flushed. Every
    file the build wrote was closed (outputs appear by rename) and every child reaped."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more can be said
            stream.flush()
    os._exit(code)
