"""The downloader against mirrors that lie or stall: sizes, encodings, deadlines, Retry-After, resume order.

Each route of this server is a function writing the whole answer, so a test
can send exactly the headers and the pacing a hostile or broken mirror would.
"""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tinyuki.errors import TinyukiError
from tinyuki.source import download

BODY = bytes(range(256)) * 1024  # 256 KiB
Answer = Callable[[BaseHTTPRequestHandler], None]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv: _Server = self.server  # type: ignore[assignment]
        srv.seen.setdefault(self.path, []).append(dict(self.headers.items()))
        answer = srv.routes.get(self.path)
        if answer is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            answer(self)
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    routes: dict[str, Answer]
    seen: dict[str, list[dict[str, str]]]

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up early (the point of several tests) is no error worth a traceback


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.routes, srv.seen = {}, {}
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def url(srv: _Server, path: str, answer: Answer) -> str:
    srv.routes[path] = answer
    host, port = srv.server_address[:2]
    return f"http://{host}:{port}{path}"


def plain(body: bytes, status: int = 200, headers: dict[str, str] | None = None, length: bool = True,
          pace: float = 0.0, piece: int = 1024) -> Answer:
    """An answer with `body`; without `length` the connection's end marks the body's end."""

    def answer(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        if length:
            h.send_header("Content-Length", str(len(body)))
        else:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        if not pace:
            h.wfile.write(body)
            return
        for i in range(0, len(body), piece):
            h.wfile.write(body[i:i + piece])
            h.wfile.flush()
            time.sleep(pace)

    return answer


def fetch(urls: list[str], dest: Path, **kw: object) -> download.Downloaded:
    kw.setdefault("retries", 3)
    kw.setdefault("timeout", 5)
    kw.setdefault("backoff", 0.01)
    return download.fetch(urls, dest, progress=False, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- 6: the bytes as sent


def test_a_gzip_content_encoding_is_not_decoded(server, tmp_path):
    """identity was asked for; a mirror that gzips anyway (a .tar.gz served with Content-Encoding) sends the file."""
    packed = gzip.compress(BODY, mtime=0)
    u = url(server, "/linux-9.9.tar.gz", plain(packed, headers={"Content-Encoding": "gzip"}))
    got = fetch([u], tmp_path)
    assert got.path.read_bytes() == packed and got.sha256 == sha(packed) and got.size == len(packed)
    assert server.seen["/linux-9.9.tar.gz"][0]["Accept-Encoding"] == "identity"


# ---------------------------------------------------------------- 5: size cap and deadline


def test_an_answer_announcing_more_than_the_cap_is_refused_before_its_body(server, tmp_path):
    u = url(server, "/f.tar.xz", plain(BODY))
    with pytest.raises(TinyukiError) as e:
        fetch([u], tmp_path, max_size=1000)
    msg = e.value.message
    assert "larger than" in msg and "1000" in msg and str(len(BODY)) in msg
    assert "max_size" in (e.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def test_a_body_without_length_is_cut_at_the_cap(server, tmp_path):
    u = url(server, "/f.tar.xz", plain(BODY, length=False))
    with pytest.raises(TinyukiError) as e:
        fetch([u], tmp_path, max_size=100_000, retries=1)
    assert "more than" in e.value.message and "100000" in e.value.message
    assert [p for p in tmp_path.iterdir() if p.stat().st_size > 100_000] == []


def test_the_known_size_is_the_cap(server, tmp_path):
    """A size known before downloading (recorded with the hash) caps the transfer whatever the mirror says."""
    u = url(server, "/f.tar.xz", plain(BODY))
    with pytest.raises(TinyukiError) as e:
        fetch([u], tmp_path, expect_size=len(BODY) - 1)
    assert "larger than" in e.value.message
    assert fetch([u], tmp_path, expect_size=len(BODY)).sha256 == sha(BODY)


def test_a_body_longer_than_its_first_content_length_is_refused(server, tmp_path):
    """The first answer's Content-Length is the cap: a resumed answer cannot make the file grow."""
    calls = []

    def answer(h: BaseHTTPRequestHandler) -> None:
        calls.append(h.headers.get("Range"))
        if len(calls) == 1:  # announce the full size, then drop after a third
            h.send_response(200)
            h.send_header("Content-Length", str(len(BODY)))
            h.send_header("ETag", '"v1"')
            h.end_headers()
            h.wfile.write(BODY[:80_000])
            h.wfile.flush()
            h.close_connection = True
            return
        rest = BODY[80_000:] * 3  # the "rest" is suddenly three times longer
        h.send_response(206)
        h.send_header("Content-Range", f"bytes 80000-{80_000 + len(rest) - 1}/{80_000 + len(rest)}")
        h.send_header("Content-Length", str(len(rest)))
        h.send_header("ETag", '"v1"')
        h.end_headers()
        h.wfile.write(rest)

    u = url(server, "/f.tar.xz", answer)
    with pytest.raises(TinyukiError) as e:
        fetch([u], tmp_path, retries=2)
    assert "larger than" in e.value.message


def test_a_trickling_mirror_hits_the_deadline(server, tmp_path):
    u = url(server, "/f.tar.xz", plain(BODY, pace=0.05))  # 256 pieces: 13 s
    start = time.monotonic()
    with pytest.raises(TinyukiError) as e:
        fetch([u], tmp_path, deadline=1.0, timeout=5)
    took = time.monotonic() - start
    assert "deadline" in e.value.message and "1 s" in e.value.message
    assert "deadline" in (e.value.hint or "")
    assert took < 4
    (part,) = tmp_path.glob("*.part")  # what arrived is kept for the next run to resume
    assert part.stat().st_size > 0


def test_the_deadline_covers_retries_and_their_waits(server, tmp_path, monkeypatch):
    u = url(server, "/f.tar.xz", plain(b"busy\n", status=503))
    start = time.monotonic()
    with pytest.raises(TinyukiError) as e:
        fetch([u], tmp_path, deadline=1.0, retries=50, backoff=0.4)
    assert "deadline" in e.value.message
    assert time.monotonic() - start < 3


# ---------------------------------------------------------------- 10: backoff cap and Retry-After


def sleeps(monkeypatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(download.time, "sleep", lambda s: waited.append(s))
    return waited


def test_backoff_is_capped(server, tmp_path, monkeypatch):
    waited = sleeps(monkeypatch)
    u = url(server, "/f.tar.xz", plain(b"down\n", status=500))
    with pytest.raises(TinyukiError):
        fetch([u], tmp_path, retries=12, backoff=1.0)
    assert len(waited) == 11
    assert waited[:4] == [1, 2, 4, 8]
    assert max(waited) == download.MAX_BACKOFF


def test_retry_after_seconds_is_honoured(server, tmp_path, monkeypatch):
    waited = sleeps(monkeypatch)
    answers = iter([plain(b"busy\n", status=503, headers={"Retry-After": "7"}), plain(BODY)])
    u = url(server, "/f.tar.xz", lambda h: next(answers)(h))
    assert fetch([u], tmp_path, backoff=0.01).sha256 == sha(BODY)
    assert waited == [7]


def test_retry_after_as_a_date_is_honoured(server, tmp_path, monkeypatch):
    from email.utils import formatdate

    waited = sleeps(monkeypatch)
    when = formatdate(time.time() + 20, usegmt=True)
    answers = iter([plain(b"slow down\n", status=429, headers={"Retry-After": when}), plain(BODY)])
    u = url(server, "/f.tar.xz", lambda h: next(answers)(h))
    assert fetch([u], tmp_path).sha256 == sha(BODY)
    assert len(waited) == 1 and 15 <= waited[0] <= 21


def test_a_retry_after_beyond_the_cap_moves_on_to_the_next_mirror(server, tmp_path, monkeypatch):
    waited = sleeps(monkeypatch)
    busy = url(server, "/busy/f.tar.xz", plain(b"come back tomorrow\n", status=503,
                                               headers={"Retry-After": "86400"}))
    good = url(server, "/good/f.tar.xz", plain(BODY))
    got = fetch([busy, good], tmp_path)
    assert got.url == good and waited == []


def test_a_garbled_retry_after_falls_back_to_the_backoff(server, tmp_path, monkeypatch):
    waited = sleeps(monkeypatch)
    answers = iter([plain(b"busy\n", status=503, headers={"Retry-After": "soon"}), plain(BODY)])
    u = url(server, "/f.tar.xz", lambda h: next(answers)(h))
    fetch([u], tmp_path, backoff=0.5)
    assert waited == [0.5]


# ---------------------------------------------------------------- 14: resume order


def test_a_kill_after_the_new_validator_never_splices_two_versions(server, tmp_path, monkeypatch):
    """The partial file of the old version must be gone before the new version's validator is written."""
    old, new = BODY, bytes(reversed(BODY))

    def versioned(body: bytes, etag: str, drop: int | None = None) -> Answer:
        def answer(h: BaseHTTPRequestHandler) -> None:
            rng, if_range = h.headers.get("Range"), h.headers.get("If-Range")
            start = int(rng[6:-1]) if rng and if_range == etag else 0
            h.send_response(206 if start else 200)
            if start:
                h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            h.send_header("Content-Length", str(len(body) - start))
            h.send_header("ETag", etag)
            h.end_headers()
            h.wfile.write(body[start:drop] if drop else body[start:])
            h.close_connection = drop is not None
        return answer

    u = url(server, "/f.tar.xz", versioned(old, '"old"', drop=100_000))
    with pytest.raises(TinyukiError):
        fetch([u], tmp_path, retries=1)  # a partial old version and its validator are kept
    server.routes["/f.tar.xz"] = versioned(new, '"new"')

    real = download.atomic_write

    def killed_after_writing(path, data, *a, **kw):
        real(path, data, *a, **kw)
        raise KeyboardInterrupt  # the run is killed right after the new validator reached the disk

    monkeypatch.setattr(download, "atomic_write", killed_after_writing)
    with pytest.raises(KeyboardInterrupt):
        fetch([u], tmp_path)
    monkeypatch.setattr(download, "atomic_write", real)
    got = fetch([u], tmp_path)
    assert got.sha256 == sha(new)
