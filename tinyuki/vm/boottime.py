"""Where a boot's time goes, read from the serial console alone.

The host sees when each console line arrived (seconds since QEMU started);
the kernel stamps its own lines with its clock (CONFIG_PRINTK_TIME). Lines
logged before the serial console is registered arrive late, in one burst, so
the moment the kernel's clock read zero is taken from a line that went out as
it was logged: `Run /init as init process`. From that one offset the boot
splits into

  before the kernel: QEMU's own start, the firmware (qboot, SeaBIOS, OVMF or
      AAVMF), the real-mode setup, the decompressor, and the kernel's earliest
      setup before its clock starts; a PVH vmlinux skips the setup and
      decompressor, so the difference to a bzImage of the same build is the
      decompression; arm64's Image has no decompressor at all (QEMU loads it
      as it is, or AAVMF starts it through its EFI stub);
  kernel init: kernel t=0 to `Run /init as init process`, by the kernel's clock;
  exec: from there to the program's marker line on the console;
  program: the marker line to QEMU's exit (the program's work and power-off).

A boot through UEFI firmware (a UKI through OVMF or AAVMF) is also split at
the moment the firmware hands over: edk2 prints `BdsDxe: starting Boot0001
...` on the serial console as it starts EFI/BOOT/BOOTX64.EFI (BOOTAA64.EFI),
before the UKI's own code runs (systemd's stub prints nothing unless asked).
Everything up to that line is the firmware's share, which no kernel or program
change can shorten; everything after it, to the program's marker, is "the
rest": the stubs, the decompressor, kernel init and exec, which is what a UKI
costs over a direct -kernel boot of the same kernel.

Under `quiet` the kernel prints no info lines: the parts that need them are None.
Only the printk stamp `[    0.123456]` and `Run /init as init process` are
read, which every architecture prints alike (x86's ttyS0 and arm64's PL011
ttyAMA0); nothing here depends on x86-only lines such as "Decompressing".
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

STAMP_RE = re.compile(r"^\s*\[\s*(\d+\.\d+)\]")
RUN_INIT_RE = re.compile(r"Run \S+ as init process")
# edk2's boot manager (OVMF, AAVMF) as it starts a boot option; `loading` comes just before it.
HANDOVER_RE = re.compile(r"BdsDxe: starting Boot[0-9A-Fa-f]{4}\b")


@dataclass(frozen=True)
class Split:
    """Seconds spent in each part of one boot; None where the console does not tell."""

    before_kernel: float | None
    kernel_init: float | None
    exec_init: float | None
    program: float | None
    to_marker: float | None
    to_exit: float | None
    firmware: float | None = None  # QEMU start to the firmware starting the UKI; None without UEFI firmware
    rest: float | None = None  # from that handover to the program's marker

    def as_dict(self) -> dict[str, float | None]:
        return {k: (None if v is None else round(v, 4)) for k, v in self.__dict__.items()}

    @property
    def stubs(self) -> float | None:
        """Of a boot through UEFI firmware: its handover to the kernel's clock zero (systemd's stub, the
        kernel's EFI stub and decompressor); None without firmware or without kernel timestamps (`quiet`)."""
        if self.firmware is None or self.before_kernel is None:
            return None
        return max(0.0, self.before_kernel - self.firmware)


def stamp(line: str) -> float | None:
    """The kernel's own timestamp of a console line, or None for other lines."""
    m = STAMP_RE.match(line)
    return float(m.group(1)) if m else None


def kernel_zero(lines: Sequence[str], times: Sequence[float]) -> float | None:
    """Seconds after QEMU's start at which the kernel's clock read 0.

    Anchored at the `Run /init` line: by then the serial console prints each
    line as it is logged, so its arrival and its stamp belong together, and the
    parts of the split add up to the total even when the guest's clock runs at
    another rate than the host's (a TSC calibrated under load). Without that
    line (`quiet`), the smallest `arrival - stamp` of any line stamped after 0 is
    the best bound: lines logged before the console existed arrive late.
    """
    stamped = [(ts, at) for line, at in zip(lines, times, strict=True) if (ts := stamp(line)) is not None]
    for (ts, at), line in zip(stamped, (ln for ln in lines if stamp(ln) is not None), strict=True):
        if RUN_INIT_RE.search(line):
            return at - ts
    offsets = [at - ts for ts, at in stamped if ts > 0]
    return min(offsets) if offsets else None


def handover(lines: Sequence[str], times: Sequence[float], before: float | None = None) -> float | None:
    """Seconds after QEMU's start at which UEFI firmware started the boot loader (the UKI); None without one.

    The arrival of edk2's `BdsDxe: starting Boot####` line: the firmware prints
    it live, just before it jumps into the image. When a boot option fails and
    the firmware goes on to the next, the last such line before `before` (the
    program's marker) is the one that started what ran.
    """
    found = None
    for line, at in zip(lines, times, strict=True):
        if before is not None and at > before:
            break
        if HANDOVER_RE.search(line):
            found = at
    return found


def split(lines: Sequence[str], times: Sequence[float], marker_at: float | None,
          exit_at: float | None) -> Split:
    """Split one boot, given the console lines, their arrival times, the marker and exit times."""
    zero = kernel_zero(lines, times)
    run_init = next((stamp(line) for line in lines if RUN_INIT_RE.search(line) and stamp(line) is not None), None)
    kernel_init = run_init
    exec_init = None
    if zero is not None and run_init is not None and marker_at is not None:
        exec_init = max(0.0, marker_at - (zero + run_init))
    program = exit_at - marker_at if exit_at is not None and marker_at is not None else None
    firmware = handover(lines, times, marker_at)
    rest = marker_at - firmware if firmware is not None and marker_at is not None else None
    return Split(before_kernel=zero, kernel_init=kernel_init, exec_init=exec_init, program=program,
                 to_marker=marker_at, to_exit=exit_at, firmware=firmware, rest=rest)


def is_elf(path: Path) -> bool:
    """An ELF kernel (vmlinux) boots through PVH: QEMU loads it as is, with no decompressor."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def describe(s: Split, *, decompressor: bool = True, plain: str = "PVH") -> str:
    """One line for `doit boot`: the parts that are known, in boot order.

    `plain` names why a kernel without a decompressor has none: a PVH
    vmlinux, or arm64's uncompressed Image. A boot through UEFI firmware
    shows the firmware's share apart from what follows it (the stubs, and the
    decompressor where there is one), and the rest to the program in one figure.
    """
    before = "QEMU, firmware" + (", setup and decompressor" if decompressor else f" ({plain}: no decompressor)")
    parts = []
    firmware: tuple[tuple[str, float | None], ...] = ()
    if s.firmware is not None:
        firmware = (("QEMU and firmware to starting the UKI", s.firmware),)
        before = "EFI stubs" + (" and decompressor" if decompressor else "")
        s = replace(s, before_kernel=s.stubs)
    for label, value in (*firmware, (before, s.before_kernel), ("kernel init to Run /init", s.kernel_init),
                         ("exec to the program's first line", s.exec_init),
                         ("program to VM exit", s.program)):
        parts.append(f"{label} {value:.3f} s" if value is not None else f"{label} n/a")
    note = "" if s.kernel_init is not None else " (no kernel timestamps shown: `quiet` hides them)"
    if s.rest is not None:
        note += f" (the rest, from the firmware's handover to the program: {s.rest:.3f} s)"
    return "; ".join(parts) + note
