"""Reading ELF files: is this program fit to be /init, can QEMU boot this kernel directly?"""

from __future__ import annotations

import struct

PT_INTERP = 3
PT_NOTE = 4
EM_X86_64 = 62


MACHINES = {3: "i386", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "s390", 40: "ARM", 62: "x86-64",
            183: "AArch64", 243: "RISC-V", 258: "LoongArch"}


def machine_name(e_machine: int) -> str:
    return f"{MACHINES.get(e_machine, 'machine')} (ELF machine {e_machine})"


def machine_of(data: bytes) -> int | None:
    """The e_machine of an ELF file, None for anything else: says which architecture a wrong program is for."""
    if data[:4] != b"\x7fELF" or len(data) < 20:
        return None
    return int(struct.unpack_from("<H", data, 18)[0])


def interpreter(data: bytes) -> str | None:
    """The program interpreter (dynamic loader) an ELF64 file asks for, or None if it asks for none."""
    if data[:4] != b"\x7fELF" or len(data) < 64 or data[4] != 2:
        return None
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 40 > len(data):
            return None
        p_type, _flags, offset, _va, _pa, filesz = struct.unpack_from("<IIQQQQ", data, off)
        if p_type == PT_INTERP:
            return data[offset:offset + filesz].split(b"\0")[0].decode(errors="replace") or "?"
    return None


def elf_problem(data: bytes, machine: int = EM_X86_64) -> str | None:
    """Why this file cannot be the kernel's /init, or None if it is a static ELF executable for `machine`.

    `machine` is the target's e_machine (tinyuki/arch.py's elf_machine): the
    kernel runs only programs of its own architecture, and a program for
    another one fails at boot with a bare "No working init found".
    Each answer names what the file is, so the error says what to change: a
    script, another architecture's program, a library, a dynamic program and
    its loader.
    """
    if not data:
        return "empty (0 bytes)"
    if data[:2] == b"#!":
        first = data[:120].split(b"\n")[0].decode(errors="replace")
        return f"a script ({first}), not an ELF executable"
    if data[:4] != b"\x7fELF":
        return "not an ELF file"
    if len(data) < 64:
        return "a truncated ELF file"
    e_machine, = struct.unpack_from("<H", data, 18)
    if data[4] != 2 or data[5] != 1:
        bits = {1: "32-bit", 2: "64-bit"}.get(data[4], "unknown-class")
        return f"not a 64-bit little-endian ELF file (a {bits} program for {machine_name(e_machine)})"
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type not in (2, 3):  # ET_EXEC, or ET_DYN for static-pie
        what = {1: "an object file (ET_REL): link it", 4: "a core dump"}.get(e_type, f"ELF type {e_type}")
        return f"not an executable ({what})"
    if e_machine != machine:
        return f"built for {machine_name(e_machine)}, not the kernel's {MACHINES.get(machine, 'machine')} ({machine})"
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    if phoff + phnum * phentsize > len(data):
        return "truncated program headers"
    loader = interpreter(data)
    if loader is not None:
        return f"dynamically linked (it names a program interpreter, {loader}, which the initramfs does not have)"
    e_entry, = struct.unpack_from("<Q", data, 24)
    if e_type == 3 and e_entry == 0:
        return "a shared library (no entry point), not a program"
    return None


XEN_ELFNOTE_PHYS32_ENTRY = 18


def has_pvh_entry(elf: bytes) -> bool:
    """Whether a 64-bit ELF kernel carries the PVH entry note QEMU's -kernel needs to boot it directly.

    Without it (CONFIG_PVH off) QEMU refuses the vmlinux ("Error loading
    uncompressed kernel without PVH ELF Note"), so a profile that boots vmlinux
    must be caught at build time instead.
    """
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return False
    phoff, = struct.unpack_from("<Q", elf, 32)
    phentsize, phnum = struct.unpack_from("<HH", elf, 54)
    for i in range(phnum):
        p_type, _flags, offset, _va, _pa, filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != PT_NOTE:
            continue
        pos, end = offset, offset + filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False
