"""Registry authentication: the ``WWW-Authenticate`` challenge, basic auth, and bearer tokens
kept per host and scope set.

Flow (the distribution token spec, as docker does it): ping ``GET /v2/`` once per host to learn
the challenge; for ``Bearer`` ask the realm for a token covering exactly the scopes a request
needs (``repository:NAME:pull`` for pulls, ``pull,push`` for pushes, plus
``repository:OTHER:pull`` for a cross-repository mount); reuse that token for the same scope
set until it expires (``expires_in``, default 60 s) or the registry answers 401, then fetch a
new one. With an ``identity_token`` (OAuth2 refresh token) the token is obtained by ``POST``
``grant_type=refresh_token``; otherwise by ``GET`` with basic credentials or anonymously.
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import requests

from ocibuild.errors import AuthError, RegistryError
from ocibuild.registry.credentials import Credential, CredentialStore
from ocibuild.registry.transport import Transport, error_from_response

_PARAM_RE = re.compile(r'([a-zA-Z_]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-case: "basic", "bearer"
    params: dict[str, str] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge | None:
    """The first challenge of a ``WWW-Authenticate`` header, or None when there is none."""
    header = header.strip()
    if not header:
        return None
    scheme, _, rest = header.partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3))
              for m in _PARAM_RE.finditer(rest)}
    return Challenge(scheme.lower(), {k: v.replace('\\"', '"') for k, v in params.items()})


@dataclass
class _Token:
    value: str
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


class Authenticator:
    """Produces the ``Authorization`` header for (host, scopes); thread-safe.

    ``clock`` is injectable so that tests can age tokens without sleeping.
    """

    def __init__(
        self, transport: Transport, credentials: CredentialStore | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.credentials = credentials
        self._clock = clock
        self._challenges: dict[str, Challenge | None] = {}
        self._tokens: dict[tuple[str, tuple[str, ...]], _Token] = {}
        self._lock = threading.Lock()
        self._host_locks: dict[str, threading.Lock] = {}

    def _host_lock(self, host: str) -> threading.Lock:
        with self._lock:
            return self._host_locks.setdefault(host, threading.Lock())

    def credential(self, host: str) -> Credential | None:
        return self.credentials.get(host) if self.credentials is not None else None

    def challenge(self, host: str, action: str) -> Challenge | None:
        """The host's challenge (None: anonymous access works), pinging ``/v2/`` once."""
        with self._lock:
            if host in self._challenges:
                return self._challenges[host]
        resp = self.transport.send("GET", f"{self.transport.base_url(host)}/v2/", host=host,
                                   action=action)
        try:
            if resp.status_code == 401:
                found = parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            elif resp.status_code < 300:
                found = None
            elif resp.status_code == 404:
                raise RegistryError(f"{action}: {host} does not speak the registry API (/v2/ is 404)")
            else:
                raise error_from_response(resp, action)
        finally:
            resp.close()
        with self._lock:
            self._challenges[host] = found
        return found

    def learn(self, host: str, header: str) -> None:
        """Record a challenge seen on a 401 (a registry may start asking mid-session)."""
        found = parse_challenge(header)
        if found is not None:
            with self._lock:
                self._challenges[host] = found

    def invalidate(self, host: str, scopes: Sequence[str]) -> None:
        with self._lock:
            self._tokens.pop((host, tuple(sorted(scopes))), None)

    def header(self, host: str, scopes: Sequence[str], action: str) -> dict[str, str]:
        """``{"Authorization": ...}`` or ``{}`` for anonymous access."""
        challenge = self.challenge(host, action)
        if challenge is None:
            return {}
        if challenge.scheme == "basic":
            cred = self.credential(host)
            if cred is None or not cred.username:
                return {}
            raw = f"{cred.username}:{cred.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if challenge.scheme != "bearer":
            raise AuthError(f"{action}: {host} asks for unsupported auth scheme "
                            f"{challenge.scheme!r}")
        key = (host, tuple(sorted(scopes)))
        with self._host_lock(host):
            with self._lock:
                token = self._tokens.get(key)
            if token is None or not token.fresh(self._clock()):
                token = self._fetch_token(host, challenge, key[1], action)
                with self._lock:
                    self._tokens[key] = token
        return {"Authorization": f"Bearer {token.value}"}

    def _fetch_token(
        self, host: str, challenge: Challenge, scopes: tuple[str, ...], action: str
    ) -> _Token:
        realm = challenge.params.get("realm")
        if not realm:
            raise AuthError(f"{action}: {host} sent a bearer challenge without a realm")
        service = challenge.params.get("service", "")
        cred = self.credential(host)
        realm_host = urlsplit(realm).netloc
        started = self._clock()
        if cred is not None and cred.identity_token:
            form = {"grant_type": "refresh_token", "refresh_token": cred.identity_token,
                    "service": service, "client_id": "ocibuild", "scope": " ".join(scopes)}
            resp = self.transport.send("POST", realm, host=realm_host, body=_form(form),
                                       headers={"Content-Type":
                                                "application/x-www-form-urlencoded"},
                                       action=action)
        else:
            params: list[tuple[str, str]] = [("service", service)] if service else []
            params += [("scope", s) for s in scopes]
            basic = None
            if cred is not None and cred.username:
                basic = requests.auth.HTTPBasicAuth(cred.username, cred.password)
            resp = self.transport.send("GET", realm, host=realm_host, params=params,  # type: ignore[arg-type]
                                       auth=basic, action=action)
        if resp.status_code != 200:
            err = error_from_response(resp, f"{action}: get token from {realm_host}")
            if resp.status_code in (401, 403):
                raise AuthError(err.message, hint=f"check the credentials for {host} "
                                f"(ocibuild login {host})") from None
            raise err
        try:
            body = resp.json()
        except ValueError as exc:
            raise AuthError(f"{action}: token server {realm_host} answered invalid JSON") from exc
        finally:
            resp.close()
        value = body.get("token") or body.get("access_token")
        if not isinstance(value, str) or not value:
            raise AuthError(f"{action}: token server {realm_host} answered no token")
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 60.0
        # Refresh a little early: a token that expires in flight costs a 401 round trip.
        margin = min(10.0, lifetime * 0.1)
        return _Token(value, started + lifetime - margin)


def _form(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()
