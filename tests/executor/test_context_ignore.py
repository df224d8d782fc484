"""The build context: Docker's ignore-pattern rules, ignore files, -f, stdin contexts."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocibuild.errors import UsageError
from ocibuild.executor.context import (
    BuildContext,
    IgnoreMatcher,
    load_dockerfile,
    open_context,
    read_ignore_file,
)
from ocibuild.executor.copy_paths import go_match, join_dest, split_wildcards


@pytest.mark.parametrize(("pattern", "path", "hit"), [
    ("**", "anything", True),
    ("**", "deep/down/file", True),
    ("**/", "x", True),
    ("**/**", "a/b", True),
    ("lib/**", "lib/x", True),
    ("lib/**", "lib/a/b/c", True),
    ("lib/**", "lib", False),
    ("**/cache", "cache", True),
    ("**/cache", "cache/item", True),  # a parent directory matches
    ("**/cache", "a/b/cache/item", True),
    ("**/pkg/*", "x/pkg/mod", True),
    ("**/pkg/**", "x/pkg/a/b", True),
    ("**.log", "app.log", True),
    ("**.log", "var/app.log", True),
    ("**/*.log", "app.log", True),
    ("**/*.log", "var/log/app.log", True),
    ("**/**/*.md", "a/b/c.md", True),
    ("**/**/*.md", "a/b/c.mdx", False),
    ("src**/*.c", "src/a.c", True),
    ("src**/*.c", "src/x/y/a.c", True),
    ("src/*.c", "src/x/a.c", False),
    ("src/*.c", "src/a.c", True),
    ("*.c", "src/a.c", False),  # "*" does not cross "/"
    ("src", "src/deep/file", True),
    ("v[0-3]", "v2", True),
    ("v[0-3]", "v7", False),
    ("v[^0-3]", "v7", True),
    ("file?", "file1", True),
    ("file?", "file", False),
    (".*", ".env", True),
    (".*", "env", False),
    ("a.b", "axb", False),  # "." is literal
    ("a+b(c)|{d}$", "a+b(c)|{d}$", True),
    ("x\\*y", "x*y", True),
    ("x\\*y", "xzy", False),
    ("/abs/path", "abs/path", True),  # a leading "/" is dropped by Clean in the file reader
    ("./rel//dir/../x", "rel/x", True),
    ("dir/", "dir/f", True),
])
def test_single_patterns(pattern: str, path: str, hit: bool) -> None:
    assert IgnoreMatcher(read_ignore_file(pattern)).matches(path) is hit


@pytest.mark.parametrize(("patterns", "path", "hit"), [
    (["*.log", "!keep.log"], "keep.log", False),
    (["*.log", "!keep.log"], "drop.log", True),
    (["**", "!web"], "web/index.html", False),
    (["**", "!web", "web/secret"], "web/secret", True),
    (["!keep", "*"], "keep", True),  # the last matching pattern wins
    (["build", "!build/out"], "build/out/bin", False),
    (["build", "!build/out"], "build/tmp", True),
])
def test_pattern_lists(patterns: list[str], path: str, hit: bool) -> None:
    assert IgnoreMatcher(patterns).matches(path) is hit


def test_matches_child_agrees_with_matches() -> None:
    matcher = IgnoreMatcher(["node_modules", "!node_modules/keep", "**/*.o", "docs/*/x"])
    paths = ["node_modules", "node_modules/a", "node_modules/a/b.js", "node_modules/keep",
             "node_modules/keep/k.js", "src", "src/a.o", "src/gen/b.o", "docs", "docs/en",
             "docs/en/x", "docs/en/x/y"]
    infos: dict[str, tuple[bool, ...]] = {}
    for path in paths:
        parent = path.rsplit("/", 1)[0] if "/" in path else None
        hit, infos[path] = matcher.matches_child(path, infos.get(parent) if parent else None)
        assert hit is matcher.matches(path), path


def test_read_ignore_file() -> None:
    text = "\ufeff# comment\n\n  spaced  \n!  kept\n/leading\n./dot/../clean\n #not comment\n"
    assert read_ignore_file(text) == ["spaced", "!kept", "leading", "clean", "#not comment"]


def test_bad_exclusion() -> None:
    with pytest.raises(UsageError):
        IgnoreMatcher(["!"])


def test_visible_reincluded_dir(tmp_path: Path) -> None:
    (tmp_path / "node_modules/keep").mkdir(parents=True)
    (tmp_path / "node_modules/keep/k.js").write_text("")
    (tmp_path / "node_modules/drop").mkdir()
    (tmp_path / "node_modules/drop/d.js").write_text("")
    ctx = BuildContext(tmp_path, IgnoreMatcher(["node_modules", "!node_modules/keep"]))
    assert ctx.visible("node_modules")  # holds a re-included entry
    assert ctx.visible("node_modules/keep/k.js")
    assert not ctx.visible("node_modules/drop")
    assert not ctx.visible("node_modules/drop/d.js")
    plain = BuildContext(tmp_path, IgnoreMatcher(["node_modules"]))
    assert not plain.visible("node_modules/keep/k.js")


def test_dockerfile_specific_ignore_wins(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").write_text("a\n")
    (tmp_path / "Dockerfile.dockerignore").write_text("b\n")
    with open_context(str(tmp_path)) as ctx:
        assert ctx.ignore.patterns == ("b",)
    other = tmp_path / "sub"
    other.mkdir()
    (other / "app.Dockerfile").write_text("FROM scratch\n")
    (other / "app.Dockerfile.dockerignore").write_text("c\n")
    with open_context(str(tmp_path), str(other / "app.Dockerfile")) as ctx:
        assert ctx.ignore.patterns == ("c",)
        assert load_dockerfile(ctx, str(other / "app.Dockerfile")) == (
            "app.Dockerfile", "FROM scratch\n")
    (other / "plain.Dockerfile").write_text("FROM scratch\n")
    with open_context(str(tmp_path), str(other / "plain.Dockerfile")) as ctx:
        assert ctx.ignore.patterns == ("a",)


def test_load_dockerfile_default_and_stdin(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    with open_context(str(tmp_path)) as ctx:
        assert load_dockerfile(ctx) == ("Dockerfile", "FROM busybox\n")
        assert load_dockerfile(ctx, "-", stdin=io.BytesIO(b"FROM x\n")) == ("Dockerfile",
                                                                             "FROM x\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    with open_context(str(empty)) as ctx, pytest.raises(UsageError, match="failed to read"):
        load_dockerfile(ctx)


def test_context_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a directory"), open_context(str(tmp_path / "no")):
        pass


def test_context_from_stdin_tar(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in [("Dockerfile", b"FROM scratch\nCOPY a /\n"), ("a", b"A"),
                           (".dockerignore", b"secret\n"), ("secret", b"S")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        evil = tarfile.TarInfo("../escape")
        evil.size = 1
        tar.addfile(evil, io.BytesIO(b"x"))
    buf.seek(0)
    with open_context("-", stdin=buf) as ctx:  # ".." at the root stays there, as in a layer
        assert (ctx.root / "escape").read_bytes() == b"x"
        assert not (ctx.root.parent / "escape").exists()
    assert not (tmp_path.parent / "escape").exists()

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in [("Dockerfile", b"FROM scratch\n"), ("a", b"A"),
                           (".dockerignore", b"secret\n"), ("secret", b"S")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    with open_context("-", stdin=buf) as ctx:
        assert load_dockerfile(ctx, "a") == ("a", "A")  # -f names a file inside the tar
        root = ctx.root
        assert (root / "a").read_bytes() == b"A"
        assert ctx.ignore.patterns == ("secret",)
        assert not ctx.visible("secret")
        assert load_dockerfile(ctx) == ("Dockerfile", "FROM scratch\n")
    assert not os.path.exists(root)  # the temporary directory is removed


@pytest.mark.parametrize(("pattern", "name", "hit"), [
    ("*.txt", "a.txt", True),
    ("*.txt", "d/a.txt", False),
    ("d*/s*", "dir/sub", True),
    ("[a-c]?", "b1", True),
    ("[!a]", "!", True),  # Go has no "!" negation: "!" is a literal member
    ("[^a]x", "bx", True),
    ("a\\*", "a*", True),
    ("[", "[", False),  # malformed: no match
    ("a[", "a[", False),
])
def test_go_match(pattern: str, name: str, hit: bool) -> None:
    assert go_match(pattern, name) is hit


@pytest.mark.parametrize(("path", "split"), [
    ("/a/b/c", ("/a/b/c", "")),
    ("a/b*/c", ("/a", "b*/c")),
    ("*.txt", ("/", "*.txt")),
    ("/x/\\*y", ("/x/\\*y", "")),
])
def test_split_wildcards(path: str, split: tuple[str, str]) -> None:
    assert split_wildcards(path) == split


@pytest.mark.parametrize(("workdir", "dest", "want"), [
    ("/", "/x", "/x"),
    ("/", "/x/", "/x/"),
    ("/app", "rel", "/app/rel"),
    ("/app", "rel/", "/app/rel/"),
    ("/app", ".", "/app/"),
    ("/app", "", "/app/"),
    ("/app", "./", "/app/"),
    ("/app", "../../up", "/up"),
    ("/", ".", "/"),
    ("/app", "x/.", "/app/x/"),
])
def test_join_dest(workdir: str, dest: str, want: str) -> None:
    assert join_dest(workdir, dest) == want


_SEGMENT = st.sampled_from(["a", "b", "ab", "*", "?", "**", "a*", "[ab]", "c"])


@settings(max_examples=200, deadline=None)
@given(patterns=st.lists(st.tuples(st.booleans(), st.lists(_SEGMENT, min_size=1, max_size=3)),
                         min_size=1, max_size=4),
       path=st.lists(st.sampled_from(["a", "b", "ab", "c", "abc"]), min_size=1, max_size=4))
def test_walk_results_equal_direct_results(patterns: list[tuple[bool, list[str]]],
                                           path: list[str]) -> None:
    """Matching with the parents' results (a walk) gives what matching the path alone gives."""
    matcher = IgnoreMatcher([("!" if neg else "") + "/".join(parts) for neg, parts in patterns])
    info = None
    for i in range(len(path)):
        hit, info = matcher.matches_child("/".join(path[: i + 1]), info)
    assert hit is matcher.matches("/".join(path))
    ctx = BuildContext(Path("/nonexistent"), matcher)
    assert ctx._ignored("/".join(path)) is hit
