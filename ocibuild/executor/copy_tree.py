"""One copy action with the semantics of tonistiigi/fsutil's ``copy.Copy`` (what BuildKit runs).

``copy_action`` copies ``src`` (a path inside ``src_root``, wildcards allowed) to ``dest`` (an
absolute path inside ``dest_root``; a trailing ``/`` means "a directory"):

- the parent of ``dest`` (or ``dest`` itself with a trailing slash) is created with missing
  parents (mode 0755, or the octal ``--chmod``; owned by the ``--chown`` user, else root);
- a directory source with ``dir_contents`` copies what is inside it; a file source lands in
  ``dest`` when it is an existing directory, else becomes ``dest``;
- directories get the source directory's metadata, except an existing destination directory
  itself, which keeps its owner and mode (only its mtime is set to the source's); files replace
  files, a directory never replaces a file (nor a file a directory);
- symlinks inside are copied as links; hard links inside one action are kept as hard links;
  a socket from the build context becomes an empty regular file (``sockets_as_files``);
- ownership: the ``owner`` given (``--chown``), else 0:0 when ``reset_owner`` (context, URL,
  heredoc), else the source's; mtimes and atimes preserved; xattrs copied best effort.

Everything on the destination side is resolved with symlinks kept inside ``dest_root``; below
the resolved destination nothing is followed (links are replaced, never written through).
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ocibuild.errors import ExecutionError
from ocibuild.executor.context import IgnoreMatcher
from ocibuild.executor.copy_feed import FeedWriter
from ocibuild.executor.copy_mode import ModeSpec
from ocibuild.executor.copy_paths import resolve_wildcards
from ocibuild.fs.safepath import Visible, safe_join

Chown = Callable[[Path, int, int], None]
# The true (uid, gid, mode) of a source path (relative to its root) when the files on disk
# cannot hold it (single-id sandbox: the stage's ownership record); None: trust the disk.
SourceOwner = Callable[[str], "tuple[int, int, int] | None"]


@dataclass(frozen=True)
class CopyOptions:
    """How one action copies. ``owner`` is the resolved ``--chown`` (uid, gid)."""

    chown: Chown
    owner: tuple[int, int] | None = None
    reset_owner: bool = False
    mode: ModeSpec | None = None
    follow: bool = True
    dir_contents: bool = True
    wildcards: bool = True
    include: IgnoreMatcher | None = None
    exclude: IgnoreMatcher | None = None
    visible: Visible | None = None  # hides ignored context entries
    root_mtime_now: bool = False  # the context root has no meaningful mtime: use "now"
    source_owner: SourceOwner | None = None
    # The build context reaches BuildKit through fsutil's transfer, which clears the socket bit
    # (``mkstat``): the receiver writes a socket as an empty regular file with its permissions.
    sockets_as_files: bool = False
    # Where the copy reports its entries as they become final (``copy_feed``), or None.
    feed: FeedWriter | None = None


class NotFound(ExecutionError):
    """A named source does not exist."""


def copy_action(src_root: Path, src: str, dest_root: Path, dest: str, opts: CopyOptions) -> int:
    """Run one copy; returns how many sources matched (0 for an empty wildcard)."""
    matches = [src]
    if opts.wildcards:
        matches = resolve_wildcards(src_root, src, follow=opts.follow, visible=opts.visible)
        if not matches:
            return 0
    if opts.feed is not None and (len(matches) > 1 or opts.include or opts.exclude):
        # Entries of several matches are not made in layer order, and a directory made for a
        # matching child gets its times from that child (nothing to promise ahead).
        opts.feed.unpromised()
    for match in matches:
        real = resolve_source(src_root, match, opts)
        try:
            st = os.lstat(real)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f'"{match}": not found') from None
        _Copier(dest_root, opts, src_root).run(real, match, st, dest)
    return len(matches)


def resolve_source(root: Path, path: str, opts: CopyOptions) -> Path:
    """The real path of source ``path``; ``NotFound`` when the view hides it."""
    real = safe_join(root, path, follow_symlinks=opts.follow, visible=opts.visible)
    if opts.visible is not None and real != root:
        if not opts.visible(os.path.relpath(real, root)):
            raise NotFound(f'"{path}": not found')
    return real


def source_exists(root: Path, path: str, visible: Visible | None) -> bool:
    """Whether ``path`` names something in the (possibly filtered) source tree."""
    real = safe_join(root, path, visible=visible)
    if visible is not None and real != root and not visible(os.path.relpath(real, root)):
        return False
    return os.path.lexists(real)


def mkdir_all(
    root: Path, real: Path, mode: int, chown: Chown, owner: tuple[int, int] | None
) -> list[Path]:
    """fsutil's ``MkdirAll`` on an already resolved path inside ``root``: create the missing
    directories with ``mode`` (exactly, no umask) and ``owner``; returns the created ones.
    Raises ``ExecutionError`` when a component exists and is not a directory."""
    try:
        st = os.stat(real)
    except FileNotFoundError:
        st = None
    except NotADirectoryError as exc:
        raise ExecutionError(f"mkdir {_show(root, real)}: not a directory") from exc
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            return []
        raise ExecutionError(f"mkdir {_show(root, real)}: not a directory")
    created = []
    if real != root and real.parent != real:
        created = mkdir_all(root, real.parent, mode, chown, owner)
    try:
        os.mkdir(real, mode)
    except FileExistsError:
        if os.path.isdir(real):
            return created
        raise ExecutionError(f"mkdir {_show(root, real)}: not a directory") from None
    except NotADirectoryError as exc:
        raise ExecutionError(f"mkdir {_show(root, real)}: not a directory") from exc
    # fsutil does a bare os.Mkdir: under a setgid parent the kernel gives the new directory the
    # parent's group and the setgid bit, and without --chown nothing changes that group.
    inherited = os.stat(real).st_mode & stat.S_ISGID
    os.chmod(real, mode | inherited)
    uid, gid = owner or (0, os.stat(real.parent).st_gid if inherited else 0)
    chown(real, uid, gid)
    created.append(real)
    return created


def _show(root: Path, real: Path) -> str:
    rel = os.path.relpath(real, root)
    return "/" if rel == "." else "/" + rel


@dataclass
class _Pending:
    src: Path
    src_rel: str
    dst: Path
    copied: bool


@dataclass
class _Copier:
    dest_root: Path
    opts: CopyOptions
    src_root: Path
    inodes: dict[tuple[int, int], Path] = field(default_factory=dict)
    parents: list[_Pending] = field(default_factory=list)
    now: int = field(default_factory=time.time_ns)  # the root's times (``root_mtime_now``)

    def run(self, real: Path, match: str, st: os.stat_result, dest: str) -> None:
        opts = self.opts
        dir_mode = 0o755
        if opts.mode is not None and opts.mode.dir_mode is not None:
            dir_mode = opts.mode.dir_mode
        name = dest.rstrip("/").rsplit("/", 1)[-1]
        ensure = dest if dest.endswith("/") or name in ("", ".") else dest[: -len(name)]
        mkdir_all(self.dest_root, safe_join(self.dest_root, ensure), dir_mode, opts.chown,
                  opts.owner)
        target = safe_join(self.dest_root, dest)
        # prepareTargetDir: decide where the source lands and create what it needs.
        try:
            dest_st: os.stat_result | None = os.stat(target)
        except (FileNotFoundError, NotADirectoryError):
            dest_st = None
        src_is_dir = stat.S_ISDIR(st.st_mode)
        into_dir = dest_st is not None and (
            (src_is_dir and not opts.dir_contents)
            or (not src_is_dir and stat.S_ISDIR(dest_st.st_mode))
        )
        if into_dir:
            base = _basename(match)
            if base != "/":
                # Not resolved: an existing link there is replaced, never written through.
                target = target / base
        parent = target.parent if target != self.dest_root else target
        if opts.dir_contents and src_is_dir and dest_st is None:
            parent = target
        mkdir_all(self.dest_root, parent, dir_mode, opts.chown, opts.owner)
        src_rel = os.path.relpath(real, self.src_root)
        self.copy(real, "." if src_rel == "." else src_rel, "", target, False, None, None)

    # -- the recursive copy (fsutil's copier.copy) --------------------------------------------

    def copy(
        self,
        src: Path,
        src_rel: str,
        comps: str,
        target: Path,
        overwrite_meta: bool,
        inc_parent: tuple[bool, ...] | None,
        exc_parent: tuple[bool, ...] | None,
    ) -> None:
        opts = self.opts
        include, excluded = True, False
        inc_info = exc_info = None
        if comps:
            if opts.visible is not None and not opts.visible(src_rel):
                return
            if opts.include is not None:
                include, inc_info = opts.include.matches_child(comps, inc_parent)
            if opts.exclude is not None:
                hit, exc_info = opts.exclude.matches_child(comps, exc_parent)
                if hit:
                    include, excluded = False, True
            if not include and opts.include is None and not (
                opts.exclude is not None and opts.exclude.has_exclusions
            ):
                return
        st = os.lstat(src)
        is_dir = stat.S_ISDIR(st.st_mode)
        if not include and not is_dir:
            return
        try:
            target_st: os.stat_result | None = os.lstat(target)
        except FileNotFoundError:
            target_st = None
        if include:
            self._create_parents()
        if not is_dir:
            if target_st is not None:
                if stat.S_ISDIR(target_st.st_mode):
                    raise ExecutionError(
                        f"cannot replace directory {_show(self.dest_root, target)} with a file"
                    )
                os.unlink(target)
        copy_info = include
        restore_time = False
        if is_dir:
            created = self._copy_dir(
                src, src_rel, comps, target, st, overwrite_meta, include, excluded,
                inc_info, exc_info,
            )
            if not overwrite_meta:
                copy_info, restore_time = created, not created
        elif stat.S_ISREG(st.st_mode):
            self._copy_file(src, target, st)
        elif stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), target)
        elif stat.S_ISSOCK(st.st_mode) and opts.sockets_as_files:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
        else:
            os.mknod(target, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
        if copy_info:
            self._copy_info(st, src, src_rel, target, root=not comps)
        elif restore_time and target_st is not None:
            self._set_times(st, target, root=not comps)
        if not is_dir and opts.feed is not None:
            opts.feed.entry(target)

    def _copy_dir(
        self,
        src: Path,
        src_rel: str,
        comps: str,
        dst: Path,
        st: os.stat_result,
        overwrite_meta: bool,
        include: bool,
        excluded: bool,
        inc_info: tuple[bool, ...] | None,
        exc_info: tuple[bool, ...] | None,
    ) -> bool:
        created = False
        if include:
            created = _copy_dir_only(self.dest_root, dst, st, overwrite_meta)
            if self.opts.feed is not None and dst != self.dest_root:
                self._promise(self.opts.feed, st, src_rel, dst, overwrite_meta or created,
                              root=not comps)
        self.parents.append(_Pending(src, src_rel, dst, include))
        try:
            exc = self.opts.exclude
            if excluded and not (exc is not None and exc.has_exclusions):
                return False
            for name in sorted(os.listdir(src)):
                child_rel = name if src_rel == "." else f"{src_rel}/{name}"
                self.copy(
                    src / name, child_rel, f"{comps}/{name}" if comps else name, dst / name,
                    True, inc_info, exc_info,
                )
        finally:
            self.parents.pop()
        return created

    def _create_parents(self) -> None:
        """Create directories whose creation was delayed until something inside matched."""
        for pending in self.parents:
            if pending.copied:
                continue
            st = os.stat(pending.src)
            if _copy_dir_only(self.dest_root, pending.dst, st, False):
                self._copy_info(st, pending.src, pending.src_rel, pending.dst, root=False)
            pending.copied = True

    def _copy_file(self, src: Path, target: Path, st: os.stat_result) -> None:
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self.inodes.get(key)
            if first is not None:
                os.link(first, target)
                if self.opts.feed is not None:
                    self.opts.feed.unpromised()  # the first one was reported as a lone file
                return
            self.inodes[key] = target
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with open(src, "rb") as fin:
            fd = os.open(target, flags, 0o600)
            try:
                _copy_data(fin.fileno(), fd, st.st_size)
            finally:
                os.close(fd)

    def _promise(self, feed: FeedWriter, st: os.stat_result, src_rel: str, dst: Path,
                 copy_info: bool, *, root: bool) -> None:
        """Report directory ``dst`` with the metadata ``copy`` gives it once its entries are
        in: the source's (``_copy_info``), or, for an existing destination root, its own owner
        and mode with the source's times (``_set_times``)."""
        atime, mtime = self._times(st, root=root)
        if copy_info:
            uid, gid, mode = self._owner_mode(st, src_rel)
        else:
            own = os.lstat(dst)
            uid, gid, mode = own.st_uid, own.st_gid, stat.S_IMODE(own.st_mode)
            # Its times now too: in an overlay this copies it up before its first entry (the
            # commit reads its xattrs from the upper dir); the end sets the same times again.
            os.utime(dst, ns=(atime, mtime), follow_symlinks=False)
        feed.directory(dst, stat.S_IMODE(mode), uid, gid, mtime)

    def _owner_mode(self, st: os.stat_result, src_rel: str) -> tuple[int, int, int]:
        """The owner and mode ``_copy_info`` gives the copy of a source with ``st``."""
        opts = self.opts
        uid, gid, mode = st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)
        if opts.source_owner is not None:
            true = opts.source_owner("" if src_rel == "." else src_rel)
            if true is not None:
                uid, gid, mode = true[0], true[1], stat.S_IMODE(true[2])
        if opts.owner is not None:
            uid, gid = opts.owner
        elif opts.reset_owner:
            uid, gid = 0, 0
        if opts.mode is not None and not stat.S_ISLNK(st.st_mode):
            mode = opts.mode.apply(stat.S_IFMT(st.st_mode) | mode)
        return uid, gid, mode

    def _copy_info(self, st: os.stat_result, src: Path, src_rel: str, target: Path, *,
                   root: bool) -> None:
        opts = self.opts
        uid, gid, mode = self._owner_mode(st, src_rel)
        if stat.S_ISLNK(st.st_mode):
            opts.chown(target, uid, gid)
        else:
            # Mode first so that a chown recorded (single-id sandbox) sees the final mode;
            # again after it, since chown clears setuid/setgid on disk.
            os.chmod(target, mode)
            opts.chown(target, uid, gid)
            if mode & 0o6000:
                os.chmod(target, mode)
        self._set_times(st, target, root=root)
        _copy_xattrs(src, target)

    def _set_times(self, st: os.stat_result, target: Path, *, root: bool) -> None:
        os.utime(target, ns=self._times(st, root=root), follow_symlinks=False)

    def _times(self, st: os.stat_result, *, root: bool) -> tuple[int, int]:
        if root and self.opts.root_mtime_now:
            return self.now, self.now
        return st.st_atime_ns, st.st_mtime_ns


def _copy_dir_only(root: Path, dst: Path, st: os.stat_result, overwrite_meta: bool) -> bool:
    try:
        dst_st = os.lstat(dst)
    except FileNotFoundError:
        os.mkdir(dst, 0o700)
        return True
    if not stat.S_ISDIR(dst_st.st_mode):
        raise ExecutionError(f"cannot copy to non-directory: {_show(root, dst)}")
    if overwrite_meta:
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    return False


def _basename(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return name or "/"


def _copy_data(fin: int, fout: int, size: int) -> None:
    """Kernel-side copy where possible (reflinks on btrfs/xfs, no user-space buffers)."""
    remaining = size
    try:
        while remaining > 0:
            n = os.copy_file_range(fin, fout, min(remaining, 1 << 30))
            if n == 0:
                break
            remaining -= n
        if remaining == 0:
            # The size may have grown since lstat; copy whatever is left the plain way.
            _copy_plain(fin, fout)
            return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    _copy_plain(fin, fout)


def _copy_plain(fin: int, fout: int) -> None:
    while True:
        chunk = os.read(fin, 1 << 20)
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(fout, view):]


def _copy_xattrs(src: Path, target: Path) -> None:
    """Copy extended attributes (file capabilities among them); errors are ignored like
    BuildKit's handler does, since many filesystems refuse some namespaces."""
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(("trusted.overlay.", "user.rootlesscontainers")):
            continue
        try:
            os.setxattr(target, name, os.getxattr(src, name, follow_symlinks=False),
                        follow_symlinks=False)
        except OSError:
            continue
