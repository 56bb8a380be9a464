"""Remote compile-cache credentials never reach the console, the logs or the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tinyuki.cache import compile as compilecache
from tinyuki.errors import TinyukiError

SECRETS = ("s3cret", "hunter2", "tok123")
REMOTE = ("redis://:s3cret@cache.example:6379|connect-timeout=500 "
          "http://bob:hunter2@cache.example/ccache|bearer-token=tok123")


def clean(text: str) -> None:
    assert not any(s in text for s in SECRETS), text


def test_describe_redacts_the_remote_storage_credentials(tmp_path):
    setup = compilecache.CompileSetup(directory=tmp_path, ccache="ccache", remote=REMOTE)
    text = setup.describe()
    clean(text)
    assert "cache.example:6379" in text and "connect-timeout=500" in text
    assert setup.environ({})["CCACHE_REMOTE_STORAGE"] == REMOTE  # ccache itself still gets them


def test_the_json_report_has_no_credentials(tmp_path, monkeypatch):
    setup = compilecache.CompileSetup(directory=tmp_path, ccache="ccache", remote=REMOTE)
    monkeypatch.setattr(compilecache, "read_counters", lambda *a, **k: {"direct_cache_hit": 3})
    report = tmp_path / "kernel-compilecache.json"
    compilecache.report(setup, {}, report, 1.0)
    text = report.read_text()
    clean(text)
    assert "cache.example" in json.loads(text)["setup"]


def test_errors_about_the_remote_storage_have_no_credentials(tmp_path):
    request = compilecache.Request(ccache="auto", remote=REMOTE)
    with pytest.raises(TinyukiError) as e:
        compilecache.resolve(request, tmp_path, which=lambda _name: None)
    clean(e.value.render())


@pytest.mark.parametrize("url,shown", [
    ("redis://:pw@h:6379", "redis://***@h:6379"),
    ("redis://user:pw@h", "redis://***@h"),
    ("redis://h:6379|connect-timeout=500", "redis://h:6379|connect-timeout=500"),
    ("http://h/x|bearer-token=abc|keep=1", "http://h/x|bearer-token=***|keep=1"),
    ("file:///var/cache/ccache", "file:///var/cache/ccache"),
])
def test_redact(url, shown):
    assert compilecache.redact(url) == shown


def test_the_kernel_stage_prints_the_redacted_setup():
    source = (Path(__file__).resolve().parents[2] / "tinyuki" / "tasks" / "kernel.py").read_text()
    assert "compiling.describe()" in source  # the line printed is describe(): redacted above


def test_doit_stats_shows_the_redacted_remote(tmp_path, monkeypatch):
    from tinyuki.cli import stats

    setup = compilecache.CompileSetup(directory=tmp_path, ccache="ccache", remote=REMOTE)
    monkeypatch.setattr(compilecache, "read_counters", lambda *a, **k: {"direct_cache_hit": 3})
    rows = stats.compile_rows(setup, tmp_path / "none.json")
    clean(repr(rows))
    assert "cache.example" in repr(rows)
