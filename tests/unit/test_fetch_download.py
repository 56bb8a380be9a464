"""The downloader against a real local HTTP server that fails the ways mirrors fail."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.helpers.httpserver import Route, serve
from tinyuki.errors import TinyukiError
from tinyuki.source import download

BODY = bytes(range(256)) * 4096  # 1 MiB, a few chunks


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def server():
    with serve() as s:
        yield s


def fetch(urls, dest, **kw):
    kw.setdefault("retries", 3)
    kw.setdefault("timeout", 5)
    kw.setdefault("backoff", 0.01)
    return download.fetch(urls, dest, progress=False, **kw)


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir()) if dest.exists() else []


def test_download_is_hashed_and_named_by_content(server, tmp_path):
    url = server.add("/linux-9.9.tar.xz", Route(BODY))
    got = fetch([url], tmp_path)
    assert got.sha256 == sha(BODY) and got.size == len(BODY) and got.url == url
    assert got.path == tmp_path / f"{sha(BODY)}-linux-9.9.tar.xz"
    assert got.path.read_bytes() == BODY
    assert leftovers(tmp_path) == [got.path.name]  # no .part left behind


def test_404_then_working_mirror(server, tmp_path):
    bad = server.url("/missing/linux-9.9.tar.xz")
    good = server.add("/mirror/linux-9.9.tar.xz", Route(BODY))
    got = fetch([bad, good], tmp_path)
    assert got.url == good and got.sha256 == sha(BODY)


def test_500s_are_retried_then_succeed(server, tmp_path):
    route = Route(BODY, fail_first=[500, 503])
    url = server.add("/f.tar.xz", route)
    got = fetch([url], tmp_path, retries=3)
    assert got.sha256 == sha(BODY)
    assert len(route.requests) == 3


def test_persistent_500_gives_up_with_every_url_named(server, tmp_path):
    url = server.add("/f.tar.xz", Route(BODY, status=500))
    with pytest.raises(TinyukiError) as e:
        fetch([url, server.url("/nothing.tar.xz")], tmp_path, retries=2)
    msg = e.value.message
    assert "HTTP 500" in msg and "gave up after 2 attempts" in msg and "HTTP 404" in msg
    assert not any(n.startswith(sha(BODY)) for n in leftovers(tmp_path))


def test_dropped_connection_resumes_with_range(server, tmp_path):
    route = Route(BODY, drop_after=len(BODY) // 3)
    url = server.add("/f.tar.xz", route)
    got = fetch([url], tmp_path)
    assert got.path.read_bytes() == BODY and got.sha256 == sha(BODY)
    assert "Range" not in route.requests[0]
    resumed_at = int(route.requests[1]["Range"][len("bytes="):-1])
    assert 0 < resumed_at <= len(BODY) // 3  # kept what arrived, asked only for the rest


def test_server_ignoring_range_means_starting_over(server, tmp_path):
    route = Route(BODY, drop_after=300_000, ranges=False)
    url = server.add("/f.tar.xz", route)
    got = fetch([url], tmp_path)
    assert got.path.read_bytes() == BODY and got.sha256 == sha(BODY)
    assert "Range" in route.requests[1]  # asked to resume, got the whole file, kept it whole


def test_truncated_body_every_time_keeps_the_part_file_only(server, tmp_path):
    url = server.add("/f.tar.xz", Route(BODY, drop_after=100, drops=100, ranges=False))
    with pytest.raises(TinyukiError) as e:
        fetch([url], tmp_path, retries=2)
    assert "connection closed after 100 of" in e.value.message or "IncompleteRead" in e.value.message \
        or "Connection broken" in e.value.message
    # the partial file and the validator that lets a later run resume it; nothing that looks complete
    assert all(n.endswith((".part", ".part.validator")) for n in leftovers(tmp_path))


def test_interrupted_run_resumes_from_part_file(server, tmp_path):
    url = server.add("/f.tar.xz", Route(BODY, drop_after=200_000, drops=100))
    with pytest.raises(TinyukiError):
        fetch([url], tmp_path, retries=1)
    (part,) = tmp_path.glob("*.part")
    kept = part.stat().st_size
    assert 0 < kept <= 200_000
    route = Route(BODY)
    server.add("/f.tar.xz", route)
    got = fetch([url], tmp_path)
    assert got.sha256 == sha(BODY) and route.requests[0]["Range"] == f"bytes={kept}-"


def test_stalled_server_times_out(server, tmp_path):
    url = server.add("/f.tar.xz", Route(BODY, stall=3))
    with pytest.raises(TinyukiError) as e:
        fetch([url], tmp_path, retries=1, timeout=1)
    assert "timed out" in e.value.message


def test_redirect_is_followed(server, tmp_path):
    server.add("/real/linux-9.9.tar.xz", Route(BODY))
    url = server.add("/linux-9.9.tar.xz", Route(redirect="/real/linux-9.9.tar.xz"))
    got = fetch([url], tmp_path)
    assert got.sha256 == sha(BODY) and got.path.name.endswith("-linux-9.9.tar.xz")


def test_local_paths_and_file_urls_are_hashed_in_place(tmp_path):
    f = tmp_path / "src" / "linux-9.9.tar.xz"
    f.parent.mkdir()
    f.write_bytes(BODY)
    dest = tmp_path / "incoming"
    for url in (str(f), f"file://{f}"):
        got = fetch([url], dest)
        assert got.path == f and got.sha256 == sha(BODY)
    assert leftovers(dest) == []


def test_missing_local_file_falls_through_to_next_url(server, tmp_path):
    url = server.add("/f.tar.xz", Route(BODY))
    got = fetch([str(tmp_path / "nope.tar.xz"), url], tmp_path / "in")
    assert got.url == url


def test_a_file_replaced_between_runs_is_never_spliced(server, tmp_path):
    """A resume asks If-Range: a mirror that now has another version sends it whole."""
    url = server.add("/f.tar.xz", Route(BODY, drop_after=200_000, drops=100))
    with pytest.raises(TinyukiError):
        fetch([url], tmp_path, retries=1)
    new_body = bytes(reversed(BODY))
    route = Route(new_body)
    server.add("/f.tar.xz", route)
    got = fetch([url], tmp_path)
    assert got.sha256 == sha(new_body)
    assert "If-Range" in route.requests[0]


def test_a_partial_file_without_validator_starts_over(server, tmp_path):
    url = server.add("/f.tar.xz", Route(BODY, drop_after=200_000, drops=100))
    with pytest.raises(TinyukiError):
        fetch([url], tmp_path, retries=1)
    for v in tmp_path.glob("*.validator"):
        v.unlink()
    route = Route(BODY)
    server.add("/f.tar.xz", route)
    assert fetch([url], tmp_path).sha256 == sha(BODY)
    assert "Range" not in route.requests[0]
