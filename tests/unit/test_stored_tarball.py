"""The verified store is never trusted by a file's name: what is extracted is what was verified.

cache/sha256/<sha> can be replaced by anyone who can write the cache; verify
re-checks a stored copy it did not write itself, and extract hashes the bytes
it unpacks and refuses (and removes) a file that does not have its name's hash.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.helpers import tarballs
from tests.helpers.profiles import context
from tinyuki.errors import TinyukiError
from tinyuki.records import Verified
from tinyuki.tasks import extract as extract_stage
from tinyuki.tasks import fetch as fetch_stage
from tinyuki.tasks import verify as verify_stage

GOOD = tarballs.tar_bytes()
EVIL = tarballs.tar_bytes(files={**tarballs.FILES, "Makefile": b"all:\n\techo owned\n"})
SHA = hashlib.sha256(GOOD).hexdigest()


def plant(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        os.chmod(path, 0o644)
    path.write_bytes(data)


@pytest.fixture
def ctx(tmp_path):
    src = tarballs.write(tmp_path / "src" / "linux-9.9.tar.xz", GOOD)
    return context(tmp_path, {"urls": [str(src)], "sha256": SHA})


def test_verify_replaces_a_stored_copy_that_does_not_hold_its_name(ctx):
    plant(ctx.paths.stored(SHA), EVIL)  # planted before the first verify
    fetch_stage.fetch(ctx)
    verify_stage.verify(ctx)
    assert ctx.paths.stored(SHA).read_bytes() == GOOD


def test_extract_refuses_and_removes_a_stored_tarball_swapped_after_verify(ctx):
    fetch_stage.fetch(ctx)
    verify_stage.verify(ctx)
    plant(ctx.paths.stored(SHA), EVIL)  # swapped between verify and extract
    with pytest.raises(TinyukiError) as e:
        extract_stage.extract(ctx)
    assert "does not hold the bytes that were verified" in e.value.message
    assert SHA in e.value.message and "fetch and verify" in (e.value.hint or "")
    assert not ctx.paths.stored(SHA).exists()
    assert not extract_stage.tree_for(ctx, SHA).exists()
    assert [p.name for p in ctx.paths.trees.iterdir()] == [] if ctx.paths.trees.exists() else True


def test_extract_of_the_verified_bytes_records_the_tree(ctx):
    fetch_stage.fetch(ctx)
    verify_stage.verify(ctx)
    extract_stage.extract(ctx)
    tree = extract_stage.tree_for(ctx, SHA)
    assert (tree / "Makefile").read_bytes() == tarballs.FILES["Makefile"]
    assert Verified.load(ctx.paths.build).sha256 == SHA
