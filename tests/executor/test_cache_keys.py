"""What the build cache's content digest of COPY sources sees (``executor.cache.tree_digest``)
and what its step keys leave out (``plan.cachekey``), on real files."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ocibuild.dockerfile import model as df
from ocibuild.errors import Location
from ocibuild.executor.cache import StepCache, pre_runnable, tree_digest
from ocibuild.executor.context import BuildContext
from ocibuild.fs.ignore import IgnoreMatcher
from ocibuild.plan.cachekey import step_cache_key
from ocibuild.plan.model import CopyStep, RunStep


def _tree(root: Path) -> None:
    (root / "app" / "sub").mkdir(parents=True)
    (root / "app" / "main.py").write_text("print(1)\n")
    (root / "app" / "sub" / "data.txt").write_text("data\n")
    (root / "other.txt").write_text("other\n")
    os.symlink("main.py", root / "app" / "link")


def test_digest_follows_content_mode_names_and_symlinks(tmp_path: Path) -> None:
    _tree(tmp_path)
    before = tree_digest(tmp_path, ["app"], None)
    assert tree_digest(tmp_path, ["app"], None) == before
    os.utime(tmp_path / "app" / "main.py", (1, 1))  # times are not content
    assert tree_digest(tmp_path, ["app"], None) == before
    (tmp_path / "other.txt").write_text("changed\n")  # not selected
    assert tree_digest(tmp_path, ["app"], None) == before
    changes = [
        lambda: (tmp_path / "app" / "sub" / "data.txt").write_text("DATA\n"),
        lambda: (tmp_path / "app" / "main.py").chmod(0o755),
        lambda: (os.unlink(tmp_path / "app" / "link"),
                 os.symlink("sub", tmp_path / "app" / "link")),
        lambda: (tmp_path / "app" / "sub" / "new").write_text(""),
        lambda: os.rename(tmp_path / "app" / "sub" / "new", tmp_path / "app" / "sub" / "new2"),
        lambda: os.link(tmp_path / "app" / "sub" / "new2", tmp_path / "app" / "sub" / "hard"),
    ]
    seen = {before}
    for change in changes:
        change()
        now = tree_digest(tmp_path, ["app"], None)
        assert now not in seen
        seen.add(now)


def test_wildcards_select_only_their_matches(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "b.txt").write_text("b\n")
    before = tree_digest(tmp_path, ["*.txt"], None)
    (tmp_path / "app" / "main.py").write_text("print(2)\n")
    assert tree_digest(tmp_path, ["*.txt"], None) == before
    (tmp_path / "b.txt").write_text("B\n")
    assert tree_digest(tmp_path, ["*.txt"], None) != before


def test_dockerignored_files_are_not_part_of_the_digest(tmp_path: Path) -> None:
    _tree(tmp_path)
    ctx = BuildContext(tmp_path, IgnoreMatcher(("app/sub",)))
    before = tree_digest(tmp_path, ["."], ctx.visible)
    (tmp_path / "app" / "sub" / "data.txt").write_text("ignored change\n")
    assert tree_digest(tmp_path, ["."], ctx.visible) == before
    (tmp_path / "app" / "main.py").write_text("seen change\n")
    assert tree_digest(tmp_path, ["."], ctx.visible) != before


def test_missing_source_digests_without_error(tmp_path: Path) -> None:
    assert tree_digest(tmp_path, ["nope"], None) != tree_digest(tmp_path, ["nope2"], None)


def _run(text: str, *, line: int = 3, args: tuple[tuple[str, str], ...] = ()) -> RunStep:
    ins = df.Run("RUN", Location("Dockerfile", line), f"RUN {text}", command=df.ShellForm(text))
    return RunStep(ins, df.ShellForm(text), build_args=args)


def test_step_keys_ignore_location_and_proxies_but_not_args() -> None:
    base = step_cache_key("sha256:p", _run("make"))
    assert step_cache_key("sha256:p", _run("make", line=9)) == base
    assert step_cache_key("sha256:p", _run("make", args=(("HTTP_PROXY", "x"),))) == base
    assert step_cache_key("sha256:p", _run("make", args=(("V", "1"),))) != base
    assert step_cache_key("sha256:q", _run("make")) != base
    assert step_cache_key("sha256:p", _run("make"), "content") != base


def test_remote_add_is_keyed_after_it_runs_unless_checksummed() -> None:
    def add(src: str, checksum: str | None = None) -> CopyStep:
        ins = df.Add("ADD", Location("Dockerfile", 2), f"ADD {src} /x", sources=(src,),
                     dest="/x")
        return CopyStep(ins, True, (src,), "/x", checksum=checksum)

    assert pre_runnable(add("local.tar"))
    assert not pre_runnable(add("https://example.com/a.tar"))
    assert pre_runnable(add("https://example.com/a.tar", "sha256:" + "0" * 64))
    assert not pre_runnable(add("https://github.com/moby/buildkit.git#v0.12.0"))


def test_salt_separates_epochs(tmp_path: Path) -> None:
    keys = {StepCache(None, source_date_epoch=e).base_key("scratch linux/amd64")
            for e in (None, 0, 1)}
    assert len(keys) == 3


def test_remembered_file_digests_are_used_only_while_the_stat_is_unchanged(
        tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ocibuild.executor import cache_files
    from ocibuild.store.blobs import BlobStore

    monkeypatch.setattr(cache_files, "RACY_NS", 0)  # files made just now count as settled
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    _tree(ctx)
    with BlobStore(tmp_path / "store") as store:
        real = tree_digest(ctx, ["app"], None)
        files = cache_files.FileDigests(store, ctx)
        assert tree_digest(ctx, ["app"], None, files) == real
        files.save()
        # Plant a wrong digest: it must be used while the file's stat is unchanged (proof that
        # the remembered value is read) and dropped as soon as the file is touched.
        data = json.loads(files.path.read_text())
        main = os.fsdecode(ctx / "app" / "main.py")
        assert main in data
        data[main][5] = "0" * 64
        files.path.write_text(json.dumps(data))
        planted = tree_digest(ctx, ["app"], None, cache_files.FileDigests(store, ctx))
        assert planted != real
        os.utime(ctx / "app" / "main.py")  # a new ctime, same content
        again = cache_files.FileDigests(store, ctx)
        assert tree_digest(ctx, ["app"], None, again) == real


def test_fresh_files_are_not_remembered(tmp_path: Path) -> None:
    from ocibuild.executor import cache_files
    from ocibuild.store.blobs import BlobStore

    _tree(tmp_path / "ctx")
    with BlobStore(tmp_path / "store") as store:
        files = cache_files.FileDigests(store, tmp_path / "ctx")
        tree_digest(tmp_path / "ctx", ["app"], None, files)
        files.save()
        assert not files.path.exists()  # all changed within RACY_NS: nothing kept


def test_hard_links_are_part_of_the_digest(tmp_path: Path) -> None:
    copies, linked = tmp_path / "copies", tmp_path / "linked"
    for d in (copies, linked):
        d.mkdir()
        (d / "x").write_text("same\n")
    (copies / "y").write_text("same\n")
    os.link(linked / "x", linked / "y")
    assert tree_digest(copies, ["."], None) != tree_digest(linked, ["."], None)
