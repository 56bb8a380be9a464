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


DEBIAN_TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
# The parts of a kernel tree the fast tests need: nolibc for the init program,
# gen_init_cpio to compare our cpio writer with, merge_config.sh for fragments.
REF_MEMBERS = ("tools/include/nolibc", "usr/gen_init_cpio.c", "scripts/kconfig/merge_config.sh")


@pytest.fixture(scope="session")
def ref_tree() -> Path:
    """A partial kernel tree (nolibc, gen_init_cpio.c, merge_config.sh) from Debian's tarball.

    Unpacked once per tarball version into cache/test-ref-tree/ and reused, so
    the unit tests stay fast after the first run; the unpack is atomic.
    """
    import os
    import shutil
    import subprocess
    import tempfile

    if not DEBIAN_TARBALL.exists():
        pytest.skip(f"{DEBIAN_TARBALL} missing: scripts/setup.sh installs linux-source-6.1")
    st = DEBIAN_TARBALL.stat()
    dest = ROOT / "cache" / "test-ref-tree" / f"{st.st_size}-{int(st.st_mtime)}"
    if not (dest / "tools" / "include" / "nolibc" / "nolibc.h").is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".unpack-"))
        top = "linux-source-6.1"
        subprocess.run(
            ["tar", "-xJf", str(DEBIAN_TARBALL), "-C", str(tmp), "--strip-components=1",
             *[f"{top}/{m}" for m in REF_MEMBERS]],
            check=True,
        )
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    return dest
