"""ImageConfig: every field kept, functional updates, canonical serialisation."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ocibuild.digest import Digest
from ocibuild.errors import ContentError
from ocibuild.image import History, ImageConfig, Platform, canonical_config_bytes, format_time

FULL = {
    "created": "2024-05-01T12:00:00.123456789Z",
    "author": "someone",
    "architecture": "arm",
    "os": "linux",
    "variant": "v7",
    "os.version": "",
    "config": {
        "User": "app",
        "ExposedPorts": {"80/tcp": {}, "443/tcp": {}},
        "Env": ["PATH=/usr/bin", "A=1"],
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo hi"],
        "Volumes": {"/data": {}},
        "WorkingDir": "/app",
        "Labels": {"b": "2", "a": "1"},
        "StopSignal": "SIGTERM",
        "ArgsEscaped": True,
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30000000000},
        "OnBuild": ["RUN x"],
        "Shell": ["/bin/bash", "-c"],
        "FutureConfigField": {"x": 1},
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
    "history": [
        {"created": "2024-05-01T12:00:00Z", "created_by": "ADD x /", "comment": "c"},
        {"created_by": "ENV A=1", "empty_layer": True, "future": 1},
    ],
    "moby.buildkit.buildinfo.v1": "e30=",
    "unknownTop": [1, 2],
}


def test_parse_keeps_raw_and_every_field() -> None:
    raw = json.dumps(FULL, indent=3).encode()
    c = ImageConfig.parse(raw)
    assert c.to_bytes() == raw and c.raw == raw
    assert c.digest == Digest.of_bytes(raw)
    assert c.to_json() == FULL
    assert c.platform == Platform("linux", "arm", "v7")
    assert c.user == "app" and c.working_dir == "/app"
    assert c.entrypoint == ["/bin/sh", "-c"] and c.cmd == ["echo hi"]
    assert c.labels == {"a": "1", "b": "2"} and c.shell == ["/bin/bash", "-c"]
    assert c.env_value("A") == "1" and c.env_value("B") is None
    assert c.diff_ids == (Digest.parse("sha256:" + "a" * 64),)
    assert c.history == (
        History("2024-05-01T12:00:00Z", "ADD x /", None, "c", False),
        History(None, "ENV A=1", None, None, True),
    )
    assert c.get_config("FutureConfigField") == {"x": 1}


def test_updates_derive_and_keep_unknown_fields() -> None:
    c = ImageConfig.parse(json.dumps(FULL).encode())
    d = c.with_config("User", "root").with_env_var("A", "2").with_env_var("NEW", "x")
    assert c.user == "app" and c.env == ["PATH=/usr/bin", "A=1"]  # the original is untouched
    assert d.user == "root" and d.env == ["PATH=/usr/bin", "A=2", "NEW=x"]
    assert d.raw is None
    out = json.loads(d.to_bytes())
    assert out["unknownTop"] == [1, 2] and out["moby.buildkit.buildinfo.v1"] == "e30="
    assert out["config"]["FutureConfigField"] == {"x": 1}
    assert out["history"][1]["future"] == 1
    assert c.with_config("Cmd", None).cmd is None
    assert c.with_field("author", None).author is None
    # Mutating what an accessor returned never changes the config.
    env = c.env
    env.append("X=1")
    c.to_json()["config"]["Env"].append("Y")
    assert c.env == ["PATH=/usr/bin", "A=1"]


def test_canonical_serialisation_is_buildkit_order() -> None:
    c = ImageConfig.parse(json.dumps(FULL).encode()).with_config("User", "root")
    text = c.to_bytes().decode()
    top = list(json.loads(text))
    assert top == sorted(top)
    inner = list(json.loads(text)["config"])
    assert inner == [
        "User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
        "StopSignal", "ArgsEscaped", "Healthcheck", "OnBuild", "Shell", "FutureConfigField",
    ]
    assert '"rootfs":{"type":"layers","diff_ids":[' in text
    assert '{"created_by":"ENV A=1","empty_layer":true,"future":1}' in text
    assert '"Labels":{"a":"1","b":"2"}' in text
    assert ": " not in text and "\n" not in text
    # Same content in another key order gives the same bytes.
    shuffled = dict(reversed(list(FULL.items())))
    assert canonical_config_bytes(shuffled) == c.with_config("User", "app").to_bytes()


def test_empty_config_and_platform_update() -> None:
    c = ImageConfig.empty(Platform.parse("linux/arm64"))
    # As BuildKit writes an image with no layers: Go's nil slice.
    assert c.to_bytes() == (b'{"architecture":"arm64","config":{},"os":"linux",'
                            b'"rootfs":{"type":"layers","diff_ids":null}}')
    assert c.with_platform(Platform.parse("linux/arm/v7")).platform == Platform("linux", "arm", "v7")
    assert "variant" not in c.with_platform(Platform.parse("linux/amd64")).to_json()


def test_created_formats_like_go() -> None:
    assert format_time(0) == "1970-01-01T00:00:00Z"
    assert format_time(datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=UTC)) == "2024-01-02T03:04:05.12Z"
    c = ImageConfig.empty(Platform.parse("linux/amd64")).with_created(1700000000)
    assert c.created == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize(
    "raw, fragment",
    [
        (b"[]", "want a JSON object"),
        (b'{"rootfs": 1}', "rootfs is not an object"),
        (b'{"rootfs": {"diff_ids": ["nope"]}}', "invalid digest"),
        (b'{"history": [1]}', "history entry is not an object"),
    ],
)
def test_bad_configs(raw: bytes, fragment: str) -> None:
    with pytest.raises(ContentError, match=fragment):
        ImageConfig.parse(raw)


def test_equality_is_by_bytes() -> None:
    a = ImageConfig.empty(Platform.parse("linux/amd64"))
    b = ImageConfig.parse(a.to_bytes())
    assert a == b and hash(a) == hash(b)
    assert a != a.with_config("User", "x")


def test_canonical_bytes_equal_buildkits() -> None:
    """BuildKit's own config bytes (golden/README.md) are a fixed point of our serialiser,
    also after an update that sets a field to the value it already has."""
    from pathlib import Path

    raw = (Path(__file__).parent / "golden" / "buildkit-0.13-config.json").read_bytes()
    assert canonical_config_bytes(json.loads(raw)) == raw
    c = ImageConfig.parse(raw)
    derived = c.with_config("User", c.user).with_env(c.env)
    assert derived.raw is None and derived.to_bytes() == raw
