"""Authentication against real registries: TLS + htpasswd basic auth, and bearer tokens."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from ocibuild import mediatypes as mt
from ocibuild.errors import AuthError, RegistryError
from ocibuild.image.descriptor import Descriptor
from ocibuild.image.platform import Platform
from ocibuild.reference import Reference
from ocibuild.registry.client import RegistryClient
from ocibuild.registry.credentials import Credential, DockerCredentials, StaticCredentials
from ocibuild.store import BlobStore
from ocibuild.testing.registry import RegistryServer, make_tar, push_image

AMD64 = Platform.parse("linux/amd64")


def certs_dir_for(server: RegistryServer, tmp_path: Path) -> Path:
    d = tmp_path / "certs.d"
    (d / server.host).mkdir(parents=True)
    assert server.ca_path is not None
    (d / server.host / "ca.crt").write_bytes(server.ca_path.read_bytes())
    return d


# -- TLS + basic ------------------------------------------------------------------------------

def test_tls_basic_push_pull_large_blob(tls_registry: RegistryServer, tmp_path: Path,
                                        store: BlobStore) -> None:
    creds = StaticCredentials({tls_registry.host: Credential("alice", "s3cret-Pa55")})
    with RegistryClient(creds, certs_dir=certs_dir_for(tls_registry, tmp_path)) as client:
        # > 4 MiB: basic auth must hold for big blobs too (oras-py #226).
        data = (b"0123456789abcdef" * 65536) * 5
        digest = store.put_bytes(data)
        ref = Reference.parse(f"{tls_registry.host}/tls/app:1")
        client.push_blob(ref, Descriptor(mt.OCI_LAYER, digest, len(data)), store)
        t = make_tar(tmp_path / "l.tar", {"f": b"tls"})
        d = push_image(tls_registry.host, "tls/app:1", [t], client=client)
        image = client.pull_image(ref, AMD64, store)
        assert str(image.manifest.digest) == d
        assert client.has_blob(ref, digest)
        assert client.transport.base_url(tls_registry.host).startswith("https://")


def test_tls_wrong_password_is_a_clear_error(tls_registry: RegistryServer, tmp_path: Path) -> None:
    creds = StaticCredentials({tls_registry.host: Credential("alice", "wrong-password")})
    ref = Reference.parse(f"{tls_registry.host}/tls/app:1")
    with RegistryClient(creds, certs_dir=certs_dir_for(tls_registry, tmp_path)) as client:
        with pytest.raises(AuthError) as info:
            client.get_manifest(ref)
    msg = str(info.value)
    assert msg == f"pull {ref}: UNAUTHORIZED: authentication required"
    assert "wrong-password" not in msg and "login" in (info.value.hint or "")


def test_tls_unknown_ca_is_refused(tls_registry: RegistryServer, tmp_path: Path) -> None:
    creds = StaticCredentials({tls_registry.host: Credential("alice", "s3cret-Pa55")})
    # Loopback may fall back to plain HTTP, but this server speaks only TLS: the error says so.
    with RegistryClient(creds, certs_dir=tmp_path / "none") as client:
        with pytest.raises(RegistryError, match="certificate verify failed") as info:
            client.get_manifest(Reference.parse(f"{tls_registry.host}/tls/app:1"))
    assert "certs.d" in (info.value.hint or "")


def test_tls_ca_from_ssl_cert_file(tls_registry: RegistryServer, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca_path))
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    creds = StaticCredentials({tls_registry.host: Credential("alice", "s3cret-Pa55")})
    with RegistryClient(creds, certs_dir=tmp_path / "none") as client:
        assert client.head_manifest(Reference.parse(f"{tls_registry.host}/tls/nope:1")) is None


def test_credentials_from_docker_config(tls_registry: RegistryServer, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "docker"
    cfg.mkdir()
    auth = base64.b64encode(b"alice:s3cret-Pa55").decode()
    (cfg / "config.json").write_text(json.dumps({"auths": {f"https://{tls_registry.host}":
                                                           {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(cfg))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    with RegistryClient.from_environment(certs_dir=certs_dir_for(tls_registry, tmp_path)) as c:
        assert c.head_manifest(Reference.parse(f"{tls_registry.host}/tls/nope:1")) is None


# -- bearer tokens ----------------------------------------------------------------------------

def token_client(server: RegistryServer, user: str | None, password: str = "") -> RegistryClient:
    creds = StaticCredentials({server.host: Credential(user, password)} if user else {})
    return RegistryClient(creds)


def test_token_push_pull_and_scopes_per_repository(token_registry: RegistryServer,
                                                   tmp_path: Path, store: BlobStore) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    with token_client(token_registry, "bob", "bob-pw") as client:
        t = make_tar(tmp_path / "l.tar", {"f": b"token"})
        d = push_image(token_registry.host, "bob/app:1", [t], client=client)
        push_image(token_registry.host, "bob/other:1", [t], client=client)
        image = client.pull_image(Reference.parse(f"{token_registry.host}/bob/app:1"), AMD64, store)
        assert str(image.manifest.digest) == d
    scopes = {s for r in tokens.requests if r.user == "bob" for s in r.scopes}
    assert {"repository:bob/app:pull,push", "repository:bob/other:pull,push",
            "repository:bob/app:pull"} <= scopes
    # One token per scope set, not one per request.
    assert len([r for r in tokens.requests if r.scopes == ("repository:bob/app:pull",)]) == 1


def test_token_cross_repo_mount_asks_for_pull_on_source(token_registry: RegistryServer,
                                                        store: BlobStore) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    data = b"mounted through a token" * 100
    digest = store.put_bytes(data)
    desc = Descriptor(mt.OCI_LAYER, digest, len(data))
    with token_client(token_registry, "bob", "bob-pw") as client:
        src = Reference.parse(f"{token_registry.host}/bob/msrc:1")
        dst = Reference.parse(f"{token_registry.host}/bob/mdst:1")
        client.push_blob(src, desc, store)
        store.delete(digest)
        client.push_blob(dst, desc, store, mount_from=src)
        assert client.has_blob(dst, digest)
    assert any(set(r.scopes) == {"repository:bob/mdst:pull,push", "repository:bob/msrc:pull"}
               for r in tokens.requests)


def test_token_expired_is_refreshed_after_401(token_registry: RegistryServer, tmp_path: Path,
                                              store: BlobStore) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    t = make_tar(tmp_path / "l.tar", {"f": b"exp"})
    with token_client(token_registry, "bob", "bob-pw") as client:
        push_image(token_registry.host, "bob/exp:1", [t], client=client)
        before = len(tokens.requests)
        tokens.expire_next = 1  # the next token is born expired: the registry answers 401
        ref = Reference.parse(f"{token_registry.host}/bob/exp:1")
        raw, _, _ = client.get_manifest(ref)
        assert raw
        assert len(tokens.requests) - before == 2


def test_token_refreshed_when_expires_in_passes(token_registry: RegistryServer,
                                                tmp_path: Path) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    t = make_tar(tmp_path / "l.tar", {"f": b"short"})
    tokens.expires_in = 1
    try:
        with token_client(token_registry, "bob", "bob-pw") as client:
            push_image(token_registry.host, "bob/short:1", [t], client=client)
            ref = Reference.parse(f"{token_registry.host}/bob/short:1")
            client.get_manifest(ref)
            n = len(tokens.requests)
            client.get_manifest(ref)
            time.sleep(1.1)
            client.get_manifest(ref)
            assert len(tokens.requests) == n + 1
    finally:
        tokens.expires_in = 300


def test_token_wrong_password(token_registry: RegistryServer) -> None:
    with token_client(token_registry, "bob", "nope") as client:
        with pytest.raises(AuthError) as info:
            client.get_manifest(Reference.parse(f"{token_registry.host}/bob/app:1"))
    assert "invalid username or password" in str(info.value)
    assert "nope" not in str(info.value)


def test_token_push_denied_without_push_scope(token_registry: RegistryServer, tmp_path: Path) -> None:
    t = make_tar(tmp_path / "l.tar", {"f": b"denied"})
    with token_client(token_registry, "carol", "carol-pw") as client:
        push_image(token_registry.host, "carol/ok:1", [t], client=client)
        with pytest.raises(AuthError) as info:
            push_image(token_registry.host, "bob/denied:1", [t], client=client)
    assert str(info.value).startswith(f"push {token_registry.host}/bob/denied:1")
    assert "UNAUTHORIZED" in str(info.value) or "DENIED" in str(info.value)


def test_token_anonymous_pull_of_public_repo(token_registry: RegistryServer,
                                             tmp_path: Path, store: BlobStore) -> None:
    t = make_tar(tmp_path / "l.tar", {"f": b"public"})
    with token_client(token_registry, "bob", "bob-pw") as client:
        d = push_image(token_registry.host, "public/app:1", [t], client=client)
    with RegistryClient() as anon:
        image = anon.pull_image(Reference.parse(f"{token_registry.host}/public/app:1"), AMD64, store)
        assert str(image.manifest.digest) == d
        with pytest.raises(AuthError):
            anon.get_manifest(Reference.parse(f"{token_registry.host}/bob/app:1"))


def test_identity_token_uses_refresh_grant(token_registry: RegistryServer, tmp_path: Path,
                                           store: BlobStore) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    t = make_tar(tmp_path / "l.tar", {"f": b"oauth"})
    refresh = tokens.issue_refresh_token("bob")
    creds = StaticCredentials({token_registry.host: Credential("", "", refresh)})
    with RegistryClient(creds) as client:
        d = push_image(token_registry.host, "bob/oauth:1", [t], client=client)
        assert client.get_manifest(Reference.parse(f"{token_registry.host}/bob/oauth:1"))[2] \
            .__str__() == d
    assert any(r.grant == "refresh_token" and r.user == "bob" for r in tokens.requests)


def test_docker_config_identitytoken(token_registry: RegistryServer, tmp_path: Path) -> None:
    tokens = token_registry.tokens
    assert tokens is not None
    refresh = tokens.issue_refresh_token("bob")
    cfg = tmp_path / "docker"
    cfg.mkdir()
    (cfg / "config.json").write_text(json.dumps({"auths": {token_registry.host: {
        "auth": base64.b64encode(b"bob:").decode(), "identitytoken": refresh}}}))
    cred = DockerCredentials(None, cfg).get(token_registry.host)
    assert cred is not None and cred.identity_token == refresh
    assert refresh not in repr(cred)
