"""Platform parsing, normalisation and choosing from an index, as tables."""

from __future__ import annotations

import pytest

from ocibuild.errors import UsageError
from ocibuild.image import Platform

P = Platform.parse

NORMALISE = [
    ("linux/amd64", "linux/amd64"),
    ("linux/x86_64", "linux/amd64"),
    ("linux/x86-64", "linux/amd64"),
    ("linux/amd64/v1", "linux/amd64"),
    ("linux/amd64/v3", "linux/amd64/v3"),
    ("linux/arm64", "linux/arm64"),
    ("linux/aarch64", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64"),
    ("linux/arm64/8", "linux/arm64"),
    ("linux/arm64/v8.0", "linux/arm64"),
    ("linux/arm64/v9", "linux/arm64/v9"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/7", "linux/arm/v7"),
    ("linux/arm/v6", "linux/arm/v6"),
    ("linux/armhf", "linux/arm/v7"),
    ("linux/armel", "linux/arm/v6"),
    ("linux/i386", "linux/386"),
    ("linux/i686", "linux/386"),
    ("linux/386", "linux/386"),
    ("linux/arm64/9.0", "linux/arm64/v9"),
    ("LINUX/AMD64", "linux/amd64"),
    ("arm64", "linux/arm64"),
    ("linux/s390x", "linux/s390x"),
    ("linux/riscv64", "linux/riscv64"),
]


@pytest.mark.parametrize("text, want", NORMALISE)
def test_normalise(text: str, want: str) -> None:
    assert str(P(text).normalised()) == want


@pytest.mark.parametrize("text", ["", "/", "linux/", "a/b/c/d", "linux//v7"])
def test_invalid_platform(text: str) -> None:
    with pytest.raises(UsageError, match="invalid platform"):
        P(text)


MATCHES = [
    ("linux/arm64", "linux/arm64/v8", True),
    ("linux/arm64/v8", "linux/aarch64", True),
    ("linux/arm", "linux/arm/v7", True),
    ("linux/arm/v6", "linux/arm/v7", False),
    ("linux/amd64", "linux/amd64/v1", True),
    ("linux/amd64", "linux/amd64/v2", False),
    ("linux/amd64", "linux/arm64", False),
    ("linux/amd64", "windows/amd64", False),
]


@pytest.mark.parametrize("a, b, want", MATCHES)
def test_matches(a: str, b: str, want: bool) -> None:
    assert P(a).matches(P(b)) is want
    assert P(b).matches(P(a)) is want


# (wanted, candidates in index order, index of the chosen one or None)
SELECT = [
    ("linux/amd64", ["linux/arm64", "linux/amd64"], 1),
    ("linux/amd64", ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64"], 2),
    ("linux/amd64/v3", ["linux/amd64", "linux/amd64/v2", "linux/amd64/v3", "linux/amd64/v4"], 2),
    ("linux/amd64/v3", ["linux/amd64", "linux/amd64/v2", "linux/amd64/v4"], 1),
    ("linux/amd64/v2", ["linux/amd64/v3"], None),
    ("linux/arm64", ["linux/arm/v7", "linux/arm64/v8"], 1),
    ("linux/arm64/v8", ["linux/arm64"], 0),
    ("linux/arm/v7", ["linux/arm/v5", "linux/arm/v6"], 1),
    ("linux/arm/v7", ["linux/arm64", "linux/arm/v7", "linux/arm/v6"], 1),
    ("linux/arm/v6", ["linux/arm/v7"], None),
    ("linux/arm", ["linux/arm/v6", "linux/arm"], 1),
    ("linux/s390x", ["linux/amd64", "linux/arm64"], None),
    ("linux/amd64", ["unknown/unknown", "linux/amd64"], 1),
    ("linux/amd64", ["linux/amd64", "linux/amd64"], 0),  # first wins a tie
]


@pytest.mark.parametrize("want, candidates, chosen", SELECT)
def test_select(want: str, candidates: list[str], chosen: int | None) -> None:
    pairs = [(P(c) if "/" in c else None, i) for i, c in enumerate(candidates)]
    assert P(want).select(pairs) == chosen


def test_json_round_trip_keeps_windows_fields() -> None:
    obj = {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1", "os.features": ["win32k"]}
    p = Platform.from_json(obj)
    assert p.to_json() == obj
    assert str(p) == "windows/amd64"
    assert Platform.from_json({"architecture": "arm", "os": "linux", "variant": "v7"}).to_json() == {
        "architecture": "arm",
        "os": "linux",
        "variant": "v7",
    }


def test_default_is_linux_of_the_host() -> None:
    import os

    d = Platform.default()
    assert d.os == "linux"
    assert d.matches(Platform("linux", os.uname().machine))
