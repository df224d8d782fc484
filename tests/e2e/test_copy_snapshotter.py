"""The copy snapshotter (chroot mode's, or ``--snapshotter copy``) against what overlay gives."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.rootless, pytest.mark.chroot]


def test_a_link_to_a_lower_hard_link_pair_shows_as_overlay_has_it(e2e_registry,  # type: ignore[no-untyped-def]
                                                                   tmp_path: Path) -> None:
    """``ln b c`` of a lower pair {a, b}: overlay copies b up, so the layer holds b and c as
    one inode and the image's link groups are {a} and {b, c} (checked with the reference
    BuildKit); the copy snapshotter gave {a, b} and a lone c."""
    import io

    from ocibuild.executor.build import BuildOptions, build
    from ocibuild.testing.flatten import load_layout

    ctx = tmp_path / "ctx"
    ctx.mkdir()
    df = tmp_path / "Dockerfile"
    df.write_text(f"FROM {e2e_registry.host}/busybox:latest\n"
                  "RUN mkdir /d && echo a > /d/a && ln /d/a /d/b\nRUN ln /d/b /d/c\n")
    out = tmp_path / "out"
    build(BuildOptions(context=str(ctx), dockerfile=str(df), snapshotter="copy",
                       store_root=tmp_path / "store", progress="plain",
                       progress_stream=io.StringIO(),
                       outputs=(f"type=oci,dest={out},tar=false",)))
    tree = load_layout(out).tree
    group = {path: tree[path].link or path for path in ("/d/a", "/d/b", "/d/c")}
    assert group["/d/b"] == group["/d/c"] != group["/d/a"]
