"""`doit boot` with [kernel] initramfs = "initrd": the kernel plus initrd.img, and doit watches the initrd.

The stand-in QEMU records its arguments, so what the VM was given is checked, not assumed; `doit list` shows
that the boot task depends on initrd.img (what `doit auto boot` watches to boot again after an edit).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.doit import environ, output, run_dodo, variables
from tests.helpers.fakeqemu import KERNEL_LINES, boot_profile, died, fake_qemu

pytestmark = pytest.mark.wiring

MARKER = "hello: started"


def setup(tmp_path: Path, initramfs: str) -> dict[str, Path]:
    argv = tmp_path / "qemu-argv"
    fake_qemu(tmp_path / "bin", [*KERNEL_LINES, MARKER, died(0)], argv=argv)
    profile = tmp_path / "p.toml"
    profile.write_text(boot_profile(MARKER, "").replace("[kernel]\n", f'[kernel]\ninitramfs = "{initramfs}"\n'))
    build = tmp_path / "b"
    build.mkdir()
    (build / "bzImage").write_bytes(b"MZ not a real kernel")
    (build / "initrd.img").write_bytes(b"\x1f\x8b not a real initrd")
    return {"argv": argv, "profile": profile, "build": build, "cache": tmp_path / "c", "bin": tmp_path / "bin"}


def doit(paths: dict[str, Path], *args: str) -> tuple[int, str]:
    """doit on the stand-in build; `boot` alone (-s): the initrd's own tasks would fetch a kernel first."""
    env = environ("TINYUKI_*", PATH=f"{paths['bin']}{os.pathsep}{os.environ['PATH']}")
    proc = run_dodo(*args, *variables(profile=paths["profile"], build_dir=paths["build"],
                                      cache_dir=paths["cache"]), env=env, timeout=120)
    return proc.returncode, output(proc)


def boot_deps(paths: dict[str, Path]) -> list[str]:
    _, out = doit(paths, "info", "boot")  # (its exit status says whether the task is up to date)
    assert "file_dep" in out, out
    return [line.strip(" -") for line in out.split("file_dep", 1)[1].split(":", 1)[1].splitlines()
            if line.strip().startswith("- ")]


@pytest.mark.parametrize("initramfs", ["initrd", "embedded"])
def test_boot_gives_the_vm_the_initrd_only_when_the_kernel_does_not_carry_the_program(
        tmp_path: Path, initramfs: str) -> None:
    paths = setup(tmp_path, initramfs)
    code, out = doit(paths, "-s", "boot")
    assert code == 0, out
    args = paths["argv"].read_text().splitlines()
    initrd = str(paths["build"] / "initrd.img")
    if initramfs == "initrd":
        assert args[args.index("-initrd") + 1] == initrd and "bzImage + initrd.img" in out
        assert initrd in boot_deps(paths)  # `doit auto boot` boots again after an edit rebuilds it
    else:
        assert "-initrd" not in args and initrd not in boot_deps(paths)


def test_an_initrd_boot_without_the_initrd_says_how_to_build_it(tmp_path: Path) -> None:
    paths = setup(tmp_path, "initrd")
    (paths["build"] / "initrd.img").unlink()
    code, out = doit(paths, "-s", "boot")
    assert code != 0 and "initrd.img" in out and "Traceback" not in out
    assert not paths["argv"].exists()  # QEMU never ran


def test_a_given_initrd_wins_over_the_profile_s(tmp_path: Path) -> None:
    paths = setup(tmp_path, "initrd")
    mine = tmp_path / "mine.img"
    mine.write_bytes(b"mine")
    code, out = doit(paths, "-s", "boot", f"initrd={mine}")
    assert code == 0, out
    args = paths["argv"].read_text().splitlines()
    assert args[args.index("-initrd") + 1] == str(mine)
