"""A blob already in the store is reused only if it holds the right bytes, not merely the right size."""

from __future__ import annotations

import os

from tinyuki.cache.store import Store


def test_a_damaged_blob_of_the_same_size_is_replaced_when_stored_again(tmp_path):
    store = Store(tmp_path / "artifacts")
    sha, size = store.put_bytes(b"A" * 1000)
    blob = store.blob(sha)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"B" * 1000)  # same size, other bytes: a flipped disk block, or a hostile writer
    assert store.put_bytes(b"A" * 1000) == (sha, size)
    assert blob.read_bytes() == b"A" * 1000


def test_a_good_blob_is_reused_not_rewritten(tmp_path):
    store = Store(tmp_path / "artifacts")
    sha, _ = store.put_bytes(b"A" * 1000)
    inode = store.blob(sha).stat().st_ino
    store.put_bytes(b"A" * 1000)
    assert store.blob(sha).stat().st_ino == inode
