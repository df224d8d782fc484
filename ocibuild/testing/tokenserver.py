"""A small bearer-token server for the ``auth: token`` test registry.

It speaks the distribution token protocol the way Docker Hub and most registries do:

- ``GET /token?service=S&scope=repository:NAME:pull,push[&scope=...]`` with optional HTTP basic
  credentials: answers ``{"token", "access_token", "expires_in", "issued_at"}``;
- ``POST /token`` (OAuth2 form): ``grant_type=password`` (username/password, answers a
  ``refresh_token`` too when ``access_type=offline``) and ``grant_type=refresh_token``.

Tokens are JWTs signed RS256 with a certificate issued by the test CA, sent in the ``x5c``
header: the registry's ``rootcertbundle`` is the CA certificate. Each token carries only the
actions the user's ACL grants for each requested repository, like a real server (a push scope
the user may not have yields a token without ``push``, and the registry then answers 401).

Knobs for tests (plain attributes, set between requests): ``expires_in``, ``expire_next`` (the
next N tokens are issued already expired, beyond the registry's 60 s leeway), and ``requests``,
a log of ``TokenRequest`` values for assertions.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ocibuild.testing.httpserve import BackgroundHTTPServer
from ocibuild.testing.pki import KeyPair


@dataclass(frozen=True)
class TokenRequest:
    """One request the token server answered (for assertions in tests)."""

    method: str
    grant: str  # "basic", "anonymous", "password", "refresh_token"
    user: str | None
    scopes: tuple[str, ...]
    status: int


@dataclass
class Account:
    """A user and what it may do: fnmatch patterns of repository names -> allowed actions."""

    password: str
    acl: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"*": ("pull", "push")})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Serves tokens on 127.0.0.1:<free port> in a daemon thread until ``close()``."""

    def __init__(
        self,
        signing: KeyPair,
        *,
        service: str = "ocibuild-test-registry",
        issuer: str = "ocibuild-test-issuer",
        accounts: dict[str, Account] | None = None,
        anonymous_pull: tuple[str, ...] = ("public/*",),
        expires_in: int = 300,
    ) -> None:
        self.signing = signing
        self.service = service
        self.issuer = issuer
        self.accounts = accounts if accounts is not None else {}
        self.anonymous_pull = anonymous_pull
        self.expires_in = expires_in
        self.expire_next = 0
        self.requests: list[TokenRequest] = []
        self._refresh: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server = BackgroundHTTPServer(self._handler_class())

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self._server.port}/token"

    def close(self) -> None:
        self._server.close()

    # -- token logic ---------------------------------------------------------------------------

    def _granted(self, user: str | None, scope: str) -> dict[str, object] | None:
        try:
            kind, rest = scope.split(":", 1)
            name, actions = rest.rsplit(":", 1)
        except ValueError:
            return None
        wanted = [a for a in actions.split(",") if a]
        allowed: set[str] = set()
        if user is None:
            if kind == "repository" and any(fnmatchcase(name, p) for p in self.anonymous_pull):
                allowed.add("pull")
        else:
            for pattern, acts in self.accounts[user].acl.items():
                if fnmatchcase(name, pattern):
                    allowed.update(acts)
        granted = [a for a in wanted if a in allowed or ("*" in allowed)]
        return {"type": kind, "name": name, "actions": granted}

    def mint(self, user: str | None, scopes: tuple[str, ...]) -> tuple[str, int]:
        """A signed JWT for ``user`` and ``scopes``, and its ``expires_in``."""
        now = int(time.time())
        with self._lock:
            expired = self.expire_next > 0
            if expired:
                self.expire_next -= 1
        exp = now - 3600 if expired else now + self.expires_in
        access = [g for g in (self._granted(user, s) for s in scopes) if g is not None]
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": exp,
            "nbf": now - 10 if not expired else now - 7200,
            "iat": now if not expired else now - 7200,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        header = {
            "typ": "JWT",
            "alg": "RS256",
            "x5c": [base64.b64encode(self.signing.cert_der).decode()],
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self.signing.key.sign(
            signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64url(signature)}", self.expires_in

    def _check_password(self, user: str, password: str) -> bool:
        acct = self.accounts.get(user)
        return acct is not None and secrets.compare_digest(acct.password, password)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # quiet: pytest captures stderr, and requests carry passwords

            def _reply(self, status: int, body: dict[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _log(self, grant: str, user: str | None, scopes: tuple[str, ...], status: int) -> None:
                with server._lock:
                    server.requests.append(TokenRequest(self.command, grant, user, scopes, status))

            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                scopes = tuple(s for v in query.get("scope", []) for s in v.split(" ") if s)
                user: str | None = None
                grant = "anonymous"
                header = self.headers.get("Authorization", "")
                if header.lower().startswith("basic "):
                    grant = "basic"
                    try:
                        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    except (ValueError, UnicodeDecodeError):
                        user, password = "", ""
                    if not server._check_password(user, password):
                        self._log(grant, user, scopes, 401)
                        self._reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                                      "message": "invalid username or password"}]})
                        return
                if query.get("service", [""])[0] != server.service:
                    self._log(grant, user, scopes, 400)
                    self._reply(400, {"error": "invalid service"})
                    return
                token, expires_in = server.mint(user, scopes)
                self._log(grant, user, scopes, 200)
                self._reply(200, {"token": token, "access_token": token,
                                  "expires_in": expires_in,
                                  "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())

                def one(key: str) -> str:
                    return form.get(key, [""])[0]

                scopes = tuple(s for s in one("scope").split(" ") if s)
                grant = one("grant_type")
                user: str | None
                if grant == "password":
                    user = one("username")
                    if not server._check_password(user, one("password")):
                        self._log(grant, user, scopes, 401)
                        self._reply(401, {"error": "invalid_grant",
                                          "error_description": "invalid username or password"})
                        return
                elif grant == "refresh_token":
                    user = server._refresh.get(one("refresh_token"))
                    if user is None:
                        self._log(grant, None, scopes, 401)
                        self._reply(401, {"error": "invalid_grant"})
                        return
                else:
                    self._log(grant or "?", None, scopes, 400)
                    self._reply(400, {"error": "unsupported_grant_type"})
                    return
                token, expires_in = server.mint(user, scopes)
                body: dict[str, object] = {"access_token": token, "expires_in": expires_in,
                                           "scope": " ".join(scopes)}
                if grant == "password" and one("access_type") == "offline":
                    refresh = secrets.token_urlsafe(24)
                    with server._lock:
                        server._refresh[refresh] = user
                    body["refresh_token"] = refresh
                self._log(grant, user, scopes, 200)
                self._reply(200, body)

        return Handler

    def issue_refresh_token(self, user: str) -> str:
        """A refresh token for ``user`` (what ``docker login`` would store as identitytoken)."""
        refresh = secrets.token_urlsafe(24)
        with self._lock:
            self._refresh[refresh] = user
        return refresh
