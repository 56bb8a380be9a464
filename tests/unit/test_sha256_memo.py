"""A file hashed once in a process is not read again until it changes (fs.sha256_file)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tinyuki.util import fs


class CountingSha256:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = hashlib.sha256

        def counting(*a: object) -> object:
            self.calls += 1
            return real(*a)

        monkeypatch.setattr(fs.hashlib, "sha256", counting)


def test_a_settled_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs, "SETTLED_NS", -1)
    want = hashlib.sha256(b"x" * 3_000_000).hexdigest()
    counting = CountingSha256(monkeypatch)
    f = tmp_path / "vmlinux"
    f.write_bytes(b"x" * 3_000_000)
    assert fs.sha256_file(f) == fs.sha256_file(str(f)) == want
    assert counting.calls == 1


def test_a_replaced_or_rewritten_file_is_hashed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs, "SETTLED_NS", -1)
    f = tmp_path / "uki"
    fs.atomic_write(f, b"a" * 4096)
    assert fs.sha256_file(f) == hashlib.sha256(b"a" * 4096).hexdigest()
    fs.atomic_write(f, b"b" * 4096)  # a new inode
    assert fs.sha256_file(f) == hashlib.sha256(b"b" * 4096).hexdigest()
    with open(f, "r+b") as w:  # in place, same size: its ctime moves
        os.utime(f, ns=(0, 0))
        w.write(b"c" * 4096)
    os.utime(f, ns=(0, 0))
    assert fs.sha256_file(f) == hashlib.sha256(b"c" * 4096).hexdigest()


def test_a_file_rewritten_at_once_is_never_served_from_memory(tmp_path: Path) -> None:
    """Written, hashed and rewritten within one tick of the file clock: same size, maybe the same times."""
    f = tmp_path / "init"
    for i in range(200):
        data = bytes([i % 256]) * 512
        with open(f, "wb") as w:
            w.write(data)
        assert fs.sha256_file(f) == hashlib.sha256(data).hexdigest()
