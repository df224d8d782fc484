"""Pieces of the client with no server: credentials files and helpers, challenges, transport
arguments, retry policy."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from ocibuild.errors import AuthError, UsageError
from ocibuild.registry.auth import parse_challenge
from ocibuild.registry.credentials import (
    DOCKER_HUB_KEY,
    Credential,
    DockerCredentials,
    save_login,
)
from ocibuild.registry.transport import RetryPolicy, is_loopback
from ocibuild.registry.transports import Endpoint

HELPER = """#!/bin/sh
# docker-credential-ocitest: a credential helper speaking the docker protocol
action="$1"
read -r input
case "$action" in
  get)
    case "$input" in
      reg.example:5000) echo '{"ServerURL":"reg.example:5000","Username":"helper-user","Secret":"helper-pw"}' ;;
      tok.example) echo '{"ServerURL":"tok.example","Username":"<token>","Secret":"refresh-123"}' ;;
      *) echo "credentials not found in native keychain"; exit 1 ;;
    esac ;;
  store) printf '%s\\n' "$input" > "$HELPER_LOG" ;;
esac
"""


@pytest.fixture
def helper_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-ocitest"
    helper.write_text(HELPER)
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("HELPER_LOG", str(tmp_path / "helper.log"))
    return helper


def write_config(d: Path, config: dict[str, object]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config))
    return d


def test_cred_helpers_and_creds_store(tmp_path: Path, helper_path: Path) -> None:
    cfg = write_config(tmp_path / "d", {"credHelpers": {"reg.example:5000": "ocitest"},
                                        "credsStore": "ocitest"})
    creds = DockerCredentials(None, cfg)
    assert creds.get("reg.example:5000") == Credential("helper-user", "helper-pw")
    assert creds.get("tok.example") == Credential("", "", "refresh-123")
    assert creds.get("unknown.example") is None
    assert "helper-pw" not in repr(creds.get("reg.example:5000"))


def test_auths_forms_and_docker_hub_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "d", {"auths": {
        DOCKER_HUB_KEY: {"auth": base64.b64encode(b"hubuser:hubpw").decode()},
        "https://quay.example": {"username": "u", "password": "p"},
        "bad.example": {"auth": "!!!notbase64"},
    }})
    creds = DockerCredentials(None, cfg)
    assert creds.get("registry-1.docker.io") == Credential("hubuser", "hubpw")
    assert creds.get("docker.io") == Credential("hubuser", "hubpw")
    assert creds.get("quay.example") == Credential("u", "p")
    with pytest.raises(AuthError, match="invalid base64") as info:
        creds.get("bad.example")
    assert "notbase64" not in str(info.value)


def test_auth_file_wins_over_docker_config(tmp_path: Path) -> None:
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(json.dumps({"auths": {"r.example": {
        "auth": base64.b64encode(b"podman:pw1").decode()}}}))
    cfg = write_config(tmp_path / "d", {"auths": {"r.example": {
        "auth": base64.b64encode(b"docker:pw2").decode()}}})
    assert DockerCredentials(auth_file, cfg).get("r.example") == Credential("podman", "pw1")
    assert DockerCredentials(None, cfg).get("r.example") == Credential("docker", "pw2")


def test_from_environment_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "dc"))
    creds = DockerCredentials.from_environment()
    assert creds.auth_file == tmp_path / "run" / "containers" / "auth.json"
    assert creds.config_dir == tmp_path / "dc"
    assert creds.get("nothing.example") is None  # missing files are no credentials


def test_save_login_keeps_other_entries_and_uses_helper(tmp_path: Path, helper_path: Path) -> None:
    cfg = write_config(tmp_path / "d", {"auths": {"other.example": {"auth": "eDp5"}},
                                        "HttpHeaders": {"X": "1"}})
    save_login("new.example:5000", Credential("me", "pw"), cfg)
    data = json.loads((cfg / "config.json").read_text())
    assert data["HttpHeaders"] == {"X": "1"} and data["auths"]["other.example"]["auth"] == "eDp5"
    assert base64.b64decode(data["auths"]["new.example:5000"]["auth"]) == b"me:pw"
    save_login("docker.io", Credential("hub", "hpw"), cfg)
    assert DOCKER_HUB_KEY in json.loads((cfg / "config.json").read_text())["auths"]
    cfg2 = write_config(tmp_path / "e", {"credsStore": "ocitest"})
    save_login("h.example", Credential("u2", "secret2"), cfg2)
    stored = json.loads((tmp_path / "helper.log").read_text())
    assert stored == {"ServerURL": "h.example", "Username": "u2", "Secret": "secret2"}
    assert "secret2" not in (cfg2 / "config.json").read_text()


def test_missing_helper_is_a_clear_error(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "d", {"credsStore": "does-not-exist-xyz"})
    with pytest.raises(AuthError, match="docker-credential-does-not-exist-xyz not found"):
        DockerCredentials(None, cfg).get("a.example")


def test_parse_challenge() -> None:
    c = parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",'
                        'scope="repository:a/b:pull,push",error="insufficient_scope"')
    assert c is not None and c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example/token", "service": "registry.example",
                        "scope": "repository:a/b:pull,push", "error": "insufficient_scope"}
    basic = parse_challenge('Basic realm="Registry Realm"')
    assert basic is not None and basic.scheme == "basic" and basic.params["realm"] == "Registry Realm"
    assert parse_challenge("") is None


@pytest.mark.parametrize(("text", "kind", "path", "name"), [
    ("oci:/tmp/lay:v1", "oci", "/tmp/lay", "v1"),
    ("oci:/tmp/lay", "oci", "/tmp/lay", None),
    ("oci:rel/dir", "oci", "rel/dir", None),
    ("oci-archive:/x/a.tar:latest", "oci-archive", "/x/a.tar", "latest"),
    ("docker-archive:/x/d.tar", "docker-archive", "/x/d.tar", None),
    ("docker-archive:/x/d.tar:localhost:5000/app:1", "docker-archive", "/x/d.tar",
     "localhost:5000/app:1"),
])
def test_endpoint_parse(text: str, kind: str, path: str, name: str | None) -> None:
    ep = Endpoint.parse(text)
    assert (ep.kind, str(ep.path), ep.name) == (kind, path, name)


def test_endpoint_docker_and_errors() -> None:
    ep = Endpoint.parse("docker://busybox")
    assert ep.ref is not None and str(ep.ref) == "docker.io/library/busybox:latest"
    for bad in ("busybox", "docker:busybox", "ftp://x", "oci:"):
        with pytest.raises(UsageError):
            Endpoint.parse(bad)


def test_loopback_hosts() -> None:
    for host in ("localhost", "localhost:5000", "127.0.0.1", "127.1.2.3:80", "[::1]:5000", "::1"):
        assert is_loopback(host), host
    for host in ("10.0.0.1", "example.com:5000", "128.0.0.1"):
        assert not is_loopback(host), host


def test_retry_policy_honours_retry_after() -> None:
    policy = RetryPolicy(attempts=5, base=0.2, cap=8.0)
    assert policy.delay(0, "3") == 3.0
    assert policy.delay(0, "Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert policy.delay(0, "100000") == 100000.0  # Transport.send gives up rather than wait
    delays = [policy.delay(n) for n in range(8)]
    assert all(0 < d <= 8.0 * 1.25 for d in delays) and delays[-1] > delays[0]


def test_plain_http_only_for_loopback_and_insecure_hosts() -> None:
    from ocibuild.registry.transport import Transport

    t = Transport(frozenset({"10.1.2.3:5000"}))
    assert t.may_use_http("10.1.2.3:5000") and t.may_use_http("localhost:5000")
    assert not t.may_use_http("10.1.2.3:5001") and not t.may_use_http("registry.example")
    # A host that may not use HTTP is never probed: its scheme is https from the start.
    assert t.base_url("registry.example") == "https://registry.example"
