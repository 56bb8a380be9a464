"""The real kernel tarball extracts safely with the interpreter running the tests (Debian 12's 3.11.2 too).

scripts/test.sh runs this file under both venvs: the extractor must not need
anything a later Python 3.11 added, and it hashes what it unpacks.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tinyuki.formats import safetar
from tinyuki.util.fs import sha256_file

TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")


@pytest.mark.skipif(not TARBALL.exists(), reason=f"{TARBALL} missing: scripts/setup.sh installs linux-source-6.1")
def test_the_real_tarball_extracts_and_is_hashed_as_it_goes(tmp_path: Path) -> None:
    sha = sha256_file(TARBALL)
    dest = tmp_path / "tree"
    n = safetar.extract(TARBALL, dest, expect_sha256=sha)
    assert n > 70_000
    assert (dest / "Makefile").read_text().startswith("# SPDX-License-Identifier: GPL-2.0")
    assert (dest / "tools" / "include" / "nolibc" / "nolibc.h").is_file()
    assert (dest / "scripts" / "setlocalversion").stat().st_mode & 0o111
    links = [p for p in (dest / "arch").rglob("*") if p.is_symlink()]
    assert links and all(p.resolve().is_relative_to(dest.resolve()) for p in links)
    assert hashlib.sha256(b"").hexdigest() != sha
