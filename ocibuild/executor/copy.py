"""COPY and ADD applied to a stage's root, exactly as BuildKit's dockerfile2llb + file op do.

``copy_into`` runs inside the build sandbox (``runtime.call``), as root of its namespace, with
the stage's snapshot writable at ``ctx.root`` and the source tree (build context, another
stage or an image) read only at ``ctx.roots["src"]``. Per source of the instruction, in order:

- local paths (wildcards allowed anywhere, Go ``filepath.Match``) resolve inside the source
  root only; a symlink named as a source is followed (inside the root), symlinks below are
  copied as links. A missing path is an error (``"/x": not found``); a wildcard matching
  nothing is not (BuildKit allows empty wildcards).
- the destination is relative to WORKDIR; with a trailing ``/`` it is a directory. Several
  sources into a destination without ``/`` are *not* an error in BuildKit: each is copied in
  turn onto the same path, so the last file wins.
- ``--parents`` keeps each matched path relative to the root (or to a ``/./`` pivot);
  ``--exclude`` drops matching paths (Docker patterns, relative to each copied source).
- ADD unpacks local tar archives (detected by content) into the destination unless
  ``--unpack=false``; URLs are downloaded (``--checksum`` verified, 0600, Last-Modified mtime)
  and git repositories checked out (``--keep-git-dir``).
- heredoc sources (``COPY <<EOF /dest``) become files named by the delimiter, mode 0644.

Ownership: 0:0 for files from the context, URLs, git and heredocs; the source's for ``--from``;
``--chown`` (names looked up in the *destination* stage's ``/etc/passwd``/``/etc/group``)
overrides both and also owns the directories COPY creates. Errors are ``ExecutionError`` with
the instruction's location. No global state, no threads left behind, result picklable.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from ocibuild.errors import ExecutionError, OcibuildError
from ocibuild.executor.context import BuildContext, IgnoreMatcher, read_ignore_file
from ocibuild.executor.copy_archive import is_archive, unpack_archive
from ocibuild.executor.copy_mode import ModeSpec
from ocibuild.executor.copy_paths import clean_abs, contains_wildcards, join_dest
from ocibuild.executor.copy_remote import checkout_git, fetch_url, is_http_source, parse_git_source
from ocibuild.executor.copy_tree import (
    CopyOptions,
    NotFound,
    SourceOwner,
    copy_action,
    mkdir_all,
    resolve_source,
    source_exists,
)
from ocibuild.executor.users import resolve_chown
from ocibuild.fs.ownership import OwnershipRecord
from ocibuild.fs.safepath import safe_join
from ocibuild.plan.model import ContextRef, CopyStep, ImageRef, Scratch, StageRef


class CopyContext(Protocol):
    """What ``runtime.call`` hands to ``copy_into`` (``executor.runtime.CallContext``)."""

    root: Path
    roots: Mapping[str, Path]

    def chown(self, path: Path, uid: int, gid: int,
              device: tuple[str, int, int] | None = None) -> None: ...


@dataclass(frozen=True)
class CopyResult:
    """What a COPY/ADD did: how many source paths it copied (wildcards expanded)."""

    copied: int


def copy_into(
    ctx: CopyContext,
    step: CopyStep,
    workdir: str = "/",
    ignore: IgnoreMatcher | BuildContext | Sequence[str] | None = None,
    source_ownership: OwnershipRecord | None = None,
    user_root: str | Path | None = None,
    source_root: str | Path = "src",
    local_source: bool = False,
) -> CopyResult:
    """Apply ``step`` to ``ctx.root``; see the module docstring.

    Every parameter can be passed positionally (``runtime.call`` forwards ``*args`` only):
    ``workdir`` is the stage's WORKDIR; ``ignore`` the context's ``.dockerignore`` rules (an
    ``IgnoreMatcher``, patterns, or the ``BuildContext``; only used when the source is the
    build context; None reads ``.dockerignore`` at the context root, so pass
    ``IgnoreMatcher(())`` for "no rules"); ``source_ownership`` the true owners of the
    source tree's files when its files on disk cannot hold them (single-id sandbox: the
    ``--from`` stage's merged ownership record, ``snapshot.lowers_record(lowers)``; also taken
    from ``ctx.records[source_root]`` when the context provides it); ``user_root`` the
    ``ctx.roots`` name (or a path) where ``--chown`` names are looked up (default ``ctx.root``;
    ``COPY --link`` callers may pass the stage's full root); ``source_root`` the ``ctx.roots``
    name (or a path) of the source tree; ``local_source``: the source is a local directory a
    client sends (a ``--build-context NAME=DIR``), taken as the build context is: owners reset
    to root, its own ``.dockerignore`` applied, sockets as empty files.
    On failure the root is left part-copied: the caller discards the snapshot.
    """
    keyword = "ADD" if step.add else "COPY"
    location = step.instruction.location
    try:
        if source_ownership is None and isinstance(source_root, str):
            source_ownership = getattr(ctx, "records", {}).get(source_root)
        return _copy(ctx, step, workdir, ignore, source_root, user_root, source_ownership,
                     local_source)
    except OcibuildError as exc:
        raise ExecutionError(f"{keyword}: {exc.message}", location=location,
                             hint=exc.hint) from exc
    except OSError as exc:
        where = f" {_inside(Path(ctx.root), exc.filename)}" if exc.filename else ""
        raise ExecutionError(f"{keyword}:{where}: {exc.strerror or exc}",
                             location=location) from exc


def _inside(root: Path, filename: object) -> str:
    """A path as the image sees it when it is under the stage root (no host paths in errors)."""
    name = os.fsdecode(filename) if isinstance(filename, (str, bytes)) else str(filename)
    rel = os.path.relpath(name, root)
    return name if rel.startswith("..") else "/" + ("" if rel == "." else rel)


def _root_of(ctx: CopyContext, name: str | Path | None) -> Path | None:
    if name is None:
        return None
    if isinstance(name, Path):
        return name
    return Path(ctx.roots[name]) if name in ctx.roots else None


def _copy(
    ctx: CopyContext,
    step: CopyStep,
    workdir: str,
    ignore: IgnoreMatcher | BuildContext | Sequence[str] | None,
    source_root: str | Path,
    user_root: str | Path | None,
    ownership: OwnershipRecord | None,
    local_source: bool = False,
) -> CopyResult:
    root = Path(ctx.root)
    mode = ModeSpec.parse(step.chmod) if step.chmod else None
    owner = None
    if step.chown:
        owner = resolve_chown(_root_of(ctx, user_root) or root, step.chown)
    dest = join_dest(workdir, step.dest)
    chown: Callable[..., None] = ctx.chown
    base = CopyOptions(chown=chown, owner=owner, mode=mode, feed=getattr(ctx, "feed", None))
    from_context = isinstance(step.source, ContextRef) or local_source
    matcher = _matcher(ctx, ignore, source_root) if from_context else None
    _check_flags(step)
    copied = 0
    heredoc_names = {f"<<{h.name}" for h in step.heredocs}
    for src in step.sources:
        if src in heredoc_names:
            continue
        git = parse_git_source(src)
        if git is not None and not src.startswith(("./", "/")):
            if not step.add:
                raise ExecutionError("source can't be a git ref for COPY")
            copied += _copy_git(root, git, dest, step, base)
            continue
        if is_http_source(src):
            if not step.add:
                raise ExecutionError("source can't be a URL for COPY")
            copied += _copy_url(root, src, dest, step, base)
            continue
        src_root = _root_of(ctx, source_root)
        if src_root is None or isinstance(step.source, Scratch):
            raise NotFound(f'"{clean_abs(src)}": not found')
        visible = None
        if from_context and matcher:
            visible = _context_view(src_root, matcher)
        opts = replace(base, reset_owner=from_context, visible=visible,
                       sockets_as_files=from_context,
                       source_owner=_owner_lookup(ownership) if not from_context else None)
        copied += _copy_local(root, src_root, src, dest, step, opts, from_context)
    for doc in step.heredocs:
        copied += _copy_heredoc(root, doc.name, doc.content, dest, base)
    return CopyResult(copied)


def _matcher(
    ctx: CopyContext, ignore: IgnoreMatcher | BuildContext | Sequence[str] | None,
    source_root: str | Path,
) -> IgnoreMatcher:
    if isinstance(ignore, IgnoreMatcher):
        return ignore
    if isinstance(ignore, BuildContext):
        return ignore.ignore
    if ignore is not None:
        return IgnoreMatcher(ignore)
    root = _root_of(ctx, source_root)
    try:
        text = (root / ".dockerignore").read_text(errors="replace") if root else ""
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        text = ""
    return IgnoreMatcher(read_ignore_file(text))


def _owner_lookup(record: OwnershipRecord | None) -> SourceOwner | None:
    if record is None or not record.entries:
        return None

    def lookup(rel: str) -> tuple[int, int, int] | None:
        owner = record.get(rel)
        return None if owner is None else (owner.uid, owner.gid, owner.mode)

    return lookup


def _check_flags(step: CopyStep) -> None:
    if not step.checksum:
        return
    if not step.add:
        raise ExecutionError("checksum can't be specified for COPY")
    if len(step.sources) != 1:
        raise ExecutionError("checksum can't be specified for multiple sources")
    src = step.sources[0]
    if not is_http_source(src) and parse_git_source(src) is None:
        raise ExecutionError("checksum requires HTTP(S) or Git sources")


def _context_view(src_root: Path, matcher: IgnoreMatcher) -> Callable[[str], bool]:
    return BuildContext(src_root, matcher).visible


def _source_label(step: CopyStep) -> str:
    match step.source:
        case ContextRef():
            return "the build context"
        case StageRef(index=index):
            return f"stage {index}"
        case ImageRef(ref=ref):
            return f"image {ref}"
        case _:
            return "scratch"


def _copy_local(
    root: Path, src_root: Path, src: str, dest: str, step: CopyStep, opts: CopyOptions,
    from_context: bool,
) -> int:
    required: list[str] = []
    if step.parents:
        parent, sep, pattern = src.partition("/./")
        if not sep:
            parent, pattern = "/", src
        pattern = clean_abs(pattern).lstrip("/")
        if not contains_wildcards(parent) and not contains_wildcards(pattern):
            required.append(clean_abs(f"{parent}/{pattern}"))
        src = parent
        opts = replace(opts, include=IgnoreMatcher([pattern]) if pattern else None)
    src = clean_abs(src)
    if step.excludes:
        opts = replace(opts, exclude=IgnoreMatcher(step.excludes))
    label = _source_label(step)
    for path in required:
        if not source_exists(src_root, path, opts.visible):
            raise ExecutionError(f'"{path}": not found in {label}')
    unpack = step.unpack if step.unpack is not None else step.add
    opts = replace(opts, root_mtime_now=from_context and src == "/")
    try:
        if unpack:
            return _copy_or_unpack(root, src_root, src, dest, opts)
        return copy_action(src_root, src, root, dest, opts)
    except NotFound as exc:
        raise ExecutionError(f"{exc.message} in {label}") from exc


def _copy_or_unpack(root: Path, src_root: Path, src: str, dest: str, opts: CopyOptions) -> int:
    """BuildKit's ``AttemptUnpack``: each match that is an archive is unpacked, the rest copied."""
    from ocibuild.executor.copy_paths import resolve_wildcards

    matches = resolve_wildcards(src_root, src, follow=True, visible=opts.visible)
    for match in matches:
        real = resolve_source(src_root, match, opts)
        if is_archive(real):
            target = safe_join(root, clean_abs(dest))
            mkdir_all(root, target, 0o755, opts.chown, opts.owner)
            unpack_archive(real, target, opts.owner, opts.chown)
        else:
            copy_action(src_root, match, root, dest, replace(opts, wildcards=False))
    return len(matches)


def _copy_url(root: Path, url: str, dest: str, step: CopyStep, base: CopyOptions) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="ocibuild-add-"))
    try:
        name = fetch_url(url, scratch, step.checksum)
        opts = replace(base, reset_owner=True, follow=False, dir_contents=False, wildcards=False)
        if step.unpack:
            return _copy_or_unpack(root, scratch, f"/{name}", dest, opts)
        return copy_action(scratch, f"/{name}", root, dest, opts)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _copy_git(root: Path, git: object, dest: str, step: CopyStep, base: CopyOptions) -> int:
    from ocibuild.executor.copy_remote import GitSource

    assert isinstance(git, GitSource)
    if step.checksum:
        if git.checksum and git.checksum != step.checksum:
            raise ExecutionError(f"checksum mismatch {step.checksum!r} != {git.checksum!r}")
        git = replace(git, checksum=step.checksum)
    keep = step.keep_git_dir
    if git.keep_git_dir is not None:
        if step.keep_git_dir and not git.keep_git_dir:
            raise ExecutionError("inconsistent keep-git-dir configuration")
        keep = git.keep_git_dir
    scratch = Path(tempfile.mkdtemp(prefix="ocibuild-git-"))
    try:
        tree = checkout_git(git, scratch, keep)
        opts = replace(base, reset_owner=True, follow=False, dir_contents=False, wildcards=False,
                       exclude=IgnoreMatcher(step.excludes) if step.excludes else None)
        return copy_action(tree, "/", root, dest, opts)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _copy_heredoc(root: Path, name: str, content: str, dest: str, base: CopyOptions) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="ocibuild-heredoc-"))
    try:
        path = scratch / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            out.write(content.encode("utf-8"))
        os.chmod(path, 0o644)
        opts = replace(base, reset_owner=True, follow=False, dir_contents=False, wildcards=False)
        return copy_action(scratch, f"/{name}", root, dest, opts)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
