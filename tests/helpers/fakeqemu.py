"""A stand-in QEMU for `doit boot` tests: a shell script first in PATH that plays a console and exits."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.helpers.profiles import MINIMAL

# What a kernel prints first and last before the program, as the stand-in QEMU's console plays it.
KERNEL_LINES = ["[    0.000000] Linux version 6.1.0", "[    0.30] Run /init as init process"]


def died(status: int) -> str:
    """The kernel's panic line when /init exits with `status` (a wait status: the exit status << 8)."""
    return f"[    0.31] Kernel panic - not syncing: Attempted to kill init! exitcode=0x{status << 8:08x}"


def boot_profile(marker: str, boot: str) -> str:
    """A profile for `doit boot` against the stand-in QEMU: a source never fetched, the program's marker,
    TCG, and `boot` as the rest of [boot] (the last section, so a test may append more of it)."""
    return MINIMAL + f'\n[init]\nmarker = "{marker}"\n\n[boot]\naccel = "tcg"\n{boot}\n'


def fake_qemu(bin_dir: Path, console: list[str], *, name: str = "qemu-system-x86_64", rc: int = 0,
              hang: bool = False, argv: Path | None = None) -> Path:
    """Write `bin_dir/name`: it prints `console` line by line (as a serial port does, CRLF), then sleeps if
    `hang`, then exits with `rc`; with `argv`, it first records its arguments there, one a line."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / name
    record = f'printf "%s\\n" "$@" > {shlex.quote(str(argv))}\n' if argv is not None else ""
    lines = "".join(f"printf '%s\\r\\n' {line!r}\n" for line in console)
    script.write_text("#!/bin/sh\n" + record + lines + ("sleep 30\n" if hang else "") + f"exit {rc}\n")
    script.chmod(0o755)
    return script
