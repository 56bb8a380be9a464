"""A stand-in QEMU for `doit boot` tests: a shell script first in PATH that plays a console and exits."""

from __future__ import annotations

import shlex
from pathlib import Path


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
