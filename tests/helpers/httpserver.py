"""A real HTTP server on 127.0.0.1 whose routes misbehave on request.

Each route serves fixed bytes and can first answer with error statuses, drop
the connection part-way, stall, redirect, or ignore Range requests, so the
downloader is tested against the failures real mirrors produce.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    fail_first: list[int] = field(default_factory=list)  # statuses answered before the body is served
    drop_after: int | None = None  # send only this many bytes, then close (announcing the full length)
    drops: int = 1  # how many requests are dropped that way
    stall: float = 0.0  # seconds to wait after the headers, before the body
    redirect: str | None = None
    ranges: bool = True  # honour Range requests
    requests: list[dict[str, str]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path)
        if route is None:
            self._plain(404, b"not found\n")
            return
        route.requests.append({k: v for k, v in self.headers.items()})
        if route.redirect:
            self.send_response(302)
            self.send_header("Location", route.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if route.fail_first:
            self._plain(route.fail_first.pop(0), b"try again\n")
            return
        if route.status != 200:
            self._plain(route.status, b"nope\n")
            return
        body, start = route.body, 0
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'  # strong, changes with the content
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != etag:
            rng = None  # RFC 9110: a changed file is sent whole
        if rng and route.ranges and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[6:-1])
            if start >= len(body):
                self._plain(416, b"")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Accept-Ranges", "bytes" if route.ranges else "none")
        self.send_header("ETag", etag)
        self.end_headers()
        if route.stall:
            time.sleep(route.stall)
        if route.drop_after is not None and route.drops > 0:
            route.drops -= 1
            self.wfile.write(part[: route.drop_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(part)

    def _plain(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Route]


@dataclass
class LocalServer:
    server: _Server

    @property
    def base(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, route: Route) -> str:
        self.server.routes[path] = route
        return self.url(path)


@contextmanager
def serve() -> Iterator[LocalServer]:
    """Start a server on 127.0.0.1 on a free port; routes are added with `.add(path, Route(...))`."""
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.routes = {}
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield LocalServer(srv)
    finally:
        srv.shutdown()
        srv.server_close()
