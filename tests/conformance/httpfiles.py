"""A tiny HTTP file server for conformance cases that ``ADD`` URLs.

A case lists what it serves under ``http_files`` in ``args.json``::

    "http_files": {"/plain.txt": {"body": "text\\n", "headers": {"Last-Modified": "..."}},
                   "/app.tar.gz": {"file": "served/app.tar.gz"},
                   "/repo.git/": {"dir": "served/repo.git"}}

(``file`` and ``dir`` are relative to the case directory; a ``dir`` serves the files below it
under the path, e.g. a bare git repository for git's "dumb" HTTP protocol after ``git
update-server-info``; ``status`` defaults to 200). Its Dockerfile names
the server ``http://fileserver:8080`` (``HTTP_PLACEHOLDER``): each builder gets the address of
a server started on a free 127.0.0.1 port for that one build (BuildKit fetches URLs from the
daemon, in the host's network, so loopback reaches it), and the address is written back to the
placeholder in the built image's config, so history compares equal. Unknown paths are 404.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HTTP_PLACEHOLDER = "fileserver:8080"


Route = tuple[int, dict[str, str], bytes]


def _routes(case_dir: Path, spec: Mapping[str, Any]) -> dict[str, Route]:
    routes: dict[str, Route] = {}
    for path, item in spec.items():
        if "dir" in item:
            top = case_dir / item["dir"]
            for file in sorted(f for f in top.rglob("*") if f.is_file()):
                routes[path.rstrip("/") + "/" + file.relative_to(top).as_posix()] = \
                    (200, {}, file.read_bytes())
            continue
        body = (case_dir / item["file"]).read_bytes() if "file" in item else \
            str(item.get("body", "")).encode()
        routes[path] = (int(item.get("status", 200)), dict(item.get("headers") or {}), body)
    return routes


@contextmanager
def serve(case_dir: Path, spec: Mapping[str, Any] | None) -> Iterator[str | None]:
    """Serve ``spec`` for the duration of the block; yields ``host:port`` (None: no files)."""
    if not spec:
        yield None
        return
    routes = _routes(case_dir, spec)

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, with_body: bool) -> None:
            status, headers, body = routes.get(urlsplit(self.path).path, (404, {}, b"not found\n"))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._answer(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(False)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def unplace(config: dict[str, Any], host: str | None) -> dict[str, Any]:
    """``config`` with the server's real address written back as ``HTTP_PLACEHOLDER``."""
    if host is None:
        return config
    unplaced: dict[str, Any] = json.loads(json.dumps(config).replace(host, HTTP_PLACEHOLDER))
    return unplaced
