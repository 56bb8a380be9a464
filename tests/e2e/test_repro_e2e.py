"""`doit repro` on the real kernel: two builds in different surroundings, bit for bit the same.

Reuses the session's verified source and extracted tree (same cache dir), so
the cost is the two kernel builds: A compiles everything without any cache, B
may take objects from the compile cache the session build filled, so the
check also proves ccache cannot change the output.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import TARBALL, doit
from tinyuki.util.fs import read_json

pytestmark = pytest.mark.skipif(not TARBALL.exists(), reason=f"{TARBALL} missing: scripts/setup.sh installs it")


def test_real_repro_passes(build: dict[str, Path]) -> None:
    repro_dir = build["top"] / "repro"
    out = doit(build, ["repro", f"repro_dir={repro_dir}"], timeout=3600)
    assert "reproducible: all 8 artifacts are bit-identical" in out, out[-4000:]  # tinyuki.img included
    a = read_json(repro_dir / "a" / "manifest.json")["artifacts"]
    b = read_json(repro_dir / "b-with-a-much-longer-path" / "second-build" / "manifest.json")["artifacts"]
    assert a == b and "disk" in a
    # and both equal the session's own build, made in yet another directory
    session = read_json(build["build"] / "manifest.json")["artifacts"]
    assert {k: v["sha256"] for k, v in a.items()} == {k: v["sha256"] for k, v in session.items()}
