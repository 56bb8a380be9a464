"""One config option changed after a real build: the artifact cache misses, ccache does not.

The session's real build (tests/e2e/conftest.py) filled the compile cache of
its cache dir. A fresh build dir with CONFIG_PRINTK_TIME turned off reruns
configure and the kernel stage, and only the few objects that depend on that
option may be compiled again: ccache's own counters for that build say so.
One extra warm build, about a minute, on top of the shared cold one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import TARBALL, doit
from tinyuki.util.fs import read_json

REPORT = Path("logs") / "kernel-compilecache.json"

pytestmark = [
    pytest.mark.skipif(not TARBALL.exists(), reason=f"{TARBALL} missing: scripts/setup.sh installs linux-source-6.1"),
    pytest.mark.skipif(shutil.which("ccache") is None, reason="ccache is not installed (scripts/setup.sh)"),
]


def test_one_option_change_rebuilds_mostly_from_ccache(build: dict[str, Path]) -> None:
    cold = read_json(build["build"] / REPORT)
    assert cold["setup"].startswith("ccache in"), cold["setup"]
    assert cold["misses"] > 300, f"the cold build was expected to fill the cache: {cold}"

    fragment = build["top"] / "printk-time-off.config"
    fragment.write_text("# CONFIG_PRINTK_TIME is not set\n")
    profile = build["top"] / "one-option.toml"
    text = build["profile"].read_text()
    head, sep, rest = text.partition("fragments = [")
    assert sep, "the e2e profile has no fragments list"
    listed, close, after = rest.partition("]")
    profile.write_text(f'{head}{sep}{listed}, "{fragment}"{close}{after}')
    warm = dict(build, profile=profile, build=build["top"] / "one-option")
    out = doit(warm, ["kernel"])
    assert "kernel: compiling with ccache" in out, out[-3000:]

    config = (warm["build"] / "kernel.config").read_text()
    assert "# CONFIG_PRINTK_TIME is not set" in config
    report = read_json(warm["build"] / REPORT)
    cacheable = report["hits"] + report["misses"]
    assert cacheable > 300, report
    assert report["hits"] / cacheable > 0.9, f"only {report['hits']}/{cacheable} ccache hits: {report}"
    assert report["misses"] >= 1, "the changed option must recompile what uses it"
