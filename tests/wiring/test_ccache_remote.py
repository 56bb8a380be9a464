"""The compile cache with the real doit tasks and the fake kernel, whose compiles are real gcc runs.

Local: a second build dir on the same cache dir compiles nothing itself, and
the image is the same with ccache on and off. Remote: a real redis-server on
127.0.0.1 is ccache's remote storage; a build on an empty local cache gets
every object from Redis, as a fresh CI runner or a colleague's machine would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers.daemons import free_port, running
from tests.helpers.doit import environ, run_dodo, variables
from tests.wiring.test_kernel_wiring import Build, make_build, unpack_fake_tree
from tinyuki.cache import compile as compilecache
from tinyuki.cache.compile import REPORT as COMPILE_CACHE_REPORT
from tinyuki.util.fs import read_json

SOURCES = 3  # the fake kernel's .c files

pytestmark = [
    pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed"),
    pytest.mark.skipif(shutil.which("ccache") is None, reason="ccache is not installed (scripts/setup.sh)"),
]


def redis_command(port: int, *words: str) -> bytes:
    """One RESP command to the test's Redis, the reply's first line."""
    body = f"*{len(words)}\r\n".encode() + b"".join(f"${len(w)}\r\n{w}\r\n".encode() for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(body)
        return s.recv(4096).split(b"\r\n", 1)[0]


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1: no persistence, its own dir, stopped at the end."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (Debian package redis-server, scripts/setup.sh)")
    port = free_port()
    workdir = tmp_path / "redis"
    workdir.mkdir()
    cmd = [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
           "--dir", str(workdir), "--daemonize", "no", "--protected-mode", "yes"]
    with running(cmd, workdir / "redis.log", lambda: redis_command(port, "PING") == b"+PONG"):
        yield f"redis://127.0.0.1:{port}"


def report(b: Build) -> dict:
    return read_json(b.build / "logs" / COMPILE_CACHE_REPORT)


def ccache_counters(b: Build) -> dict[str, int]:
    """What `ccache --print-stats` says about the build's own cache dir."""
    cache = b.top / "cache" / "ccache"
    env = {**os.environ, **compilecache.ccache_environ(cache, os.environ)}
    out = subprocess.run(["ccache", "--print-stats"], env=env, check=True, capture_output=True, text=True).stdout
    return compilecache.parse_print_stats(out)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (compilecache.ENV_SWITCH, compilecache.ENV_REMOTE, compilecache.ENV_HOSTS, "CCACHE_DIR",
                "CCACHE_REMOTE_STORAGE", "CCACHE_DISABLE", "CCACHE_RECACHE", "CCACHE_PREFIX"):
        monkeypatch.delenv(var, raising=False)


def test_second_build_dir_hits_the_local_cache_and_the_image_is_unchanged(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # the build dirs share one cache dir: the artifact cache would skip their compiles altogether
    monkeypatch.setenv("TINYUKI_ARTIFACT_CACHE", "off")
    tree = unpack_fake_tree(tmp_path / "src")
    one, two, plain = (make_build(tmp_path, tree, name) for name in ("one", "two", "plain"))
    for x in (one, two, plain):
        x.write_cpio(b"program")
    assert one.doit() == 0
    assert report(one)["misses"] == SOURCES and report(one)["hits"] == 0
    assert "'CC=ccache gcc'" in (one.build / "logs" / "kernel.log").read_text()

    assert two.doit() == 0
    assert two.steps_since(0)["compile"] == SOURCES  # make did run the compiles ...
    assert report(two)["hits"] == SOURCES and report(two)["misses"] == 0  # ... and ccache answered them all

    assert plain.doit("embed", "ccache=0") == 0
    assert "ccache" not in (plain.build / "logs" / "kernel.log").read_text()
    assert report(plain)["setup"].startswith("plain gcc")
    images = {(x.build / "bzImage").read_bytes() for x in (one, two, plain)}
    assert len(images) == 1, "ccache changed the bytes built"


def test_remote_storage_feeds_a_build_with_an_empty_local_cache(tmp_path: Path, redis: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Two machines in miniature: separate cache dirs (so separate local ccaches), one Redis."""
    port = int(redis.rsplit(":", 1)[1])
    tree = unpack_fake_tree(tmp_path / "src")
    first, second = make_build(tmp_path / "machine-a", tree), make_build(tmp_path / "machine-b", tree)
    for x in (first, second):
        x.write_cpio(b"program")

    monkeypatch.setenv(compilecache.ENV_REMOTE, redis)  # the environment route
    assert first.doit() == 0
    stats = ccache_counters(first)
    assert stats["cache_miss"] == SOURCES and stats["remote_storage_hit"] == 0
    assert stats["remote_storage_write"] >= SOURCES, stats
    keys = int(redis_command(port, "DBSIZE").lstrip(b":"))
    assert keys >= SOURCES, "nothing was stored in Redis"

    monkeypatch.delenv(compilecache.ENV_REMOTE)
    assert not (second.top / "cache" / "ccache").exists(), "the second machine must start with no local cache"
    assert second.doit("embed", f"ccache_remote={redis}") == 0  # the doit-variable route
    stats = ccache_counters(second)
    assert stats["remote_storage_hit"] == SOURCES, stats
    assert stats["cache_miss"] == 0 and stats["local_storage_hit"] == 0, stats
    assert report(second)["remote_hits"] == SOURCES
    assert (first.build / "bzImage").read_bytes() == (second.build / "bzImage").read_bytes()


def test_unreachable_remote_storage_still_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared cache that is down must cost speed only: ccache compiles locally and counts the error."""
    b = make_build(tmp_path, unpack_fake_tree(tmp_path / "src"))
    b.write_cpio(b"program")
    monkeypatch.setenv(compilecache.ENV_REMOTE, f"redis://127.0.0.1:{free_port()}|connect-timeout=200")
    assert b.doit() == 0
    stats = ccache_counters(b)
    assert stats["cache_miss"] == SOURCES and stats["remote_storage_error"] >= 1, stats


def test_remote_without_ccache_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = make_build(tmp_path, unpack_fake_tree(tmp_path / "src"))
    b.write_cpio(b"program")
    assert b.doit("embed", "ccache=0", "ccache_remote=redis://127.0.0.1:1") != 0
    out = capsys.readouterr()
    text = out.out + out.err + b.report
    assert "needs ccache, which is turned off" in text and "Traceback" not in text
    assert not (b.build / "kernel.json").exists()


def test_init_through_ccache_is_the_same_program_and_hits_the_second_time(tmp_path: Path, ref_tree: Path) -> None:
    """The init's compile-then-link (so ccache can cache it) gives the bytes of gcc's one-step build."""
    from tinyuki.tasks.init import compile_and_link, compile_command

    cmd = compile_command(libc="nolibc", sources=["init/init.c"], output=str(tmp_path / "one"),
                          marker="tinyuki: init started", tree=ref_tree, root=ROOT)
    env = {**os.environ, **compilecache.ccache_environ(tmp_path / "ccache", os.environ), "LC_ALL": "C"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    for n in (1, 2):
        objdir = tmp_path / f"objs{n}"
        objdir.mkdir()
        split = [x if x != str(tmp_path / "one") else str(tmp_path / f"split{n}") for x in cmd]
        compiles, link = compile_and_link(split, ["init/init.c"], objdir, ["ccache"])
        for step in [*compiles, link]:
            subprocess.run(step, cwd=ROOT, env=env, check=True)
        assert (tmp_path / f"split{n}").read_bytes() == (tmp_path / "one").read_bytes()
    out = subprocess.run(["ccache", "--print-stats"], env=env, check=True, capture_output=True, text=True).stdout
    s = compilecache.summarize(compilecache.parse_print_stats(out))
    assert (s.hits, s.misses) == (1, 1)


def test_doit_stats_shows_both_caches(tmp_path: Path) -> None:
    b = make_build(tmp_path, unpack_fake_tree(tmp_path / "src"))
    b.write_cpio(b"program")
    assert b.doit() == 0
    proc = run_dodo("stats", *variables(profile=b.profile, build_dir=b.build, cache_dir=b.top / "cache"),
                    env=environ("TINYUKI_*", "CCACHE_*"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ")}
    assert rows["compile (ccache)"][3:5] == ["0 (local 0, remote 0)", str(SOURCES)], out
    assert rows["last kernel build"][4] == str(SOURCES), out  # this build's misses
    artifacts = rows["artifacts"]
    assert int(artifacts[1]) >= 3 and artifacts[4] == "3", out  # configure, kernel and embed were built and stored
