"""The private keyring leaves nothing running, and a checksum list cannot vouch for two hashes of one file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.daemons import processes
from tinyuki.errors import TinyukiError
from tinyuki.source import gpg

ROOT = Path(__file__).resolve().parents[2]
A = "a" * 64
B = "b" * 64


def agents_for(home: Path) -> list[int]:
    """gpg-agent (or keyboxd, dirmngr) processes started for `home`, found by their command line."""
    return [pid for pid, argv, zombie in processes() if not zombie and str(home) in argv]


def test_the_private_keyring_stops_its_gpg_agent(tmp_path):
    """gpg starts an agent for a fresh home on import; nothing of a discarded keyring may keep running."""
    with gpg.keyring([ROOT / "configs" / "keys" / "gregkh.asc"]) as ring:
        home = ring.home
        ring.gpg.list_keys()
    assert not home.exists()
    assert agents_for(home) == []


def test_a_keyring_whose_import_fails_stops_its_agent_too(tmp_path, monkeypatch):
    bad = tmp_path / "nokey.asc"
    bad.write_text("not a key\n")
    homes: list[Path] = []
    real_init = gpg.Keyring.__init__

    def spy(self, home):
        homes.append(home)
        real_init(self, home)

    monkeypatch.setattr(gpg.Keyring, "__init__", spy)
    with pytest.raises(TinyukiError), gpg.keyring([ROOT / "configs" / "keys" / "gregkh.asc", bad]):
        pass  # pragma: no cover - the import of `bad` fails first
    assert len(homes) == 1 and not homes[0].exists()
    assert agents_for(homes[0]) == []


def test_sha256sums_listing_one_file_twice_with_different_hashes_is_refused():
    text = f"{A}  linux-9.9.tar.xz\n{B}  linux-9.9.tar.xz\n"
    with pytest.raises(TinyukiError) as e:
        gpg.parse_sha256sums(text, "linux-9.9.tar.xz")
    assert "twice" in e.value.message and A in e.value.message and B in e.value.message


def test_sha256sums_listing_one_file_twice_with_the_same_hash_is_fine():
    text = f"{A}  linux-9.9.tar.xz\n{A} *linux-9.9.tar.xz\n{B}  other.tar.xz\n"
    assert gpg.parse_sha256sums(text, "linux-9.9.tar.xz") == A
    assert gpg.parse_sha256sums(text, "missing.tar.xz") is None
