"""The fake kernel tree (tests/fakekernel) as the pipeline meets it: a kernel.org-like tarball."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.helpers import tarballs

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "fakekernel"


def tarball(directory: Path, top: str = "linux-9.9") -> tuple[Path, str]:
    """tests/fakekernel packed as DIRECTORY/TOP.tar.xz with one top-level directory TOP; its path and sha256."""
    files = {str(p.relative_to(FAKE)): p.read_bytes() for p in sorted(FAKE.rglob("*")) if p.is_file()}
    tar = tarballs.write(directory / f"{top}.tar.xz", tarballs.tar_bytes(top, files))
    return tar, hashlib.sha256(tar.read_bytes()).hexdigest()
