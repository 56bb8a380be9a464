"""The fake kernel tree (tests/fakekernel) as the pipeline meets it: a kernel.org-like tarball."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from tests.helpers import tarballs

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "fakekernel"


def tarball(directory: Path, top: str = "linux-9.9", version: tuple[int, int, int] | None = None) -> tuple[Path, str]:
    """tests/fakekernel packed as DIRECTORY/TOP.tar.xz with one top-level directory TOP; its path and sha256.

    `version`: the kernel version its Makefile declares, instead of 9.9.0.
    """
    files = {str(p.relative_to(FAKE)): p.read_bytes() for p in sorted(FAKE.rglob("*")) if p.is_file()}
    if version is not None:
        head = "VERSION = {}\nPATCHLEVEL = {}\nSUBLEVEL = {}\n".format(*version).encode()
        files["Makefile"] = files["Makefile"].replace(b"VERSION = 9\nPATCHLEVEL = 9\nSUBLEVEL = 0\n", head)
        assert head in files["Makefile"]
    tar = tarballs.write(directory / f"{top}.tar.xz", tarballs.tar_bytes(top, files))
    return tar, hashlib.sha256(tar.read_bytes()).hexdigest()


# The fake pipeline runs real make, and its program is built with musl (the fake tree has no nolibc).
NEEDS_MAKE_AND_MUSL = pytest.mark.skipif(shutil.which("make") is None or shutil.which("musl-gcc") is None,
                                         reason="make and musl-gcc (musl-tools) are needed")
DEFAULT_FRAGMENTS = ("base", "initramfs", "console", "block", "efi", "size")


def write_profile(path: Path, tar: Path, sha: str, program: Path) -> Path:
    """A profile that builds the fake tree from `tar` (pinned by `sha`) with `program` as /init, in musl."""
    path.write_text("\n".join([
        "[source]", f'urls = ["{tar}"]', f'sha256 = "{sha}"', "",
        "[kernel]", f"fragments = {json.dumps(list(DEFAULT_FRAGMENTS))}", "",
        "[init]", f'sources = ["{program}"]', 'libc = "musl"', "",
    ]))
    return path


def log_in_tree_blob(blobs: Path, entry: dict) -> str:
    """The fake kbuild's log as stored in a kernel entry's packed kbuild tree (blobs: the store's blobs dir)."""
    sha = entry["trees"]["kbuild"]["sha256"]
    with tarfile.open(blobs / sha[:2] / sha) as tar:
        member = tar.extractfile("fakekernel.log")
        assert member is not None
        return io.TextIOWrapper(member).read()
