"""`doit boot` hands the program's result to the shell: its exit status, or a code of its own per boot failure.

A fake qemu-system-x86_64 (first in PATH) plays each console: the real doit
command line runs, so what is checked is the exit code a script or CI job
sees (tinyuki/vm/qemu.py decides, cli/exitcode.py makes doit end with it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.doit import environ, output, run_dodo, variables
from tests.helpers.fakeqemu import KERNEL_LINES, boot_profile, died, fake_qemu
from tinyuki.vm import qemu

MARKER = "hello: started"


def boot(tmp_path: Path, console: list[str], *, rc: int = 0, hang: bool = False, timeout: int = 20) -> tuple[int, str]:
    fake_qemu(tmp_path / "bin", console, rc=rc, hang=hang)
    profile = tmp_path / "p.toml"
    profile.write_text(boot_profile(MARKER, f"timeout = {timeout}"))
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"MZ not a real kernel")
    env = environ("TINYUKI_*", PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    proc = run_dodo("boot", f"kernel={kernel}", *variables(profile=profile, build_dir=tmp_path / "b",
                                                          cache_dir=tmp_path / "c"), env=env, timeout=120)
    return proc.returncode, output(proc)


@pytest.mark.parametrize("status", [0, 3, 200])
def test_the_programs_exit_status_is_doit_boots(tmp_path: Path, status: int) -> None:
    code, out = boot(tmp_path, [*KERNEL_LINES, MARKER, "working", died(status)])
    assert code == status, out
    assert f"boot: the program's exit status: {status}" in out


def test_the_helper_line_reports_a_status_before_a_power_off(tmp_path: Path) -> None:
    code, out = boot(tmp_path, [*KERNEL_LINES, MARKER, "tinyuki: exit status 9", "[    0.4] reboot: Power down"])
    assert code == 9 and "reported status 9" in out, out


def test_a_panic_before_the_program(tmp_path: Path) -> None:
    code, out = boot(tmp_path, [*KERNEL_LINES, "[    0.3] Kernel panic - not syncing: No working init found."])
    assert code == qemu.EXIT_PANIC and "the kernel panicked" in out and f"exit code: {qemu.EXIT_PANIC}" in out, out


def test_a_hang_is_its_own_failure_and_is_cut_at_the_timeout(tmp_path: Path) -> None:
    code, out = boot(tmp_path, [*KERNEL_LINES, MARKER], hang=True, timeout=2)
    assert code == qemu.EXIT_HANG and "did not power off within 2 s" in out, out


def test_a_missing_marker(tmp_path: Path) -> None:
    code, out = boot(tmp_path, [*KERNEL_LINES, "[    0.4] reboot: Power down"])
    assert code == qemu.EXIT_NO_MARKER and "without the program's marker" in out, out


def test_a_crash_is_128_plus_the_signal(tmp_path: Path) -> None:
    code, out = boot(tmp_path, [*KERNEL_LINES, MARKER, "[ 0.31] Kernel panic - not syncing: Attempted to kill init!"
                                                 " exitcode=0x0000000b"])
    assert code == 128 + 11 and "killed by signal 11" in out, out


def test_a_program_that_powers_off_succeeds(tmp_path: Path) -> None:
    code, out = boot(tmp_path, [*KERNEL_LINES, MARKER, "[    0.4] reboot: Power down"])
    assert code == 0 and "boot: ok" in out, out
