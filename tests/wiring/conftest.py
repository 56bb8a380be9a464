"""Fixtures the wiring tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import fakekernel


@pytest.fixture(scope="module")
def fake_tarball(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The fake kernel tree as a tarball, and its sha256: one per test module."""
    return fakekernel.tarball(tmp_path_factory.mktemp("src"))
