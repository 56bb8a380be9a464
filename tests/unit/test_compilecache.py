"""The compile cache's pure parts: settings, the make and env it produces, distcc slots, ccache's statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyuki.cache import compile as cc
from tinyuki.errors import TinyukiError
from tinyuki.tasks.init import compile_and_link
from tinyuki.toolchain.kbuild import make_cmd
from tinyuki.util import flags, runner
from tinyuki.util.fmt import human_size
from tinyuki.util.fmt import markdown_table as render_table

CACHE = Path("/srv/cache")
VERSION = ("ccache version 4.7.5\nFeatures: file-storage http-storage redis+unix-storage redis-storage\n\n"
           "Copyright (C) 2002-2007 Andrew Tridgell\n")


def which_all(name: str) -> str | None:
    return f"/usr/bin/{name}"


def which_none(name: str) -> str | None:
    return None


def resolve(req: cc.Request, which=which_all) -> cc.CompileSetup:  # type: ignore[no-untyped-def]
    return cc.resolve(req, CACHE, which=which, version=lambda exe: VERSION)


# ---------------------------------------------------------------- what the user asked

@pytest.mark.parametrize(("value", "want"), [("1", "on"), ("yes", "on"), ("0", "off"), ("Off", "off"),
                                             ("auto", "auto"), (" AUTO ", "auto"), ("", "auto")])
def test_switch_values(value: str, want: str) -> None:
    assert cc.parse_switch(value, "ccache") == want


@pytest.mark.parametrize("value", [*flags.YES, *flags.NO])
def test_switch_takes_every_word_the_other_switches_take(value: str) -> None:
    """One parser: whatever uki= or accept= accepts, ccache= accepts with the same meaning."""
    assert cc.parse_switch(value, "ccache") == ("on" if flags.yes_no(value, "uki") else "off")


def test_bad_switch_names_the_variable() -> None:
    with pytest.raises(TinyukiError, match=r"TINYUKI_CCACHE='maybe' is not a yes/no/auto value") as e:
        cc.request_from({}, {"TINYUKI_CCACHE": "maybe"})
    assert "TINYUKI_CCACHE=1 to force ccache" in (e.value.hint or "")


def test_ccache_queries_have_a_timeout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`ccache --print-stats` goes through the runner with a timeout; a hung or failing one means no counters."""
    calls: list[dict[str, object]] = []

    def fake_output(cmd: list[str], **kw: object) -> str:
        calls.append({"cmd": cmd, **kw})
        raise runner.TimedOut("ccache did not finish")

    monkeypatch.setattr(cc, "output", fake_output)
    setup = cc.CompileSetup(directory=tmp_path, ccache="/usr/bin/ccache")
    assert cc.read_counters(setup, environ={}) is None
    assert calls[0]["cmd"] == ["/usr/bin/ccache", "--print-stats"]
    assert calls[0]["timeout"] == cc.CCACHE_QUERY_TIMEOUT
    assert cc.read_counters(cc.CompileSetup(directory=tmp_path), environ={}) is None and len(calls) == 1


def test_doit_variables_win_over_the_environment() -> None:
    env = {"TINYUKI_CCACHE": "0", "TINYUKI_CCACHE_REMOTE": "redis://env:6379", "TINYUKI_DISTCC_HOSTS": "a/2"}
    req = cc.request_from({"ccache": "1", "ccache_remote": "http://var/cache", "distcc_hosts": None}, env)
    assert req == cc.Request(ccache="on", remote="http://var/cache", distcc_hosts="a/2")
    assert cc.request_from({"ccache": "  "}, {}) == cc.Request()  # empty is unset: the default, auto


# ---------------------------------------------------------------- resolving against what is installed

def test_auto_uses_ccache_when_installed_and_plain_gcc_otherwise() -> None:
    on = resolve(cc.Request())
    assert on.ccache == "/usr/bin/ccache" and on.make_vars() == ["CC=ccache gcc"]
    off = resolve(cc.Request(), which=which_none)
    assert off.ccache is None and off.make_vars() == [] and off.environ({"PATH": "/bin"}) == {"PATH": "/bin"}
    assert resolve(cc.Request(ccache="off")).make_vars() == []


def test_forced_ccache_that_is_missing_fails_with_a_hint() -> None:
    with pytest.raises(TinyukiError, match="ccache is not installed") as e:
        resolve(cc.Request(ccache="on"), which=which_none)
    assert "ccache=0" in (e.value.hint or "")


def test_remote_needs_ccache_and_a_backend_this_ccache_has() -> None:
    with pytest.raises(TinyukiError, match="needs ccache, which is turned off"):
        resolve(cc.Request(ccache="off", remote="redis://h:6379"))
    with pytest.raises(TinyukiError, match="cannot use ftp:// remote storage"):
        resolve(cc.Request(remote="ftp://h/x"))
    with pytest.raises(TinyukiError, match="is not a URL"):
        resolve(cc.Request(remote="h:6379"))


def test_remote_backend_missing_from_an_old_ccache() -> None:
    with pytest.raises(TinyukiError, match=r"(?s)cannot use redis:// .* it supports: file-storage"):
        cc.resolve(cc.Request(remote="redis://h"), CACHE, which=which_all,
                   version=lambda exe: "ccache version 4.2\nFeatures: file-storage\n")


def test_environment_keeps_objects_identical_and_hits_across_dirs() -> None:
    setup = resolve(cc.Request(remote="redis://cache.lan:6379|connect-timeout=500"))
    env = setup.environ({"PATH": "/bin", "CCACHE_BASEDIR": "/home", "CCACHE_SLOPPINESS": "time_macros"})
    assert env["CCACHE_DIR"] == "/srv/cache/ccache"
    assert env["CCACHE_NOHASHDIR"] == "1" and env["CCACHE_COMPILERCHECK"] == "content"
    # base_dir would rewrite paths on gcc's command line and sloppiness trades exactness: both forced empty
    assert env["CCACHE_BASEDIR"] == "" and env["CCACHE_SLOPPINESS"] == ""
    assert env["CCACHE_REMOTE_STORAGE"] == "redis://cache.lan:6379|connect-timeout=500"
    assert env["CCACHE_MAXSIZE"] == cc.DEFAULT_MAX_SIZE and env["PATH"] == "/bin"
    assert "CCACHE_PREFIX" not in env and "DISTCC_HOSTS" not in env
    assert setup.environ({"CCACHE_MAXSIZE": "20G"})["CCACHE_MAXSIZE"] == "20G"


def test_distcc_alone_and_behind_ccache() -> None:
    alone = resolve(cc.Request(ccache="off", distcc_hosts="hostA/4 hostB/8"))
    assert alone.make_vars() == ["CC=distcc gcc"] and alone.jobs(2) == 12
    env = alone.environ({})
    assert env["DISTCC_HOSTS"] == "hostA/4 hostB/8" and "CCACHE_DIR" not in env

    both = resolve(cc.Request(distcc_hosts="hostA/4 hostB/8"))
    assert both.make_vars() == ["CC=ccache gcc"] and both.jobs(2) == 12
    env = both.environ({})
    assert env["CCACHE_PREFIX"] == "distcc" and env["DISTCC_HOSTS"] == "hostA/4 hostB/8"
    assert "distcc on hostA/4 hostB/8 (12 slots)" in both.describe()
    assert resolve(cc.Request()).jobs(2) == 2


def test_distcc_missing_fails() -> None:
    with pytest.raises(TinyukiError, match="distcc is not installed"):
        resolve(cc.Request(distcc_hosts="a/2"), which=lambda n: "/usr/bin/ccache" if n == "ccache" else None)


@pytest.mark.parametrize(("hosts", "slots"), [
    ("hostA/4 hostB/8", 12),
    ("hostA hostB", 8),  # distcc's default: four per host
    ("localhost 10.0.0.2/6", 8),  # two for localhost
    ("--randomize build1:3632/5,lzo @build2/3", 8),
    ("127.0.0.1:36321/3", 3),
    ("user@farm/16,lzo,cpp", 16),
])
def test_distcc_slots(hosts: str, slots: int) -> None:
    assert cc.distcc_slots(hosts) == slots


@pytest.mark.parametrize(("hosts", "message"), [
    ("buildhost/many", "limit 'many', not a positive number"),
    ("buildhost/0", "not a positive number"),
    ("+zeroconf", "only known at run time"),
    ("--randomize", "names no host"),
])
def test_bad_distcc_hosts(hosts: str, message: str) -> None:
    with pytest.raises(TinyukiError, match=message):
        cc.distcc_slots(hosts)


def test_make_vars_reach_the_make_command_line_before_the_targets() -> None:
    cmd = make_cmd(Path("/t"), Path("/o"), "bzImage", jobs=12, make_vars=["CC=ccache gcc"])
    assert cmd == ["make", "-C", "/t", "O=/o", "-j12", "CC=ccache gcc", "bzImage"]


# ---------------------------------------------------------------- statistics

STATS_A = "cache_miss\t400\ndirect_cache_hit\t3\nlocal_storage_hit\t3\ncalled_for_link\t2\nstats_zeroed_timestamp\t0\n"
STATS_B = ("cache_miss\t401\ndirect_cache_hit\t350\npreprocessed_cache_hit\t40\nlocal_storage_hit\t360\n"
           "remote_storage_hit\t30\nremote_storage_miss\t1\ncalled_for_link\t4\nstats_zeroed_timestamp\t1700000000\n"
           "garbage line\n")


def test_parse_and_delta_of_print_stats() -> None:
    a, b = cc.parse_print_stats(STATS_A), cc.parse_print_stats(STATS_B)
    assert a["cache_miss"] == 400 and "garbage line" not in b
    d = cc.delta(a, b)
    assert d["cache_miss"] == 1 and d["direct_cache_hit"] == 347 and d["remote_storage_hit"] == 30
    assert "stats_zeroed_timestamp" not in d
    s = cc.summarize(d)
    assert (s.hits, s.misses, s.local_hits, s.remote_hits, s.uncacheable) == (387, 1, 357, 30, 2)
    assert s.cacheable == 388 and s.hit_rate == pytest.approx(387 / 388)
    assert s.line() == "387 hits / 388 cacheable calls (99.7 %), 357 local and 30 remote hits"


def test_summary_of_nothing() -> None:
    s = cc.summarize({})
    assert s.hit_rate is None and s.line() == "0 hits / 0 cacheable calls (n/a)"


def test_features_from_version_text() -> None:
    assert cc.ccache_features(VERSION) == {"file-storage", "http-storage", "redis+unix-storage", "redis-storage"}
    assert cc.ccache_features("ccache version 3.7\n") == set()
    assert cc.remote_schemes("redis://a:1|read-only=true http://b/c") == ["redis", "http"]


def test_stats_table_is_aligned_markdown() -> None:
    text = render_table(["cache", "hits"], [["artifacts", "n/a"], ["compile (ccache)", "12"]])
    lines = text.splitlines()
    assert lines[0] == "| cache            | hits |"
    assert lines[1] == "|------------------|------|"
    assert lines[3] == "| compile (ccache) | 12   |"
    assert {len(x) for x in lines} == {len(lines[0])}
    assert human_size(0) == "0 B" and human_size(1536) == "1.5 KiB" and human_size(3 * 1024**3) == "3.0 GiB"


def test_init_compile_is_split_so_ccache_can_cache_it() -> None:
    cmd = ["gcc", "-static", "-Os", "-Wl,--gc-sections", "-DM=\"x\"", "-o", "/b/init", "init/a.c", "init/b.c", "-lgcc"]
    compiles, link = compile_and_link(cmd, ["init/a.c", "init/b.c"], Path("/tmp/o"), ["ccache"])
    assert compiles == [
        ["ccache", "gcc", "-static", "-Os", "-Wl,--gc-sections", "-DM=\"x\"", "-c", "-o", "/tmp/o/0-a.o", "init/a.c"],
        ["ccache", "gcc", "-static", "-Os", "-Wl,--gc-sections", "-DM=\"x\"", "-c", "-o", "/tmp/o/1-b.o", "init/b.c"],
    ]
    assert link == ["gcc", "-static", "-Os", "-Wl,--gc-sections", "-DM=\"x\"", "-o", "/b/init",
                    "/tmp/o/0-a.o", "/tmp/o/1-b.o", "-lgcc"]
