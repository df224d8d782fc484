"""--chmod parsing and application: octal, and symbolic with BSD setmode rules (BuildKit)."""

from __future__ import annotations

import stat

import pytest

from ocibuild.errors import UsageError
from ocibuild.executor.copy_mode import ModeSpec

REG, DIR = stat.S_IFREG, stat.S_IFDIR


@pytest.mark.parametrize(("spec", "mode", "want"), [
    ("0755", REG | 0o600, 0o755),
    ("4755", REG | 0o600, 0o4755),
    ("640", DIR | 0o755, 0o640),
    ("a+x", REG | 0o600, 0o711),
    ("+x", REG | 0o600, 0o711),
    ("go-w", REG | 0o666, 0o644),
    ("u+s", REG | 0o755, 0o4755),
    ("g+s", DIR | 0o755, 0o2755),
    ("+s", REG | 0o755, 0o6755),
    ("o+s", REG | 0o755, 0o755),  # set-id bits need u or g
    ("=r", REG | 0o4751, 0o444),
    ("=", REG | 0o4751, 0o000),
    ("u=rw,g=u,o=", DIR | 0o755, 0o660),
    ("o=u", REG | 0o640, 0o646),
    ("g-u", REG | 0o664, 0o604),
    ("u=rwX,go=rX", DIR | 0o755, 0o644),  # BSD: X only acts with "+"
    ("u=rwX,go=rX", REG | 0o600, 0o644),
    ("a+rX", DIR | 0o700, 0o755),
    ("a+rX", REG | 0o600, 0o644),
    ("a+rX", REG | 0o700, 0o755),
    ("-X", REG | 0o777, 0o777),
    ("+t", DIR | 0o777, 0o1777),
    ("o+t", DIR | 0o777, 0o777),  # BSD: sticky for "o" alone is ignored
    ("u+r-w", REG | 0o600, 0o400),
    ("u=rwx,g=rx,o=", DIR | 0o4751, 0o750),  # "=" clears setuid on directories too
    ("a=rw,+X", REG | 0o100, 0o777),
])
def test_apply(spec: str, mode: int, want: int) -> None:
    assert ModeSpec.parse(spec).apply(mode) == want


@pytest.mark.parametrize("spec", ["9999", "10000", "0o755", "8", "u+q", "z=r", "u", "", "u+r,"])
def test_invalid(spec: str) -> None:
    with pytest.raises(UsageError):
        ModeSpec.parse(spec)


def test_dir_mode_for_created_parents() -> None:
    assert ModeSpec.parse("4750").dir_mode == 0o750
    assert ModeSpec.parse("u+x").dir_mode is None
