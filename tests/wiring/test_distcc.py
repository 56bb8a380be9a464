"""distcc with the real doit tasks: the fake kernel's real gcc compiles go to a real distccd on 127.0.0.1.

distcc silently compiles locally when a host is unusable, so the proof that
the compiles were distributed is the server's own log (one COMPILE_OK line
per job), never the build's success.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.daemons import can_connect, free_port, running
from tests.wiring.test_kernel_wiring import make_build, unpack_fake_tree
from tinyuki.cache import compile as compilecache
from tinyuki.cache.compile import REPORT as COMPILE_CACHE_REPORT
from tinyuki.util.fs import read_json

SOURCES = 3
SLOTS = 3

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@dataclass
class Distccd:
    port: int
    log: Path

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}/{SLOTS}"

    def jobs(self) -> list[str]:
        """The source files of every job the server compiled successfully."""
        return re.findall(r"COMPILE_OK .* (\S+\.c)$", self.log.read_text(), flags=re.M)


@pytest.fixture
def distccd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Distccd]:
    """A distccd on 127.0.0.1 logging every job; as root it must drop to another user (nobody)."""
    exe = shutil.which("distccd")
    if exe is None or shutil.which("distcc") is None:
        pytest.skip("distcc/distccd are not installed (Debian package distcc, scripts/setup.sh)")
    port = free_port()
    log = tmp_path / "distccd.log"
    cmd = [exe, "--daemon", "--no-detach", "--listen", "127.0.0.1", "--port", str(port), "--allow", "127.0.0.1",
           "--jobs", str(SLOTS), "--log-stderr", "--log-level", "info"]
    if os.geteuid() == 0:
        cmd += ["--user", "nobody"]
    with running(cmd, log, lambda: can_connect(port)):
        # the client's own state (locks, host backoff) must not leak between tests
        state = tmp_path / "distcc-client"
        state.mkdir()
        monkeypatch.setenv("DISTCC_DIR", str(state))
        for var in (compilecache.ENV_SWITCH, compilecache.ENV_REMOTE, compilecache.ENV_HOSTS, "CCACHE_PREFIX",
                    "DISTCC_HOSTS", "CCACHE_DISABLE"):
            monkeypatch.delenv(var, raising=False)
        yield Distccd(port, log)


def test_kernel_compiles_go_through_distccd(tmp_path: Path, distccd: Distccd,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    tree = unpack_fake_tree(tmp_path / "src")
    monkeypatch.setenv("TINYUKI_ARTIFACT_CACHE", "off")  # both builds must compile
    b, local = make_build(tmp_path, tree, "distributed"), make_build(tmp_path, tree, "local")
    for x in (b, local):
        x.write_cpio(b"program")
    monkeypatch.setenv(compilecache.ENV_HOSTS, distccd.hosts)
    assert b.doit("embed", "ccache=0") == 0
    assert sorted(Path(j).name for j in distccd.jobs()) == ["fork.c", "main.c", "virtio_blk.c"], \
        distccd.log.read_text()[-3000:]
    make_line = (b.build / "logs" / "kernel.log").read_text().splitlines()[0]
    assert f" -j{SLOTS} 'CC=distcc gcc' " in make_line, make_line

    monkeypatch.delenv(compilecache.ENV_HOSTS)
    assert local.doit("embed", "ccache=0") == 0
    assert len(distccd.jobs()) == SOURCES, "a build without distcc_hosts used distcc"
    assert (b.build / "bzImage").read_bytes() == (local.build / "bzImage").read_bytes()


def test_ccache_in_front_of_distcc_sends_only_misses(tmp_path: Path, distccd: Distccd,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # the build dirs share one cache dir: the artifact cache would skip their compiles altogether
    monkeypatch.setenv("TINYUKI_ARTIFACT_CACHE", "off")
    if shutil.which("ccache") is None:
        pytest.skip("ccache is not installed (scripts/setup.sh)")
    tree = unpack_fake_tree(tmp_path / "src")
    one, two = make_build(tmp_path, tree, "one"), make_build(tmp_path, tree, "two")
    for x in (one, two):
        x.write_cpio(b"program")
    assert one.doit("embed", f"distcc_hosts={distccd.hosts}") == 0
    assert len(distccd.jobs()) == SOURCES, distccd.log.read_text()[-3000:]
    assert "'CC=ccache gcc'" in (one.build / "logs" / "kernel.log").read_text()  # CCACHE_PREFIX=distcc does the rest
    assert read_json(one.build / "logs" / COMPILE_CACHE_REPORT)["misses"] == SOURCES

    assert two.doit("embed", f"distcc_hosts={distccd.hosts}") == 0
    assert read_json(two.build / "logs" / COMPILE_CACHE_REPORT)["hits"] == SOURCES
    assert len(distccd.jobs()) == SOURCES, "cache hits were sent to distccd"
    assert (one.build / "bzImage").read_bytes() == (two.build / "bzImage").read_bytes()


def test_bad_host_list_fails_before_building(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(compilecache.ENV_HOSTS, raising=False)
    b = make_build(tmp_path, unpack_fake_tree(tmp_path / "src"))
    b.write_cpio(b"program")
    assert b.doit("embed", "distcc_hosts=buildhost/many") != 0
    out = capsys.readouterr()
    text = out.out + out.err + b.report
    assert "limit 'many', not a positive number" in text and "Traceback" not in text
    assert not (b.build / "kernel.json").exists()
