"""The ``copy``, ``inspect`` and ``login`` verbs (argparse flags in ``ocibuild.cli``)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ocibuild.errors import AuthError, UsageError
from ocibuild.image import Index, Platform
from ocibuild.reference import Reference
from ocibuild.registry.client import RegistryClient
from ocibuild.registry.copying import copy_image
from ocibuild.registry.credentials import Credential, StaticCredentials, save_login
from ocibuild.registry.transports import Endpoint, load, narrow


def _client(args: argparse.Namespace, **kwargs: Any) -> RegistryClient:
    return RegistryClient.from_environment(insecure_hosts=args.insecure_registry or (), **kwargs)


def _platform(args: argparse.Namespace) -> Platform | None:
    return Platform.parse(args.platform) if getattr(args, "platform", None) else None


def run_copy(args: argparse.Namespace) -> int:
    """``copy SRC DST``: prints the digest of the manifest (or index) written."""
    src, dst = Endpoint.parse(args.src), Endpoint.parse(args.dst)
    with _client(args) as client:
        digest = copy_image(src, dst, client, platform=_platform(args), fmt=args.format,
                            compression=getattr(args, "dest_compress_format", None))
    print(digest)
    return 0


def _endpoint(text: str) -> Endpoint:
    """``inspect`` takes a transport or a plain reference (``docker://`` implied)."""
    kind = text.partition(":")[0]
    if kind in ("docker", "oci", "oci-archive", "docker-archive") and ":" in text:
        return Endpoint.parse(text)
    return Endpoint("docker", ref=Reference.parse(text))


def inspect_json(ep: Endpoint, client: RegistryClient, platform: Platform | None) -> dict[str, Any]:
    """What ``inspect`` prints: name, digest, media type, then the platforms of an index or
    the config and layers of an image."""
    loaded = load(ep, client)
    root = loaded.parse(loaded.root)
    out: dict[str, Any] = {"name": str(ep.ref) if ep.ref is not None else str(ep)}
    if isinstance(root, Index) and platform is None:
        out.update(digest=str(root.digest), mediaType=root.media_type, size=root.size,
                   platforms=[str(p) for p in root.platforms()],
                   manifests=[d.to_json() for d in root.manifests])
        return out
    if isinstance(root, Index):
        out["index"] = str(root.digest)
        loaded = narrow(loaded, platform or Platform.default(), f"inspect {ep}")
    manifest = loaded.images()[0]
    if loaded.blobs is not None:
        config_raw = loaded.blobs.open(manifest.config.digest).read()
    else:
        assert loaded.registry_ref is not None
        config_raw = client.fetch_blob_bytes(loaded.registry_ref, manifest.config)
    config = json.loads(config_raw)
    out.update(digest=str(manifest.digest), mediaType=manifest.media_type, size=manifest.size,
               config={"digest": str(manifest.config.digest),
                       "mediaType": manifest.config.media_type, **config},
               layers=[d.to_json() for d in manifest.layers])
    platform_str = "/".join(x for x in (config.get("os"), config.get("architecture"),
                                        config.get("variant")) if x)
    out["platform"] = platform_str
    return out


def run_inspect(args: argparse.Namespace) -> int:
    ep = _endpoint(args.ref)
    with _client(args) as client:
        if args.raw:
            loaded = load(ep, client)
            if args.platform:
                loaded = narrow(loaded, Platform.parse(args.platform), f"inspect {ep}")
            sys.stdout.buffer.write(loaded.manifests[loaded.root.digest])
            sys.stdout.flush()
            return 0
        doc = inspect_json(ep, client, _platform(args))
    print(json.dumps(doc, indent=2))
    return 0


def verify_login(host: str, cred: Credential, insecure: list[str]) -> Credential:
    """Check ``cred`` against ``host``'s ``/v2/`` (through its token server when it uses
    bearer tokens); AuthError when refused. Returns what to store: like docker, a refresh
    token (``identitytoken``) when the token server hands one out for ``access_type=offline``,
    else the username and password."""
    action = f"login {host}"
    with RegistryClient(StaticCredentials({host: cred}), insecure_hosts=insecure) as client:
        challenge = client.auth.challenge(host, action)
        if challenge is None:
            return cred  # the registry lets everyone in; docker login succeeds too
        if challenge.scheme == "bearer":
            refresh = _offline_token(client, challenge.params, cred, host, action)
            if refresh is not None:
                cred = Credential(cred.username, "", refresh)
                client.auth.credentials = StaticCredentials({host: cred})
        header = client.auth.header(host, [], action)
        resp = client.transport.send("GET", f"{client.transport.base_url(host)}/v2/", host=host,
                                     headers=header, action=action)
        if resp.status_code != 200:
            raise client.fail(resp, action, host)
        resp.close()
    return cred


def _offline_token(client: RegistryClient, params: dict[str, str], cred: Credential,
                   host: str, action: str) -> str | None:
    """An OAuth2 refresh token from the realm (``grant_type=password``), or None when the
    token server does not do OAuth2 (it then gets basic credentials on GET)."""
    from urllib.parse import urlencode, urlsplit

    realm = params.get("realm", "")
    if not realm:
        return None
    form = {"grant_type": "password", "username": cred.username, "password": cred.password,
            "service": params.get("service", ""), "client_id": "ocibuild",
            "access_type": "offline"}
    resp = client.transport.send("POST", realm, host=urlsplit(realm).netloc,
                                 body=urlencode(form).encode(), action=action,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    try:
        if resp.status_code in (401, 403):
            raise client.fail(resp, action, host)
        if resp.status_code != 200:
            return None
        try:
            token = resp.json().get("refresh_token")
        except ValueError:
            return None
        return token if isinstance(token, str) and token else None
    finally:
        resp.close()


def run_login(args: argparse.Namespace) -> int:
    if args.password_stdin and args.password:
        raise UsageError("login: --password and --password-stdin are exclusive")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.password is not None:
        print("warning: --password on the command line is visible to other users; "
              "use --password-stdin", file=sys.stderr)
        password = args.password
    else:
        raise UsageError("login: give --password-stdin (or -p PASSWORD)")
    if not password:
        raise UsageError("login: empty password")
    host = args.host.removeprefix("https://").removeprefix("http://").rstrip("/")
    if host in ("docker.io", "index.docker.io"):
        host = "registry-1.docker.io"
    cred = Credential(args.username, password)
    try:
        cred = verify_login(host, cred, args.insecure_registry or [])
    except AuthError as exc:
        raise AuthError(exc.message, hint="check the user name and password") from None
    path = save_login("docker.io" if host == "registry-1.docker.io" else host, cred)
    print(f"Login Succeeded (credentials saved in {path})")
    return 0
