"""A fresh clone with a warm cache reaches the UKI without compiling anything, and can still relink.

The source is the e2e layer's session build (tests/e2e/conftest.py: a full
real kernel build, about 3 minutes on 2 cores, shared with the other e2e
modules). The clone is a copy of the working tree's files (tracked and new,
not ignored, so uncommitted changes are in it) plus that build's cache/
linked over, without the compile cache: a compile would show.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, TARBALL
from tests.helpers.doit import dodo_ok, environ, variables
from tinyuki.tasks import PIPELINE
from tinyuki.util.fs import read_json, sha256_file

CACHED = [s.name for s in PIPELINE if s.cache]

pytestmark = pytest.mark.skipif(not TARBALL.exists(), reason=f"{TARBALL} missing: scripts/setup.sh installs it")


def doit(root: Path, profile: Path, args: list[str]) -> str:
    """`doit` of the clone, with its default build dir and cache (both inside the clone)."""
    env = environ("TINYUKI_PROFILE", "TINYUKI_CACHE_DIR", "TINYUKI_ARTIFACT_CACHE", "PYTHONPATH")
    return dodo_ok(*args, *variables(profile=profile), dodo=root / "dodo.py", cwd=root, env=env, timeout=3600,
                   tail=6000)


def working_tree_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (root / f).is_file()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory, build: dict[str, Path]) -> dict[str, Path]:
    dest = tmp_path_factory.mktemp("clone") / "tinyuki"
    for rel in working_tree_files(ROOT):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    (dest / "cache").mkdir()
    for part in ("sha256", "locks", "trees", "artifacts"):
        if (build["cache"] / part).exists():
            # hard links: the cache only ever replaces files by rename, never writes into one
            subprocess.run(["cp", "-al", str(build["cache"] / part), str(dest / "cache" / part)], check=True)
    # the session's profile, kept in the clone so that its program is the clone's init/init.c
    profile = dest / "configs" / "profiles" / build["profile"].name
    profile.write_text(build["profile"].read_text().replace(f'"{ROOT}/', '"../../'))
    return {"root": dest, "profile": profile, "build": dest / "build" / profile.stem, "source": build["build"]}


def test_a_fresh_clone_with_the_cache_reaches_the_uki_without_compiling(clone: dict[str, Path]) -> None:
    out = doit(clone["root"], clone["profile"], ["disk"])  # the last cached stage: every one is restored
    for task in CACHED:
        assert f"{task}: restored from artifact cache" in out, out[-6000:]
    assert "kernel build:" not in out and "relink with the initramfs" not in out, out[-6000:]
    commands = [line for line in out.splitlines() if line.startswith("+ ")]
    assert not [c for c in commands if re.search(r"\b(make|gcc|musl-gcc|cc)\b", c)], commands
    build = clone["build"]
    assert sha256_file(build / "tinyuki.efi") == sha256_file(clone["source"] / "tinyuki.efi")
    assert sha256_file(build / "tinyuki.img") == sha256_file(clone["source"] / "tinyuki.img")
    assert read_json(build / "kernel.json")["tree"].startswith(str(clone["root"] / "cache" / "trees"))


def test_the_restored_kernel_tree_relinks_incrementally_in_the_clone(clone: dict[str, Path]) -> None:
    """kbuild's .cmd files were relocated to the clone's paths: a new program costs a relink, not a build."""
    program = clone["root"] / "init" / "init.c"
    program.write_text(program.read_text().replace('put_str("init: ");', 'put_str("init (clone): ");', 1))
    out = doit(clone["root"], clone["profile"], ["uki"])
    assert "init: restored" not in out and "embed: restored" not in out
    assert "kernel: restored" not in out and "kernel build:" not in out  # the kernel task is up to date
    log = (clone["build"] / "logs" / "embed.log").read_text()
    compiled = [line for line in log.splitlines() if line.startswith("  CC ")]
    # a relink recompiles only the decompressor's misc.o (it embeds the image size); a full build is ~1000
    assert len(compiled) <= 5, compiled
    assert "  LD      vmlinux" in log
