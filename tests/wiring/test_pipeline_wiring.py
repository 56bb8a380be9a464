"""The whole pipeline, fetch to manifest, against the fake kernel tree: ordering and staleness.

Which tasks run is read from doit's own report (".  task" ran, "-- task" was
up to date) and the fake kbuild's log counts real compiles, so these tests
prove that a change reruns exactly the stages downstream of it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.helpers import fakekernel
from tests.helpers.doit import dodo_ok, environ, ran, variables
from tinyuki.tasks import PIPELINE

# every stage that is on for the fake profile (it has no [sign], so the sign stage never runs)
BUILD_TASKS = [s.name for s in PIPELINE if s.when is None]


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Path]:
    tar, sha = fakekernel.tarball(tmp_path)
    frags = tmp_path / "fragments"
    frags.mkdir()
    for f in (ROOT / "configs" / "fragments").glob("*.config"):
        shutil.copy(f, frags / f.name)
    init = tmp_path / "init.c"
    shutil.copy(ROOT / "init" / "init.c", init)
    names = ["base", "initramfs", "console", "block", "efi", "size"]
    profile = tmp_path / "fake.toml"
    profile.write_text("\n".join([
        "[source]", f'urls = ["{tar}"]', f'sha256 = "{sha}"', "",
        "[kernel]", f"fragments = [{', '.join(repr(str(frags / (n + '.config'))) for n in names)}]", "",
        "[init]", f'sources = ["{init}"]', 'libc = "musl"', "",
    ]).replace("'", '"'))
    return {"profile": profile, "build": tmp_path / "build", "cache": tmp_path / "cache", "frags": frags,
            "init": init}


def doit(project: dict[str, Path], *args: str, **extra_env: str) -> str:
    env = environ("TINYUKI_*", "KCFLAGS", TINYUKI_CCACHE="0", **extra_env)
    return dodo_ok(*args, *variables(profile=project["profile"], build_dir=project["build"],
                                     cache_dir=project["cache"]), env=env, timeout=300)


def compiles(project: dict[str, Path]) -> int:
    log = project["build"] / "kbuild" / "fakekernel.log"
    return sum(1 for line in log.read_text().splitlines() if line.startswith("compile "))


def test_first_run_builds_everything_in_order(project: dict[str, Path]) -> None:
    out = doit(project)
    order = [t for t in ran(out) if t in BUILD_TASKS]
    assert set(order) == set(BUILD_TASKS), out
    for stage in (s for s in PIPELINE if s.name in BUILD_TASKS):  # every stage ran after the stages it needs
        for need in (n for n in stage.needs if n in BUILD_TASKS):
            assert order.index(need) < order.index(stage.name), order
    for name in ("bzImage", "vmlinux", "initramfs.cpio", "initrd.img", "tinyuki.efi", "manifest.json"):
        assert (project["build"] / name).is_file()


def test_no_change_run_does_nothing(project: dict[str, Path]) -> None:
    doit(project)
    n = compiles(project)
    out = doit(project)
    assert [t for t in ran(out) if t in BUILD_TASKS] == [], out
    assert compiles(project) == n


def test_touching_inputs_reruns_nothing(project: dict[str, Path]) -> None:
    doit(project)
    for f in [project["init"], *project["frags"].glob("*.config"), project["profile"]]:
        os.utime(f, None)
    out = doit(project)
    assert [t for t in ran(out) if t in BUILD_TASKS] == [], out


def test_changing_a_fragment_reruns_configure_onwards(project: dict[str, Path]) -> None:
    doit(project)
    size = project["frags"] / "size.config"
    size.write_text(size.read_text() + "\n# a comment changes the file, not the config\nCONFIG_PRINTK_TIME=y\n")
    out = doit(project)
    again = set(ran(out)) & set(BUILD_TASKS)
    assert {"fetch", "verify", "extract", "patch", "init", "initramfs"}.isdisjoint(again), out
    assert "configure" in again


def test_changing_init_reruns_only_init_initramfs_relink_and_uki(project: dict[str, Path]) -> None:
    doit(project)
    n = compiles(project)
    bz = (project["build"] / "bzImage").read_bytes()
    source = project["init"].read_text()
    changed = source.replace('put_str("init: mounted ");', 'put_str("init: now mounted ");')
    assert changed != source
    project["init"].write_text(changed)
    out = doit(project)
    assert [t for t in ran(out) if t in BUILD_TASKS] == ["init", "initramfs", "embed", "uki", "disk", "manifest"], out
    assert compiles(project) == n, "the kernel's objects were recompiled for a program change"
    new = (project["build"] / "bzImage").read_bytes()
    assert new != bz
    assert (project["build"] / "initramfs.cpio").read_bytes() in new, "the new program is not in the image"


def test_compiler_flags_from_the_environment_rerun_the_kernel(project: dict[str, Path]) -> None:
    doit(project)
    n = compiles(project)
    out = doit(project, KCFLAGS="-DTINYUKI_TEST_FLAG")
    again = set(ran(out)) & set(BUILD_TASKS)
    assert {"configure", "kernel", "embed"} <= again, out
    assert compiles(project) > n, "KCFLAGS changed but nothing was recompiled"
    out = doit(project, KCFLAGS="-DTINYUKI_TEST_FLAG")
    assert [t for t in ran(out) if t in BUILD_TASKS] == [], out
