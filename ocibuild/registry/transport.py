"""HTTP to registries: scheme and TLS choice per host, timeouts, bounded retries with backoff,
and translation of registry error bodies into ``RegistryError``.

Nothing here knows about authentication; ``ocibuild.registry.session`` adds it on top.
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import os
import random
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

from ocibuild.errors import AuthError, RegistryError

#: (connect, read) seconds: every request has both.
DEFAULT_TIMEOUT = (15.0, 120.0)
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
#: The longest Retry-After we honour; beyond it we give up rather than hang a build.
MAX_RETRY_AFTER = 60.0

Body = bytes | Callable[[], IO[bytes] | Iterable[bytes] | bytes] | None


def _split_host(host: str) -> tuple[str, int | None]:
    """``name:port``, ``[v6]:port`` or a bare name -> (name, port or None)."""
    if host.startswith("["):
        end = host.find("]")
        rest = host[end + 1 :]
        return host[1:end], int(rest[1:]) if rest.startswith(":") else None
    if host.count(":") == 1:
        name, port = host.rsplit(":", 1)
        return name, int(port)
    return host, None


def is_loopback(host: str) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1`` (with or without a port)."""
    try:
        name = _split_host(host)[0]
    except ValueError:
        return False
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _speaks_tls(host: str, timeout: float) -> bool:
    """Whether a loopback ``host`` completes a TLS handshake. Its certificate is not checked
    here (the requests that follow check it): so no CA bundle is loaded, which is most of the
    cost of asking through ``requests`` (~20 ms a build)."""
    name, port = _split_host(host)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((name, port or 443), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=name):
            return True
    except OSError:  # ssl.SSLError too: a plain-HTTP server answers the hello with text
        return False


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: ``attempts`` tries in all, delays ``base * 2**n`` capped."""

    attempts: int = 5
    base: float = 0.2
    cap: float = 8.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            honoured = _parse_retry_after(retry_after)
            if honoured is not None:
                return honoured  # the caller gives up when it is beyond MAX_RETRY_AFTER
        backoff: float = min(self.cap, self.base * 2.0**attempt)
        return backoff * (0.75 + random.random() / 2)  # jitter: retries do not march in step


def _parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, float(when.timestamp()) - time.time())


def error_from_response(resp: requests.Response, action: str) -> RegistryError:
    """``RegistryError`` (``AuthError`` for 401/403) quoting the registry's ``errors[]`` codes
    and messages, e.g. ``push 127.0.0.1:5000/app:1: UNAUTHORIZED: authentication required``.

    Reads at most 64 KiB of the body; never quotes request headers (they may carry secrets).
    """
    detail = ""
    try:
        # At most 64 KiB, whether or not the body was already read (stream=False).
        raw = next(resp.iter_content(65536), b"")
        body = json.loads(raw or b"{}")
        parts = []
        for err in body.get("errors") or []:
            code = str(err.get("code", "")).strip()
            msg = str(err.get("message", "")).strip()
            parts.append(": ".join(p for p in (code, msg) if p))
        if not parts and isinstance(body.get("error"), str):
            # OAuth2 token endpoints: {"error": "invalid_grant", "error_description": "..."}
            desc = body.get("error_description")
            parts.append(body["error"] + (f": {desc}" if isinstance(desc, str) and desc else ""))
        detail = "; ".join(parts)
    except (ValueError, AttributeError, OSError, requests.RequestException):
        detail = ""
    finally:
        resp.close()
    if not detail:
        detail = f"HTTP {resp.status_code} {resp.reason or ''}".strip()
    cls = AuthError if resp.status_code in (401, 403) else RegistryError
    err = cls(f"{action}: {detail}")
    err.status = resp.status_code  # type: ignore[attr-defined]
    return err


@dataclass
class Transport:
    """Sends requests to registry hosts: ``https`` unless the host may use plain HTTP
    (loopback or ``insecure_hosts``) and does not answer TLS, then ``http``.

    TLS trust: ``REQUESTS_CA_BUNDLE`` or ``SSL_CERT_FILE`` (else certifi), plus every ``*.crt``
    in ``certs_dir/<host>/`` like docker's ``/etc/docker/certs.d``. Certificates are always
    verified; a plain-HTTP fallback never happens for a host that is not allowed it.
    One ``requests.Session`` per thread (sessions are not thread-safe).
    """

    insecure_hosts: frozenset[str] = frozenset()
    certs_dir: Path = Path("/etc/docker/certs.d")
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        self._local = threading.local()
        self._schemes: dict[str, str] = {}
        self._bundles: dict[str, str | bool] = {}
        self._lock = threading.Lock()
        self._tmp: list[str] = []
        self._sessions: list[requests.Session] = []

    def close(self) -> None:
        """Close every thread's session (pooled sockets) and remove temporary CA bundles."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for s in sessions:
            s.close()
        for path in self._tmp:
            try:
                os.unlink(path)
            except OSError:
                pass

    def session(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            # trust_env stays on for HTTP(S)_PROXY/NO_PROXY; ``verify`` is always passed
            # explicitly, so REQUESTS_CA_BUNDLE only acts through ``verify_for``.
            s = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=8)
            s.mount("https://", adapter)
            s.mount("http://", adapter)
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def may_use_http(self, host: str) -> bool:
        return is_loopback(host) or host in self.insecure_hosts

    def verify_for(self, host: str) -> str | bool:
        """The ``verify`` argument for ``host``: a CA bundle path (never False)."""
        with self._lock:
            if host in self._bundles:
                return self._bundles[host]
            # Every CA file the environment names is trusted (not just the first), plus
            # docker's per-host directory.
            files: list[Path] = []
            for var in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
                value = os.environ.get(var)
                if value and Path(value).is_file() and Path(value) not in files:
                    files.append(Path(value))
            if not files:
                import certifi

                files.append(Path(certifi.where()))
            host_dir = self.certs_dir / host
            if host_dir.is_dir():
                files += sorted(p for p in host_dir.iterdir() if p.suffix == ".crt")
            bundle: str | bool = str(files[0])
            if len(files) > 1:
                fd, path = tempfile.mkstemp(prefix="ocibuild-ca-", suffix=".pem")
                with os.fdopen(fd, "wb") as out:
                    for p in files:
                        out.write(p.read_bytes().rstrip(b"\n") + b"\n")
                self._tmp.append(path)
                bundle = path
            self._bundles[host] = bundle
            return bundle

    def base_url(self, host: str) -> str:
        """``https://host`` or ``http://host``, probing ``/v2/`` once for hosts allowed HTTP."""
        with self._lock:
            known = self._schemes.get(host)
        if known is not None:
            return f"{known}://{host}"
        scheme = "https"
        if is_loopback(host):
            # No proxy or middlebox on the loopback: a raw handshake answers the same question.
            if not _speaks_tls(host, self.timeout[0]):
                scheme = "http"
        elif self.may_use_http(host):
            try:
                self.session().get(
                    f"https://{host}/v2/", timeout=self.timeout, verify=self.verify_for(host),
                    allow_redirects=False,
                ).close()
            except requests.exceptions.SSLError as exc:
                # A TLS server whose certificate we cannot verify stays https (the request
                # then fails saying so); anything else means the server does not speak TLS.
                if "certificate verify failed" not in str(exc).lower():
                    scheme = "http"
            except requests.exceptions.ConnectionError:
                # No TLS listener (or nothing at all): plain HTTP either works or says why.
                scheme = "http"
        with self._lock:
            self._schemes[host] = scheme
        return f"{scheme}://{host}"

    def send(
        self,
        method: str,
        url: str,
        *,
        host: str,
        headers: Mapping[str, str] | None = None,
        body: Body = None,
        stream: bool = False,
        params: Mapping[str, str] | None = None,
        auth: requests.auth.AuthBase | None = None,
        retry: bool = True,
        action: str = "request",
    ) -> requests.Response:
        """One request, retried on 429/5xx and dropped connections up to the retry policy.

        ``body`` may be a callable that opens a fresh body for each attempt (so that uploads can
        be replayed). The caller closes the returned response (``stream=True``).
        The last retryable response is returned as is (the caller turns it into an error);
        a connection failure after the last attempt raises ``RegistryError``.
        """
        attempts = self.retry.attempts if retry else 1
        last_exc: Exception | None = None
        for attempt in range(attempts):
            data = body() if callable(body) else body
            try:
                resp = self.session().request(
                    method, url, headers=dict(headers or {}), data=data, params=params,
                    stream=stream, timeout=self.timeout, verify=self.verify_for(host),
                    allow_redirects=True, auth=auth,
                )
            except requests.exceptions.SSLError as exc:
                raise RegistryError(f"{action}: TLS error talking to {host}: {_short(exc)}",
                                    hint="add the registry's CA to /etc/docker/certs.d/"
                                         f"{host}/ca.crt or SSL_CERT_FILE") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                last_exc = exc
                if attempt + 1 < attempts:
                    self.sleep(self.retry.delay(attempt))
                    continue
                raise RegistryError(f"{action}: {host}: {_short(exc)}") from exc
            finally:
                if hasattr(data, "close"):
                    data.close()  # type: ignore[union-attr]
            if resp.status_code in RETRY_STATUSES and attempt + 1 < attempts:
                delay = self.retry.delay(attempt, resp.headers.get("Retry-After"))
                if delay > MAX_RETRY_AFTER:
                    return resp
                resp.close()
                self.sleep(delay)
                continue
            return resp
        raise RegistryError(f"{action}: {host}: {last_exc}")  # pragma: no cover


def _short(exc: Exception) -> str:
    """The reason inside a requests/urllib3 exception, without the URL (its query string can
    hold upload state) or the retry wrapper text."""
    text = str(exc)
    for pattern in (r"\[SSL: [A-Z_]+\] ([^(]+?)\s*\(_ssl", r"(\[Errno -?\d+\] [^'\")]+)",
                    r"(Read timed out)", r"(Connection aborted)", r"(Remote end closed[^'\")]*)"):
        m = re.search(pattern, text)
        if m:
            return m.group(1).strip()
    return type(exc).__name__
