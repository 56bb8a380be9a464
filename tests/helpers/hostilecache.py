"""A remote artifact cache on 127.0.0.1 that lies on request: GET/HEAD/PUT like nginx's WebDAV, plus faults.

It keeps what is PUT in memory and serves it back, unless a fault is set for a
path (or for every path): a flipped byte (a tampered blob), a body cut off
after announcing its full length (a truncated transfer), other bytes (a wrong
entry), extra bytes, or an error status. Every request is logged, so a test
can prove what a client did (no PUT in read-only mode, no password sent to
the wrong place, no second request to a server found down).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Fault:
    flip: bool = False  # flip the last byte
    cut: int | None = None  # send only this many bytes, announcing the full length, then close
    body: bytes | None = None  # serve these bytes instead
    extra: bytes = b""  # append these bytes
    status: int | None = None  # answer this status instead (any method)


@dataclass
class State:
    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)  # path -> fault; "*" for every path
    log: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Authorization)

    def fault(self, path: str) -> Fault | None:
        return self.faults.get(path) or self.faults.get("*")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _status(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _serve(self, head: bool) -> None:
        st = self.server.state
        st.log.append((self.command, self.path, self.headers.get("Authorization")))
        fault = st.fault(self.path)
        if fault and fault.status:
            self._status(fault.status)
            return
        data = st.files.get(self.path)
        if data is None:
            self._status(404)
            return
        if fault:
            if fault.body is not None:
                data = fault.body
            if fault.flip and data:
                data = data[:-1] + bytes([data[-1] ^ 1])
            data += fault.extra
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if head:
            return
        if fault and fault.cut is not None:
            self.wfile.write(data[: fault.cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_PUT(self) -> None:
        st = self.server.state
        st.log.append((self.command, self.path, self.headers.get("Authorization")))
        length = int(self.headers.get("Content-Length", "0"))
        data = self.rfile.read(length)
        fault = st.fault(self.path)
        if fault and fault.status:
            self._status(fault.status)
            return
        st.files[self.path] = data
        self._status(201)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: State


@dataclass
class HostileCache:
    server: _Server

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def state(self) -> State:
        return self.server.state

    def methods(self) -> list[str]:
        return [m for m, _p, _a in self.state.log]


@contextmanager
def serve() -> Iterator[HostileCache]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.state = State()
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield HostileCache(srv)
    finally:
        srv.shutdown()
        srv.server_close()
