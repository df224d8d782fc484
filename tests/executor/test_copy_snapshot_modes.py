"""The copy snapshotter's trees (chroot mode, ``--snapshotter copy``) carry each layer's modes
exactly: GNU ``cp -a`` keeps an existing file's setuid/setgid and a directory's setgid over
the mode it copies (h2: a 4755 file chmod-ed 0644 came back 4644, BuildKit has 0644)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ocibuild.executor import snapshot


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_merged_layers_keep_the_upper_modes(tmp_path: Path) -> None:
    lower, upper, dest = tmp_path / "lower", tmp_path / "upper", tmp_path / "dest"
    for d in (lower / "d" / "e", upper / "d" / "e", dest):
        d.mkdir(parents=True)
    (lower / "d" / "suid").write_text("s")
    os.chmod(lower / "d" / "suid", 0o4755)
    os.chmod(lower / "d" / "e", 0o2750)
    (upper / "d" / "suid").write_text("s")
    os.chmod(upper / "d" / "suid", 0o644)
    os.chmod(upper / "d" / "e", 0o755)
    snapshot.merge_layer(lower, dest)
    assert (_mode(dest / "d" / "suid"), _mode(dest / "d" / "e")) == (0o4755, 0o2750)
    snapshot.merge_layer(upper, dest)
    assert (_mode(dest / "d" / "suid"), _mode(dest / "d" / "e")) == (0o644, 0o755)


def test_a_copied_tree_has_no_setgid_its_source_lacks(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "dest"
    (src / "g" / "sub").mkdir(parents=True)
    dest.mkdir()
    os.chmod(src / "g", 0o2755)
    os.chmod(src / "g" / "sub", 0o755)  # made under a setgid parent, the bit then cleared
    snapshot._cp(src, dest)
    snapshot._exact_dir_modes(src, dest)
    assert (_mode(dest / "g"), _mode(dest / "g" / "sub")) == (0o2755, 0o755)
