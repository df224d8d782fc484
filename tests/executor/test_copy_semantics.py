"""COPY/ADD semantics against expectations recorded from BuildKit.

The cases were built with the reference BuildKit (docker 26.1 / BuildKit 0.13,
``../shared/tools/buildkit-oracle.sh``, ``FROM scratch`` + ``-o type=tar``) on the same source
trees, and its resulting tree written down here: paths, types, modes, uid:gid, mtimes
(``S`` = the source's mtime kept, ``N`` = set at build time), contents, link targets and hard
links. Where current BuildKit differs from 0.13 the expectation follows current BuildKit (its
dockerfile2llb and fsutil sources) and says so; ``--parents`` and ``--exclude``, which the 0.13
frontend only has in its labs channel, follow the sources and BuildKit's own integration tests.
The oracle is not needed to run these tests.

Listing format, one entry per line: ``path kind mode uid:gid time payload`` where kind is
``f``/``d``/``l``, payload ``=content`` for files (``h:path`` for a hard link to an earlier
path), ``->target`` for symlinks.
"""

from __future__ import annotations

import io
import os
import shlex
import stat
import tarfile
import time
from pathlib import Path

import pytest

from ocibuild.dockerfile.model import Heredoc, Instruction
from ocibuild.errors import ExecutionError, Location
from ocibuild.executor.context import IgnoreMatcher, read_ignore_file
from ocibuild.executor.copy import copy_into
from ocibuild.executor.runtime import CallContext
from ocibuild.plan.model import ContextRef, CopyStep, Source, StageRef

SRC_TIME = 1577934245  # 2020-01-02 03:04:05 UTC, the mtime of every context file
FROM_TIME = 1600000000  # mtime of the --from stage's entries

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="COPY semantics tests chown: root")


def ctx_over(root: Path, roots: dict[str, Path] | None = None) -> CallContext:
    """The runtime's real ``CallContext`` over plain directories (as root: chown on disk)."""
    return CallContext(root, dict(roots or {}), owns_files=True)


def make_step(line: str, source: Source | None = None, heredocs: tuple[Heredoc, ...] = ()
              ) -> CopyStep:
    """A CopyStep from ``COPY [--flag=v ...] src... dest`` (words already expanded)."""
    words = shlex.split(line)
    flags: dict[str, str | None] = {}
    rest: list[str] = []
    excludes: list[str] = []
    for word in words[1:]:
        if word.startswith("--") and not rest:
            key, eq, value = word[2:].partition("=")
            if key == "exclude":
                excludes.append(value)
            flags[key] = value if eq else None
        else:
            rest.append(word)
    unpack = flags.get("unpack")
    return CopyStep(
        Instruction(words[0], Location("Dockerfile", 1), line),
        add=words[0] == "ADD",
        sources=tuple(rest[:-1]),
        dest=rest[-1],
        source=source or ContextRef(),
        heredocs=heredocs,
        chown=flags.get("chown"),
        chmod=flags.get("chmod"),
        parents="parents" in flags,
        link="link" in flags,
        excludes=tuple(excludes),
        checksum=flags.get("checksum"),
        unpack=None if unpack is None and "unpack" not in flags else unpack in (None, "true"),
    )


def listing(root: Path, under: str = "") -> list[str]:
    """The tree below ``root/under`` in the listing format of the module docstring."""
    out: list[str] = []
    seen: dict[tuple[int, int], str] = {}
    now = time.time()
    base = root / under if under else root
    entries = [base] if under else []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            entries.append(Path(dirpath) / name)
    for path in sorted(entries, key=lambda p: str(p.relative_to(root))):
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        when = "S" if st.st_mtime in (SRC_TIME, FROM_TIME) else (
            "N" if abs(now - st.st_mtime) < 600 else str(int(st.st_mtime)))
        owner = f"{st.st_uid}:{st.st_gid}"
        mode = f"{stat.S_IMODE(st.st_mode):04o}"
        if stat.S_ISDIR(st.st_mode):
            out.append(f"{rel} d {mode} {owner} {when}")
        elif stat.S_ISLNK(st.st_mode):
            out.append(f"{rel} l {owner} ->{os.readlink(path)}")
        else:
            key = (st.st_dev, st.st_ino)
            if key in seen:
                payload = f"h:{seen[key]}"
            else:
                try:
                    payload = "=" + path.read_bytes().decode().strip()
                except UnicodeDecodeError:
                    payload = "=<binary>"
            if st.st_nlink > 1:
                seen.setdefault(key, rel)
            out.append(f"{rel} f {mode} {owner} {when} {payload}")
    return out


def _touch(path: Path, when: int = SRC_TIME) -> None:
    os.utime(path, (when, when), follow_symlinks=False)


def _tar_bytes(entries: list[tuple[str, str, int, int, int, bytes | str]], compress: str = ""
               ) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=f"w:{compress}" if compress else "w") as tar:
        for name, kind, mode, uid, gid, data in entries:
            info = tarfile.TarInfo(name)
            info.mode, info.uid, info.gid, info.mtime = mode, uid, gid, FROM_TIME
            if kind == "d":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "l":
                info.type = tarfile.SYMTYPE
                info.linkname = str(data)
                tar.addfile(info)
            else:
                raw = data if isinstance(data, bytes) else data.encode()
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The build context of the oracle runs (owned by 1234:1234 on the host, on purpose)."""
    ctx = tmp_path_factory.mktemp("context")
    (ctx / "a.txt").write_text("A\n")
    (ctx / "b.txt").write_text("B\n")
    os.chmod(ctx / "b.txt", 0o755)
    (ctx / "dir" / "sub").mkdir(parents=True)
    os.chmod(ctx / "dir", 0o750)
    (ctx / "dir" / "x").write_text("X\n")
    os.chmod(ctx / "dir" / "x", 0o600)
    (ctx / "dir" / "sub" / "y").write_text("Y\n")
    os.symlink("x", ctx / "dir" / "ln")
    os.link(ctx / "dir" / "x", ctx / "dir" / "hl")
    os.symlink("dir", ctx / "lnk")
    os.symlink("a.txt", ctx / "flink")
    os.symlink("/a.txt", ctx / "abs")
    archive = _tar_bytes([("top", "d", 0o755, 0, 0, ""), ("top/t", "f", 0o644, 0, 0, "T\n")],
                         "gz")
    (ctx / "archive.tar.gz").write_bytes(archive)
    (ctx / "renamed.dat").write_bytes(archive)
    (ctx / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nbob:x:1001:1002::/home/bob:/bin/sh\n")
    (ctx / "group").write_text("root:x:0:\nstaff:x:50:bob\nbobg:x:1002:\n")
    for dirpath, dirnames, filenames in os.walk(ctx):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), 1234, 1234)
            _touch(Path(dirpath) / name)
    return ctx


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``--from`` stage: ``ADD src.tar /`` of the oracle run (ids and modes from the tar)."""
    from ocibuild.fs.unpack import unpack_layer

    root = tmp_path_factory.mktemp("stage")
    tar = _tar_bytes([
        ("data", "d", 0o700, 1500, 1600, ""),
        ("data/real", "f", 0o640, 1500, 1600, "REAL\n"),
        ("data/ln", "l", 0o777, 1500, 1600, "/data/real"),
        ("data/up", "l", 0o777, 0, 0, "../../../data/real"),
        ("data/sub", "d", 0o711, 7, 8, ""),
        ("data/sub/f", "f", 0o4755, 7, 8, "F\n"),
        ("dl", "l", 0o777, 0, 0, "data"),
        ("real", "d", 0o755, 0, 0, ""),
        ("linkdir", "l", 0o777, 0, 0, "/real"),
    ])
    unpack_layer(io.BytesIO(tar), root, apply_whiteouts=False)
    return root


def run(context: Path, lines: list[str], *, workdir: str = "/", root: Path | None = None,
        stage: Path | None = None, ignore: IgnoreMatcher | None = None,
        tmp: Path | None = None) -> Path:
    """Apply COPY lines to a fresh (or given) root; ``--from=src`` lines read ``stage``."""
    assert root is not None or tmp is not None
    root = root or (tmp / "root")  # type: ignore[operator]
    root.mkdir(exist_ok=True)
    for line in lines:
        heredocs: tuple[Heredoc, ...] = ()
        if "<<" in line:
            head, _, body = line.partition("\n")
            name = head.split("<<", 1)[1].split()[0]
            heredocs = (Heredoc(name, body),)
            line = head.replace(f"<<{name}", "")
        if "--from=src " in line:
            assert stage is not None
            step = make_step(line.replace("--from=src ", ""), StageRef(0), heredocs)
            copy_into(ctx_over(root, {"src": stage}), step, workdir)
        else:
            copy_into(ctx_over(root, {"src": context}), make_step(line, None, heredocs), workdir,
                      ignore)
    return root


# (name, setup lines, lines, the directory to list, expected listing)
CASES = [
    ("file_into_dir", [], ["COPY a.txt /t1/"], "t1", """
        t1 d 0755 0:0 N
        t1/a.txt f 0644 0:0 S =A"""),
    ("file_as_name", [], ["COPY a.txt /t2"], "t2", """
        t2 f 0644 0:0 S =A"""),
    # A directory source copies its contents; the new dest dir is 0755 with the source's mtime.
    ("dir_no_slash", [], ["COPY dir /t3"], "t3", """
        t3 d 0755 0:0 S
        t3/hl f 0600 0:0 S =X
        t3/ln l 0:0 ->x
        t3/sub d 0755 0:0 S
        t3/sub/y f 0644 0:0 S =Y
        t3/x f 0600 0:0 S h:t3/hl"""),
    ("dir_slash", [], ["COPY dir /t4/"], "t4", """
        t4 d 0755 0:0 S
        t4/hl f 0600 0:0 S =X
        t4/ln l 0:0 ->x
        t4/sub d 0755 0:0 S
        t4/sub/y f 0644 0:0 S =Y
        t4/x f 0600 0:0 S h:t4/hl"""),
    ("symlink_to_dir_followed", [], ["COPY lnk /t5/"], "t5", """
        t5 d 0755 0:0 S
        t5/hl f 0600 0:0 S =X
        t5/ln l 0:0 ->x
        t5/sub d 0755 0:0 S
        t5/sub/y f 0644 0:0 S =Y
        t5/x f 0600 0:0 S h:t5/hl"""),
    ("symlink_file_keeps_link_name", [], ["COPY flink /t6/"], "t6", """
        t6 d 0755 0:0 N
        t6/flink f 0644 0:0 S =A"""),
    ("absolute_link_inside_context", [], ["COPY abs /t7/"], "t7", """
        t7 d 0755 0:0 N
        t7/abs f 0644 0:0 S =A"""),
    ("wildcard", [], ["COPY *.txt /t8/"], "t8", """
        t8 d 0755 0:0 N
        t8/a.txt f 0644 0:0 S =A
        t8/b.txt f 0755 0:0 S =B"""),
    ("wildcard_in_middle", [], ["COPY d*/s* /t9/"], "t9", """
        t9 d 0755 0:0 S
        t9/y f 0644 0:0 S =Y"""),
    # BuildKit: several sources into a path without "/" is no error, the last one wins.
    ("several_sources_no_slash", [], ["COPY a.txt b.txt /t11"], "t11", """
        t11 f 0755 0:0 S =B"""),
    ("chown_numeric_owns_created_parents", [], ["COPY --chown=1000:1000 a.txt /t12/deep/"],
     "t12", """
        t12 d 0755 1000:1000 N
        t12/deep d 0755 1000:1000 N
        t12/deep/a.txt f 0644 1000:1000 S =A"""),
    ("chown_uid_only_gid_same", [], ["COPY --chown=1000 a.txt /t13/"], "t13", """
        t13 d 0755 1000:1000 N
        t13/a.txt f 0644 1000:1000 S =A"""),
    # BuildKit 0.13 created /t14 0755; current BuildKit (fsutil 183e7fb) gives created dirs
    # the octal --chmod mode too.
    ("chmod_octal_files_and_dirs", [], ["COPY --chmod=640 dir /t14/"], "t14", """
        t14 d 0640 0:0 S
        t14/hl f 0640 0:0 S =X
        t14/ln l 0:0 ->x
        t14/sub d 0640 0:0 S
        t14/sub/y f 0640 0:0 S =Y
        t14/x f 0640 0:0 S h:t14/hl"""),
    # BuildKit 0.13 ignored symbolic modes; current BuildKit applies them with BSD setmode
    # rules, where X only acts with "+": u=rwX,go=rX leaves directories 0644. The created
    # dest dir keeps 0755 (only an octal mode applies to created directories).
    ("chmod_symbolic", [], ["COPY --chmod=u=rwX,go=rX dir /t15/"], "t15", """
        t15 d 0755 0:0 S
        t15/hl f 0644 0:0 S =X
        t15/ln l 0:0 ->x
        t15/sub d 0644 0:0 S
        t15/sub/y f 0644 0:0 S =Y
        t15/x f 0644 0:0 S h:t15/hl"""),
    ("chmod_symbolic_plus_x", [], ["COPY --chmod=a+rX,go-w dir /t16/"], "t16", """
        t16 d 0755 0:0 S
        t16/hl f 0644 0:0 S =X
        t16/ln l 0:0 ->x
        t16/sub d 0755 0:0 S
        t16/sub/y f 0644 0:0 S =Y
        t16/x f 0644 0:0 S h:t16/hl"""),
    ("file_into_existing_dir_replaces", ["COPY dir /t3"], ["COPY dir/x /t3"], "t3", """
        t3 d 0755 0:0 N
        t3/hl f 0600 0:0 S =X
        t3/ln l 0:0 ->x
        t3/sub d 0755 0:0 S
        t3/sub/y f 0644 0:0 S =Y
        t3/x f 0600 0:0 S =X"""),
    ("local_archive_unpacked", [], ["ADD archive.tar.gz /t20/"], "t20", """
        t20 d 0755 0:0 N
        t20/top d 0755 0:0 S
        t20/top/t f 0644 0:0 S =T"""),
    ("archive_dest_without_slash_is_dir", [], ["ADD archive.tar.gz /t21"], "t21", """
        t21 d 0755 0:0 N
        t21/top d 0755 0:0 S
        t21/top/t f 0644 0:0 S =T"""),
    ("archive_detected_by_content", [], ["ADD renamed.dat /t22/"], "t22", """
        t22 d 0755 0:0 N
        t22/top d 0755 0:0 S
        t22/top/t f 0644 0:0 S =T"""),
    ("copy_keeps_archive", [], ["COPY archive.tar.gz /t23/"], "t23", """
        t23 d 0755 0:0 N
        t23/archive.tar.gz f 0644 0:0 S =<binary>"""),
    ("add_unpack_false", [], ["ADD --unpack=false archive.tar.gz /t23/"], "t23", """
        t23 d 0755 0:0 N
        t23/archive.tar.gz f 0644 0:0 S =<binary>"""),
    # BuildKit 0.13 left the entries' own ids; current BuildKit (46e52f4, 2025) chowns them.
    ("archive_chown_applies_to_entries", [], ["ADD --chown=5:6 archive.tar.gz /t33/"], "t33", """
        t33 d 0755 5:6 N
        t33/top d 0755 5:6 S
        t33/top/t f 0644 5:6 S =T"""),
    ("heredoc", [], ["COPY <<EOF2 /t24/heredoc\nhello\n"], "t24", """
        t24 d 0755 0:0 N
        t24/heredoc f 0644 0:0 N =hello"""),
    ("heredoc_named_by_delimiter", [], ["COPY <<EOF2 /e/\nx\n"], "e", """
        e d 0755 0:0 N
        e/EOF2 f 0644 0:0 N =x"""),
    # 0.13 created /e2 0755; current BuildKit creates missing parents with the octal --chmod.
    ("heredoc_chown_chmod", [], ["COPY --chown=9:9 --chmod=600 <<EOF2 /e2/f\ny\n"], "e2", """
        e2 d 0600 9:9 N
        e2/f f 0600 9:9 N =y"""),
    # Each source is its own copy: hard links are kept within one, not across sources.
    ("hardlinks_not_across_sources", [], ["COPY dir/x dir/hl /h/"], "h", """
        h d 0755 0:0 N
        h/hl f 0600 0:0 S =X
        h/x f 0600 0:0 S =X"""),
    ("heredoc_chmod", [], ["COPY --chmod=755 <<EOF2 /t25\nx\n"], "t25", """
        t25 f 0755 0:0 N =x"""),
    ("chown_name_primary_group", ["COPY passwd group /etc/"], ["COPY --chown=bob a.txt /t26/"],
     "t26", """
        t26 d 0755 1001:1002 N
        t26/a.txt f 0644 1001:1002 S =A"""),
    ("chown_name_and_group", ["COPY passwd group /etc/"], ["COPY --chown=bob:staff a.txt /t27/"],
     "t27", """
        t27 d 0755 1001:50 N
        t27/a.txt f 0644 1001:50 S =A"""),
    ("chown_unknown_name_is_root", ["COPY passwd group /etc/"],
     ["COPY --chown=nosuch a.txt /t28/"], "t28", """
        t28 d 0755 0:0 N
        t28/a.txt f 0644 0:0 S =A"""),
    ("chown_unknown_group_keeps_users", ["COPY passwd group /etc/"],
     ["COPY --chown=bob:nosuchg a.txt /t29/"], "t29", """
        t29 d 0755 1001:1002 N
        t29/a.txt f 0644 1001:1002 S =A"""),
    ("chown_root_name", [], ["COPY --chown=root:1 a.txt /t30/"], "t30", """
        t30 d 0755 0:1 N
        t30/a.txt f 0644 0:1 S =A"""),
    ("chown_dir_nested_slash", [], ["COPY --chown=1000:1000 dir /t31/sub/"], "t31", """
        t31 d 0755 1000:1000 N
        t31/sub d 0755 1000:1000 S
        t31/sub/hl f 0600 1000:1000 S =X
        t31/sub/ln l 1000:1000 ->x
        t31/sub/sub d 0755 1000:1000 S
        t31/sub/sub/y f 0644 1000:1000 S =Y
        t31/sub/x f 0600 1000:1000 S h:t31/sub/hl"""),
    ("chown_dir_nested_no_slash", [], ["COPY --chown=1000:1000 dir /t32/a/b"], "t32", """
        t32 d 0755 1000:1000 N
        t32/a d 0755 1000:1000 N
        t32/a/b d 0755 1000:1000 S
        t32/a/b/hl f 0600 1000:1000 S =X
        t32/a/b/ln l 1000:1000 ->x
        t32/a/b/sub d 0755 1000:1000 S
        t32/a/b/sub/y f 0644 1000:1000 S =Y
        t32/a/b/x f 0600 1000:1000 S h:t32/a/b/hl"""),
    ("trailing_slash_source", [], ["COPY dir/sub/ /out7/"], "out7", """
        out7 d 0755 0:0 S
        out7/y f 0644 0:0 S =Y"""),
    ("dot_source_suffix", [], ["COPY ./dir/sub/. /out8/"], "out8", """
        out8 d 0755 0:0 S
        out8/y f 0644 0:0 S =Y"""),
    ("dest_slash_dot", [], ["COPY a.txt /out9/./"], "out9", """
        out9 d 0755 0:0 N
        out9/a.txt f 0644 0:0 S =A"""),
    # --parents: parents are created when the first match inside them is copied (with their
    # source metadata) and then changed by it, so their mtime is the build's (fsutil).
    ("parents_keeps_path", [], ["COPY --parents dir/sub/y /p/"], "p", """
        p d 0755 0:0 N
        p/dir d 0750 0:0 N
        p/dir/sub d 0755 0:0 N
        p/dir/sub/y f 0644 0:0 S =Y"""),
    ("parents_pivot", [], ["COPY --parents ./dir/./sub/y /p/"], "p", """
        p d 0755 0:0 S
        p/sub d 0755 0:0 N
        p/sub/y f 0644 0:0 S =Y"""),
    ("exclude_patterns", [], ["COPY --exclude=*.txt --exclude=dir/sub --exclude=*.dat "
                              "--exclude=*.gz --exclude=passwd --exclude=group . /e/"], "e", """
        e d 0755 0:0 N
        e/abs l 0:0 ->/a.txt
        e/dir d 0750 0:0 S
        e/dir/hl f 0600 0:0 S =X
        e/dir/ln l 0:0 ->x
        e/dir/x f 0600 0:0 S h:e/dir/hl
        e/flink l 0:0 ->a.txt
        e/lnk l 0:0 ->dir"""),
]


@pytest.mark.parametrize(("setup", "lines", "under", "expected"),
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_copy_like_buildkit(context: Path, tmp_path: Path, setup: list[str], lines: list[str],
                            under: str, expected: str) -> None:
    root = run(context, setup, tmp=tmp_path)
    if setup:
        time.sleep(0.01)
    run(context, lines, root=root)
    want = [line.strip() for line in expected.strip().splitlines()]
    got = listing(root, under)
    assert got == want


FROM_CASES = [
    ("from_symlink_resolved_in_stage_root", ["COPY --from=src /data/ln /out1/"], "out1", """
        out1 d 0755 0:0 N
        out1/ln f 0640 1500:1600 S =REAL"""),
    # Ownership and setuid bits come from the stage; the created dest dir is 0755 root's.
    ("from_dir_keeps_ownership", ["COPY --from=src /data /out2"], "out2", """
        out2 d 0755 0:0 S
        out2/ln l 1500:1600 ->/data/real
        out2/real f 0640 1500:1600 S =REAL
        out2/sub d 0711 7:8 S
        out2/sub/f f 4755 7:8 S =F
        out2/up l 0:0 ->../../../data/real"""),
    ("from_dotdot_link_clamped", ["COPY --from=src /data/up /out3"], "out3", """
        out3 f 0640 1500:1600 S =REAL"""),
    ("from_symlinked_parent", ["COPY --from=src /dl/sub /out4/"], "out4", """
        out4 d 0755 0:0 S
        out4/f f 4755 7:8 S =F"""),
    ("from_wildcard_under_symlink", ["COPY --from=src /dl/s* /out5/"], "out5", """
        out5 d 0755 0:0 S
        out5/f f 4755 7:8 S =F"""),
    ("from_chown_keeps_setuid", ["COPY --chown=55:66 --from=src /data /out6/"], "out6", """
        out6 d 0755 55:66 S
        out6/ln l 55:66 ->/data/real
        out6/real f 0640 55:66 S =REAL
        out6/sub d 0711 55:66 S
        out6/sub/f f 4755 55:66 S =F
        out6/up l 55:66 ->../../../data/real"""),
    ("dest_through_symlink", ["COPY a.txt /linkdir/", "COPY a.txt /linkdir/newsub/"], "real",
     """
        real d 0755 0:0 N
        real/a.txt f 0644 0:0 S =A
        real/newsub d 0755 0:0 N
        real/newsub/a.txt f 0644 0:0 S =A"""),
]


@pytest.mark.parametrize(("lines", "under", "expected"),
                         [pytest.param(*c[1:], id=c[0]) for c in FROM_CASES])
def test_copy_from_stage_like_buildkit(context: Path, stage: Path, tmp_path: Path,
                                       lines: list[str], under: str, expected: str) -> None:
    from ocibuild.fs.unpack import unpack_layer

    root = tmp_path / "root"
    root.mkdir()
    # FROM src: the stage's own files are the starting root.
    unpack_layer(io.BytesIO(_tar_bytes([("real", "d", 0o755, 0, 0, ""),
                                        ("linkdir", "l", 0o777, 0, 0, "/real")])),
                 root, apply_whiteouts=False)
    time.sleep(0.01)
    run(context, lines, root=root, stage=stage)
    got = listing(root, under)
    assert got == [line.strip() for line in expected.strip().splitlines()]


def test_empty_wildcard_is_not_an_error(context: Path, tmp_path: Path) -> None:
    root = run(context, ["COPY nomatch* /t10/"], tmp=tmp_path)
    assert not (root / "t10").exists()


def test_workdir_relative_dest(context: Path, tmp_path: Path) -> None:
    root = run(context, ["COPY a.txt rel/", "COPY b.txt .", "COPY a.txt named"],
               workdir="/app", tmp=tmp_path)
    assert (root / "app/rel/a.txt").read_text() == "A\n"
    assert (root / "app/b.txt").read_text() == "B\n"
    assert (root / "app/named").read_text() == "A\n"


def test_context_root_copy(context: Path, tmp_path: Path) -> None:
    root = run(context, ["COPY . /t19"], tmp=tmp_path)
    got = listing(root, "t19")
    assert got[0] == "t19 d 0755 0:0 N"  # the context root has no mtime of its own
    assert "t19/dir d 0750 0:0 S" in got
    assert "t19/dir/x f 0600 0:0 S h:t19/dir/hl" in got
    assert "t19/lnk l 0:0 ->dir" in got
    assert "t19/archive.tar.gz f 0644 0:0 S =<binary>" in got


@pytest.mark.parametrize(("lines", "message"), [
    (["COPY missing.txt /x/"],
     'Dockerfile:1: COPY: "/missing.txt": not found in the build context'),
    (["COPY a.txt missing/ /x/"], '"/missing": not found'),
    (["COPY a.txt /a", "COPY dir /a/"], "mkdir /a: not a directory"),
    (["COPY dir /d2", "COPY a.txt /d2/x/"], "mkdir /d2/x: not a directory"),
    (["COPY --chmod=9999 a.txt /x"], "invalid chmod parameter: '9999'"),
    (["COPY --chmod=u+q a.txt /x"], "bad symbolic mode"),
    (["COPY http://example.com/x /x"], "source can't be a URL for COPY"),
    (["COPY https://example.com/r.git /x"], "source can't be a git ref for COPY"),
    (["COPY --checksum=sha256:00 a.txt /x"], "checksum can't be specified for COPY"),
    (["COPY --parents dir/nothere /x/"], '"/dir/nothere": not found'),
    (["COPY a.txt /t/sub", "COPY dir /t/"], "cannot copy to non-directory: /t/sub"),
])
def test_errors(context: Path, tmp_path: Path, lines: list[str], message: str) -> None:
    with pytest.raises(ExecutionError) as info:
        run(context, lines, tmp=tmp_path)
    assert message in str(info.value)
    assert info.value.location == Location("Dockerfile", 1)


def test_from_source_never_reads_the_host(tmp_path: Path, context: Path) -> None:
    stage = tmp_path / "stage"
    stage.mkdir()
    os.symlink("/etc/hostname", stage / "host")
    os.symlink("../../../../../../etc", stage / "up")
    with pytest.raises(ExecutionError, match="not found in stage 0"):
        run(context, ["COPY --from=src /host /x"], stage=stage, tmp=tmp_path)
    with pytest.raises(ExecutionError, match="not found in stage 0"):
        run(context, ["COPY --from=src /up/hostname /x"], stage=stage, tmp=tmp_path)


def test_dest_symlink_is_replaced_not_followed(context: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("keep")
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    os.symlink(str(outside), root / "d" / "a.txt")
    run(context, ["COPY a.txt /d/"], root=root)
    assert outside.read_text() == "keep"
    assert not (root / "d" / "a.txt").is_symlink()
    assert (root / "d" / "a.txt").read_text() == "A\n"


def test_dockerignore_view(tmp_path: Path) -> None:
    """Recorded from BuildKit with this .dockerignore (re-inclusion, **, leading /, spaces)."""
    ctx = tmp_path / "ctx"
    for rel, data in [("a.txt", "a"), ("b.log", "b"), ("keep.log", "k"),
                      ("node_modules/x/y.js", "y"), ("node_modules/keep/k.js", "k"),
                      ("docs/a.md", "m"), ("docs/sub/b.md", "b"), ("src/main.c", "c"),
                      ("src/gen/out.o", "o"), ("build/t", "t"), ("deep/a/b/z.tmp", "z"),
                      ("deep/a/w.txt", "w"), ("Dockerfile", "FROM scratch")]:
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(data)
    ignore = ("# comment\n*.log\n!keep.log\nnode_modules\n!node_modules/keep\n**/*.o\n"
              "/docs/sub\n  build/  \nDockerfile\n.dockerignore\ndeep/**/*.tmp\n")
    (ctx / ".dockerignore").write_text(ignore)
    for dirpath, dirnames, filenames in os.walk(ctx):
        for name in dirnames + filenames:
            _touch(Path(dirpath) / name)
    matcher = IgnoreMatcher(read_ignore_file(ignore))
    root = tmp_path / "root"
    root.mkdir()
    for line in ["COPY . /all/", "COPY docs /docs/", "COPY *.log /logs/"]:
        copy_into(ctx_over(root, {"src": ctx}), make_step(line), "/", matcher)
    assert listing(root) == [line.strip() for line in """
        all d 0755 0:0 N
        all/a.txt f 0644 0:0 S =a
        all/deep d 0755 0:0 S
        all/deep/a d 0755 0:0 S
        all/deep/a/b d 0755 0:0 S
        all/deep/a/w.txt f 0644 0:0 S =w
        all/docs d 0755 0:0 S
        all/docs/a.md f 0644 0:0 S =m
        all/keep.log f 0644 0:0 S =k
        all/node_modules d 0755 0:0 S
        all/node_modules/keep d 0755 0:0 S
        all/node_modules/keep/k.js f 0644 0:0 S =k
        all/src d 0755 0:0 S
        all/src/gen d 0755 0:0 S
        all/src/main.c f 0644 0:0 S =c
        docs d 0755 0:0 S
        docs/a.md f 0644 0:0 S =m
        logs d 0755 0:0 N
        logs/keep.log f 0644 0:0 S =k""".strip().splitlines()]
    with pytest.raises(ExecutionError, match='"/b.log": not found'):
        copy_into(ctx_over(root, {"src": ctx}), make_step("COPY b.log /x/"), "/", matcher)


def test_parents_like_buildkit_tests(tmp_path: Path) -> None:
    """BuildKit's testCopyRelativeParents tree and assertions."""
    stage = tmp_path / "stage"
    for rel in ["test/a/b/c/d/e", "test/a/b2/c/d/e", "test/a/b/c2/d/e", "test/a/b/c2/d/e2"]:
        (stage / rel).mkdir(parents=True)
    for rel in ["test/a/b/c/d/foo", "test/a/b/c/d/e/bay", "test/a/b2/c/d/e/bar",
                "test/a/b/c2/d/e/baz", "test/a/b/c2/d/e2/baz"]:
        (stage / rel).write_text("")

    def copy(line: str) -> Path:
        root = tmp_path / f"root{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        copy_into(ctx_over(root, {"src": stage}), make_step(line, StageRef(0)))
        return root / "out"

    out = copy("COPY --parents /test/a/b/./c/d /out/")
    assert (out / "c/d/e").is_dir() and (out / "c/d/foo").is_file()
    assert not (out / "a").exists() and not (out / "e").exists()
    out = copy("COPY --parents /test/a/b/c/d/. /out/")
    assert (out / "test/a/b/c/d/e").is_dir() and (out / "test/a/b/c/d/foo").is_file()
    out = copy("COPY --parents ./test/a/b/c/d /out/")
    assert (out / "test/a/b/c/d/e").is_dir() and (out / "test/a/b/c/d/foo").is_file()
    out = copy("COPY --parents /test/a/./b/./c /out/")
    assert (out / "b/c/d/e").is_dir() and (out / "b/c/d/foo").is_file()
    out = copy("COPY --parents /test/a/./*/c /out/")
    assert (out / "b/c/d/e").is_dir() and (out / "b2/c/d/e/bar").is_file()
    out = copy("COPY --parents /test/a/b*/./c/**/e /out/")
    assert (out / "c/d/e").is_dir() and (out / "c/d/e/bay").is_file()
    assert (out / "c/d/e/bar").is_file()
    out = copy("COPY --parents /test/a/b/c*/./d/**/baz /test/a/b*/./c/**/bar /out/")
    assert (out / "d/e/baz").is_file() and not (out / "d/e/bay").exists()
    assert (out / "d/e2/baz").is_file() and (out / "c/d/e/bar").is_file()


def test_exclude_like_buildkit_tests(tmp_path: Path) -> None:
    """BuildKit's testExcludedFilesOnCopy tree and (a subset of) its assertions."""
    ctx = tmp_path / "ctx"
    files = {"dir1/file-101.png": "2", "dir1/file-102.txt": "3", "dir1/file-103.jpeg": "4",
             "dir2/file-201.pdf": "6", "dir2/file-202.jpeg": "7", "dir2/file-203.png": "8",
             "dir3/file-301.mp3": "9", "dir3/file-302.mpeg": "10", "dir4/file-401.txt": "11"}
    for rel, data in files.items():
        (ctx / rel).parent.mkdir(parents=True, exist_ok=True)
        (ctx / rel).write_text(data)
    os.symlink("file-401.txt", ctx / "dir4/file-402.txt")
    os.symlink("file-404.txt", ctx / "dir4/file-403.txt")

    def names(line: str) -> set[str]:
        root = tmp_path / f"root{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        copy_into(ctx_over(root, {"src": ctx}), make_step(line))
        return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}

    assert names("COPY --exclude=*/*.png --exclude=*/*.jpeg . /1") == {
        "1/dir1/file-102.txt", "1/dir2/file-201.pdf", "1/dir3/file-301.mp3",
        "1/dir3/file-302.mpeg", "1/dir4/file-401.txt", "1/dir4/file-402.txt",
        "1/dir4/file-403.txt"}
    assert names("ADD --exclude=*.mp3 dir3/ /3/") == {"3/file-302.mpeg"}
    assert names("COPY --exclude=*.mp3 --exclude=*.jpeg --exclude=*.png --exclude=*.pdf "
                 "--exclude=*.txt dir* /4/") == {"4/file-302.mpeg"}
    assert names("ADD --exclude=*.mp* --exclude=*.jpeg --exclude=*.png --exclude=*.pdf "
                 "dir* /5") == {"5/file-102.txt", "5/file-401.txt", "5/file-402.txt",
                                "5/file-403.txt"}
    assert names("ADD --exclude=* dir* /6") == set()


@pytest.mark.parametrize("compress", ["gz", "bz2", "xz", "zst", ""])
def test_add_archive_formats(tmp_path: Path, compress: str) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    plain = _tar_bytes([("x", "d", 0o750, 3, 4, ""), ("x/f", "f", 0o4711, 3, 4, "F"),
                        ("x/.wh.gone", "f", 0o600, 0, 0, "")])
    if compress == "zst":
        import pyzstd

        data = pyzstd.compress(plain)
    elif compress:
        data = _tar_bytes([("x", "d", 0o750, 3, 4, ""), ("x/f", "f", 0o4711, 3, 4, "F"),
                           ("x/.wh.gone", "f", 0o600, 0, 0, "")], compress)
    else:
        data = plain
    (ctx / "pkg.bin").write_bytes(data)
    root = tmp_path / "root"
    (root / "dst/x").mkdir(parents=True)
    (root / "dst/x/old").write_text("kept")
    copy_into(ctx_over(root, {"src": ctx}), make_step("ADD pkg.bin /dst"))
    assert (root / "dst/x/old").read_text() == "kept"  # merged, not replaced
    st = os.lstat(root / "dst/x/f")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o4711, 3, 4)
    assert (root / "dst/x/.wh.gone").is_file()  # no whiteout processing in ADD


def test_not_an_archive_is_copied(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "fake.tar.gz").write_bytes(b"\x1f\x8b but not gzip at all")
    root = tmp_path / "root"
    root.mkdir()
    copy_into(ctx_over(root, {"src": ctx}), make_step("ADD fake.tar.gz /d/"))
    assert (root / "d/fake.tar.gz").read_bytes() == b"\x1f\x8b but not gzip at all"


def test_hostile_archive_cannot_escape(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "evil.tar").write_bytes(_tar_bytes([("esc", "l", 0o777, 0, 0, "/"),
                                              ("esc/owned", "f", 0o644, 0, 0, "x")]))
    root = tmp_path / "root"
    root.mkdir()
    copy_into(ctx_over(root, {"src": ctx}), make_step("ADD evil.tar /d/"))
    assert not Path("/owned").exists()
    assert (root / "d/owned").read_text() == "x"  # "/" means the destination (chroot-like)


def test_link_into_empty_root(context: Path, tmp_path: Path) -> None:
    """COPY --link runs on an empty root: parents are created there."""
    root = run(context, ["COPY --link --chown=7:7 dir/sub /a/b/c/"], tmp=tmp_path)
    assert listing(root) == ["a d 0755 7:7 N", "a/b d 0755 7:7 N", "a/b/c d 0755 7:7 S",
                             "a/b/c/y f 0644 7:7 S =Y"]


def test_hardlinks_and_special_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "one").write_text("1")
    os.link(src / "one", src / "two")
    os.mkfifo(src / "fifo", 0o640)
    os.setxattr(src / "one", "user.note", b"\x00bin")
    root = tmp_path / "root"
    root.mkdir()
    copy_into(ctx_over(root, {"src": src}), make_step("COPY . /c/", StageRef(0)))
    assert os.lstat(root / "c/one").st_ino == os.lstat(root / "c/two").st_ino
    assert stat.S_ISFIFO(os.lstat(root / "c/fifo").st_mode)
    assert stat.S_IMODE(os.lstat(root / "c/fifo").st_mode) == 0o640
    assert os.getxattr(root / "c/one", "user.note") == b"\x00bin"


def test_context_dockerignore_default(tmp_path: Path) -> None:
    """Without explicit rules the context root's .dockerignore applies; an empty matcher
    means no rules (the caller read another ignore file, or none)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / ".dockerignore").write_text("*.key\n")
    (ctx / "app.key").write_text("k")
    (ctx / "app.py").write_text("p")
    root = tmp_path / "root"
    root.mkdir()
    copy_into(ctx_over(root, {"src": ctx}), make_step("COPY . /a/"))
    assert sorted(os.listdir(root / "a")) == [".dockerignore", "app.py"]
    copy_into(ctx_over(root, {"src": ctx}), make_step("COPY . /b/"), "/", IgnoreMatcher(()))
    assert sorted(os.listdir(root / "b")) == [".dockerignore", "app.key", "app.py"]
    with pytest.raises(ExecutionError, match="Dockerfile:1: COPY: .* not found"):
        copy_into(ctx_over(root, {"src": ctx}), make_step("COPY app.key /c/"))
