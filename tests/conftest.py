"""Shared test fixtures. Layers are pytest markers: unit, wiring, e2e (see README)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT / "tests" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test carries its layer as the directory it lives in: tests/unit, tests/wiring, tests/e2e."""
    for item in items:
        layer = Path(str(item.fspath)).parent.name
        if layer in ("unit", "wiring", "e2e"):
            item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture
def root() -> Path:
    return ROOT
