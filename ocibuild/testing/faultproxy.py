"""An HTTP proxy that injects faults between a client and a real registry.

``FaultProxy(upstream)`` listens on 127.0.0.1:<free port> and forwards every request to
``upstream`` (plain HTTP), keeping the ``Host`` header so that the registry's ``Location`` URLs
point back at the proxy. Faults are added per test with ``add(Fault(...))``; each fires at most
``times`` times on requests whose method and path match, then is spent, so every fault is
bounded and a retrying client eventually gets through.

Fault kinds:
- ``status``: answer ``status`` (500, 503, 429 ...) without forwarding, with ``Retry-After``
  when ``retry_after`` is set and the registry's JSON error body;
- ``drop``: forward, send the headers and the first ``after`` body bytes, then close the socket;
  when that would be the whole body (an empty ``202``/``201`` to a PATCH or PUT) the socket is
  closed before the status line instead, so the client always sees the drop;
- ``truncate``: forward, but announce and send only the first ``after`` body bytes (the response
  looks complete: only size/digest verification can catch it);
- ``corrupt``: forward, flipping the byte at body offset ``after``.

``log`` records ``(method, path, status, range header)`` for every request answered.
"""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Literal

from ocibuild.testing.httpserve import BackgroundHTTPServer

FaultKind = Literal["status", "drop", "truncate", "corrupt"]

_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


@dataclass
class Fault:
    kind: FaultKind
    path: str = r".*"  # regex searched in the request path
    method: str | None = None  # None: any method
    times: int = 1
    status: int = 503
    retry_after: str | None = None
    after: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times > 0
            and (self.method is None or self.method == method)
            and re.search(self.path, path) is not None
        )


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int, str | None]] = []
        self._lock = threading.Lock()
        self._server = BackgroundHTTPServer(self._handler_class())

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.port}"

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def close(self) -> None:
        self._server.close()

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.matches(method, path):
                    f.times -= 1
                    return f
        return None

    def _record(self, method: str, path: str, status: int, rng: str | None) -> None:
        with self._lock:
            self.log.append((method, path, status, rng))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(out)
                        out += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length", "0")))

            def _handle(self) -> None:
                body = self._body()
                rng = self.headers.get("Range")
                fault = proxy._take(self.command, self.path)
                if fault is not None and fault.kind == "status":
                    # Recorded before answering: a client that got its answer finds it logged.
                    proxy._record(self.command, self.path, fault.status, rng)
                    err = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
                    if fault.status == 429:
                        err = b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}'
                    self.send_response(fault.status)
                    if fault.retry_after is not None:
                        self.send_header("Retry-After", fault.retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(err)))
                    self.end_headers()
                    self.wfile.write(err)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in _HOP_HEADERS and k.lower() != "content-length"}
                    if body or self.command in ("PUT", "POST", "PATCH"):
                        headers["Content-Length"] = str(len(body))
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                length = len(data)
                if fault is not None and fault.kind == "truncate":
                    data = data[: fault.after]
                    length = len(data)
                if fault is not None and fault.kind == "corrupt" and fault.after < len(data):
                    b = bytearray(data)
                    b[fault.after] ^= 0xFF
                    data = bytes(b)
                if fault is not None and fault.kind == "drop" and fault.after >= length \
                        and self.command != "HEAD":
                    # Nothing of the body would be withheld: drop before answering at all.
                    proxy._record(self.command, self.path, resp.status, rng)
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() in _HOP_HEADERS or k.lower() == "content-length":
                        continue
                    self.send_header(k, v)
                if self.command == "HEAD":
                    self.send_header("Content-Length", resp.getheader("Content-Length", "0"))
                else:
                    self.send_header("Content-Length", str(length))
                proxy._record(self.command, self.path, resp.status, rng)
                self.end_headers()
                if self.command == "HEAD":
                    return
                if fault is not None and fault.kind == "drop":
                    self.wfile.write(data[: fault.after])
                    self.wfile.flush()
                    self.close_connection = True
                    # An abrupt end: the client sees fewer bytes than announced.
                    self.connection.shutdown(2)
                    return
                self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _handle

        return Handler
