"""Staleness by content: the sha256 checker ignores touches and catches same-size edits."""

from __future__ import annotations

import os
from pathlib import Path

from tinyuki.cli.checkers import Sha256Checker
from tinyuki.util.fs import sha256_file


def test_touch_without_change_is_not_modified(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"hello")
    c = Sha256Checker()
    state = c.get_state(str(f), None)
    os.utime(f, (1, 1))
    assert not c.check_modified(str(f), os.stat(f), state)


def test_same_size_edit_is_modified(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"hello")
    c = Sha256Checker()
    state = c.get_state(str(f), None)
    f.write_bytes(b"jello")
    os.utime(f, (5, 5))
    assert c.check_modified(str(f), os.stat(f), state)


def test_unchanged_stat_skips_hashing(tmp_path: Path, monkeypatch) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"hello")
    c = Sha256Checker()
    state = c.get_state(str(f), None)
    assert state[2] == sha256_file(f)

    def boom(_p: object) -> str:
        raise AssertionError("hashed an unchanged file")

    monkeypatch.setattr("tinyuki.cli.checkers.sha256_file", boom)
    assert c.get_state(str(f), state) is None
    assert not c.check_modified(str(f), os.stat(f), state)


def test_state_from_another_checker_counts_as_modified(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"x")
    assert Sha256Checker().check_modified(str(f), os.stat(f), 12345.0)
