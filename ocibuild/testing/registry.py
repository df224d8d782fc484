"""Real registries for tests: Debian's ``docker-registry`` (the CNCF distribution registry) on a
free 127.0.0.1 port with a temporary storage directory, in three flavours, plus a helper that
pushes an image made of given tar files (``make_tar`` writes small ones).

Fixtures (registered from ``tests/conftest.py`` through ``pytest_plugins``):

- ``registry``: plain HTTP, no auth (session scope). ``.host`` is ``"127.0.0.1:PORT"``.
- ``tls_registry``: HTTPS with a certificate from a generated CA and htpasswd basic auth
  (session scope). ``.ca_path``, ``.username``, ``.password``.
- ``token_registry``: ``auth: token`` served by ``TokenServer`` (session scope): ``.tokens``.
- ``fault_proxy``: a ``FaultProxy`` in front of ``registry`` (one per test).

Every server is stopped and its directory removed when its scope ends, even on failure.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from ocibuild.testing.faultproxy import FaultProxy
from ocibuild.testing.pki import KeyPair, issue, make_ca
from ocibuild.testing.tokenserver import Account, TokenServer

if TYPE_CHECKING:
    from ocibuild.digest import Digest
    from ocibuild.registry.client import RegistryClient
    from ocibuild.store import BlobStore

REGISTRY_BIN = "/usr/bin/docker-registry"


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RegistryServer:
    """A running ``docker-registry`` process; ``stop()`` kills it and removes its files."""

    host: str
    workdir: Path
    process: subprocess.Popen[bytes]
    scheme: str = "http"
    ca_path: Path | None = None
    username: str | None = None
    password: str | None = None
    tokens: TokenServer | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.tokens is not None:
            self.tokens.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self) -> str:
        try:
            return (self.workdir / "registry.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""


def start_registry(
    *,
    tls: KeyPair | None = None,
    ca: KeyPair | None = None,
    htpasswd: tuple[str, str] | None = None,
    token: tuple[TokenServer, Path] | None = None,
) -> RegistryServer:
    """Starts ``docker-registry serve`` and waits until ``/v2/`` answers.

    ``token`` is the token server and the PEM bundle of the CA that signed its key.
    """
    workdir = Path(tempfile.mkdtemp(prefix="ocibuild-registry-"))
    port = free_port()
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(workdir / "data")},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": os.urandom(16).hex()},
    }
    http = config["http"]
    assert isinstance(http, dict)
    if tls is not None:
        http["tls"] = {"certificate": str(tls.cert_path), "key": str(tls.key_path)}
    if htpasswd is not None:
        user, password = htpasswd
        path = workdir / "htpasswd"
        subprocess.run(
            ["htpasswd", "-Bbc", str(path), user, password],
            check=True, capture_output=True,
        )
        config["auth"] = {"htpasswd": {"realm": "ocibuild-test", "path": str(path)}}
    if token is not None:
        server, bundle = token
        config["auth"] = {
            "token": {
                "realm": server.realm,
                "service": server.service,
                "issuer": server.issuer,
                "rootcertbundle": str(bundle),
            }
        }
    # The registry reads YAML; JSON is YAML.
    (workdir / "config.yml").write_text(json.dumps(config))
    log = open(workdir / "registry.log", "wb")  # noqa: SIM115 - handed to the child
    # setpriv --pdeathsig: the registry dies with the process that started it even when that
    # one is killed before its finalizers run (a crashed or timed-out test run).
    launcher = ["setpriv", "--pdeathsig", "TERM", "--"] if shutil.which("setpriv") else []
    process = subprocess.Popen(
        [*launcher, REGISTRY_BIN, "serve", str(workdir / "config.yml")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    log.close()
    scheme = "https" if tls is not None else "http"
    server_obj = RegistryServer(
        f"127.0.0.1:{port}", workdir, process, scheme,
        ca_path=ca.cert_path if ca is not None else None,
        username=htpasswd[0] if htpasswd else None,
        password=htpasswd[1] if htpasswd else None,
        tokens=token[0] if token else None,
    )
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            tail = server_obj.log_tail()
            server_obj.stop()
            raise RuntimeError(f"docker-registry exited with {process.returncode}: {tail}")
        try:
            requests.get(
                f"{server_obj.url}/v2/", timeout=2,
                verify=str(ca.cert_path) if (tls is not None and ca is not None) else True,
            )
            return server_obj
        except requests.RequestException:
            if time.monotonic() > deadline:
                tail = server_obj.log_tail()
                server_obj.stop()
                raise RuntimeError(f"docker-registry did not answer on {port}: {tail}") from None
            time.sleep(0.05)


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    server = start_registry()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KeyPair, KeyPair, KeyPair]]:
    """(CA, TLS server cert for 127.0.0.1/localhost, token signing cert), all from one CA."""
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d)
    server = issue(ca, d, "server", "127.0.0.1", hosts=("127.0.0.1", "localhost", "::1"))
    signer = issue(ca, d, "signer", "ocibuild token signer")
    yield ca, server, signer


@pytest.fixture(scope="session")
def tls_registry(test_pki: tuple[KeyPair, KeyPair, KeyPair]) -> Iterator[RegistryServer]:
    ca, server_cert, _ = test_pki
    server = start_registry(tls=server_cert, ca=ca, htpasswd=("alice", "s3cret-Pa55"))
    try:
        yield server
    finally:
        server.stop()


TOKEN_USERS = {
    "bob": Account("bob-pw", {"*": ("pull", "push")}),
    # carol may only pull, and push to carol/*
    "carol": Account("carol-pw", {"*": ("pull",), "carol/*": ("pull", "push")}),
}


@pytest.fixture(scope="session")
def token_registry(test_pki: tuple[KeyPair, KeyPair, KeyPair]) -> Iterator[RegistryServer]:
    ca, _, signer = test_pki
    tokens = TokenServer(signer, accounts=dict(TOKEN_USERS))
    try:
        server = start_registry(token=(tokens, ca.cert_path))
    except BaseException:
        tokens.close()
        raise
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fault_proxy(registry: RegistryServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry.host)
    try:
        yield proxy
    finally:
        proxy.close()


def make_tar(path: Path, files: dict[str, bytes]) -> Path:
    """An uncompressed tar at ``path`` of regular files (mode 0644, mtime 0, owner 0, in name
    order): the same bytes for the same ``files``, ready for ``push_image``."""
    with tarfile.open(path, "w") as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            tf.addfile(info, io.BytesIO(data))
    return path


def push_image(
    host: str,
    ref: str,
    layer_tars: Sequence[Path | str],
    config: dict[str, Any] | None = None,
    platform: str = "linux/amd64",
    *,
    docker: bool = False,
    client: RegistryClient | None = None,
) -> str:
    """Pushes an image made of ``layer_tars`` (uncompressed or gzip tars, oldest first) to
    ``host/ref`` (``ref`` like ``"busybox:latest"``) and returns the manifest digest.

    Uncompressed tars are gzip-compressed here (deterministically: mtime 0, no name). The
    config is ``config`` (a full image config object; its ``config``/``history`` fields are
    kept) with ``os``/``architecture``/``variant`` from ``platform``, ``rootfs.diff_ids``
    computed, and one ``history`` entry per layer when it has none. ``docker=True`` pushes
    a Docker v2 schema 2 manifest instead of OCI. Plain HTTP is used for loopback hosts.
    """
    from ocibuild import mediatypes as mt
    from ocibuild.image.descriptor import Descriptor
    from ocibuild.image.manifest import Manifest
    from ocibuild.image.platform import Platform
    from ocibuild.reference import Reference
    from ocibuild.registry.client import RegistryClient as _Client
    from ocibuild.store import BlobStore

    target = Reference.parse(ref if ref.startswith(host + "/") else f"{host}/{ref}")
    plat = Platform.parse(platform)
    own_client = client is None
    rc = client if client is not None else _Client()
    tmp = tempfile.mkdtemp(prefix="ocibuild-push-")
    try:
        with BlobStore(Path(tmp) / "store") as store:
            layers: list[Descriptor] = []
            diff_ids: list[str] = []
            for tar in layer_tars:
                digest, size, diff_id = _gzip_into(store, Path(tar))
                layers.append(Descriptor(mt.OCI_LAYER_GZIP if not docker else mt.DOCKER_LAYER_GZIP,
                                         digest, size))
                diff_ids.append(diff_id)
            cfg: dict[str, Any] = dict(config or {})
            cfg.setdefault("config", {})
            cfg["os"] = plat.os
            cfg["architecture"] = plat.architecture
            if plat.variant:
                cfg["variant"] = plat.variant
            cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
            if not cfg.get("history"):
                cfg["history"] = [{"created_by": f"ocibuild test layer {i}"}
                                  for i in range(len(layers))]
            raw_cfg = json.dumps(cfg, separators=(",", ":"), sort_keys=True).encode()
            from ocibuild.digest import Digest

            cfg_desc = Descriptor(mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
                                  Digest.of_bytes(raw_cfg), len(raw_cfg))
            manifest = Manifest.build(cfg_desc, layers,
                                      media_type=mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST)
            for d in layers:
                rc.push_blob(target, d, store)
            rc.push_blob_bytes(target, cfg_desc, raw_cfg)
            rc.push_manifest(target, manifest.raw, manifest.media_type)
            return str(manifest.digest)
    finally:
        if own_client:
            rc.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _gzip_into(store: BlobStore, tar: Path) -> tuple[Digest, int, str]:
    """(digest, size) of the gzip blob written into ``store`` and the tar's diff id."""
    import gzip
    import hashlib

    with open(tar, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    diff = hashlib.sha256()
    if gz:
        with gzip.open(tar, "rb") as src:
            while chunk := src.read(1 << 20):
                diff.update(chunk)
        digest, size = store.put_file(tar)
        return digest, size, f"sha256:{diff.hexdigest()}"
    with store.writer() as w, open(tar, "rb") as src:
        with gzip.GzipFile(fileobj=w, mode="wb", mtime=0, compresslevel=6) as out:
            while chunk := src.read(1 << 20):
                diff.update(chunk)
                out.write(chunk)
    return w.digest, w.size, f"sha256:{diff.hexdigest()}"
