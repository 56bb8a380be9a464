"""QEMU's own floor: the time from QEMU's start to a guest that exits at its first instruction.

A boot benchmark's absolute seconds depend on the host's CPU; its ratio to
this floor, measured in the same run, does much less. The guest is a 32-bit
ELF with a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY), which QEMU's -kernel
starts directly on microvm and pc, as it starts tinyuki's PVH vmlinux. Its
four instructions write 0 to QEMU's isa-debug-exit port, so QEMU exits with
status (0 << 1) | 1 = 1: everything a real boot takes beyond this is the
firmware (none on microvm), the kernel, its loading and the program.

`python -m bench boot` boots it as one more case of its round-robin
(bench/boot.py's floor_case and floor_once), so the floor and the boots it is
compared with share every slow moment of the host.
"""

from __future__ import annotations

import struct
from pathlib import Path

LOAD_ADDRESS = 0x100000  # 1 MiB, where PVH kernels load
EXIT_PORT = 0x501
XEN_ELFNOTE_PHYS32_ENTRY = 18
EXPECTED_STATUS = 1  # isa-debug-exit: (value << 1) | 1
# mov dx, 0x501 ; mov al, 0 ; out dx, al ; hlt ; jmp $-1 (if an exit ever did not happen: wait, never run on)
CODE = bytes.fromhex("66ba") + struct.pack("<H", EXIT_PORT) + bytes.fromhex("b000 ee f4 ebfd")


def pvh_exit_elf() -> bytes:
    """The smallest PVH guest: one PT_LOAD with the code, one PT_NOTE naming its 32-bit entry."""
    ehsize, phentsize, phnum = 52, 32, 2
    note_name = b"Xen\0"
    note = struct.pack("<III", len(note_name), 4, XEN_ELFNOTE_PHYS32_ENTRY) + note_name
    code_offset = ehsize + phentsize * phnum
    note_offset = code_offset + len(CODE) + (-len(CODE) % 4)
    entry = LOAD_ADDRESS
    note += struct.pack("<I", entry)
    size = note_offset + len(note)
    header = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8) + struct.pack(
        "<HHIIIIIHHHHHH",
        2, 3, 1,  # ET_EXEC, EM_386, EV_CURRENT
        entry, ehsize, 0, 0,  # e_entry, e_phoff, e_shoff, e_flags
        ehsize, phentsize, phnum, 40, 0, 0)
    load = struct.pack("<IIIIIIII", 1, 0, LOAD_ADDRESS - code_offset, LOAD_ADDRESS - code_offset,
                       size, size, 5, 0x1000)  # PT_LOAD of the whole file, R+X, code at LOAD_ADDRESS
    pnote = struct.pack("<IIIIIIII", 4, note_offset, 0, 0, len(note), len(note), 4, 4)  # PT_NOTE
    body = CODE + bytes(-len(CODE) % 4)
    return header + load + pnote + body + note


def command(elf: Path, machine: str = "microvm") -> list[str]:
    return ["qemu-system-x86_64", "-M", machine, "-accel", "tcg", "-m", "128M", "-nodefaults", "-no-user-config",
            "-nographic", "-no-reboot", "-device", f"isa-debug-exit,iobase={EXIT_PORT:#x}", "-kernel", str(elf)]
