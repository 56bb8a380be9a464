"""Where a build reads and writes: the selected profile, the build dir and the cache.

Every stage finds its inputs and outputs through `Paths`, so the layout is
written down once and a build can live anywhere (`doit build_dir=... cache_dir=...`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tasks.errors import die
from tasks.profile import Profile, load_profile

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PROFILE = "debian"


@dataclass(frozen=True)
class Paths:
    """The layout of one build dir and of the shared cache.

    cache/ is shared by all profiles and build dirs and holds only things named
    by their content: verified tarballs, extracted trees, trust records.
    build/<profile>/ holds everything one profile produces.
    """

    build: Path
    cache: Path

    # ---- shared cache
    @property
    def store(self) -> Path:
        """Verified tarballs by sha256: store/ab/abcd... (content-addressed)."""
        return self.cache / "sha256"

    def stored(self, sha256: str) -> Path:
        return self.store / sha256[:2] / sha256

    @property
    def incoming(self) -> Path:
        """Downloads in progress (resumable .part files) and files awaiting verification."""
        return self.cache / "incoming"

    @property
    def locks(self) -> Path:
        """Trust-on-first-use records: the sha256 first seen for an unpinned source."""
        return self.cache / "locks"

    @property
    def trees(self) -> Path:
        """Extracted (and patched) source trees, named by the hashes that made them."""
        return self.cache / "trees"

    # ---- one build
    @property
    def db(self) -> Path:
        return self.build / ".doit.db"

    @property
    def logs(self) -> Path:
        return self.build / "logs"

    @property
    def fetched(self) -> Path:
        """JSON written by fetch: where the downloaded (not yet trusted) tarball is."""
        return self.build / "fetched.json"

    @property
    def source(self) -> Path:
        """JSON written by verify: the verified tarball in the store and how it was trusted."""
        return self.build / "source.json"

    @property
    def extracted(self) -> Path:
        """JSON written by extract: the pristine tree."""
        return self.build / "extracted.json"

    @property
    def tree(self) -> Path:
        """JSON written by patch: the tree to build (pristine if the series is empty)."""
        return self.build / "tree.json"

    @property
    def config(self) -> Path:
        """The checked .config produced by configure (without the initramfs)."""
        return self.build / "kernel.config"

    @property
    def kbuild(self) -> Path:
        """Kbuild's out-of-tree output directory (O=)."""
        return self.build / "kbuild"

    @property
    def kernel_stamp(self) -> Path:
        """JSON written by kernel: the full build of the tree without initramfs is done."""
        return self.build / "kernel.json"

    @property
    def init_dir(self) -> Path:
        return self.build / "init"

    @property
    def init_bin(self) -> Path:
        return self.build / "init" / "init"

    @property
    def cpio(self) -> Path:
        """The uncompressed newc initramfs, embedded in the kernel."""
        return self.build / "initramfs.cpio"

    @property
    def initrd(self) -> Path:
        """The same initramfs gzip'd, for booting kernel and initrd apart."""
        return self.build / "initrd.img"

    @property
    def bzimage(self) -> Path:
        """The final kernel image with the initramfs embedded."""
        return self.build / "bzImage"

    @property
    def vmlinux(self) -> Path:
        return self.build / "vmlinux"

    @property
    def uki(self) -> Path:
        return self.build / "tinyuki.efi"

    @property
    def manifest(self) -> Path:
        return self.build / "manifest.json"


@dataclass(frozen=True)
class Context:
    root: Path
    profile: Profile
    paths: Paths
    jobs: int

    @property
    def name(self) -> str:
        return self.profile.name


def _jobs(value: str | None) -> int:
    if value is None:
        return len(os.sched_getaffinity(0)) or 1
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise die(f"jobs={value!r} is not a positive number", "use jobs=N, for example jobs=2")
    return n


def make_context(
    profile: str | None = None,
    build_dir: str | None = None,
    cache_dir: str | None = None,
    jobs: str | None = None,
    root: Path = ROOT,
) -> Context:
    """Resolve doit's command-line variables into a Context (relative dirs are taken from the cwd)."""
    prof = load_profile(profile or os.environ.get("TINYUKI_PROFILE") or DEFAULT_PROFILE, root)
    build = Path(build_dir) if build_dir else root / "build" / prof.name
    cache = Path(cache_dir or os.environ.get("TINYUKI_CACHE_DIR") or root / "cache")
    return Context(
        root=root,
        profile=prof,
        paths=Paths(build=build.absolute(), cache=cache.absolute()),
        jobs=_jobs(jobs),
    )
